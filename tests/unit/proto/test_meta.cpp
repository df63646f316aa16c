// The optional "meta" field of link, task and result (docs/PROTOCOL.md).
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

} // namespace

TEST_CASE("meta survives a round trip on link, task and result", "[proto]") {
  const std::string meta = R"({"caption":"a \"cat\", on a mat","id":"aB3dE5f"})";
  const Link l{"http://x.test/a.jpg", meta};
  CHECK(std::get<Link>(round_trip(l)) == l);
  Task t{7, "http://x.test/a.jpg", "a.jpg", 3};
  t.meta = meta;
  CHECK(std::get<Task>(round_trip(t)) == t);
  Result r;
  r.id = 7;
  r.url = t.url;
  r.status = Status::failed;
  r.reason = Reason::http_client;
  r.meta = meta;
  CHECK(std::get<Result>(round_trip(r)) == r);
  const Link biggest{"http://x.test/b.jpg", std::string(kMaxMetaBytes, 'm')};
  CHECK(std::get<Link>(round_trip(biggest)) == biggest);
}

TEST_CASE("meta is not written when empty: frames stay those of a build without it", "[proto]") {
  CHECK(encode(Link{"a", ""}) == encode(Link{"a"}));
  CHECK(encode(Link{"a"}).find("meta") == std::string::npos);
  const std::string with = encode(Link{"a", "{}"});
  const std::string golden = "\x84"
                             "\xa1v" +
                             std::string(1, static_cast<char>(kProtocolVersion)) +
                             "\xa1t\xa4link"
                             "\xa3url\xa1"
                             "a"
                             "\xa4meta\xa2{}";
  CHECK(with == golden);
}

TEST_CASE("decode rejects an oversized or non-string meta", "[proto]") {
  auto make = [](auto&& pack_meta) {
    msgpack::sbuffer buf;
    msgpack::packer<msgpack::sbuffer> pk(buf);
    pk.pack_map(4);
    pk.pack(std::string("v"));
    pk.pack_uint32(kProtocolVersion);
    pk.pack(std::string("t"));
    pk.pack(std::string("link"));
    pk.pack(std::string("url"));
    pk.pack(std::string("http://x.test/a.jpg"));
    pk.pack(std::string("meta"));
    pack_meta(pk);
    return std::string(buf.data(), buf.size());
  };
  auto error_of = [](const std::string& frame) {
    auto d = decode(frame);
    REQUIRE(std::holds_alternative<DecodeError>(d));
    return std::get<DecodeError>(d).what;
  };
  CHECK_THAT(error_of(make([](auto& pk) { pk.pack(std::string(kMaxMetaBytes + 1, 'x')); })),
             Catch::Contains("meta") && Catch::Contains("too long"));
  CHECK_THAT(error_of(make([](auto& pk) { pk.pack_uint32(5); })), Catch::Contains("meta") && Catch::Contains("not a string"));
  CHECK_THAT(error_of(make([](auto& pk) { pk.pack_nil(); })), Catch::Contains("meta"));
  // A task with an oversized meta is dropped too.
  Task t{1, "u", "n", 1};
  t.meta = std::string(kMaxMetaBytes + 1, 'x');
  CHECK(std::holds_alternative<DecodeError>(decode(encode(t))));
}
