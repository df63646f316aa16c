// Streams the fetcher's sources are read through: a look at the first bytes of any stream without
// losing them (to detect the format), and gzip decompression on the fly (zlib), so a .gz list of
// any size streams in bounded memory. Both pass on whatever the stream below has ready, so a list
// piped in slowly is still emitted line by line.
#pragma once

#include <cstdint>
#include <istream>
#include <memory>
#include <string>
#include <string_view>

namespace trawl::fetcher {

// Wraps `inner` (owned) and reads its first bytes ahead, so they can be inspected and are then
// read again as part of the stream.
class HeadStream final : public std::istream {
public:
  explicit HeadStream(std::unique_ptr<std::istream> inner);
  ~HeadStream() override;
  HeadStream(const HeadStream&) = delete;
  HeadStream& operator=(const HeadStream&) = delete;

  // Up to `n` (at most 64 KiB) of the first bytes of the stream; fewer when it is shorter. Blocks
  // until that many bytes arrived or the input ended, so call it before anything is read and
  // only where waiting is acceptable (not on an interactive stdin). Repeated calls may ask for
  // more. Throws what the inner stream's reads throw.
  std::string_view head(std::size_t n);

private:
  class Buf;
  std::unique_ptr<Buf> buf_;
};

// True when `head` starts with the gzip magic bytes 1f 8b.
bool is_gzip(std::string_view head) noexcept;

// Decompresses the gzip stream `inner` (owned); concatenated gzip members are read one after the
// other, as gzip(1) does. Reads throw SourceError (source.hpp) naming `name` for a corrupt or
// truncated input.
class GunzipStream final : public std::istream {
public:
  GunzipStream(std::unique_ptr<std::istream> inner, std::string name);
  ~GunzipStream() override;
  GunzipStream(const GunzipStream&) = delete;
  GunzipStream& operator=(const GunzipStream&) = delete;

private:
  class Buf;
  std::unique_ptr<Buf> buf_;
};

// `in` itself, or a GunzipStream over it when its first bytes are gzip's magic; either way a
// HeadStream, so the caller can look at the (decompressed) head. `gzipped`, when not null, is
// set to whether it was compressed.
std::unique_ptr<HeadStream> open_maybe_gzip(std::unique_ptr<std::istream> in, const std::string& name,
                                            bool* gzipped = nullptr);

} // namespace trawl::fetcher
