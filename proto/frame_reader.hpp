// Reads one msgpack object of a frame into msgpack::object nodes, without msgpack's unpacker:
// the decoder's own reader for frames of this protocol (docs/PROTOCOL.md, "Decoding limits").
//
// msgpack::unpack builds the same tree through a general parser and visitor, allocating a zone per
// frame; that was most of a sink's instructions (callgrind: proto::decode 75 % of the sink's, the
// unpacker alone half of that). This reader walks the bytes once, keeps the nodes in slabs reused
// from one frame to the next, and leaves every string and bin in the frame. It accepts and refuses
// exactly what msgpack::unpack does with the same limits and a reference function that references
// everything (tests/fuzz/fuzz_decode.cpp compares the two on every input it tries).
#pragma once

#include <cstddef>
#include <memory>
#include <msgpack.hpp>
#include <string_view>
#include <type_traits>
#include <vector>

namespace trawl::proto {

// As msgpack::unpack_limit: elements of an array, entries of a map (both at most
// FrameReader's chunk, 4096), bytes of a str, a bin and an ext (with its type byte), and
// containers nested (the outermost one counts 1).
struct ReadLimits {
  std::size_t array, map, str, bin, ext, depth;
};

class FrameReader {
public:
  // The first object of `frame`, or nullptr with error() set in msgpack's words ("insufficient
  // bytes", "parse error", "str size overflow", ...). `used` is how many bytes it took. The nodes
  // stay valid until the next read(); strings and bins point into `frame`.
  const msgpack::object* read(std::string_view frame, const ReadLimits& limits, std::size_t& used);
  static constexpr std::size_t kMaxElements = 4096; // the largest array or map limits may allow
  const char* error() const noexcept { return error_; }

private:
  // Contiguous runs of T (an array's elements, a map's entries), valid until reset(). A run never
  // spans two chunks: the limits keep every run under kChunk. A chunk is raw storage whose
  // elements are constructed as they are taken: constructing all 4,096 up front (msgpack::object
  // has a constructor) wrote every page of both slabs, 72 pages (4,096 entries of 48 bytes, 4,096
  // nodes of 24), at each process's first frame, where a frame of a few fields needs one or two
  // (a page first touched costs 11-18 us on the VMs we measure on: see common/heap_prefault.hpp).
  template <class T> class Slab {
    static_assert(std::is_trivially_destructible_v<T>, "chunks are freed without destructors");

  public:
    static constexpr std::size_t kChunk = kMaxElements;
    T* take(std::size_t n);
    void reset() noexcept;

  private:
    struct alignas(T) Cell {
      std::byte bytes[sizeof(T)];
    };
    std::vector<std::unique_ptr<Cell[]>> chunks_;
    std::size_t chunk_ = 0; // the chunk being filled
    std::size_t used_ = 0;  // of that chunk
  };

  bool parse(msgpack::object& o, std::size_t depth);
  // The next `n` bytes, left in the frame (a str's, bin's or ext's), within `limit`.
  bool take(std::size_t n, std::size_t limit, const char* overflow, const char*& at);
  bool str(msgpack::object& o, std::size_t n);
  bool bin(msgpack::object& o, std::size_t n);
  bool ext(msgpack::object& o, std::size_t n);
  // A container's header, checked in msgpack-c's order: its size, its depth, then whether the
  // frame can still hold its elements (`bytes_each` at least each).
  bool open(std::size_t n, std::size_t limit, const char* overflow, std::size_t depth,
            std::size_t bytes_each);
  bool array(msgpack::object& o, std::size_t n, std::size_t depth);
  bool map(msgpack::object& o, std::size_t n, std::size_t depth);
  // The next `n` bytes as a big-endian unsigned number; false when the frame ends first.
  bool number(std::size_t n, std::uint64_t& out);
  bool fail(const char* why) {
    error_ = why;
    return false;
  }

  const unsigned char* p_ = nullptr;
  const unsigned char* end_ = nullptr;
  ReadLimits lim_{};
  const char* error_ = "";
  msgpack::object root_{};
  Slab<msgpack::object> objects_;
  Slab<msgpack::object_kv> entries_;
};

} // namespace trawl::proto
