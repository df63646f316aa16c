// One transfer slot: an easy handle with its own error buffer, SHA-256 context and temporary file,
// reused attempt after attempt (curl_easy_reset keeps the connection, DNS and TLS-session caches
// that the multi shares, and saves an allocation per transfer). The event loop finds the slot of a
// finished handle through CURLOPT_PRIVATE.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <openssl/evp.h>
#include <string>

#include "downloader/address_policy.hpp"
#include "downloader/curl_handles.hpp"
#include "proto/messages.hpp"

namespace trawl::downloader {

// The per-transfer settings, taken from the command line once.
struct TransferSettings {
  long connect_timeout_s = 15;
  long timeout_s = 0; // 0 = no limit on the whole transfer
  long low_speed_time_s = 30;
  long low_speed_limit = 1024; // bytes/s averaged over low_speed_time_s, else timeout
  long max_redirects = 10;
  std::uint64_t max_size = 1ULL << 30;
  std::string user_agent;
  // Refuses connections to the addresses it names (--deny-private: non_public_range); checked
  // on every address libcurl connects to, redirects included. nullptr: no check.
  AddressFilter address_filter = nullptr;
};

// What an attempt came to. On success the body is at `path` and sha256 is set.
struct Finished {
  proto::Reason reason = proto::Reason::other;
  std::string detail;
  long http_status = 0;
  std::uint64_t bytes = 0;
  std::string path;
  std::string sha256;
  std::uint32_t ms = 0;
  std::uint32_t ttfb_ms = 0;
  long retry_after_s = 0; // from a Retry-After header, 0 when none
  bool permanent = false; // another attempt cannot help (the address policy refused the host)
};

class Transfer {
public:
  // `sha256` must outlive the slot. Throws CurlError / std::runtime_error when a handle or the
  // digest context cannot be created.
  explicit Transfer(const EVP_MD* sha256);
  ~Transfer(); // removes a temporary file still open
  Transfer(const Transfer&) = delete;
  Transfer& operator=(const Transfer&) = delete;

  // Prepares one attempt: resets the handle, sets every option and creates `temp_path`
  // (O_EXCL | O_NOFOLLOW: never an existing file, never through a planted link). Returns "" on
  // success, else why the temporary file could not be created (the caller reports
  // begin_reason(): disk when the file system is full, else io). Throws CurlError when libcurl
  // refuses an option.
  std::string begin(const proto::Task& task, std::uint32_t attempt, const TransferSettings& s,
                    std::string temp_path);

  // Ends the attempt once libcurl reported `code` (the handle must be detached from the multi):
  // on success renames the temporary file to `final_path` (rename(2) replaces whatever is
  // there, a symbolic link included, and never writes through it); on any failure removes it.
  Finished finish(CURLcode code, const std::string& final_path);

  // Ends the attempt without an outcome (stop): removes the temporary file.
  void discard() noexcept;

  // Why the last begin() could not create its temporary file: Reason::disk (ENOSPC, EDQUOT) or
  // Reason::io.
  proto::Reason begin_reason() const noexcept { return begin_reason_; }

  CurlEasy& easy() noexcept { return easy_; }
  const proto::Task& task() const noexcept { return task_; }
  std::uint32_t attempt() const noexcept { return attempt_; }

private:
  static std::size_t on_body(char* data, std::size_t size, std::size_t count, void* self);
  std::size_t write_body(const char* data, std::size_t n);
  void close_temp() noexcept; // closes and removes the temporary file, if any

  // errbuf_ is declared first so it outlives the handle that writes into it.
  std::array<char, CURL_ERROR_SIZE> errbuf_{};
  CurlEasy easy_;
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> md_ctx_;
  const EVP_MD* sha256_;

  proto::Task task_;
  std::uint32_t attempt_ = 0;
  std::uint64_t max_size_ = 0;
  int fd_ = -1;
  std::string temp_path_;
  std::uint64_t bytes_ = 0;     // kept body bytes (2xx), written and hashed
  std::uint64_t discarded_ = 0; // body bytes of an error response, read and dropped
  proto::Reason local_ = proto::Reason::none;
  proto::Reason begin_reason_ = proto::Reason::io;
  std::string local_detail_;
  SocketGate gate_; // CURLOPT_OPENSOCKETDATA while settings.address_filter is set
};

} // namespace trawl::downloader
