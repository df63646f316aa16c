#include "tests/support/corpus.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <unordered_set>

namespace trawl::testsupport {
namespace {

// splitmix64: tiny, fast and well distributed; good enough for test data, never for secrets.
class SplitMix {
public:
  explicit SplitMix(std::uint64_t seed) : state_(seed) {}

  std::uint64_t next() noexcept {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

  // Uniform in [0, 1).
  double unit() noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

  // Uniform in [lo, hi], inclusive.
  std::uint64_t between(std::uint64_t lo, std::uint64_t hi) noexcept {
    return lo + next() % (hi - lo + 1);
  }

private:
  std::uint64_t state_;
};

std::uint64_t hash_name(std::string_view s) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a, then a splitmix finaliser to mix the bits
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return SplitMix(h).next();
}

constexpr std::string_view kAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

class IdMaker {
public:
  explicit IdMaker(std::uint64_t seed) : rng_(seed) {}

  std::string next() {
    for (;;) {
      std::string id(7, 'x');
      for (auto& c : id) {
        c = kAlphabet[rng_.next() % kAlphabet.size()];
      }
      if (used_.insert(id).second) {
        return id;
      }
    }
  }

private:
  SplitMix rng_;
  std::unordered_set<std::string> used_;
};

Item make_file(IdMaker& ids, std::string_view ext, std::uint64_t size) {
  Item it;
  it.id = ids.next();
  it.name = it.id + std::string(ext);
  it.size = size;
  it.type = mime_type_for(it.name);
  return it;
}

std::string_view extension_of(std::string_view name) {
  const auto dot = name.rfind('.');
  return dot == std::string_view::npos ? std::string_view{} : name.substr(dot);
}

std::string hex(const unsigned char* p, std::size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(n * 2, '0');
  for (std::size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[p[i] >> 4];
    out[2 * i + 1] = kDigits[p[i] & 0xf];
  }
  return out;
}

struct MdCtxFree {
  void operator()(EVP_MD_CTX* ctx) const noexcept { EVP_MD_CTX_free(ctx); }
};
using MdCtx = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

MdCtx new_sha256() {
  MdCtx ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error("sha256: cannot initialise OpenSSL digest");
  }
  return ctx;
}

std::string finish_sha256(EVP_MD_CTX* ctx) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx, md.data(), &len) != 1) {
    throw std::runtime_error("sha256: digest failed");
  }
  return hex(md.data(), len);
}

using Json = nlohmann::ordered_json;

// The fields Imgur gives every image, in Imgur's order; values made up but stable per id.
Json image_json(const Item& it, const std::string& base_url) {
  SplitMix rng(hash_name(it.id));
  const bool gif = it.type == "image/gif";
  const bool video = it.type == "video/mp4";
  Json j;
  j["id"] = it.id;
  j["title"] = "Sample " + it.id;
  j["description"] = nullptr;
  j["datetime"] = 1764400000 + rng.between(0, 200000);
  j["type"] = it.type;
  j["animated"] = gif || video;
  j["width"] = rng.between(320, 2048);
  j["height"] = rng.between(240, 2048);
  j["size"] = it.size;
  const std::uint64_t views = rng.between(100, 100000);
  j["views"] = views;
  j["bandwidth"] = views * it.size;
  j["vote"] = nullptr;
  j["favorite"] = false;
  j["nsfw"] = false;
  j["section"] = nullptr;
  j["account_url"] = "sample_user";
  j["account_id"] = 1234567;
  j["is_ad"] = false;
  j["in_most_viral"] = true;
  j["has_sound"] = false;
  j["tags"] = Json::array();
  j["ad_type"] = 0;
  j["ad_url"] = "";
  j["edited"] = "0";
  j["in_gallery"] = true;
  j["link"] = base_url + "/i/" + it.name;
  if (gif || video) {
    j["gifv"] = base_url + "/i/" + it.id + ".gifv";
    j["mp4"] = base_url + "/i/" + it.id + ".mp4";
    j["mp4_size"] = video ? it.size : it.size / 5 + 1;
    j["looping"] = true;
  }
  return j;
}

// The fields a gallery entry (not an album child) has on top of the image fields.
void add_gallery_fields(Json& j, const Item& it) {
  SplitMix rng(hash_name(it.id) ^ 0x5a5a5a5aULL);
  const std::uint64_t ups = rng.between(10, 5000);
  const std::uint64_t downs = rng.between(0, 50);
  j["ups"] = ups;
  j["downs"] = downs;
  j["points"] = ups - downs;
  j["score"] = ups + rng.between(0, 100);
  j["is_album"] = it.is_album;
  j["comment_count"] = rng.between(0, 500);
}

