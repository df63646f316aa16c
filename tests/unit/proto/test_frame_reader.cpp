// proto::FrameReader against msgpack::unpack on frames built to reach each of its branches: every
// type byte, each limit at and over its bound, truncated headers and bodies, nesting at the depth
// limit and over it. tests/fuzz/fuzz_decode.cpp makes the same comparison on arbitrary bytes.
#include <catch2/catch.hpp>

#include <cstring>
#include <msgpack.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "proto/frame_reader.hpp"

namespace {

using trawl::proto::FrameReader;
using trawl::proto::ReadLimits;

std::string bytes(std::initializer_list<int> b) {
  std::string s;
  for (int c : b) s.push_back(static_cast<char>(c));
  return s;
}

bool in_frame(msgpack::type::object_type, std::size_t, void*) { return true; }

// What msgpack::unpack makes of `frame`, as text (msgpack's own printer) and bytes used; or the
// error it throws.
struct Outcome {
  bool ok = false;
  std::string text; // the tree, or the error
  std::size_t used = 0;
};

Outcome by_msgpack(const std::string& frame, const ReadLimits& l) {
  Outcome o;
  try {
    const msgpack::unpack_limit limit(l.array, l.map, l.str, l.bin, l.ext, l.depth);
    const auto oh = msgpack::unpack(frame.data(), frame.size(), o.used, &in_frame, nullptr, limit);
    std::ostringstream text;
    text << oh.get();
    o.ok = true;
    o.text = text.str();
  } catch (const std::exception& e) {
    o.text = e.what();
  }
  return o;
}

Outcome by_reader(FrameReader& r, const std::string& frame, const ReadLimits& l) {
  Outcome o;
  const msgpack::object* obj = r.read(frame, l, o.used);
  if (obj == nullptr) {
    o.text = r.error();
    return o;
  }
  std::ostringstream text;
  text << *obj;
  o.ok = true;
  o.text = text.str();
  return o;
}

const ReadLimits kDecoder{4096, 32, 16384, 0, 0, 3};
const ReadLimits kTight{4, 3, 5, 2, 3, 2};

} // namespace

