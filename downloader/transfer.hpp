// One transfer slot: an easy handle with its own error buffer, SHA-256 context and temporary file,
// reused attempt after attempt (curl_easy_reset keeps the connection, DNS and TLS-session caches
// that the multi shares, and saves an allocation per transfer). The event loop finds the slot of a
// finished handle through CURLOPT_PRIVATE.
//
// Range resume: an attempt cut short mid-body (reset, truncated, timeout) may hand its temporary
// file and digest state over as a Partial, which the next attempt of the same task continues with
// "Range: bytes=N-" (and If-Range). Only a 206 whose Content-Range continues exactly is appended;
// a 200 starts the file over; a 416 or any other range is refused (Finished::restart).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <openssl/evp.h>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "downloader/address_policy.hpp"
#include "downloader/content_check.hpp"
#include "downloader/curl_handles.hpp"
#include "downloader/file_writer.hpp"
#include "downloader/temp_pool.hpp"
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
  // --expect, --min-size: a body that fails them ends with Reason::content, never renamed.
  ContentPolicy content;
  // -H lines (owned by the worker, outliving every transfer); nullptr: none.
  curl_slist* headers = nullptr;
  // Where an unnamed body file (create_unnamed_file) gets a temporary name when it needs one: a
  // partial body kept for the next attempt, or the link made before replacing an existing file.
  // Empty: the final file's directory.
  std::string temp_dir;
  // Books every connection socket the transfers open and close (see SocketBook): the event loop
  // then keeps a kept-alive connection in its epoll set between transfers. Outlives the multi
  // handle. nullptr: none.
  SocketBook* sockets = nullptr;
  // No proxy variable in the environment (no_proxy_in_environment()): each handle is told so once
  // (CURLOPT_PROXY and CURLOPT_NOPROXY empty) instead of libcurl looking for five variables on
  // every transfer (getenv 1.5 % of a downloader's instructions, callgrind, 20,000 transfers). When
  // one is set, libcurl reads them as usual.
  bool no_env_proxy = false;
};

// True when none of the variables libcurl takes an http(s) proxy from (http_proxy, https_proxy,
// HTTPS_PROXY, all_proxy, ALL_PROXY) is set to a non-empty value.
bool no_proxy_in_environment();

// A temporary file removed when the last reference to it goes, unless release()d first: a kept
// partial body is removed on every path that does not continue it (final failure, stop, exit).
class PartFile {
public:
  explicit PartFile(std::string path) : path_(std::move(path)) {}
  ~PartFile();
  PartFile(const PartFile&) = delete;
  PartFile& operator=(const PartFile&) = delete;
  const std::string& path() const noexcept { return path_; }
  std::string release() noexcept { return std::exchange(path_, {}); } // the caller owns it now

private:
  std::string path_;
};

// The kept beginning of a body that a later attempt can continue: its temporary file (created by
// this process, O_EXCL), the bytes in it, and the SHA-256 state after them.
struct Partial {
  std::shared_ptr<PartFile> file;
  std::uint64_t bytes = 0;
  std::int64_t total = -1;  // the whole body's length when the server announced it, else -1
  std::string if_range;     // a strong ETag or a Last-Modified date, "" when the server gave none
  std::shared_ptr<EVP_MD_CTX> digest; // after `bytes` bytes; null when bodies are not hashed
};

// What an attempt came to. On success the body is at `path` and sha256 is set (empty when
// bodies are not hashed).
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
  // Set only when finish() was told a further attempt follows a retryable failure, the server
  // advertised byte ranges and a length or validator, and some of the body is on disk.
  std::optional<Partial> partial;
  // The server refused to continue the partial body this attempt offered (416, a Content-Range
  // that does not continue it): the kept bytes are gone; start again from the first byte.
  bool restart = false;
  std::uint64_t resumed_from = 0; // bytes of the final file taken from an earlier attempt
};

