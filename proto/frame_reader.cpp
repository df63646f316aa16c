// See frame_reader.hpp. The checks follow msgpack-c's parser and create_object_visitor (v2), in
// their order: a container's size and depth when its header is read, a str's, bin's or ext's size
// once all its bytes are there (a frame cut inside one is "insufficient bytes").
#include "proto/frame_reader.hpp"

#include <algorithm>
#include <cstring>
#include <new>

namespace trawl::proto {

template <class T> T* FrameReader::Slab<T>::take(std::size_t n) {
  // make_unique_for_overwrite: the cells' bytes are left as they are, untouched.
  if (chunks_.empty()) chunks_.push_back(std::make_unique_for_overwrite<Cell[]>(kChunk));
  if (used_ + n > kChunk) {
    ++chunk_;
    used_ = 0;
    if (chunk_ == chunks_.size()) chunks_.push_back(std::make_unique_for_overwrite<Cell[]>(kChunk));
  }
  Cell* cells = chunks_[chunk_].get() + used_;
  used_ += n;
  for (std::size_t i = 0; i < n; ++i) ::new (static_cast<void*>(cells + i)) T();
  return std::launder(reinterpret_cast<T*>(cells)); // n >= 1: callers never take none
}

template <class T> void FrameReader::Slab<T>::reset() noexcept {
  // A frame that took many chunks (the limits allow ~2 MB of nodes) does not keep them all.
  constexpr std::size_t kKept = 4;
  if (chunks_.size() > kKept) chunks_.resize(kKept);
  chunk_ = 0;
  used_ = 0;
}

const msgpack::object* FrameReader::read(std::string_view frame, const ReadLimits& limits,
                                         std::size_t& used) {
  const auto* begin = reinterpret_cast<const unsigned char*>(frame.data());
  p_ = begin;
  end_ = begin + frame.size();
  lim_ = limits;
  lim_.array = std::min(lim_.array, kMaxElements); // a run of nodes never spans two chunks
  lim_.map = std::min(lim_.map, kMaxElements);
  error_ = "";
  objects_.reset();
  entries_.reset();
  root_ = msgpack::object();
  used = 0;
  if (!parse(root_, 1)) return nullptr;
  used = static_cast<std::size_t>(p_ - begin);
  return &root_;
}

bool FrameReader::number(std::size_t n, std::uint64_t& out) {
  if (static_cast<std::size_t>(end_ - p_) < n) return fail("insufficient bytes");
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < n; ++i) v = (v << 8) | p_[i];
  p_ += n;
  out = v;
  return true;
}

bool FrameReader::parse(msgpack::object& o, std::size_t depth) {
  if (p_ == end_) return fail("insufficient bytes");
  const unsigned c = *p_++;
  if (c <= 0x7f) {
    o.type = msgpack::type::POSITIVE_INTEGER;
    o.via.u64 = c;
    return true;
  }
  if (c >= 0xe0) {
    o.type = msgpack::type::NEGATIVE_INTEGER;
    o.via.i64 = static_cast<std::int8_t>(c);
    return true;
  }
  if (c >= 0xa0 && c <= 0xbf) return str(o, c & 0x1f);
  if (c >= 0x90 && c <= 0x9f) return array(o, c & 0x0f, depth);
  if (c >= 0x80 && c <= 0x8f) return map(o, c & 0x0f, depth);
  std::uint64_t v = 0;
  switch (c) {
    case 0xc0: o.type = msgpack::type::NIL; return true;
    case 0xc2:
    case 0xc3:
      o.type = msgpack::type::BOOLEAN;
      o.via.boolean = c == 0xc3;
      return true;
    case 0xc4: // bin 8, 16, 32
    case 0xc5:
    case 0xc6: return number(std::size_t{1} << (c - 0xc4), v) && bin(o, v);
    case 0xc7: // ext 8, 16, 32: the length of the data, without the type byte
    case 0xc8:
    case 0xc9: return number(std::size_t{1} << (c - 0xc7), v) && ext(o, v + 1);
    case 0xca: { // float 32
      if (!number(4, v)) return false;
      float f = 0;
      const auto bits = static_cast<std::uint32_t>(v);
      std::memcpy(&f, &bits, sizeof f);
      o.type = msgpack::type::FLOAT32;
      o.via.f64 = f;
      return true;
    }
    case 0xcb: { // float 64
      if (!number(8, v)) return false;
      double d = 0;
      std::memcpy(&d, &v, sizeof d);
      o.type = msgpack::type::FLOAT64;
      o.via.f64 = d;
      return true;
    }
    case 0xcc: // uint 8, 16, 32, 64
    case 0xcd:
    case 0xce:
    case 0xcf:
      if (!number(std::size_t{1} << (c - 0xcc), v)) return false;
      o.type = msgpack::type::POSITIVE_INTEGER;
      o.via.u64 = v;
      return true;
    case 0xd0: // int 8, 16, 32, 64: msgpack-c makes a value >= 0 a positive integer
    case 0xd1:
    case 0xd2:
    case 0xd3: {
      const std::size_t n = std::size_t{1} << (c - 0xd0);
      if (!number(n, v)) return false;
      const unsigned shift = static_cast<unsigned>(64 - 8 * n); // sign-extend from n bytes
      const auto s = static_cast<std::int64_t>(v << shift) >> shift;
      if (s >= 0) {
        o.type = msgpack::type::POSITIVE_INTEGER;
        o.via.u64 = static_cast<std::uint64_t>(s);
      } else {
        o.type = msgpack::type::NEGATIVE_INTEGER;
        o.via.i64 = s;
      }
      return true;
    }
    case 0xd4: // fixext 1, 2, 4, 8, 16
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8: return ext(o, (std::size_t{1} << (c - 0xd4)) + 1);
    case 0xd9: // str 8, 16, 32
    case 0xda:
    case 0xdb: return number(std::size_t{1} << (c - 0xd9), v) && str(o, v);
    case 0xdc: // array 16, 32
    case 0xdd: return number(std::size_t{2} << (c - 0xdc), v) && array(o, v, depth);
    case 0xde: // map 16, 32
    case 0xdf: return number(std::size_t{2} << (c - 0xde), v) && map(o, v, depth);
    default: // 0xc1, never used
      return fail("parse error");
  }
}