TEST_CASE("FrameReader accepts, refuses and reads exactly as msgpack::unpack", "[proto]") {
  std::vector<std::string> frames = {
      bytes({0x00}),
      bytes({0x7f}),
      bytes({0xe0}),
      bytes({0xff}),
      bytes({0xc0}),
      bytes({0xc2}),
      bytes({0xc3}),
      bytes({0xc1}),
      bytes({}),
      // unsigned and signed integers of every width, negative and not
      bytes({0xcc, 0xff}),
      bytes({0xcd, 0x12, 0x34}),
      bytes({0xce, 0xff, 0xff, 0xff, 0xff}),
      bytes({0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}),
      bytes({0xd0, 0x80}),
      bytes({0xd0, 0x7f}),
      bytes({0xd1, 0x80, 0x00}),
      bytes({0xd2, 0xff, 0xff, 0xff, 0xfe}),
      bytes({0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0}),
      bytes({0xd3, 0x00, 0, 0, 0, 0, 0, 0, 5}),
      bytes({0xcd, 0x12}),
      bytes({0xd3, 0x80, 0}),
      // floats
      bytes({0xca, 0x3f, 0x80, 0, 0}),
      bytes({0xcb, 0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18}),
      bytes({0xca, 0x3f}),
      // strings: fix, 8, 16, 32, at and over the tight limit, cut short
      bytes({0xa0}),
      bytes({0xa3, 'a', 'b', 'c'}),
      bytes({0xa5, 'a', 'b', 'c', 'd', 'e'}),
      bytes({0xa6, 'a', 'b', 'c', 'd', 'e', 'f'}),
      bytes({0xa3, 'a'}),
      bytes({0xd9, 2, 'h', 'i'}),
      bytes({0xda, 0, 2, 'h', 'i'}),
      bytes({0xdb, 0, 0, 0, 2, 'h', 'i'}),
      bytes({0xdb, 0xff, 0xff}),
      // bin and ext (the decoder allows none, the tight limits a little)
      bytes({0xc4, 0}),
      bytes({0xc4, 2, 1, 2}),
      bytes({0xc4, 3, 1, 2, 3}),
      bytes({0xc5, 0, 1, 9}),
      bytes({0xc6, 0, 0, 0, 1, 9}),
      bytes({0xd4, 1, 2}),
      bytes({0xd5, 1, 2, 3}),
      bytes({0xd6, 1, 2, 3, 4, 5}),
      bytes({0xc7, 1, 7, 9}),
      bytes({0xc7, 2, 7, 9, 9}),
      bytes({0xc8, 0, 0, 7}),
      bytes({0xc9, 0, 0, 0, 0, 7}),
      bytes({0xd7, 1}),
      bytes({0xd8, 1}),
      // arrays and maps: empty, fix, 16, 32, at and over the limits, cut short
      bytes({0x90}),
      bytes({0x80}),
      bytes({0x93, 1, 2, 3}),
      bytes({0x94, 1, 2, 3, 4}),
      bytes({0x95, 1, 2, 3, 4, 5}),
      bytes({0x93, 1, 2}),
      bytes({0xdc, 0, 2, 1, 2}),
      bytes({0xdd, 0, 0, 0, 1, 7}),
      bytes({0xdd, 0xff, 0xff, 0xff, 0xff}),
      bytes({0x82, 0xa1, 'a', 1, 0xa1, 'b', 2}),
      bytes({0x83, 1, 1, 2, 2, 3, 3}),
      bytes({0x84, 1, 1, 2, 2, 3, 3, 4, 4}),
      bytes({0xde, 0, 1, 0xa1, 'k', 0xc0}),
      bytes({0xdf, 0, 0, 0, 1, 1, 2}),
      bytes({0x81, 0xa1, 'k'}),
      bytes({0x82, 1, 1, 2}),
      // nesting: at the tight limit (2), over it, at the decoder's (3), over it; a key that is a
      // map
      bytes({0x91, 0x90}),
      bytes({0x91, 0x91, 0x90}),
      bytes({0x81, 0xa1, 'i', 0x91, 0x80}),
      bytes({0x81, 0xa1, 'i', 0x91, 0x81, 1, 0x90}),
      bytes({0x81, 0x80, 1}),
      bytes({0x81, 0x81, 1, 2, 3}),
      // one object and trailing bytes
      bytes({0x01, 0x02, 0x03}),
      bytes({0x90, 0xc1}),
  };
  // More than a slab's chunk of nodes in one frame, and an array of the decoder's largest size.
  std::string big = bytes({0x81, 0xa1, 'a', 0xdc, 0x10, 0x00});
  big.append(4096, '\x01');
  frames.push_back(big);
  std::string wide = bytes({0xdf, 0, 0, 0, 32});
  for (int i = 0; i < 32; ++i) {
    wide += bytes({0xa2, 'k', 'a' + i % 26, 0xdc, 0x01, 0x00});
    wide.append(256, '\x7f');
  }
  frames.push_back(wide);

  FrameReader reader; // one reader for all: each read starts afresh
  for (const ReadLimits* l : {&kDecoder, &kTight}) {
    for (const auto& f : frames) {
      const Outcome want = by_msgpack(f, *l);
      const Outcome got = by_reader(reader, f, *l);
      INFO("frame of " << f.size() << " bytes, first byte " << (f.empty() ? -1 : (f[0] & 0xff))
                       << ", depth limit " << l->depth << ": msgpack says " << want.text);
      REQUIRE(got.ok == want.ok);
      if (want.ok) {
        CHECK(got.text == want.text);
        CHECK(got.used == want.used);
      } else {
        CHECK(got.text == want.text); // the same words as msgpack's exception
      }
    }
  }
}

TEST_CASE("FrameReader leaves strings in the frame and keeps a tree until the next read",
          "[proto]") {
  FrameReader reader;
  const std::string frame = bytes({0x82, 0xa1, 'u', 0xa3, 'x', 'y', 'z', 0xa1, 'n', 0x92, 1, 2});
  std::size_t used = 0;
  const msgpack::object* o = reader.read(frame, kDecoder, used);
  REQUIRE(o != nullptr);
  CHECK(used == frame.size());
  REQUIRE(o->type == msgpack::type::MAP);
  REQUIRE(o->via.map.size == 2);
  const auto& u = o->via.map.ptr[0].val;
  REQUIRE(u.type == msgpack::type::STR);
  CHECK(u.via.str.ptr == frame.data() + 4); // no copy
  CHECK(std::string(u.via.str.ptr, u.via.str.size) == "xyz");
  const auto& n = o->via.map.ptr[1].val;
  REQUIRE(n.type == msgpack::type::ARRAY);
  CHECK(n.via.array.size == 2);
  CHECK(n.via.array.ptr[1].via.u64 == 2);
  // A refused frame after an accepted one, then an accepted one again.
  CHECK(reader.read(bytes({0x92, 1}), kDecoder, used) == nullptr);
  CHECK(std::string(reader.error()) == "insufficient bytes");
  o = reader.read(bytes({0x91, 0x05}), kDecoder, used);
  REQUIRE(o != nullptr);
  CHECK(o->via.array.ptr[0].via.u64 == 5);
}
