// How one attempt ended, decided in one place: the mapping from what libcurl and the server said
// to a proto::Reason, the human-readable detail that travels with it, and the wait before the
// next attempt. Pure functions, so the whole table is unit-tested without a network.
#pragma once

#include <chrono>
#include <cstdint>
#include <curl/curl.h>
#include <optional>
#include <string>
#include <string_view>

#include "proto/reason.hpp"

namespace trawl::downloader {

// What the downloader knows when a transfer ends.
struct Outcome {
  CURLcode code = CURLE_OK;
  long http_status = 0;           // of the last response (after redirects); 0 when none came
  proto::Reason local = proto::Reason::none; // set when our write callback aborted: too_large, io
  std::int64_t content_length = -1;          // announced by the last response; -1 when none
  std::uint64_t bytes = 0;                   // body bytes written to the temporary file
  std::string local_detail;                  // why we aborted, when `local` is set
  // Whether the URL libcurl ended on (after redirects) is http or https. CURLE_UNSUPPORTED_PROTOCOL
  // then does not mean a refused scheme but an answer that is not HTTP ("Received HTTP/0.9"),
  // e.g. the excess of an earlier response that sent more than its Content-Length, read from the
  // same keep-alive connection. That is retryable: libcurl drops the connection.
  bool http_url = false;
};

// The single mapping from an outcome to a reason; Reason::none means the body is complete.
// Precedence: our own aborts, then a final HTTP status >= 400 (whatever happened to its body),
// then the curl code, then a 2xx body whose length differs from Content-Length (truncated).
proto::Reason classify(const Outcome& o) noexcept;

// The curl code alone (CURLE_OK maps to none).
proto::Reason reason_for_curl(CURLcode code) noexcept;

// The detail string for a failure: the curl error buffer when it says something, else a short
// description ("HTTP 404", "got 10 of 20 bytes", ...). At most proto::kMaxDetailBytes bytes, never
// cut inside a UTF-8 sequence.
std::string describe(const Outcome& o, proto::Reason r, std::string_view curl_errbuf);

// Truncates to at most `max` bytes without splitting a UTF-8 sequence.
std::string bounded(std::string_view s, std::size_t max);

struct Backoff {
  std::chrono::milliseconds base{500};
  double factor = 2.0;
  std::chrono::milliseconds cap{30000};
  std::chrono::seconds retry_after_cap{60};
};

// The wait before the next attempt after `attempts_made` attempts (>= 1): base * factor^(n-1),
// capped, scaled by a jitter factor in [0.5, 1] taken from `jitter01` in [0, 1). A Retry-After
// (seconds, capped; <= 0 when none) is a floor: the server asked us to wait at least that long.
std::chrono::milliseconds retry_delay(std::uint32_t attempts_made, double jitter01,
                                      long retry_after_s, const Backoff& b = {});

// --- Range resume: the header checks, pure so they are tested without a server -----------------

// A Content-Range of a 206: "bytes FIRST-LAST/TOTAL"; total is -1 for "*".
struct ContentRange {
  std::uint64_t first = 0;
  std::uint64_t last = 0;
  std::int64_t total = -1;
};

// Parses a Content-Range value; std::nullopt unless it is one well-formed byte range (first <=
// last, last < total when the total is known). Tolerates surrounding spaces and a case-insensitive
// unit.
std::optional<ContentRange> parse_content_range(std::string_view v) noexcept;

// True when an Accept-Ranges value lists the "bytes" unit (a comma-separated list; "none" does not).
bool accepts_byte_ranges(std::string_view v) noexcept;

// The value to send in If-Range: a strong ETag (never a weak W/"..." one, RFC 9110 13.1.5), else
// the Last-Modified date, else "" (then only the length guards the resume).
std::string if_range_validator(std::string_view etag, std::string_view last_modified);

// Whether a 206 continues a partial body of `have` bytes whose whole length is `total` (-1 when
// unknown): the range must start at `have`, end at the last byte, and name the whole length, which
// must be the one the first response announced.
bool range_continues(const ContentRange& r, std::uint64_t have, std::int64_t total) noexcept;

} // namespace trawl::downloader
