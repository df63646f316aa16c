// RAII around libcurl's C handles, in the manner of cppzmq: constructors throw on null, close() is
// noexcept and idempotent, the types are move-only, and releasing follows libcurl's order: an easy
// handle removes itself from the multi it is attached to before it is freed, so the owner only has
// to make the multi outlive its easy handles (declare it first) for the multi to be freed last.
#pragma once

#include <curl/curl.h>
#include <stdexcept>
#include <string>

namespace trawl::downloader {

// A libcurl failure outside a transfer (a handle that cannot be created, an option refused).
class CurlError : public std::runtime_error {
public:
  explicit CurlError(const std::string& what) : std::runtime_error(what) {}
};

// curl_global_init(CURL_GLOBAL_DEFAULT), with the allocation functions that note receive buffers
// (curl_global_init_noting, downloader/recv_prefault.hpp), once per process; safe to call from
// several threads.
// Throws CurlError when libcurl cannot initialise.
void curl_global_once();

class CurlMulti;

class CurlEasy {
public:
  CurlEasy(); // throws CurlError
  ~CurlEasy() { close(); }
  CurlEasy(CurlEasy&& other) noexcept;
  CurlEasy& operator=(CurlEasy&& other) noexcept;
  CurlEasy(const CurlEasy&) = delete;
  CurlEasy& operator=(const CurlEasy&) = delete;

  CURL* get() const noexcept { return h_; }
  bool attached() const noexcept { return multi_ != nullptr; }

  // Detaches from the multi (if attached) and frees the handle.
  void close() noexcept;

  // Back to a fresh state keeping the connection, DNS and session caches (curl_easy_reset).
  void reset() noexcept { curl_easy_reset(h_); }

  // Typed setters (curl_easy_setopt is variadic, so the type must be exact); throw CurlError.
  void set_long(CURLoption opt, long v);
  void set_off(CURLoption opt, curl_off_t v);
  void set_str(CURLoption opt, const char* v); // libcurl copies the string
  void set_ptr(CURLoption opt, void* v);
  void set_write_fn(CURLoption opt, curl_write_callback fn);
  void set_opensocket_fn(curl_opensocket_callback fn); // CURLOPT_OPENSOCKETFUNCTION
  void set_closesocket_fn(curl_closesocket_callback fn); // CURLOPT_CLOSESOCKETFUNCTION

  // Getters return the fallback when libcurl has no value.
  long info_long(CURLINFO info, long fallback = 0) const noexcept;
  curl_off_t info_off(CURLINFO info, curl_off_t fallback = 0) const noexcept;

private:
  friend class CurlMulti;
  CURL* h_ = nullptr;
  CURLM* multi_ = nullptr; // the multi this handle is attached to, if any
};

class CurlMulti {
public:
  CurlMulti(); // throws CurlError
  ~CurlMulti() { close(); }
  CurlMulti(CurlMulti&& other) noexcept;
  CurlMulti& operator=(CurlMulti&& other) noexcept;
  CurlMulti(const CurlMulti&) = delete;
  CurlMulti& operator=(const CurlMulti&) = delete;

  CURLM* get() const noexcept { return h_; }

  // Every easy handle added must have been removed (or freed) before this runs.
  void close() noexcept;

  void set_long(CURLMoption opt, long v); // throws CurlError

  // Starts driving `e`; throws CurlError (e is left detached).
  void add(CurlEasy& e);
  // Stops driving `e`; a no-op when it is not attached here.
  void remove(CurlEasy& e) noexcept;

private:
  CURLM* h_ = nullptr;
};

} // namespace trawl::downloader