// Gathers the pieces libcurl hands a body over in (16 KiB each in libcurl 7.88,
// CURL_MAX_WRITE_SIZE, however much one recv() read) into writes of up to kBytes, for the bodies
// written as they come (Transfer::kWriteAsItComes). One buffer serves every transfer of an event
// loop, so its pages are touched once: what it holds is written to its transfer's file when
// another transfer's bytes come, when it is full, when that transfer finishes (prepare_finish) or
// goes (discard, destruction), and by the loop after each turn's libcurl calls, so nothing waits
// in it across a turn. On the ext4 of our VMs, 91 new files of 376 KB took 7.9-11.2 ms written in
// pieces of 64 KiB against 15.3-17.6 in pieces of 16 KiB (6 runs each, a C loop); the copy into
// the buffer was not measured apart. Not thread-safe: the event loop's thread only.
class BodyGather {
public:
  static constexpr std::size_t kBytes = 64 * 1024;

  // Where gathered bytes go: a transfer's file.
  class Sink {
  public:
    // Writes (and hashes) `n` bytes; false when that failed, the sink keeping its error.
    virtual bool write_gathered(const char* data, std::size_t n) = 0;

  protected:
    ~Sink() = default;
  };

  BodyGather() = default;
  BodyGather(const BodyGather&) = delete;
  BodyGather& operator=(const BodyGather&) = delete;

  // Takes `n` bytes of `s`'s body, after every byte of it taken before. false when writing
  // `s`'s bytes failed (now, or what it held of them).
  bool add(Sink& s, const char* data, std::size_t n);
  // Writes what it holds to its sink; false when that write failed.
  bool flush();
  // The same, only when what it holds is `s`'s.
  bool flush(const Sink& s) { return owner_ == &s ? flush() : true; }
  // Drops what it holds when that is `s`'s (a sink whose file goes).
  void forget(const Sink& s) noexcept {
    if (owner_ == &s) owner_ = nullptr, size_ = 0;
  }
  std::size_t held() const noexcept { return size_; }       // bytes waiting
  std::uint64_t writes() const noexcept { return writes_; } // write_gathered() calls so far

private:
  Sink* owner_ = nullptr;
  std::size_t size_ = 0;
  std::uint64_t writes_ = 0;
  std::unique_ptr<char[]> buf_; // kBytes, allocated at the first add() that keeps bytes
};

class Transfer final : private BodyGather::Sink {
public:
  // A body announced (Content-Length) at most this long is written from libcurl's buffer as it
  // arrives, on the thread that runs the transfer, even with a writer: collecting it into chunks
  // for the file thread first copied it once more. Up to 64 KiB (the downloader finishes such a
  // body on that thread anyway, kInlineFinishMax), small-tmpfs (20,000 x 8-64 KB, 2 x 64):
  // memcpy 1.1 % of the system's samples against 3.7 % (perf, one job each); the downloaders'
  // CPU 1.57 s against 1.63 and 1.85 against 1.90 (two sets of 10 alternating jobs). Up to 2 MiB
  // (a larger body's ending still goes to the file thread): in the burst that ends a classic job
  // the copy into chunks (memmove) was as much of the event loops' samples as the receive copy
  // (16 ms each, 2 x 64, perf at 10 kHz), on cores already saturated; classic 2 x 64 (91 bodies
  // of 30 KB-1.5 MB), 16 alternating runs: 315.5 ms against 322.0; 1 x 64, 12: 505.0 against
  // 510.0; latency (2,000 x 100 KB) 1 x 64, 10: 3,368 against 3,368; 960 of the classic bodies
  // without delay (bytes/s bound), 1 x 64, 12: 439.5 against 440.0. Not beyond: a long stream is
  // where the file thread's copy beside the receive pays (big, 10 x 100 MB, 1 x 64, all written
  // as they came: 0.96-0.99 s against 0.66-0.74 s in chunks).
  static constexpr std::size_t kWriteAsItComes = 2 * 1024 * 1024;

