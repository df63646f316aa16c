#include "downloader/transfer.hpp"

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <curl/header.h>
#include <fcntl.h>
#include <strings.h>
#include <sys/stat.h>
#include <tuple>
#include <unistd.h>

#include "downloader/outcome.hpp"

namespace trawl::downloader {
namespace {

// An error page is drained so its connection stays reusable, but not without bound.
constexpr std::uint64_t kMaxDiscardBytes = 1 << 20;

std::uint32_t to_ms(curl_off_t us) {
  if (us <= 0) return 0;
  const auto ms = us / 1000;
  return ms > 0xFFFFFFFF ? 0xFFFFFFFFu : static_cast<std::uint32_t>(ms);
}

bool starts_with_nocase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  return true;
}

// A full file system or an exhausted quota: reason `disk`, which the worker answers by pausing
// (downloader.cpp), rather than `io`.
bool out_of_space(int err) noexcept { return err == ENOSPC || err == EDQUOT; }

proto::Reason write_error_reason(int err) noexcept {
  return out_of_space(err) ? proto::Reason::disk : proto::Reason::io;
}

std::string hex(const unsigned char* p, unsigned n) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string s(2 * std::size_t{n}, '0');
  for (unsigned i = 0; i < n; ++i) {
    s[2 * i] = digits[p[i] >> 4];
    s[2 * i + 1] = digits[p[i] & 0x0F];
  }
  return s;
}

} // namespace

bool no_proxy_in_environment() {
  for (const char* name : {"http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"}) {
    const char* v = std::getenv(name);
    if (v != nullptr && *v != '\0') return false;
  }
  return true;
}

PartFile::~PartFile() {
  if (!path_.empty()) ::unlink(path_.c_str());
}

Transfer::Transfer(const EVP_MD* sha256) : md_ctx_(EVP_MD_CTX_new(), &EVP_MD_CTX_free), sha256_(sha256) {
  if (!md_ctx_) throw std::runtime_error("EVP_MD_CTX_new failed");
}

Transfer::~Transfer() {
  if (gather_ != nullptr) gather_->forget(*this);
  close_temp();
}

bool BodyGather::add(Sink& s, const char* data, std::size_t n) {
  if (owner_ != &s) flush(); // another transfer's bytes, whatever comes of their write
  else if (size_ + n > kBytes && !flush()) return false;
  if (n >= kBytes) { // nothing to gather (libcurl's pieces are smaller): as it comes
    ++writes_;
    return s.write_gathered(data, n);
  }
  if (!buf_) buf_ = std::make_unique<char[]>(kBytes);
  std::memcpy(buf_.get() + size_, data, n);
  size_ += n;
  owner_ = &s;
  return true;
}

bool BodyGather::flush() {
  Sink* const s = std::exchange(owner_, nullptr);
  const std::size_t n = std::exchange(size_, 0);
  if (s == nullptr || n == 0) return true;
  ++writes_;
  return s->write_gathered(buf_.get(), n);
}