bool FrameReader::take(std::size_t n, std::size_t limit, const char* overflow, const char*& at) {
  if (static_cast<std::size_t>(end_ - p_) < n) return fail("insufficient bytes");
  if (n > limit) return fail(overflow);
  at = reinterpret_cast<const char*>(p_);
  p_ += n;
  return true;
}

bool FrameReader::str(msgpack::object& o, std::size_t n) {
  o.type = msgpack::type::STR;
  o.via.str.size = static_cast<std::uint32_t>(n);
  return take(n, lim_.str, "str size overflow", o.via.str.ptr);
}

bool FrameReader::bin(msgpack::object& o, std::size_t n) {
  o.type = msgpack::type::BIN;
  o.via.bin.size = static_cast<std::uint32_t>(n);
  return take(n, lim_.bin, "bin size overflow", o.via.bin.ptr);
}

bool FrameReader::ext(msgpack::object& o, std::size_t n) {
  // `n` counts the type byte, as msgpack-c's limit does; ptr is at the type byte.
  o.type = msgpack::type::EXT;
  o.via.ext.size = static_cast<std::uint32_t>(n - 1);
  return take(n, lim_.ext, "ext size overflow", o.via.ext.ptr);
}

bool FrameReader::open(std::size_t n, std::size_t limit, const char* overflow, std::size_t depth,
                       std::size_t bytes_each) {
  if (n > limit) return fail(overflow);
  if (depth > lim_.depth) return fail("depth size overflow");
  // Every element takes a byte at least: a header announcing more than the frame holds is cut.
  if (n > static_cast<std::size_t>(end_ - p_) / bytes_each) return fail("insufficient bytes");
  return true;
}

bool FrameReader::array(msgpack::object& o, std::size_t n, std::size_t depth) {
  if (!open(n, lim_.array, "array size overflow", depth, 1)) return false;
  o.type = msgpack::type::ARRAY;
  o.via.array = {static_cast<std::uint32_t>(n), n == 0 ? nullptr : objects_.take(n)};
  return std::all_of(o.via.array.ptr, o.via.array.ptr + n,
                     [&](msgpack::object& e) { return parse(e, depth + 1); });
}

bool FrameReader::map(msgpack::object& o, std::size_t n, std::size_t depth) {
  if (!open(n, lim_.map, "map size overflow", depth, 2)) return false;
  o.type = msgpack::type::MAP;
  o.via.map = {static_cast<std::uint32_t>(n), n == 0 ? nullptr : entries_.take(n)};
  return std::all_of(o.via.map.ptr, o.via.map.ptr + n, [&](msgpack::object_kv& e) {
    return parse(e.key, depth + 1) && parse(e.val, depth + 1);
  });
}

} // namespace trawl::proto
