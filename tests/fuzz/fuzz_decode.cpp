// libFuzzer target: proto::decode on arbitrary bytes. Decoding must never crash, throw, or read
// out of bounds (ASan/UBSan); whatever it accepts must respect the protocol's bounds and survive
// an encode/decode round trip unchanged.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <variant>

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

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view frame(reinterpret_cast<const char*>(data), size);
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