void Transfer::configure(const TransferSettings& s) {
  configured_.reset(); // until every option below is set
  easy_.reset();
  headers_.reset(); // after the reset: the handle no longer points at the list
  easy_.set_ptr(CURLOPT_PRIVATE, this);
  easy_.set_ptr(CURLOPT_ERRORBUFFER, errbuf_.data());
  easy_.set_write_fn(CURLOPT_WRITEFUNCTION, &Transfer::on_body);
  easy_.set_ptr(CURLOPT_WRITEDATA, this);
  easy_.set_str(CURLOPT_PROTOCOLS_STR, "http,https");
  easy_.set_str(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  easy_.set_long(CURLOPT_FOLLOWLOCATION, 1L);
  easy_.set_long(CURLOPT_MAXREDIRS, s.max_redirects);
  easy_.set_long(CURLOPT_CONNECTTIMEOUT, s.connect_timeout_s);
  if (s.timeout_s > 0) easy_.set_long(CURLOPT_TIMEOUT, s.timeout_s);
  // Abort a transfer slower than low_speed_limit bytes/s for low_speed_time seconds: a peer that
  // never answers, or trickles a byte a second, does not hold a slot for ever. This covers the
  // wait for the response headers too. 0 seconds turns the check off.
  if (s.low_speed_time_s > 0 && s.low_speed_limit > 0) {
    easy_.set_long(CURLOPT_LOW_SPEED_LIMIT, s.low_speed_limit);
    easy_.set_long(CURLOPT_LOW_SPEED_TIME, s.low_speed_time_s);
  }
  // Every connection's socket is ours: --deny-private checks the resolved address of each (so
  // also across redirects and whatever the DNS answers), and a loopback one gets a receive
  // buffer of its own (see kLoopbackRecvBuffer).
  easy_.set_opensocket_fn(&open_gated_socket);
  easy_.set_ptr(CURLOPT_OPENSOCKETDATA, &gate_);
  if (s.sockets != nullptr) { // a socket booked as opened is closed through the book
    easy_.set_closesocket_fn(&close_booked_socket);
    easy_.set_ptr(CURLOPT_CLOSESOCKETDATA, s.sockets);
  }
  easy_.set_long(CURLOPT_NOSIGNAL, 1L);
  easy_.set_long(CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_2TLS);
  // No CURLOPT_ACCEPT_ENCODING: bodies are stored exactly as the server sent them.
  // libcurl checks a Content-Length against this; write_body() checks the bytes that arrive.
  easy_.set_off(CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(
                                               std::min<std::uint64_t>(s.max_size, INT64_MAX)));
  // A receive buffer of kRecvBuffer (transfer.hpp) instead of 16 KiB: one recv() per 64 KiB that
  // has arrived, not four (the curl tool reads 100 KiB at a time). The write callback still gets at
  // most 16 KiB per call. Only a hint: should libcurl refuse it, the transfer runs with its
  // default.
  (void)curl_easy_setopt(easy_.get(), CURLOPT_BUFFERSIZE, static_cast<long>(kRecvBuffer));
  easy_.set_str(CURLOPT_USERAGENT, s.user_agent.c_str());
  if (s.no_env_proxy) {
    easy_.set_str(CURLOPT_PROXY, "");
    easy_.set_str(CURLOPT_NOPROXY, "");
  }
  configured_ = Configured::of(s);
}

std::string Transfer::begin(const proto::Task& task, std::uint32_t attempt,
                            const TransferSettings& s, std::string temp_path,
                            std::optional<Partial> resume, TempFile ready) {
  close_temp(); // a previous attempt always ends in finish()/discard(); this is a safety net
  task_ = task;
  unnamed_ = false;
  file_pending_ = false;
  temp_dir_ = s.temp_dir;
  attempt_ = attempt;
  max_size_ = s.max_size;
  bytes_ = 0;
  discarded_ = 0;
  offset_ = 0;
  total_ = -1;
  if_range_.clear();
  settled_ = refused_ = resumable_ = direct_ = validators_pending_ = false;
  local_ = proto::Reason::none;
  local_detail_.clear();
  io_failed_.store(false, std::memory_order_relaxed);
  io_reason_ = proto::Reason::none;
  io_detail_.clear();
  chunk_.clear();
  ended_ = Ended{};
  gate_.filter = s.address_filter;
  gate_.refused.clear();
  gate_.book = s.sockets;
  content_ = s.content;
  sniff_.reset();
  errbuf_[0] = '\0';
  begin_reason_ = proto::Reason::io;

  if (!configured_ || !configured_->matches(s)) configure(s);
  // The task's own options, each set on every transfer: nothing of the previous task's stays.
  easy_.set_str(CURLOPT_URL, task_.url.c_str());
  // Over TLS, wait for the first connection's ALPN and multiplex on it rather than open one
  // connection per transfer. Not over plain http (never HTTP/2 with 2TLS): there libcurl 7.88
  // can park a transfer behind a busy HTTP/1.1 connection until that transfer completes.
  easy_.set_long(CURLOPT_PIPEWAIT, starts_with_nocase(task_.url, "https://") ? 1L : 0L);
  easy_.set_str(CURLOPT_RANGE, nullptr);
  easy_.set_ptr(CURLOPT_HTTPHEADER, s.headers);
  headers_.reset(); // after the line above: the handle no longer points at a list of ours

  // A partial body that still holds what it says is continued; any other is removed when
  // `resume` goes out of scope, and the attempt starts from the first byte.
  if (resume && open_partial(*resume)) {
    easy_.set_str(CURLOPT_RANGE, (std::to_string(offset_) + "-").c_str());
    if (!if_range_.empty()) {
      // If the resource changed since, the server sends all of it (200) instead of the range.
      // A list of its own: the -H lines (shared, not to be changed) plus If-Range.
      curl_slist* list = nullptr;
      for (const curl_slist* h = s.headers; h != nullptr; h = h->next) {
        curl_slist* next = curl_slist_append(list, h->data);
        if (next == nullptr) {
          curl_slist_free_all(list);
          throw CurlError("curl_slist_append failed");
        }
        list = next;
      }
      headers_.reset(curl_slist_append(list, ("If-Range: " + if_range_).c_str()));
      if (!headers_) {
        curl_slist_free_all(list);
        throw CurlError("curl_slist_append failed");
      }
      easy_.set_ptr(CURLOPT_HTTPHEADER, headers_.get());
    }
    return {};
  }
  resume.reset();
  if (sha256_ && EVP_DigestInit_ex(md_ctx_.get(), sha256_, nullptr) != 1)
    throw std::runtime_error("EVP_DigestInit_ex failed");

  // A file the TempPool created ahead (empty, ours, made with the flags below), else one made
  // here: create_temp_file() uses O_EXCL, which already fails on any existing name, a symbolic
  // link included, and O_NOFOLLOW, which says so explicitly. The final name is only ever reached
  // by rename(), which replaces a link planted there instead of following it.
  if (!ready && file_source_) {
    file_pending_ = true;
    return {};
  }
  if (!ready) ready = create_temp_file(temp_path);
  if (!ready) {
    const int err = errno;
    begin_reason_ = write_error_reason(err); // no inode left is a full disk too
    return bounded("cannot create " + temp_path + ": " + std::strerror(err),
                   proto::kMaxDetailBytes);
  }
  std::tie(fd_, temp_path_) = ready.release();
  unnamed_ = temp_path_.empty();
  return {};
}

bool Transfer::open_pending_file() {
  file_pending_ = false;
  std::string tried;
  TempFile f = file_source_(tried);
  if (!f) {
    const int err = errno;
    local_ = write_error_reason(err); // no inode left is a full disk too
    local_detail_ =
        bounded("cannot create " + tried + ": " + std::strerror(err), proto::kMaxDetailBytes);
    return false;
  }
  std::tie(fd_, temp_path_) = f.release();
  unnamed_ = temp_path_.empty();
  return true;
}

bool Transfer::open_partial(Partial& p) {
  // When bodies are hashed, a part is only resumed with the digest state that covers it.
  if (!p.file || p.file->path().empty() || (sha256_ && !p.digest) || p.bytes == 0) return false;
  // The file is ours (created O_EXCL by this process); O_NOFOLLOW still refuses a link that
  // replaced it meanwhile, and its size must be exactly what was hashed.
  const int fd = ::open(p.file->path().c_str(), O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
      static_cast<std::uint64_t>(st.st_size) != p.bytes || ::lseek(fd, 0, SEEK_END) != st.st_size ||
      (sha256_ && EVP_MD_CTX_copy_ex(md_ctx_.get(), p.digest.get()) != 1)) {
    ::close(fd);
    return false;
  }
  fd_ = fd;
  temp_path_ = p.file->release();
  bytes_ = offset_ = p.bytes;
  total_ = p.total;
  if_range_ = p.if_range;
  resumable_ = true; // until a response says otherwise
  return true;
}

std::string Transfer::header(const char* name) const {
  curl_header* h = nullptr;
  if (curl_easy_header(easy_.get(), name, 0, CURLH_HEADER, -1, &h) != CURLHE_OK || h == nullptr)
    return {};
  return h->value;
}

bool Transfer::start_over() {
  if (::ftruncate(fd_, 0) != 0 || ::lseek(fd_, 0, SEEK_SET) != 0) {
    const int err = errno;
    local_ = write_error_reason(err);
    local_detail_ =
        bounded("truncate " + file_label() + ": " + std::strerror(err), proto::kMaxDetailBytes);
    return false;
  }
  if (sha256_ && EVP_DigestInit_ex(md_ctx_.get(), sha256_, nullptr) != 1) {
    local_ = proto::Reason::other;
    local_detail_ = "EVP_DigestInit_ex failed";
    return false;
  }
  bytes_ = 0;
  offset_ = 0;
  chunk_.clear(); // empty anyway: this runs before the response's first body byte is kept
  return true;
}

bool Transfer::settle_response(long status) {
  settled_ = true;
  if (status == 206) {
    // Only a range we asked for, and only the one that continues the kept bytes to the end of
    // the body the first response described, may be appended.
    if (offset_ == 0) {
      local_ = proto::Reason::other;
      local_detail_ = "HTTP 206 to a request for the whole body";
      return false;
    }
    const std::string cr = header("Content-Range");
    const auto range = parse_content_range(cr);
    const std::string etag = if_range_validator(header("ETag"), "");
    const bool same_tag = etag.empty() || if_range_.empty() || if_range_.front() != '"' ||
                          etag == if_range_;
    if (!range || !range_continues(*range, offset_, total_) || !same_tag) {
      refused_ = true;
      local_detail_ = bounded("resume refused: Content-Range '" + cr + "' does not continue the " +
                                  std::to_string(offset_) + " bytes kept",
                              proto::kMaxDetailBytes);
      return false;
    }
    total_ = range->total;
    return true;
  }
  // A whole body (the server ignored the range, or If-Range said the resource changed): start
  // the file over, and note whether a later attempt could continue this body.
  if (offset_ > 0 && !start_over()) return false;
  total_ = easy_.info_off(CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, -1);
  direct_ =
      writer_ != nullptr && total_ >= 0 && static_cast<std::uint64_t>(total_) <= kWriteAsItComes;
  validators_pending_ = true; // read_validators(), should this body be cut short
  return true;
}

void Transfer::read_validators() {
  validators_pending_ = false;
  if_range_ = if_range_validator(header("ETag"), header("Last-Modified"));
  resumable_ = accepts_byte_ranges(header("Accept-Ranges")) && (total_ >= 0 || !if_range_.empty());
}

std::size_t Transfer::on_body(char* data, std::size_t size, std::size_t count, void* self) {
  return static_cast<Transfer*>(self)->write_body(data, size * count);
}

std::size_t Transfer::write_body(const char* data, std::size_t n) {
  // Only a 2xx body is kept; libcurl does not deliver the bodies of redirects it follows.
  const long status = easy_.info_long(CURLINFO_RESPONSE_CODE);
  if (status < 200 || status >= 300) {
    discarded_ += n;
    return discarded_ > kMaxDiscardBytes ? 0 : n; // classify() reports the status either way
  }
  if (!settled_ && !settle_response(status)) return 0;
  // The first bytes of the body are checked (--expect); a continued range's were checked by the
  // attempt that wrote them.
  if (offset_ > 0) sniff_.skip();
  if (std::string why = sniff_.feed(content_, std::string_view(data, n)); !why.empty()) {
    local_ = proto::Reason::content;
    local_detail_ = bounded(why, proto::kMaxDetailBytes);
    return 0;
  }
  // The server may announce no length, or a false one: count what actually arrives.
  if (n > max_size_ - bytes_) {
    local_ = proto::Reason::too_large;
    local_detail_ = "body exceeds --max-size " + std::to_string(max_size_) + " bytes";
    return 0;
  }
  if (file_pending_ && !open_pending_file()) return 0;
  // A write that failed on the writer's thread stops the transfer at its next bytes.
  if (io_failed_.load(std::memory_order_acquire)) return 0;
  if (writer_ == nullptr || direct_) {
    if (gather_ != nullptr ? !gather_->add(*this, data, n) : !write_chunk(data, n)) return 0;
  } else {
    // Into chunk_ (never beyond kChunk: the buffer is not reallocated); each full chunk goes.
    for (std::size_t left = n; left > 0;) {
      if (chunk_.capacity() < FileWriter::kChunk) chunk_ = writer_->buffer();
      const std::size_t take = std::min(left, FileWriter::kChunk - chunk_.size());
      chunk_.insert(chunk_.end(), data, data + take);
      data += take;
      left -= take;
      if (chunk_.size() == FileWriter::kChunk) hand_over();
    }
  }
  bytes_ += n;
  return n;
}

void Transfer::hand_over() {
  if (chunk_.empty()) return;
  const std::size_t n = chunk_.size();
  writer_->submit(
      [this, c = std::move(chunk_)]() mutable {
        write_chunk(c.data(), c.size());
        writer_->recycle(std::move(c));
      },
      n);
  chunk_ = std::vector<char>();
}

bool Transfer::write_chunk(const char* data, std::size_t n) {
  if (io_failed_.load(std::memory_order_relaxed)) return false; // only this thread sets it
  const auto fail = [this](proto::Reason reason, std::string detail) {
    io_reason_ = reason;
    io_detail_ = std::move(detail);
    io_failed_.store(true, std::memory_order_release);
    return false;
  };
  if (sha256_ && EVP_DigestUpdate(md_ctx_.get(), data, n) != 1)
    return fail(proto::Reason::other, "EVP_DigestUpdate failed");
  std::size_t left = n;
  while (left > 0) {
    const ssize_t w = ::write(fd_, data, left);
    if (w < 0) {
      const int err = errno;
      if (err == EINTR) continue;
      return fail(write_error_reason(err), "write " + file_label() + ": " + std::strerror(err));
    }
    data += w;
    left -= static_cast<std::size_t>(w);
  }
  return true;
}

Finished Transfer::finish(CURLcode code, const std::string& final_path, bool another_attempt) {
  return finish(code, final_path, AT_FDCWD, final_path, another_attempt);
}

Finished Transfer::finish(CURLcode code, const std::string& final_path, int dir_fd,
                          const std::string& name, bool another_attempt) {
  prepare_finish(code);
  return finish_prepared(final_path, dir_fd, name, another_attempt);
}

void Transfer::prepare_finish(CURLcode code) {
  if (gather_ != nullptr) gather_->flush(*this); // its last bytes, before anything reads the file
  Ended& e = ended_;
  e.code = code;
  e.http_status = easy_.info_long(CURLINFO_RESPONSE_CODE);
  // A 2xx without a body byte (an empty 200 to a Range request) is settled here.
  if (!settled_ && code == CURLE_OK && local_ == proto::Reason::none && e.http_status >= 200 &&
      e.http_status < 300)
    settle_response(e.http_status);
  // An empty 2xx body still becomes a file.
  if (file_pending_ && code == CURLE_OK && local_ == proto::Reason::none && e.http_status >= 200 &&
      e.http_status < 300)
    open_pending_file();
  if (offset_ > 0 && e.http_status == 416 && local_ == proto::Reason::none) {
    refused_ = true;
    local_detail_ = "resume refused: HTTP 416 for the bytes after the " +
                    std::to_string(offset_) + " kept";
  }
  if (code == CURLE_UNSUPPORTED_PROTOCOL) {
    char* url = nullptr; // a refused redirect target becomes the effective URL
    curl_easy_getinfo(easy_.get(), CURLINFO_EFFECTIVE_URL, &url);
    e.http_url = url != nullptr &&
                 (strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0);
  }
  // Whether a later attempt may continue this body, read from the response's headers (still
  // the handle's until its next transfer) only when the body may have been cut short: three
  // lookups through every header line fewer per body that arrived whole.
  if (validators_pending_ &&
      (code != CURLE_OK || (total_ >= 0 && bytes_ < static_cast<std::uint64_t>(total_))))
    read_validators();
  e.content_length = easy_.info_off(CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, -1);
  e.refused_address = !gate_.refused.empty() && code == CURLE_COULDNT_CONNECT;
  e.ms = to_ms(easy_.info_off(CURLINFO_TOTAL_TIME_T));
  e.ttfb_ms = to_ms(easy_.info_off(CURLINFO_STARTTRANSFER_TIME_T));
  e.retry_after_s = static_cast<long>(easy_.info_off(CURLINFO_RETRY_AFTER));
}

Finished Transfer::finish_prepared(const std::string& final_path, int dir_fd,
                                   const std::string& name, bool another_attempt) {
  // The bytes still in hand, after the chunks handed over before them (the same thread).
  if (!chunk_.empty() && local_ == proto::Reason::none) write_chunk(chunk_.data(), chunk_.size());
  chunk_.clear();
  if (io_failed_.load(std::memory_order_acquire) && local_ == proto::Reason::none) {
    local_ = io_reason_;
    local_detail_ = io_detail_;
  }
  Finished f;
  Outcome o;
  o.code = ended_.code;
  o.http_status = ended_.http_status;
  o.local = local_;
  o.local_detail = local_detail_;
  o.http_url = ended_.http_url;
  o.content_length = ended_.content_length;
  // The body of this response is what came after the kept bytes; a continued range must reach
  // the end of the whole body, whatever its Content-Length says.
  o.bytes = bytes_ - offset_;
  if (offset_ > 0 && o.http_status == 206 && total_ >= 0)
    o.content_length = total_ - static_cast<std::int64_t>(offset_);
  // A refused address ends the transfer as "could not connect" for curl; it is reason `denied`
  // (policy, not the network), said why, and not retried.
  if (ended_.refused_address && o.local == proto::Reason::none) {
    o.local = proto::Reason::denied;
    o.local_detail = "refused by --deny-private: " + gate_.refused;
    f.permanent = true;
  }

  // An unnamed file stays open until it is linked (its descriptor is how it is reached).
  int unnamed_fd = -1;
  if (unnamed_ && fd_ >= 0) unnamed_fd = std::exchange(fd_, -1);
  // close() can be where a delayed write error (NFS, quota) first shows up.
  if (fd_ >= 0) {
    const int rc = ::close(fd_);
    fd_ = -1;
    const int err = errno;
    if (rc != 0 && o.local == proto::Reason::none) {
      o.local = write_error_reason(err);
      o.local_detail = "close " + file_label() + ": " + std::strerror(err);
    }
  }

  if (refused_ && o.local == proto::Reason::none) {
    f.reason = proto::Reason::truncated;
    f.detail = local_detail_;
    f.restart = true;
  } else {
    f.reason = classify(o);
    f.detail = describe(o, f.reason, errbuf_.data());
  }
  if (f.reason == proto::Reason::none) {
    if (offset_ > 0) sniff_.skip(); // see write_body()
    if (std::string why = sniff_.finish(content_, bytes_); !why.empty()) {
      f.reason = proto::Reason::content;
      f.detail = bounded(why, proto::kMaxDetailBytes);
    }
  }
  if (f.reason == proto::Reason::none) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    if (sha256_ && EVP_DigestFinal_ex(md_ctx_.get(), md, &len) != 1) {
      f.reason = proto::Reason::other;
      f.detail = "EVP_DigestFinal_ex failed";
    } else if (unnamed_fd >= 0
                   ? !place_unnamed(unnamed_fd, final_path, dir_fd, name)
                   : ::renameat(AT_FDCWD, temp_path_.c_str(), dir_fd, name.c_str()) != 0) {
      const int err = errno;
      f.reason = write_error_reason(err);
      f.detail = bounded((unnamed_fd >= 0 ? "link to " : "rename to ") + final_path + ": " +
                             std::strerror(err),
                         proto::kMaxDetailBytes);
    } else {
      if (sha256_) f.sha256 = hex(md, len); // else not hashed: the result carries none
      f.path = final_path;
      f.bytes = bytes_;
      f.resumed_from = offset_;
      temp_path_.clear();
    }
  } else if (another_attempt && !f.permanent && !f.restart && proto::is_retryable(f.reason) &&
             o.local == proto::Reason::none && resumable_ && bytes_ > 0 &&
             (total_ < 0 || bytes_ < static_cast<std::uint64_t>(total_))) {
    // Keep what arrived for the next attempt, with the digest state that covers it. An unnamed
    // file is given a temporary name for it first (the next attempt reopens it by name).
    std::shared_ptr<EVP_MD_CTX> digest;
    if (sha256_) digest.reset(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
    if (unnamed_fd >= 0) {
      std::string named = link_path(final_path);
      if (link_unnamed_file(unnamed_fd, AT_FDCWD, named.c_str())) temp_path_ = std::move(named);
    }
    if (!temp_path_.empty() &&
        (!sha256_ || (digest && EVP_MD_CTX_copy_ex(digest.get(), md_ctx_.get()) == 1))) {
      Partial p;
      p.file = std::make_shared<PartFile>(std::exchange(temp_path_, {}));
      p.bytes = bytes_;
      p.total = total_;
      p.if_range = if_range_;
      p.digest = std::move(digest);
      f.partial = std::move(p);
    }
  }
  if (unnamed_fd >= 0 && ::close(unnamed_fd) != 0 && f.reason == proto::Reason::none &&
      !f.path.empty()) {
    // A delayed write error after the body got its name: the file is not what was hashed.
    const int err = errno;
    ::unlinkat(dir_fd, name.c_str(), 0);
    f.reason = write_error_reason(err);
    f.detail = bounded("close " + file_label() + ": " + std::strerror(err), proto::kMaxDetailBytes);
    f.sha256.clear();
    f.path.clear();
    f.bytes = 0;
  }
  close_temp(); // removes the temporary file unless it was renamed or kept

  f.http_status = o.http_status;
  f.ms = ended_.ms;
  f.ttfb_ms = ended_.ttfb_ms;
  f.retry_after_s = ended_.retry_after_s;
  return f;
}

std::string Transfer::file_label() const {
  return temp_path_.empty() ? "the new file for " + task_.name : temp_path_;
}

std::string Transfer::link_path(const std::string& final_path) const {
  if (!temp_dir_.empty()) return temp_part_name(temp_dir_);
  const auto slash = final_path.rfind('/');
  return temp_part_name(slash == std::string::npos ? "." : final_path.substr(0, slash));
}

bool Transfer::place_unnamed(int fd, const std::string& final_path, int dir_fd,
                             const std::string& name) {
  if (link_unnamed_file(fd, dir_fd, name.c_str())) return true;
  if (errno != EEXIST) return false;
  // The name is taken (an earlier file, or a planted link): replaced atomically, never followed.
  const std::string temp = link_path(final_path);
  if (!link_unnamed_file(fd, AT_FDCWD, temp.c_str())) return false;
  if (::renameat(AT_FDCWD, temp.c_str(), dir_fd, name.c_str()) == 0) return true;
  const int err = errno;
  ::unlink(temp.c_str());
  errno = err;
  return false;
}

void Transfer::discard() noexcept {
  if (gather_ != nullptr) gather_->forget(*this);
  close_temp();
}

void Transfer::close_temp() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  if (!temp_path_.empty()) ::unlink(temp_path_.c_str());
  temp_path_.clear();
}

} // namespace trawl::downloader
