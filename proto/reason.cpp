#include "proto/reason.hpp"

namespace trawl::proto {

std::string_view reason_name(Reason r) noexcept {
  switch (r) {
  case Reason::none: return "none";
  case Reason::http_client: return "http-4xx";
  case Reason::http_server: return "http-5xx";
  case Reason::rate_limited: return "http-429";
  case Reason::timeout: return "timeout";
  case Reason::connect: return "connect";
  case Reason::dns: return "dns";
  case Reason::tls: return "tls";
  case Reason::truncated: return "truncated";
  case Reason::too_large: return "too-large";
  case Reason::scheme: return "scheme";
  case Reason::io: return "io";
  case Reason::bad_url: return "bad-url";
  case Reason::redirects: return "redirects";
  case Reason::aborted: return "aborted";
  case Reason::other: return "other";
  case Reason::disk: return "disk";
  case Reason::content: return "content";
  case Reason::denied: return "denied";
  case Reason::robots: return "robots";
  }
  return "other";
}

std::optional<Reason> reason_from_number(std::uint64_t n) noexcept {
  if (n > kReasonMax) return std::nullopt;
  return static_cast<Reason>(n);
}

bool is_retryable(Reason r) noexcept {
  switch (r) {
  case Reason::http_server:
  case Reason::rate_limited:
  case Reason::timeout:
  case Reason::connect:
  case Reason::dns:
  case Reason::truncated:
  case Reason::aborted:
    return true;
  default:
    return false;
  }
}

Reason reason_for_http(long status) noexcept {
  if (status >= 200 && status < 300) return Reason::none;
  if (status == 429) return Reason::rate_limited;
  if (status == 408) return Reason::timeout;
  if (status >= 500 && status < 600) return Reason::http_server;
  return Reason::http_client;
}

} // namespace trawl::proto