  // The receive buffer asked of libcurl per transfer (64 transfers: 4 MiB per downloader). Each
  // page of it is touched for the first time by a recv() of the transfer's first large body, at
  // 11-15 us of kernel time per page on these VMs (see FileWriter::kChunk): 64 KiB rather than
  // 128 KiB took a classic job's downloader (1 x 64, 91 bodies of 30 KB-1.5 MB) from 3,124-3,221
  // page faults to 2,590-2,646, and its median wall time (6 alternating runs) from 554.7 ms to
  // 545.6 (2 x 64: 388.3 to 373.0). Latency (2,000 x 100 KB, 4 runs) from 3,396 ms to 3,384;
  // small and big took the same time within their spread. Its pages are made present while the
  // first requests wait for their responses (downloader/recv_prefault.hpp).
  static constexpr std::size_t kRecvBuffer = 64 * 1024;

  // `sha256` must outlive the slot; nullptr (the default, see hashes_bodies): bodies are not
  // hashed. Throws
  // CurlError / std::runtime_error when a handle or the digest context cannot be created.
  explicit Transfer(const EVP_MD* sha256);
  ~Transfer(); // removes a temporary file still open
  Transfer(const Transfer&) = delete;
  Transfer& operator=(const Transfer&) = delete;

  // Prepares one attempt: resets the handle, sets every option and writes the body to `ready`
  // (an empty file of the TempPool; `temp_path` is then unused and may be empty) or, when that
  // is empty, to a file from the file source (set_file_source) at the first body byte, or,
  // without a source, creates `temp_path` now (O_EXCL | O_NOFOLLOW: never an existing file,
  // never through a planted link). With `resume`, continues that partial body instead (Range from
  // its size, If-Range with its validator) when its file still holds exactly its bytes (`ready` is
  // then removed); otherwise removes it and starts afresh. Returns "" on success, else why the
  // temporary file could not be created (the caller reports begin_reason(): disk when the file
  // system is full, else io). Throws CurlError when libcurl refuses an option.
  std::string begin(const proto::Task& task, std::uint32_t attempt, const TransferSettings& s,
                    std::string temp_path, std::optional<Partial> resume = std::nullopt,
                    TempFile ready = {});

  // Ends the attempt once libcurl reported `code` (the handle must be detached from the multi):
  // on success renames the temporary file to `final_path` (rename(2) replaces whatever is
  // there, a symbolic link included, and never writes through it); on any failure removes it,
  // unless `another_attempt` says the caller will retry a retryable failure and the body can be
  // continued: then the file is handed over in Finished::partial.
  Finished finish(CURLcode code, const std::string& final_path, bool another_attempt = false);
  // The same, renaming into the directory `dir_fd` as `name` (renameat: no link in the path is
  // followed); `final_path` is the path the result reports.
  Finished finish(CURLcode code, const std::string& final_path, int dir_fd, const std::string& name,
                  bool another_attempt = false);

  // finish() in two halves, for a transfer with a writer: prepare_finish() reads what libcurl
  // knows of the attempt (on the thread that owns the handle, once it is detached from the
  // multi); finish_prepared() does the rest (the last bytes, close, digest, rename or removal),
  // on the writer's thread, after the attempt's chunks. Nothing else may touch the transfer
  // between the two.
  void prepare_finish(CURLcode code);
  Finished finish_prepared(const std::string& final_path, int dir_fd, const std::string& name,
                           bool another_attempt);