Json album_json(const Item& album, const std::string& base_url) {
  SplitMix rng(hash_name(album.id));
  Json j;
  j["id"] = album.id;
  j["title"] = "Album " + album.id;
  j["description"] = nullptr;
  j["datetime"] = 1764400000 + rng.between(0, 200000);
  j["cover"] = album.images.empty() ? std::string() : album.images.front().id;
  j["cover_width"] = 1024;
  j["cover_height"] = 768;
  j["account_url"] = "sample_user";
  j["account_id"] = 7654321;
  j["privacy"] = "public";
  j["layout"] = "blog";
  j["views"] = rng.between(100, 100000);
  j["link"] = base_url + "/a/" + album.id;
  add_gallery_fields(j, album);
  j["vote"] = nullptr;
  j["favorite"] = false;
  j["nsfw"] = false;
  j["section"] = "";
  j["favorite_count"] = rng.between(0, 200);
  j["topic"] = "No Topic";
  j["topic_id"] = 29;
  j["images_count"] = album.images.size();
  j["in_gallery"] = true;
  j["is_ad"] = false;
  j["tags"] = Json::array();
  j["ad_type"] = 0;
  j["ad_url"] = "";
  j["in_most_viral"] = true;
  j["include_album_ads"] = false;
  Json images = Json::array();
  for (const auto& child : album.images) {
    images.push_back(image_json(child, base_url));
  }
  j["images"] = std::move(images);
  return j;
}

} // namespace

std::vector<Item> classic_gallery() {
  IdMaker ids(0x7472617766697865ULL);  // fixed: the classic gallery never changes
  SplitMix rng(0xc1a551cULL);
  std::vector<Item> items;

  // Stratified log-uniform sizes: every part of the 30 KB..1.5 MB range is represented.
  const double lo = std::log(static_cast<double>(kClassicJpgMin));
  const double hi = std::log(static_cast<double>(kClassicJpgMax));
  for (std::size_t i = 0; i < kClassicJpgCount; ++i) {
    const double u = (static_cast<double>(i) + rng.unit()) / kClassicJpgCount;
    auto size = static_cast<std::uint64_t>(std::exp(lo + u * (hi - lo)));
    size = std::clamp(size, kClassicJpgMin, kClassicJpgMax);
    items.push_back(make_file(ids, ".jpg", size));
  }
  for (int i = 0; i < 4; ++i) {
    items.push_back(make_file(ids, ".gif", rng.between(400 * 1000, 2400 * 1000)));
  }
  for (int i = 0; i < 2; ++i) {
    items.push_back(make_file(ids, ".png", rng.between(100 * 1000, 1200 * 1000)));
  }
  items.push_back(make_file(ids, ".mp4", rng.between(1000 * 1000, 2400 * 1000)));

  const std::vector<std::vector<std::string_view>> album_shapes = {
      {".jpg", ".png", ".gif"}, {".jpg", ".jpg"}, {".jpg", ".gif", ".jpg", ".png"}};
  for (const auto& shape : album_shapes) {
    Item album;
    album.id = ids.next();
    album.is_album = true;
    for (auto ext : shape) {
      album.images.push_back(make_file(ids, ext, rng.between(kClassicJpgMin, 1200 * 1000)));
    }
    items.push_back(std::move(album));
  }

  // Mix the kinds the way a real gallery page does (Fisher-Yates with the fixed generator).
  for (std::size_t i = items.size() - 1; i > 0; --i) {
    std::swap(items[i], items[rng.next() % (i + 1)]);
  }
  return items;
}

std::vector<Item> uniform_corpus(std::size_t count, std::uint64_t approx_size, std::uint64_t seed) {
  IdMaker ids(seed ^ 0x756e69666f726dULL);
  SplitMix rng(seed);
  const std::uint64_t spread = approx_size / 5;
  std::vector<Item> items;
  items.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    const std::uint64_t size = std::max<std::uint64_t>(
        1, rng.between(approx_size - spread, approx_size + spread));
    items.push_back(make_file(ids, ".jpg", size));
  }
  return items;
}

std::vector<Item> files_of(const std::vector<Item>& items, bool include_album_children) {
  std::vector<Item> out;
  for (const auto& it : items) {
    if (!it.is_album) {
      out.push_back(it);
    } else if (include_album_children) {
      out.insert(out.end(), it.images.begin(), it.images.end());
    }
  }
  return out;
}

