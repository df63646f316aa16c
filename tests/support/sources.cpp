#include "tests/support/sources.hpp"

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <zlib.h>

namespace trawl::testsupport {
namespace {

std::string host_of(const std::string& base_url) {
  const auto p = base_url.find("://");
  return p == std::string::npos ? base_url : base_url.substr(p + 3);
}

} // namespace

std::string csv_field(const std::string& s, char delim) {
  if (delim == '\t') return s;
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::vector<std::string> single_urls(const std::vector<Item>& items, const std::string& base_url) {
  std::vector<std::string> out;
  for (const auto& f : files_of(items, false)) out.push_back(base_url + "/i/" + f.name);
  return out;
}

std::string api_numbered_page(const std::vector<Item>& items, const std::string& base_url,
                              std::size_t page, std::size_t per_page) {
  const auto files = files_of(items, false);
  nlohmann::ordered_json j;
  j["data"] = nlohmann::json::array();
  if (page >= 1) {
    for (std::size_t i = (page - 1) * per_page; i < files.size() && i < page * per_page; ++i)
      j["data"].push_back({{"link", base_url + "/i/" + files[i].name}, {"title", "File " + files[i].id}});
  }
  j["page"] = page;
  return j.dump();
}

std::string api_next_page(const std::vector<Item>& items, const std::string& base_url,
                          std::size_t page, std::size_t per_page) {
  const auto files = files_of(items, false);
  nlohmann::ordered_json j;
  j["items"] = nlohmann::json::array();
  const std::size_t from = page >= 1 ? (page - 1) * per_page : files.size();
  const std::size_t to = std::min(files.size(), from + per_page);
  for (std::size_t i = from; i < to; i += 2) {
    nlohmann::ordered_json item;
    item["id"] = files[i].id;
    item["images"] = nlohmann::json::array();
    for (std::size_t k = i; k < to && k < i + 2; ++k)
      item["images"].push_back({{"url", base_url + "/i/" + files[k].name}, {"type", files[k].type}});
    j["items"].push_back(item);
  }
  if (to < files.size()) j["next"] = "/api/next/" + std::to_string(page + 1) + ".json";
  else j["next"] = nullptr;
  return j.dump();
}

std::string gallery_page(const std::vector<Item>& items, const std::string& base_url,
                         std::size_t page, std::size_t per_page) {
  std::vector<Item> slice;
  for (std::size_t i = page * per_page; i < items.size() && i < (page + 1) * per_page; ++i)
    slice.push_back(items[i]);
  return gallery_json(slice, base_url);
}

std::string links_html(const std::vector<Item>& items, const std::string& base_url) {
  const auto files = files_of(items, false);
  const std::string host = host_of(base_url);
  std::string h = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\n<base href=\"../i/\">\n"
                  "<title>Links &amp; junk</title>\n"
                  "<script>var s = \"<a href='/i/in-script.jpg'>\";</script>\n</head>\n<body>\n"
                  "<!-- <a href=\"/i/in-comment.jpg\">commented out</a> -->\n"
                  "<p>Junk: <a href=\"mailto:someone@example.org\">mail</a> "
                  "<a href=\"javascript:void(0)\">js</a> <a href=\"#top\">top</a> "
                  "<a>no href</a> <img src=\"\"> <a href=\"http://[::1\">broken</a>\n"
                  "<div><span>unclosed\n";
  std::size_t kind = 0;
  for (std::size_t i = 0; i < files.size(); ++kind) {
    const std::string& n = files[i].name;
    switch (kind % 7) {
    case 0: h += "<a href=\"" + n + "\">base-relative</a>\n"; break;
    case 1: h += "<a href=\"" + base_url + "/i/" + n + "\">absolute</a>\n"; break;
    case 2: h += "<img alt=\"x\" src=\"  " + n + "\t\">\n"; break;
    case 3:
      if (i + 1 < files.size()) {
        h += "<img srcset=\"" + n + " 1x, " + files[i + 1].name + " 2x\">\n";
        ++i;
      } else {
        h += "<img srcset=\"" + n + "\">\n";
      }
      break;
    case 4: h += "<picture><source srcset=\"" + n + " 640w\" type=\"image/x\"><img></picture>\n"; break;
    case 5: h += "<p><a href=\"/i/" + n + "\">root-relative</a>\n"; break;
    default: h += "<a href=\"//" + host + "/i/" + n + "\">scheme-relative</a>\n"; break;
    }
    ++i;
  }
  h += "</body></html>\n";
  return h;
}

std::string caption_for(const Item& file, bool with_newline) {
  std::string c = "Photo " + file.id + ", \"nice\"";
  if (file.id[0] % 10 == 0 || file.id.back() % 10 == 0) c += with_newline ? "\nsecond line" : " second line";
  return c;
}

std::string url_table(const std::vector<Item>& items, const std::string& base_url, char d) {
  const auto files = files_of(items, false);
  std::string out = std::string("id") + d + "url" + d + "caption" + d + "type\r\n";
  for (std::size_t i = 0; i < files.size(); ++i) {
    const auto& f = files[i];
    out += f.id + d + base_url + "/i/" + f.name + d + csv_field(caption_for(f, d != '\t'), d) + d +
           f.type + "\r\n";
    if (i == 0) out += "only-an-id\r\n";
  }
  return out;
}

std::string url_jsonl(const std::vector<Item>& items, const std::string& base_url) {
  const auto files = files_of(items, false);
  std::string out;
  for (std::size_t i = 0; i < files.size(); ++i) {
    const auto& f = files[i];
    nlohmann::ordered_json j;
    j["id"] = f.id;
    j["url"] = base_url + "/i/" + f.name;
    j["caption"] = caption_for(f, true);
    j["size"] = f.size;
    out += j.dump() + "\n";
    if (i == 0) out += "this is not json\n{\"caption\":\"no url\"}\n\n";
  }
  return out;
}

std::string gzip(std::string_view data) {
  z_stream z{};
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    throw std::runtime_error("deflateInit2 failed");
  std::string out(deflateBound(&z, static_cast<uLong>(data.size())) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&z, Z_FINISH);
  const std::size_t n = out.size() - z.avail_out;
  deflateEnd(&z);
  if (rc != Z_STREAM_END) throw std::runtime_error("deflate failed");
  out.resize(n);
  return out;
}

} // namespace trawl::testsupport
