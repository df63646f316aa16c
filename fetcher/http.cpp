#include "fetcher/http.hpp"

#include <algorithm>

#include <cstdlib>
#include <curl/curl.h>
#include <memory>
#include <mutex>

#include "common/signals.hpp"
#include "fetcher/source.hpp"

#ifndef TRAWL_VERSION
#define TRAWL_VERSION "unknown"
#endif

namespace trawl::fetcher {
namespace {

struct EasyDeleter {
  void operator()(CURL* e) const noexcept { curl_easy_cleanup(e); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const noexcept { curl_slist_free_all(l); }
};

struct Transfer {
  std::string* body;
  std::uint64_t max_bytes;
  CURL* easy;
  bool over_cap = false;
};

// The most a body's announced length reserves at once (a hint: the pages are touched only as the
// bytes arrive, and a body longer than announced still grows as before).
constexpr std::uint64_t kMaxReserve = std::uint64_t{64} << 20;

extern "C" size_t on_body(char* data, size_t size, size_t nmemb, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = size * nmemb;
  if (t->body->size() + n > t->max_bytes) {
    t->over_cap = true;
    return 0; // makes curl fail the transfer with CURLE_WRITE_ERROR
  }
  // Room for the announced length at the first bytes: the body arrives in libcurl's pieces of
  // 16 KiB, and each time the string doubled it copied what it held into fresh pages (a page fault
  // each, ~12 us on the VMs we measure on). A gallery of 83 KB: 97 faults in the fetcher's copies
  // (memmove) against 68 with the room reserved (one traced classic job each). By arithmetic, a
  // 5 MB page grew through 9 doublings from 16 KiB, ~5 MB copied and ~10 MB of fresh pages
  // touched, instead of 5 MB written once.
  if (t->body->empty()) {
    curl_off_t announced = -1;
    if (curl_easy_getinfo(t->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &announced) == CURLE_OK &&
        announced > 0)
      t->body->reserve(static_cast<std::size_t>(std::min<std::uint64_t>(
          {static_cast<std::uint64_t>(announced), kMaxReserve, t->max_bytes})));
  }
  t->body->append(data, n);
  return n;
}

extern "C" int on_progress(void*, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  return stop_requested() ? 1 : 0;
}

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
      throw SourceError("curl_global_init failed");
  });
}

template <typename T>
void set(CURL* e, CURLoption opt, T value) {
  const CURLcode rc = curl_easy_setopt(e, opt, value);
  if (rc != CURLE_OK)
    throw SourceError(std::string("curl_easy_setopt failed: ") + curl_easy_strerror(rc));
}

// This thread's handle, kept from one request to the next: its connections, DNS answers and TLS
// sessions with it, so the pages of a paged source reuse one connection instead of opening one
// each (a TCP and a TLS handshake per request over the Internet). Options are reset after each
// request (Reset below) and set again for the next.
CURL* thread_easy() {
  thread_local std::unique_ptr<CURL, EasyDeleter> easy;
  if (!easy) {
    easy.reset(curl_easy_init());
    if (!easy) throw SourceError("curl_easy_init failed");
  }
  return easy.get();
}

// Clears the options of a request whose buffers (error buffer, body, header list) are about to
// go; the handle keeps its connections.
struct Reset {
  CURL* e;
  ~Reset() { curl_easy_reset(e); }
};

} // namespace

HttpOptions http_options_from_env(std::uint64_t max_body_bytes) {
  HttpOptions o;
  o.max_body_bytes = max_body_bytes;
  if (const char* id = std::getenv("IMGUR_CLIENT_ID"); id != nullptr) o.client_id = id;
  return o;
}

HttpResponse http_get(const std::string& url, const HttpOptions& opt) {
  global_init();
  CURL* e = thread_easy();

  HttpResponse resp;
  Transfer transfer{&resp.body, opt.max_body_bytes, e};
  char errbuf[CURL_ERROR_SIZE] = {};
  std::unique_ptr<curl_slist, SlistDeleter> headers;
  const Reset reset{e}; // destroyed first: before the list, the buffers and the response
  if (!opt.client_id.empty()) {
    const std::string auth = "Authorization: Client-ID " + opt.client_id;
    headers.reset(curl_slist_append(nullptr, auth.c_str()));
    if (!headers) throw SourceError("curl_slist_append failed");
  }

  set(e, CURLOPT_URL, url.c_str());
  set(e, CURLOPT_ERRORBUFFER, errbuf);
  set(e, CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
  set(e, CURLOPT_PROTOCOLS_STR, "http,https");
  set(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
  set(e, CURLOPT_PROTOCOLS, static_cast<long>(CURLPROTO_HTTP | CURLPROTO_HTTPS));
  set(e, CURLOPT_REDIR_PROTOCOLS, static_cast<long>(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
  set(e, CURLOPT_FOLLOWLOCATION, 1L);
  set(e, CURLOPT_MAXREDIRS, opt.max_redirects);
  set(e, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(opt.connect_timeout.count()));
  set(e, CURLOPT_TIMEOUT_MS, static_cast<long>(opt.total_timeout.count()));
  set(e, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(opt.max_body_bytes));
  set(e, CURLOPT_USERAGENT, "trawl/" TRAWL_VERSION);
  set(e, CURLOPT_ACCEPT_ENCODING, ""); // every encoding curl supports; the cap counts decoded bytes
  set(e, CURLOPT_WRITEFUNCTION, on_body);
  set(e, CURLOPT_WRITEDATA, &transfer);
  set(e, CURLOPT_XFERINFOFUNCTION, on_progress);
  set(e, CURLOPT_NOPROGRESS, 0L);
  if (headers) set(e, CURLOPT_HTTPHEADER, headers.get());

  const CURLcode rc = curl_easy_perform(e);
  if (rc == CURLE_ABORTED_BY_CALLBACK && stop_requested()) throw StopRequested{};
  if (transfer.over_cap || rc == CURLE_FILESIZE_EXCEEDED)
    throw SourceError("GET " + url + ": response body larger than " +
                      std::to_string(opt.max_body_bytes) + " bytes");
  if (rc != CURLE_OK)
    throw SourceError("GET " + url + ": " + (errbuf[0] ? errbuf : curl_easy_strerror(rc)));

  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &resp.status);
  const char* ctype = nullptr;
  if (curl_easy_getinfo(e, CURLINFO_CONTENT_TYPE, &ctype) == CURLE_OK && ctype != nullptr)
    resp.content_type = ctype;
  const char* eff = nullptr;
  if (curl_easy_getinfo(e, CURLINFO_EFFECTIVE_URL, &eff) == CURLE_OK && eff != nullptr)
    resp.effective_url = eff;
  return resp;
}

} // namespace trawl::fetcher
