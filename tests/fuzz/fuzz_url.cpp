// libFuzzer target: URL parsing as the fetcher and the naming code do it: is_valid_url (what the
// fetcher lets through), url_basename and url_extension (names and --ext filters), and the link
// filter that combines them. Checked against the documented rules with separate code.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <spdlog/spdlog.h>
#include <string>
#include <string_view>

#include "common/names.hpp"
#include "fetcher/filter.hpp"
#include "proto/messages.hpp"

namespace {

void require(bool ok) {
  if (!ok) std::abort();
}

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool prefix_nocase(std::string_view s, std::string_view p) {
  if (s.size() < p.size()) return false;
  for (std::size_t i = 0; i < p.size(); ++i)
    if (lower(s[i]) != p[i]) return false;
  return true;
}

// The last path segment, raw (not decoded): after the authority, before '?' or '#'.
std::string_view raw_segment(std::string_view url, bool& has_path) {
  const auto scheme = url.find("://");
  if (scheme != std::string_view::npos) url.remove_prefix(scheme + 3);
  url = url.substr(0, url.find_first_of("?#"));
  const auto slash = url.find('/');
  has_path = slash != std::string_view::npos;
  if (!has_path) return {};
  return url.substr(url.rfind('/') + 1);
}

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = lower(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  const std::string_view url(reinterpret_cast<const char*>(bytes), size);

  // url_basename: the last segment, percent-decoded: never longer, and equal when nothing is
  // encoded in it.
  bool has_path = false;
  const std::string_view seg = raw_segment(url, has_path);
  const std::string base = trawl::url_basename(url);
  require(base.size() <= seg.size());
  if (seg.find('%') == std::string_view::npos) require(base == seg);
  std::size_t escapes = 0;
  for (std::size_t i = 0; i + 2 < seg.size(); ++i)
    if (seg[i] == '%' && hex(seg[i + 1]) >= 0 && hex(seg[i + 2]) >= 0) ++escapes, i += 2;
  require(base.size() == seg.size() - 2 * escapes);

  // url_extension: "" or ".x..." in lower case, the suffix of the basename from its last dot.
  const std::string ext = trawl::url_extension(url);
  if (ext.empty()) {
    const auto dot = base.rfind('.');
    require(dot == std::string::npos || dot == 0 || dot + 1 == base.size());
  } else {
    require(ext.size() >= 2 && ext.front() == '.' && ext.find('.', 1) == std::string::npos);
    require(base.size() > ext.size());
    const std::string_view tail = std::string_view(base).substr(base.size() - ext.size());
    for (std::size_t i = 0; i < ext.size(); ++i) require(lower(tail[i]) == ext[i]);
  }

  // is_valid_url: what it accepts is an http(s) URL with a host, bounded, without blanks or
  // control bytes.
  const bool valid = trawl::fetcher::is_valid_url(url);
  if (valid) {
    require(prefix_nocase(url, "http://") || prefix_nocase(url, "https://"));
    require(url.size() <= trawl::proto::kMaxUrlBytes);
    for (char c : url) {
      const auto u = static_cast<unsigned char>(c);
      require(u > 0x20 && u != 0x7F);
    }
    require(has_path || seg.empty());
    const std::string_view rest = url.substr(url.find("://") + 3);
    require(!rest.empty() && rest.front() != '/' && rest.front() != '?' && rest.front() != '#');
  }

  // The filter agrees with is_valid_url and with the extension; a second sight is a duplicate.
  trawl::fetcher::LinkFilter any({}, 16);
  using V = trawl::fetcher::LinkFilter::Verdict;
  const V first = any.check(url, "fuzz");
  require((first == V::accept) == valid);
  if (valid) require(any.check(url, "fuzz") == V::duplicate);
  if (valid && !ext.empty()) {
    bool normal = true;
    std::string want;
    try {
      want = trawl::fetcher::normalize_extension(ext);
    } catch (const std::invalid_argument&) {
      normal = false;
    }
    if (normal) {
      require(want == ext);
      trawl::fetcher::LinkFilter only({ext}, 16);
      require(only.check(url, "fuzz") == V::accept);
    }
  }
  return 0;
}
