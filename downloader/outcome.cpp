#include "downloader/outcome.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>

#include "proto/messages.hpp"

namespace trawl::downloader {

using proto::Reason;

Reason reason_for_curl(CURLcode code) noexcept {
  switch (code) {
  case CURLE_OK:
    return Reason::none;
  case CURLE_OPERATION_TIMEDOUT:
    return Reason::timeout;
  case CURLE_COULDNT_CONNECT:
    return Reason::connect;
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY:
    return Reason::dns;
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_SSL_CIPHER:
  case CURLE_SSL_ENGINE_NOTFOUND:
  case CURLE_SSL_ENGINE_SETFAILED:
  case CURLE_SSL_ENGINE_INITFAILED:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_SHUTDOWN_FAILED:
  case CURLE_SSL_CRL_BADFILE:
  case CURLE_SSL_ISSUER_ERROR:
  case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
  case CURLE_SSL_INVALIDCERTSTATUS:
  case CURLE_SSL_CLIENTCERT:
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_USE_SSL_FAILED:
    return Reason::tls;
  case CURLE_PARTIAL_FILE:
  case CURLE_RECV_ERROR:
  case CURLE_GOT_NOTHING:
  case CURLE_HTTP2_STREAM:
    return Reason::truncated;
  case CURLE_FILESIZE_EXCEEDED:
    return Reason::too_large;
  case CURLE_UNSUPPORTED_PROTOCOL:
    return Reason::scheme;
  case CURLE_TOO_MANY_REDIRECTS:
    return Reason::redirects;
  case CURLE_WRITE_ERROR:
    return Reason::io;
  case CURLE_URL_MALFORMAT:
    return Reason::bad_url;
  default:
    return Reason::other;
  }
}

Reason classify(const Outcome& o) noexcept {
  if (o.local != Reason::none) return o.local;
  // A final error status wins over what happened to its body: a 503 whose body was cut short is
  // still a 503 (and is retried as one). 3xx does not: it is the redirect that failed.
  if (o.http_status >= 400) return proto::reason_for_http(o.http_status);
  if (o.code == CURLE_UNSUPPORTED_PROTOCOL && o.http_url) return Reason::truncated;
  if (o.code != CURLE_OK) return reason_for_curl(o.code);
  if (o.http_status < 200 || o.http_status >= 300) {
    // 1xx/3xx as a final answer (a redirect without Location, 304), or no status at all.
    return o.http_status == 0 ? Reason::other : proto::reason_for_http(o.http_status);
  }
  if (o.content_length >= 0 && static_cast<std::uint64_t>(o.content_length) != o.bytes)
    return o.bytes < static_cast<std::uint64_t>(o.content_length) ? Reason::truncated
                                                                  : Reason::other;
  return Reason::none;
}

std::string bounded(std::string_view s, std::size_t max) {
  if (s.size() <= max) return std::string(s);
  std::size_t n = max;
  // Step back over UTF-8 continuation bytes (10xxxxxx) so the cut lands on a sequence start.
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return std::string(s.substr(0, n));
}

std::string describe(const Outcome& o, Reason r, std::string_view curl_errbuf) {
  std::string d;
  if (r == Reason::none) return d;
  if (o.local != Reason::none && !o.local_detail.empty()) {
    d = o.local_detail;
  } else if (o.local == Reason::none && o.http_status >= 400) {
    d = "HTTP " + std::to_string(o.http_status);
  } else if (o.local == Reason::none && o.code == CURLE_OK) {
    if (o.http_status < 200 || o.http_status >= 300)
      d = "HTTP " + std::to_string(o.http_status);
    else
      d = "got " + std::to_string(o.bytes) + " of " + std::to_string(o.content_length) +
          " announced bytes";
  } else if (!curl_errbuf.empty()) {
    d = std::string(curl_errbuf);
  } else if (o.code != CURLE_OK) {
    d = curl_easy_strerror(o.code);
  } else {
    d = std::string(proto::reason_name(r));
  }
  return bounded(d, proto::kMaxDetailBytes);
}

std::chrono::milliseconds retry_delay(std::uint32_t attempts_made, double jitter01,
                                      long retry_after_s, const Backoff& b) {
  const double exponent = attempts_made > 0 ? static_cast<double>(attempts_made - 1) : 0.0;
  double ms = static_cast<double>(b.base.count()) * std::pow(b.factor, std::min(exponent, 62.0));
  ms = std::min(ms, static_cast<double>(b.cap.count()));
  ms *= 0.5 + 0.5 * std::clamp(jitter01, 0.0, 1.0);
  auto delay = std::chrono::milliseconds(static_cast<std::int64_t>(ms));
  if (retry_after_s > 0) {
    const auto floor = std::min(std::chrono::seconds(retry_after_s), b.retry_after_cap);
    delay = std::max<std::chrono::milliseconds>(delay, floor);
  }
  return delay;
}

namespace {

std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

bool equal_nocase(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

// Digits only (no sign, no spaces), at most what an int64 holds.
std::optional<std::uint64_t> number(std::string_view s) noexcept {
  if (s.empty() || s.size() > 18) return std::nullopt;
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || end != s.data() + s.size()) return std::nullopt;
  return v;
}

} // namespace

std::optional<ContentRange> parse_content_range(std::string_view v) noexcept {
  v = trim(v);
  const auto space = v.find(' ');
  if (space == std::string_view::npos || !equal_nocase(v.substr(0, space), "bytes"))
    return std::nullopt;
  v = trim(v.substr(space + 1));
  const auto dash = v.find('-');
  const auto slash = v.find('/');
  if (dash == std::string_view::npos || slash == std::string_view::npos || dash > slash)
    return std::nullopt;
  const auto first = number(v.substr(0, dash));
  const auto last = number(v.substr(dash + 1, slash - dash - 1));
  if (!first || !last || *first > *last) return std::nullopt;
  ContentRange r{*first, *last, -1};
  const std::string_view total = v.substr(slash + 1);
  if (total != "*") {
    const auto t = number(total);
    if (!t || *last >= *t) return std::nullopt;
    r.total = static_cast<std::int64_t>(*t);
  }
  return r;
}

bool accepts_byte_ranges(std::string_view v) noexcept {
  while (!v.empty()) {
    const auto comma = v.find(',');
    if (equal_nocase(trim(v.substr(0, comma)), "bytes")) return true;
    if (comma == std::string_view::npos) break;
    v.remove_prefix(comma + 1);
  }
  return false;
}

std::string if_range_validator(std::string_view etag, std::string_view last_modified) {
  etag = trim(etag);
  // A strong entity tag is a quoted string; W/"..." is weak and must not be used in If-Range.
  if (etag.size() >= 2 && etag.front() == '"' && etag.back() == '"') return std::string(etag);
  return std::string(trim(last_modified));
}

bool range_continues(const ContentRange& r, std::uint64_t have, std::int64_t total) noexcept {
  if (r.first != have || r.total < 0) return false;
  if (r.last + 1 != static_cast<std::uint64_t>(r.total)) return false;
  return total < 0 || r.total == total;
}

} // namespace trawl::downloader