  // Body bytes go to `writer` in chunks (hashed and written on its thread) instead of being
  // hashed and written at once on the calling thread; nullptr (the default) writes them at once.
  // Set before begin(); the writer must outlive the transfer's jobs.
  void set_writer(FileWriter* writer) noexcept { writer_ = writer; }
  // Bodies written as they come go through `gather` (see BodyGather), which must outlive the
  // transfer; nullptr (the default) writes each piece at once. Set before begin().
  void set_gather(BodyGather* gather) noexcept { gather_ = gather; }
  // Where a new body's file comes from when begin() is given none: called at the body's first
  // byte (or at the end of an empty 2xx body), never for a response that keeps no body (an
  // error status, a failed connection). It returns the file, or an empty TempFile with errno set
  // and `tried` naming what it could not create. So a latency-bound transfer makes its file
  // while it waits for the server, not before its request leaves. Unset (the default), begin()
  // creates its `temp_path` at once. Set before begin().
  using FileSource = std::function<TempFile(std::string& tried)>;
  void set_file_source(FileSource source) { file_source_ = std::move(source); }
  // The attempt has no file yet (begin() left it for the first body byte).
  bool file_pending() const noexcept { return file_pending_; }
  // Body bytes received and not handed to the writer yet.
  std::size_t unwritten() const noexcept { return chunk_.size(); }
  // True when no chunk of this attempt went to the writer (the whole body is still in hand or
  // was written as it came, or there is none): finishing it on this thread then races with
  // nothing.
  bool nothing_handed_over() const noexcept { return direct_ || chunk_.size() == bytes_ - offset_; }
  // Body bytes of this attempt (written as they came, or in hand, or handed over).
  std::uint64_t attempt_bytes() const noexcept { return bytes_ - offset_; }

  // Ends the attempt without an outcome (stop): removes the temporary file. With a writer, only
  // once none of the attempt's chunks is still queued (FileWriter::drain()).
  void discard() noexcept;

  // Why the last begin() could not create its temporary file: Reason::disk (ENOSPC, EDQUOT) or
  // Reason::io.
  proto::Reason begin_reason() const noexcept { return begin_reason_; }

  CurlEasy& easy() noexcept { return easy_; }
  const proto::Task& task() const noexcept { return task_; }
  std::uint32_t attempt() const noexcept { return attempt_; }

private:
  bool write_gathered(const char* data, std::size_t n) override { return write_chunk(data, n); }
  static std::size_t on_body(char* data, std::size_t size, std::size_t count, void* self);
  std::size_t write_body(const char* data, std::size_t n);
  // Hashes and writes `n` body bytes to the file (on the writer's thread when there is one);
  // false, with io_failed_ set, when that failed now or before.
  bool write_chunk(const char* data, std::size_t n);
  void hand_over(); // queues chunk_ for the writer
  // The body's file in messages: its temporary path, or what an unnamed file is for.
  std::string file_label() const;
  // A fresh temporary name for an unnamed file, in temp_dir_ or else next to `final_path`.
  std::string link_path(const std::string& final_path) const;
  // Gives the finished body (open as `fd`, unnamed) the name `name` in `dir_fd`, replacing what
  // is there as rename(2) would: linked directly, or, when the name is taken, linked under a
  // temporary name and renamed over it. false with errno set when it cannot.
  bool place_unnamed(int fd, const std::string& final_path, int dir_fd, const std::string& name);
  void close_temp() noexcept; // closes and removes the temporary file, if any
  bool open_partial(Partial& p);     // takes over p's file; false when it cannot be continued
  // Gets the body's file from file_source_ when begin() left it for later; false, with local_
  // and local_detail_ saying why, when none could be had.
  bool open_pending_file();
  bool settle_response(long status); // at the first body byte (or the end): append, restart or refuse
  bool start_over();                 // empties the file and the digest; false on an I/O error
  void read_validators();            // if_range_ and resumable_ from the response's headers
  std::string header(const char* name) const; // of the last response, "" when absent
  // The settings the handle's options were last set from (configure()): begin() sets them again
  // only when these differ, and otherwise only the options of the task (URL, Range, headers).
  // libcurl keeps options from one transfer to the next on a handle; curl_easy_reset() and
  // setting them all again cost ~10,000 instructions per transfer (callgrind).
  struct Configured {
    long connect_timeout_s, timeout_s, low_speed_time_s, low_speed_limit, max_redirects;
    std::uint64_t max_size;
    std::string user_agent;
    SocketBook* sockets;
    bool no_env_proxy;
    // The fields above, by the same names in Configured and TransferSettings: the one list of
    // them that of() copies and matches() compares (without copying the user agent). Not the -H
    // list: begin() sets it on every task.
    template <class T> static auto fields(const T& x) {
      return std::tie(x.connect_timeout_s, x.timeout_s, x.low_speed_time_s, x.low_speed_limit,
                      x.max_redirects, x.max_size, x.user_agent, x.sockets, x.no_env_proxy);
    }
    static Configured of(const TransferSettings& s) { return std::make_from_tuple<Configured>(fields(s)); }
    bool matches(const TransferSettings& s) const { return fields(*this) == fields(s); }
  };
  // Resets the handle and sets every option that depends only on `s` (see configured_).
  void configure(const TransferSettings& s);

