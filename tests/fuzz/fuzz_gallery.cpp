// libFuzzer target: gallery JSON (fetcher::GallerySource) on arbitrary bytes, with and without
// album expansion. A document of the wrong shape must throw SourceError from the constructor and
// nothing else; a document of the right shape must yield exactly the string "link" of every
// single image (and of every album image when expanding), in order, and count the rest as
// skipped or albums, as checked against a separate walk of the parsed document.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <optional>
#include <spdlog/spdlog.h>
#include <string>
#include <string_view>
#include <vector>

#include "fetcher/source.hpp"

namespace {

void require(bool ok) {
  if (!ok) std::abort();
}

struct Expected {
  std::vector<std::string> links;
  std::uint64_t skipped = 0;
  std::uint64_t albums = 0;
};

void take(const nlohmann::json& e, Expected& out) {
  if (e.is_object() && e.contains("link") && e["link"].is_string())
    out.links.push_back(e["link"].get<std::string>());
  else
    ++out.skipped;
}

Expected walk(const nlohmann::json& doc, bool expand) {
  Expected out;
  for (const auto& item : doc["data"]) {
    bool album = false;
    if (item.is_object() && item.contains("is_album") && !item["is_album"].is_null()) {
      if (!item["is_album"].is_boolean()) {
        ++out.skipped;
        continue;
      }
      album = item["is_album"].get<bool>();
    }
    if (!album) {
      take(item, out);
      continue;
    }
    ++out.albums;
    if (!expand) continue;
    if (!item.contains("images") || !item["images"].is_array()) {
      ++out.skipped;
      continue;
    }
    for (const auto& image : item["images"]) take(image, out);
  }
  return out;
}

bool right_shape(const nlohmann::json& doc) {
  if (!doc.is_object()) return false;
  if (doc.contains("success") && doc["success"].is_boolean() && !doc["success"].get<bool>())
    return false;
  return doc.contains("data") && doc["data"].is_array();
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(bytes), size);
  nlohmann::json doc;
  bool parses = true;
  try {
    doc = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception&) { // parse_error, out_of_range ("1e400")
    parses = false;
  }
  for (const bool expand : {false, true}) {
    std::optional<trawl::fetcher::GallerySource> source;
    try {
      source.emplace(text, trawl::fetcher::GalleryOptions{expand});
    } catch (const trawl::fetcher::SourceError&) {
      require(!parses || !right_shape(doc));
      continue;
    }
    require(parses && right_shape(doc));
    const Expected want = walk(doc, expand);
    std::vector<std::string> got;
    while (auto link = source->next()) {
      require(got.size() < want.links.size());
      require(!source->where().empty());
      got.push_back(std::move(*link));
    }
    require(!source->next());
    require(got == want.links);
    require(source->skipped() == want.skipped);
    require(source->albums() == want.albums);
  }
  return 0;
}
