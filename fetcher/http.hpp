// One bounded HTTP GET for the fetcher's source (a gallery API page or a remote URL list): http
// and https only, a few redirects, fixed timeouts, a cap on the body, and the Imgur Client-ID
// header when IMGUR_CLIENT_ID is set. The downloader has its own transfer code; this is not it.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace trawl::fetcher {

struct HttpOptions {
  std::uint64_t max_body_bytes = 64ull * 1024 * 1024;
  long max_redirects = 5;
  std::chrono::milliseconds connect_timeout{15000};
  std::chrono::milliseconds total_timeout{120000};
  std::string client_id; // sent as "Authorization: Client-ID <client_id>" when not empty
};

struct HttpResponse {
  long status = 0;
  std::string content_type;
  std::string effective_url;
  std::string body;
};

// The options with client_id taken from the environment (IMGUR_CLIENT_ID).
HttpOptions http_options_from_env(std::uint64_t max_body_bytes);

// GETs `url`. Returns the response whatever its status. Throws SourceError (source.hpp) for a
// transfer failure (DNS, connect, TLS, timeout, body over the cap, too many redirects) and
// StopRequested when trawl::stop_requested() became true during the transfer.
HttpResponse http_get(const std::string& url, const HttpOptions& opt);

// Thrown when a stop was requested while a blocking step was in progress.
struct StopRequested {};

} // namespace trawl::fetcher