  // errbuf_ is declared first so it outlives the handle that writes into it.
  std::array<char, CURL_ERROR_SIZE> errbuf_{};
  CurlEasy easy_;
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> md_ctx_;
  const EVP_MD* sha256_;

  proto::Task task_;
  std::uint32_t attempt_ = 0;
  std::uint64_t max_size_ = 0;
  int fd_ = -1;
  std::string temp_path_;       // empty for an unnamed file (create_unnamed_file)
  bool unnamed_ = false;        // the body's file has no name until finish links it
  bool file_pending_ = false;   // no file yet: open_pending_file() at the first body byte
  FileSource file_source_;
  std::string temp_dir_;        // settings.temp_dir
  std::uint64_t bytes_ = 0;     // kept body bytes (2xx) in the file, written and hashed
  std::uint64_t discarded_ = 0; // body bytes of an error response, read and dropped
  // Range resume of this attempt: the bytes the file held when it began (0: a whole body was
  // asked for), what the first response said about the whole body, and what came of the range.
  std::uint64_t offset_ = 0;
  std::int64_t total_ = -1;
  std::string if_range_;
  bool settled_ = false;  // settle_response() ran for this attempt's response
  bool direct_ = false;   // this body is written as it comes (kWriteAsItComes), not in chunks
  bool refused_ = false;  // the server would not continue the partial body
  bool resumable_ = false; // the response allows a later attempt to continue this body
  // A whole body's response is settled; its validators (if_range_, resumable_) are read by
  // prepare_finish() only if the body ends short.
  bool validators_pending_ = false;
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> headers_{nullptr, &curl_slist_free_all};
  proto::Reason local_ = proto::Reason::none;
  proto::Reason begin_reason_ = proto::Reason::io;
  std::string local_detail_;
  // A failed write or digest update, set by write_chunk() on whichever thread ran it: write_body()
  // stops the transfer on the flag; finish_prepared() reports io_reason_ and io_detail_, which
  // only write_chunk()'s thread writes before it sets the flag.
  std::atomic<bool> io_failed_{false};
  proto::Reason io_reason_ = proto::Reason::none;
  std::string io_detail_;
  FileWriter* writer_ = nullptr;
  BodyGather* gather_ = nullptr;
  std::vector<char> chunk_; // with a writer: body bytes not handed over yet
  // What prepare_finish() read from libcurl, for finish_prepared().
  struct Ended {
    CURLcode code = CURLE_OK;
    long http_status = 0;
    bool http_url = false; // a refused redirect's target was http(s)
    std::int64_t content_length = -1;
    bool refused_address = false; // the address policy refused the connection
    std::uint32_t ms = 0, ttfb_ms = 0;
    long retry_after_s = 0;
  } ended_;
  SocketGate gate_; // CURLOPT_OPENSOCKETDATA while settings.address_filter is set
  std::optional<Configured> configured_;
  ContentPolicy content_;
  ContentSniffer sniff_;
};

} // namespace trawl::downloader
