// Why a link failed: a small numbered taxonomy that travels on the wire in every Result, is the
// key of the sink's "failures by reason" table, and decides in one place whether a retry may help.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace trawl::proto {

// Numbers are part of the protocol: append, never renumber.
enum class Reason : std::uint8_t {
  none = 0,         // success
  http_client = 1,  // 4xx other than 408/429: the server says the request is wrong
  http_server = 2,  // 5xx
  rate_limited = 3, // 429
  timeout = 4,      // connect/transfer timeout, low-speed abort, 408
  connect = 5,      // refused, unreachable
  dns = 6,          // name did not resolve
  tls = 7,          // certificate or handshake failure
  truncated = 8,    // body shorter than announced, connection reset mid-body
  too_large = 9,    // body above --max-size
  scheme = 10,      // not http/https (also after a redirect)
  io = 11,          // local disk error
  bad_url = 12,     // unparsable URL or unusable file name
  redirects = 13,   // too many redirects
  aborted = 14,     // stopped by a signal before it finished
  other = 15,
  disk = 16,    // the output filesystem is full (ENOSPC, EDQUOT)
  content = 17, // the body is not what --expect asked for, or below --min-size
  denied = 18,  // the address is refused by policy (--deny-private)
  robots = 19,  // disallowed by the origin's robots.txt (--respect-robots)
};

inline constexpr std::uint8_t kReasonMax = 19;

std::string_view reason_name(Reason r) noexcept;
std::optional<Reason> reason_from_number(std::uint64_t n) noexcept;

// The single place that says whether a failure is worth another attempt.
bool is_retryable(Reason r) noexcept;

// Maps an HTTP status to a reason (Reason::none for 2xx).
Reason reason_for_http(long status) noexcept;

} // namespace trawl::proto