std::string mime_type_for(std::string_view name) {
  const auto ext = extension_of(name);
  if (ext == ".jpg" || ext == ".jpeg") return "image/jpeg";
  if (ext == ".png") return "image/png";
  if (ext == ".gif") return "image/gif";
  if (ext == ".mp4") return "video/mp4";
  if (ext == ".webp") return "image/webp";
  return "application/octet-stream";
}

std::string file_bytes(const std::string& name, std::uint64_t size) {
  std::string out(size, '\0');
  SplitMix rng(hash_name(name));
  char* p = out.data();
  std::size_t left = out.size();
  while (left >= 8) {
    const std::uint64_t v = rng.next();
    std::memcpy(p, &v, 8);
    p += 8;
    left -= 8;
  }
  if (left > 0) {
    const std::uint64_t v = rng.next();
    std::memcpy(p, &v, left);
  }

  std::string_view head;
  std::string_view tail;
  const auto ext = extension_of(name);
  if (ext == ".jpg" || ext == ".jpeg") {
    head = std::string_view("\xFF\xD8\xFF\xE0\x00\x10JFIF\x00", 11);
    tail = "\xFF\xD9";
  } else if (ext == ".png") {
    head = "\x89PNG\r\n\x1A\n";
  } else if (ext == ".gif") {
    head = "GIF89a";
    tail = "\x3B";
  } else if (ext == ".mp4") {
    head = std::string_view("\x00\x00\x00\x20" "ftypisom", 12);
  }
  if (!tail.empty() && out.size() >= head.size() + tail.size()) {
    std::memcpy(out.data() + out.size() - tail.size(), tail.data(), tail.size());
  }
  if (!head.empty() && !out.empty()) {
    std::memcpy(out.data(), head.data(), std::min(head.size(), out.size()));
  }
  return out;
}

std::string gallery_json(const std::vector<Item>& items, const std::string& base_url) {
  Json data = Json::array();
  for (const auto& it : items) {
    if (it.is_album) {
      data.push_back(album_json(it, base_url));
    } else {
      Json j = image_json(it, base_url);
      add_gallery_fields(j, it);
      j["topic"] = nullptr;
      j["topic_id"] = nullptr;
      data.push_back(std::move(j));
    }
  }
  Json doc;
  doc["data"] = std::move(data);
  doc["success"] = true;
  doc["status"] = 200;
  return doc.dump(1);
}

std::string url_list(const std::vector<Item>& items, const std::string& base_url,
                     bool include_album_children) {
  std::string out;
  for (const auto& f : files_of(items, include_album_children)) {
    out += base_url;
    out += "/i/";
    out += f.name;
    out += '\n';
  }
  return out;
}

std::string manifest_tsv(const std::vector<Item>& items) {
  std::string out;
  for (const auto& f : files_of(items, true)) {
    out += f.name;
    out += '\t';
    out += std::to_string(f.size);
    out += '\t';
    out += sha256_hex(file_bytes(f.name, f.size));
    out += '\n';
  }
  return out;
}

std::string sha256_hex(std::string_view bytes) {
  auto ctx = new_sha256();
  if (EVP_DigestUpdate(ctx.get(), bytes.data(), bytes.size()) != 1) {
    throw std::runtime_error("sha256: digest update failed");
  }
  return finish_sha256(ctx.get());
}

std::string sha256_file(const std::string& path) {
  struct FileClose {
    void operator()(std::FILE* f) const noexcept { std::fclose(f); }
  };
  std::unique_ptr<std::FILE, FileClose> f(std::fopen(path.c_str(), "rb"));
  if (!f) {
    throw std::runtime_error("sha256_file: cannot open " + path + ": " + std::strerror(errno));
  }
  auto ctx = new_sha256();
  std::vector<char> buf(1 << 20);
  for (;;) {
    const std::size_t n = std::fread(buf.data(), 1, buf.size(), f.get());
    if (n > 0 && EVP_DigestUpdate(ctx.get(), buf.data(), n) != 1) {
      throw std::runtime_error("sha256: digest update failed");
    }
    if (n < buf.size()) {
      if (std::ferror(f.get())) {
        throw std::runtime_error("sha256_file: read error on " + path);
      }
      break;
    }
  }
  return finish_sha256(ctx.get());
}

} // namespace trawl::testsupport
