#include "fetcher/stream.hpp"

#include <algorithm>
#include <cstring>
#include <vector>
#include <spdlog/spdlog.h>
#include <zlib.h>

#include "fetcher/source.hpp"

namespace trawl::fetcher {
namespace {

constexpr std::size_t kBufBytes = 64 * 1024;

// Up to `cap` bytes from `sb`: blocks for the first byte only, then takes what is buffered.
// 0 at the end of the input.
std::size_t read_some(std::streambuf& sb, char* dst, std::size_t cap) {
  if (sb.sgetc() == std::char_traits<char>::eof()) return 0;
  const std::streamsize avail = std::max<std::streamsize>(sb.in_avail(), 1);
  const auto n = sb.sgetn(dst, std::min<std::streamsize>(avail, static_cast<std::streamsize>(cap)));
  return n > 0 ? static_cast<std::size_t>(n) : 0;
}

} // namespace

bool is_gzip(std::string_view head) noexcept {
  return head.size() >= 2 && static_cast<unsigned char>(head[0]) == 0x1f &&
         static_cast<unsigned char>(head[1]) == 0x8b;
}

// ---- HeadStream -------------------------------------------------------------------------------

class HeadStream::Buf final : public std::streambuf {
public:
  explicit Buf(std::unique_ptr<std::istream> inner) : inner_(std::move(inner)), buf_(kBufBytes) {
    if (!inner_ || inner_->rdbuf() == nullptr) throw SourceError("a source stream has no buffer");
    setg(buf_.data(), buf_.data(), buf_.data());
  }

  std::string_view head(std::size_t n) {
    n = std::min(n, buf_.size());
    if (egptr() - gptr() < static_cast<std::ptrdiff_t>(n)) {
      const std::size_t have = static_cast<std::size_t>(egptr() - gptr());
      if (have > 0 && gptr() != buf_.data()) std::memmove(buf_.data(), gptr(), have);
      std::size_t end = have;
      while (end < n) {
        const std::size_t got = read_some(*inner_->rdbuf(), buf_.data() + end, buf_.size() - end);
        if (got == 0) break;
        end += got;
      }
      setg(buf_.data(), buf_.data(), buf_.data() + end);
    }
    return {gptr(), std::min(n, static_cast<std::size_t>(egptr() - gptr()))};
  }

protected:
  int_type underflow() override {
    if (gptr() < egptr()) return traits_type::to_int_type(*gptr());
    const std::size_t got = read_some(*inner_->rdbuf(), buf_.data(), buf_.size());
    if (got == 0) return traits_type::eof();
    setg(buf_.data(), buf_.data(), buf_.data() + got);
    return traits_type::to_int_type(*gptr());
  }

private:
  std::unique_ptr<std::istream> inner_;
  std::vector<char> buf_;
};

HeadStream::HeadStream(std::unique_ptr<std::istream> inner)
    : std::istream(nullptr), buf_(std::make_unique<Buf>(std::move(inner))) {
  rdbuf(buf_.get());
}

HeadStream::~HeadStream() = default;

std::string_view HeadStream::head(std::size_t n) { return buf_->head(n); }

// ---- GunzipStream -----------------------------------------------------------------------------

class GunzipStream::Buf final : public std::streambuf {
public:
  Buf(std::unique_ptr<std::istream> inner, std::string name)
      : inner_(std::move(inner)), name_(std::move(name)), in_(kBufBytes), out_(kBufBytes) {
    if (!inner_ || inner_->rdbuf() == nullptr) throw SourceError("a source stream has no buffer");
    // 16 + MAX_WBITS: a gzip header and trailer (not zlib's, not raw deflate).
    if (inflateInit2(&z_, 16 + MAX_WBITS) != Z_OK) throw SourceError("zlib: inflateInit2 failed");
    setg(out_.data(), out_.data(), out_.data());
  }
  ~Buf() override { inflateEnd(&z_); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;

protected:
  int_type underflow() override {
    if (gptr() < egptr()) return traits_type::to_int_type(*gptr());
    while (!done_) {
      if (z_.avail_in == 0) {
        const std::size_t got = read_some(*inner_->rdbuf(), in_.data(), in_.size());
        if (got == 0) {
          if (in_member_) throw SourceError(name_ + ": truncated gzip data (the stream ends mid-member)");
          done_ = true;
          break;
        }
        z_.next_in = reinterpret_cast<Bytef*>(in_.data());
        z_.avail_in = static_cast<uInt>(got);
      }
      if (!in_member_) {
        // Between members: another gzip member may follow; anything else ends the data.
        if (z_.avail_in >= 1 && static_cast<unsigned char>(z_.next_in[0]) != 0x1f) {
          trailing_garbage();
          break;
        }
        in_member_ = true;
      }
      z_.next_out = reinterpret_cast<Bytef*>(out_.data());
      z_.avail_out = static_cast<uInt>(out_.size());
      const int rc = inflate(&z_, Z_NO_FLUSH);
      const std::size_t produced = out_.size() - z_.avail_out;
      if (rc == Z_STREAM_END) {
        in_member_ = false;
        if (inflateReset(&z_) != Z_OK) throw SourceError(name_ + ": zlib: inflateReset failed");
      } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
        throw SourceError(name_ + ": corrupt gzip data (" + (z_.msg ? z_.msg : zError(rc)) + ")");
      }
      if (produced > 0) {
        setg(out_.data(), out_.data(), out_.data() + produced);
        return traits_type::to_int_type(*gptr());
      }
    }
    return traits_type::eof();
  }

private:
  void trailing_garbage() {
    // gzip(1) warns about bytes after the last member and ignores them; so does this.
    done_ = true;
    spdlog::warn("{}: data after the end of the gzip stream ignored", name_);
  }

  std::unique_ptr<std::istream> inner_;
  std::string name_;
  std::vector<char> in_, out_;
  z_stream z_{};
  bool in_member_ = false;
  bool done_ = false;
};

GunzipStream::GunzipStream(std::unique_ptr<std::istream> inner, std::string name)
    : std::istream(nullptr), buf_(std::make_unique<Buf>(std::move(inner), std::move(name))) {
  rdbuf(buf_.get());
}

GunzipStream::~GunzipStream() = default;

std::unique_ptr<HeadStream> open_maybe_gzip(std::unique_ptr<std::istream> in, const std::string& name,
                                            bool* gzipped) {
  auto raw = std::make_unique<HeadStream>(std::move(in));
  const bool gz = is_gzip(raw->head(2));
  if (gzipped) *gzipped = gz;
  if (!gz) return raw;
  return std::make_unique<HeadStream>(std::make_unique<GunzipStream>(std::move(raw), name));
}

} // namespace trawl::fetcher
