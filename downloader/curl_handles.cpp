#include "downloader/curl_handles.hpp"

#include "downloader/recv_prefault.hpp"

#include <mutex>
#include <utility>

namespace trawl::downloader {

void curl_global_once() {
  static std::once_flag once;
  static CURLcode rc = CURLE_OK;
  std::call_once(once, [] { rc = curl_global_init_noting(); });
  if (rc != CURLE_OK)
    throw CurlError(std::string("curl_global_init: ") + curl_easy_strerror(rc));
}

// --- CurlEasy -----------------------------------------------------------------------------------

CurlEasy::CurlEasy() : h_(curl_easy_init()) {
  if (!h_) throw CurlError("curl_easy_init failed");
}

CurlEasy::CurlEasy(CurlEasy&& other) noexcept
    : h_(std::exchange(other.h_, nullptr)), multi_(std::exchange(other.multi_, nullptr)) {}

CurlEasy& CurlEasy::operator=(CurlEasy&& other) noexcept {
  if (this != &other) {
    close();
    h_ = std::exchange(other.h_, nullptr);
    multi_ = std::exchange(other.multi_, nullptr);
  }
  return *this;
}

void CurlEasy::close() noexcept {
  if (!h_) return;
  if (multi_) curl_multi_remove_handle(multi_, h_);
  multi_ = nullptr;
  curl_easy_cleanup(h_);
  h_ = nullptr;
}

namespace {
void check(CURLcode rc, CURLoption opt) {
  if (rc != CURLE_OK)
    throw CurlError("curl_easy_setopt(option " + std::to_string(static_cast<int>(opt)) +
                    "): " + curl_easy_strerror(rc));
}
} // namespace

void CurlEasy::set_long(CURLoption opt, long v) {
  check(curl_easy_setopt(h_, opt, v), opt);
}
void CurlEasy::set_off(CURLoption opt, curl_off_t v) {
  check(curl_easy_setopt(h_, opt, v), opt);
}
void CurlEasy::set_str(CURLoption opt, const char* v) {
  check(curl_easy_setopt(h_, opt, v), opt);
}
void CurlEasy::set_ptr(CURLoption opt, void* v) {
  check(curl_easy_setopt(h_, opt, v), opt);
}
void CurlEasy::set_write_fn(CURLoption opt, curl_write_callback fn) {
  check(curl_easy_setopt(h_, opt, fn), opt);
}
void CurlEasy::set_opensocket_fn(curl_opensocket_callback fn) {
  check(curl_easy_setopt(h_, CURLOPT_OPENSOCKETFUNCTION, fn), CURLOPT_OPENSOCKETFUNCTION);
}
void CurlEasy::set_closesocket_fn(curl_closesocket_callback fn) {
  check(curl_easy_setopt(h_, CURLOPT_CLOSESOCKETFUNCTION, fn), CURLOPT_CLOSESOCKETFUNCTION);
}

long CurlEasy::info_long(CURLINFO info, long fallback) const noexcept {
  long v = 0;
  return curl_easy_getinfo(h_, info, &v) == CURLE_OK ? v : fallback;
}

curl_off_t CurlEasy::info_off(CURLINFO info, curl_off_t fallback) const noexcept {
  curl_off_t v = 0;
  return curl_easy_getinfo(h_, info, &v) == CURLE_OK ? v : fallback;
}

// --- CurlMulti ----------------------------------------------------------------------------------

CurlMulti::CurlMulti() : h_(curl_multi_init()) {
  if (!h_) throw CurlError("curl_multi_init failed");
}

CurlMulti::CurlMulti(CurlMulti&& other) noexcept : h_(std::exchange(other.h_, nullptr)) {}

CurlMulti& CurlMulti::operator=(CurlMulti&& other) noexcept {
  if (this != &other) {
    close();
    h_ = std::exchange(other.h_, nullptr);
  }
  return *this;
}

void CurlMulti::close() noexcept {
  if (h_) curl_multi_cleanup(h_);
  h_ = nullptr;
}

void CurlMulti::set_long(CURLMoption opt, long v) {
  const CURLMcode rc = curl_multi_setopt(h_, opt, v);
  if (rc != CURLM_OK) throw CurlError(std::string("curl_multi_setopt: ") + curl_multi_strerror(rc));
}

void CurlMulti::add(CurlEasy& e) {
  const CURLMcode rc = curl_multi_add_handle(h_, e.h_);
  if (rc != CURLM_OK)
    throw CurlError(std::string("curl_multi_add_handle: ") + curl_multi_strerror(rc));
  e.multi_ = h_;
}

void CurlMulti::remove(CurlEasy& e) noexcept {
  if (e.multi_ != h_ || !h_) return;
  curl_multi_remove_handle(h_, e.h_);
  e.multi_ = nullptr;
}

} // namespace trawl::downloader
