// The protocol additions for politeness and output layout: Task's optional "dir" and the
// downloader's Throttle message.
#include <catch2/catch.hpp>
#include <msgpack.hpp>

#include "proto/messages.hpp"
#include "proto/version.hpp"

using namespace trawl::proto;

namespace {

Message round_trip(const Message& m) {
  auto d = decode(encode(m));
  if (auto* err = std::get_if<DecodeError>(&d)) FAIL("decode failed: " << err->what);
  return std::get<Message>(d);
}

template <class F> std::string frame(std::uint32_t entries, F&& body) {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk(buf);
  pk.pack_map(entries);
  body(pk);
  return std::string(buf.data(), buf.size());
}

void put(msgpack::packer<msgpack::sbuffer>& pk, std::string_view k) {
  pk.pack_str(static_cast<std::uint32_t>(k.size()));
  pk.pack_str_body(k.data(), static_cast<std::uint32_t>(k.size()));
}

} // namespace

TEST_CASE("a task with a directory round-trips, without one its encoding is unchanged", "[proto]") {
  const Task sharded{7, "http://x.test/a.jpg", "a.jpg", 1, "0003"};
  CHECK(std::get<Task>(round_trip(sharded)) == sharded);
  const Task flat{7, "http://x.test/a.jpg", "a.jpg", 1, {}};
  const std::string bytes = encode(flat);
  CHECK(bytes.find("dir") == std::string::npos); // older downloaders see the same frame as before
  CHECK(std::get<Task>(round_trip(flat)).dir.empty());
  CHECK(encode(sharded).size() == bytes.size() + 4 + 5); // "dir" key + "0003" value
}

TEST_CASE("throttle round-trips and is validated", "[proto]") {
  const Throttle t{42, 2000};
  CHECK(std::get<Throttle>(round_trip(t)) == t);
  CHECK(type_name(Message{t}) == "throttle");

  auto bad = [](auto&& body, std::uint32_t n) {
    auto d = decode(frame(n, body));
    REQUIRE(std::holds_alternative<DecodeError>(d));
    return std::get<DecodeError>(d).what;
  };
  using Pk = msgpack::packer<msgpack::sbuffer>;
  // wait above 32 bits
  CHECK_THAT(bad([](Pk& pk) {
               put(pk, "v"); pk.pack_uint32(kProtocolVersion);
               put(pk, "t"); put(pk, "throttle");
               put(pk, "id"); pk.pack_uint64(1);
               put(pk, "ms"); pk.pack_uint64(1ULL << 33);
             }, 4),
             Catch::Contains("ms"));
  // id missing
  CHECK_THAT(bad([](Pk& pk) {
               put(pk, "v"); pk.pack_uint32(kProtocolVersion);
               put(pk, "t"); put(pk, "throttle");
               put(pk, "ms"); pk.pack_uint32(5);
             }, 3),
             Catch::Contains("id"));
  // a directory name that is too long
  CHECK_THAT(bad([](Pk& pk) {
               put(pk, "v"); pk.pack_uint32(kProtocolVersion);
               put(pk, "t"); put(pk, "task");
               put(pk, "id"); pk.pack_uint64(1);
               put(pk, "url"); put(pk, "http://x.test/a");
               put(pk, "name"); put(pk, "a");
               put(pk, "att"); pk.pack_uint32(1);
               put(pk, "dir"); put(pk, std::string(kMaxNameBytes + 1, 'd'));
             }, 7),
             Catch::Contains("dir"));
}
