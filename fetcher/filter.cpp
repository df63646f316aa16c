#include "fetcher/filter.hpp"

#include <algorithm>
#include <re2/re2.h>
#include <spdlog/spdlog.h>
#include <stdexcept>

#include "common/names.hpp"
#include "proto/messages.hpp"

namespace trawl::fetcher {
namespace {

char lower(char c) noexcept {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool starts_with_nocase(std::string_view s, std::string_view prefix) noexcept {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i)
    if (lower(s[i]) != prefix[i]) return false;
  return true;
}


bool valid_bytes(std::string_view url) noexcept {
  for (std::size_t i = 0; i < url.size();) {
    const auto c = static_cast<unsigned char>(url[i]);
    if (c <= 0x20 || c == 0x7F) return false;
    if (c < 0x80) {
      ++i;
      continue;
    }
    const std::size_t n = trawl::utf8_sequence_length(url, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

bool valid_port(std::string_view port) noexcept {
  if (port.empty()) return true; // "http://host:/" is allowed by RFC 3986
  if (port.size() > 5) return false;
  unsigned value = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  return value <= 65535;
}

} // namespace

bool is_valid_url(std::string_view url) noexcept {
  if (url.size() > proto::kMaxUrlBytes || !valid_bytes(url)) return false;
  std::string_view rest;
  if (starts_with_nocase(url, "http://")) rest = url.substr(7);
  else if (starts_with_nocase(url, "https://")) rest = url.substr(8);
  else return false;
  std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  const auto at = authority.rfind('@');
  if (at != std::string_view::npos) authority.remove_prefix(at + 1);
  std::string_view host = authority;
  std::string_view port;
  if (authority.starts_with('[')) { // IPv6 literal
    const auto close = authority.find(']');
    if (close == std::string_view::npos || close == 1) return false;
    host = authority.substr(0, close + 1);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return false;
      port = after.substr(1);
    }
  } else {
    const auto colon = authority.find(':');
    if (colon != std::string_view::npos) {
      host = authority.substr(0, colon);
      port = authority.substr(colon + 1);
    }
  }
  return !host.empty() && valid_port(port);
}

std::string normalize_extension(std::string_view ext) {
  std::string out;
  if (!ext.starts_with('.')) out.push_back('.');
  for (char c : ext) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7F || c == '/' || c == '?' || c == '#')
      throw std::invalid_argument("invalid extension \"" + std::string(ext) + "\"");
    out.push_back(lower(c));
  }
  if (out.size() < 2 || out.find('.', 1) != std::string::npos)
    throw std::invalid_argument("invalid extension \"" + std::string(ext) +
                                "\": expected one suffix such as .jpg");
  return out;
}

LinkFilter::LinkFilter(const std::vector<std::string>& exts, std::size_t expected_links)
    : seen_(expected_links) {
  for (const auto& e : exts) {
    std::string norm = normalize_extension(e);
    if (std::find(exts_.begin(), exts_.end(), norm) == exts_.end()) exts_.push_back(norm);
  }
}

LinkFilter::~LinkFilter() = default;

namespace {

std::unique_ptr<re2::RE2> compile(const std::string& pattern, const char* flag) {
  if (pattern.empty()) return nullptr;
  re2::RE2::Options opt;
  opt.set_log_errors(false);
  opt.set_max_mem(64 << 20);
  auto re = std::make_unique<re2::RE2>(pattern, opt);
  if (!re->ok())
    throw std::invalid_argument(std::string(flag) + " \"" + pattern + "\": " + re->error());
  return re;
}

} // namespace

void LinkFilter::set_patterns(const std::string& match, const std::string& exclude) {
  match_ = compile(match, "--match");
  exclude_ = compile(exclude, "--exclude");
}

LinkFilter::Verdict LinkFilter::check(std::string_view url, std::string_view where) {
  if (!is_valid_url(url)) {
    ++invalid_;
    // Show a bounded, printable prefix: the URL may be binary garbage or 16 KiB long.
    std::string shown;
    for (char c : url.substr(0, 120)) {
      const auto u = static_cast<unsigned char>(c);
      shown.push_back(u < 0x20 || u >= 0x7F ? '?' : c);
    }
    if (url.size() > 120) shown += "...";
    warn_.warn("{}: not a valid http(s) URL, skipped: {}", where, shown);
    return Verdict::invalid;
  }
  if (!exts_.empty()) {
    const std::string ext = url_extension(url);
    if (std::find(exts_.begin(), exts_.end(), ext) == exts_.end()) {
      ++wrong_extension_;
      return Verdict::wrong_extension;
    }
  }
  if (match_ && !re2::RE2::PartialMatch(url, *match_)) {
    ++no_match_;
    return Verdict::no_match;
  }
  if (exclude_ && re2::RE2::PartialMatch(url, *exclude_)) {
    ++excluded_;
    return Verdict::excluded;
  }
  if (!seen_.insert(hash64(url))) {
    ++duplicates_;
    spdlog::debug("{}: duplicate, dropped", where);
    return Verdict::duplicate;
  }
  ++accepted_;
  return Verdict::accept;
}

} // namespace trawl::fetcher
