// libFuzzer target: proto::decode on arbitrary bytes. Decoding must never crash, throw, or read
// out of bounds (ASan/UBSan); whatever it accepts must respect the protocol's bounds and survive
// an encode/decode round trip unchanged. The decoder's FrameReader must accept exactly what
// msgpack::unpack accepts with the same limits, and give the same tree and length.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <variant>

#include <cstring>
#include <msgpack.hpp>

#include "proto/frame_reader.hpp"
#include "proto/messages.hpp"

namespace {

using namespace trawl::proto;

void require(bool ok) {
  if (!ok) std::abort();
}

template <class... Ts> struct Overload : Ts... { using Ts::operator()...; };
template <class... Ts> Overload(Ts...) -> Overload<Ts...>;

void check_bounds(const Message& m) {
  std::visit(Overload{
                 [](const Tasks& b) {
                   require(!b.items.empty() && b.items.size() <= kMaxBatchItems);
                   for (const auto& t : b.items) check_bounds(t);
                 },
                 [](const Results& b) {
                   require(!b.items.empty() && b.items.size() <= kMaxBatchItems);
                   for (const auto& r : b.items) check_bounds(r);
                 },
                 [](const Link& l) { require(!l.url.empty() && l.url.size() <= kMaxUrlBytes); },
                 [](const LinksEnd&) {},
                 [](const Task& t) {
                   require(!t.url.empty() && t.url.size() <= kMaxUrlBytes);
                   require(!t.name.empty() && t.name.size() <= kMaxNameBytes);
                 },
                 [](const Result& r) {
                   require(r.url.size() <= kMaxUrlBytes && r.path.size() <= kMaxPathBytes);
                   require(r.node.size() <= kMaxNodeBytes && r.detail.size() <= kMaxDetailBytes);
                   require(static_cast<unsigned>(r.reason) <= kReasonMax);
                   require((r.status == Status::done) == (r.reason == Reason::none));
                 },
                 [](const auto&) {},
             },
             m);
}

// The same tree: types, values (floats bit for bit, so NaN equals itself), strings, bins and exts
// byte for byte, containers element by element.
bool same(const msgpack::object& a, const msgpack::object& b) {
  if (a.type != b.type) return false;
  switch (a.type) {
    case msgpack::type::NIL: return true;
    case msgpack::type::BOOLEAN: return a.via.boolean == b.via.boolean;
    case msgpack::type::POSITIVE_INTEGER: return a.via.u64 == b.via.u64;
    case msgpack::type::NEGATIVE_INTEGER: return a.via.i64 == b.via.i64;
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: return std::memcmp(&a.via.f64, &b.via.f64, sizeof a.via.f64) == 0;
    case msgpack::type::STR:
      return a.via.str.size == b.via.str.size &&
             (a.via.str.size == 0 ||
              std::memcmp(a.via.str.ptr, b.via.str.ptr, a.via.str.size) == 0);
    case msgpack::type::BIN:
      return a.via.bin.size == b.via.bin.size &&
             (a.via.bin.size == 0 ||
              std::memcmp(a.via.bin.ptr, b.via.bin.ptr, a.via.bin.size) == 0);
    case msgpack::type::EXT:
      return a.via.ext.size == b.via.ext.size &&
             std::memcmp(a.via.ext.ptr, b.via.ext.ptr, a.via.ext.size + 1) == 0;
    case msgpack::type::ARRAY:
      if (a.via.array.size != b.via.array.size) return false;
      for (std::uint32_t i = 0; i < a.via.array.size; ++i)
        if (!same(a.via.array.ptr[i], b.via.array.ptr[i])) return false;
      return true;
    case msgpack::type::MAP:
      if (a.via.map.size != b.via.map.size) return false;
      for (std::uint32_t i = 0; i < a.via.map.size; ++i)
        if (!same(a.via.map.ptr[i].key, b.via.map.ptr[i].key) ||
            !same(a.via.map.ptr[i].val, b.via.map.ptr[i].val))
          return false;
      return true;
  }
  return false;
}

bool in_frame(msgpack::type::object_type, std::size_t, void*) { return true; }

// FrameReader against msgpack::unpack, with the decoder's limits and a few tighter ones.
void compare_readers(std::string_view frame) {
  static const trawl::proto::ReadLimits kLimits[] = {
      {kMaxReadyIds, kMaxMapEntries, kMaxUrlBytes, 0, 0, 3},
      {4, 3, 5, 2, 3, 2},
  };
  thread_local trawl::proto::FrameReader reader;
  for (const auto& l : kLimits) {
    const msgpack::unpack_limit limit(l.array, l.map, l.str, l.bin, l.ext, l.depth);
    std::size_t used = 0;
    const msgpack::object* mine = reader.read(frame, l, used);
    std::size_t offset = 0;
    try {
      const msgpack::object_handle oh =
          msgpack::unpack(frame.data(), frame.size(), offset, &in_frame, nullptr, limit);
      require(mine != nullptr && used == offset && same(*mine, oh.get()));
    } catch (const std::exception&) {
      require(mine == nullptr);
    }
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view frame(reinterpret_cast<const char*>(data), size);
  compare_readers(frame);
  auto decoded = decode(frame);
  const auto* m = std::get_if<Message>(&decoded);
  if (m == nullptr) return 0;
  check_bounds(*m);
  const std::string again = encode(*m);
  require(again.size() <= kMaxFrameBytes);
  auto round = decode(again);
  const auto* m2 = std::get_if<Message>(&round);
  require(m2 != nullptr && *m2 == *m);
  return 0;
}
