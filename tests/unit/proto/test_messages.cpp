#include <catch2/catch.hpp>
#include <msgpack.hpp>
#include <random>

#include "proto/messages.hpp"
#include "proto/version.hpp"
#include "tests/support/messages.hpp"

using namespace trawl::proto;

namespace {

Message round_trip(const Message& m) {
  auto d = decode(encode(m));
  if (auto* err = std::get_if<DecodeError>(&d)) FAIL("decode failed: " << err->what);
  return std::get<Message>(d);
}

std::string error_of(std::string_view frame) {
  auto d = decode(frame);
  REQUIRE(std::holds_alternative<DecodeError>(d));
  return std::get<DecodeError>(d).what;
}

// Packs key/value pairs into a map being built: pairs(pk, "k1", v1, "k2", v2, ...).
template <class Packer> void pairs(Packer&) {}
template <class Packer, class V, class... Rest>
void pairs(Packer& pk, const std::string& key, const V& value, const Rest&... rest) {
  pk.pack(key);
  pk.pack(value);
  pairs(pk, rest...);
}

// Builds a frame by hand, for shapes encode() never produces.
template <class F> std::string frame(std::uint32_t entries, F&& body) {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk(buf);
  pk.pack_map(entries);
  body(pk);
  return std::string(buf.data(), buf.size());
}

Result sample_result() {
  Result r;
  r.id = 42;
  r.url = "https://example.test/a.jpg";
  r.path = "/out/a.jpg";
  r.status = Status::done;
  r.http_code = 200;
  r.bytes = 123456789012ULL;
  r.sha256 = std::string(64, 'a');
  r.ms = 250;
  r.ttfb_ms = 201;
  r.node = "host-1234";
  r.attempt = 2;
  return r;
}

} // namespace

TEST_CASE("every message survives a round trip", "[proto]") {
  CHECK(std::get<Link>(round_trip(Link{"http://x.test/a.jpg"})) == Link{"http://x.test/a.jpg"});
  CHECK(std::get<LinksEnd>(round_trip(LinksEnd{91})).count == 91);
  const Task t{7, "http://x.test/a.jpg", "a.jpg", 3};
  CHECK(std::get<Task>(round_trip(t)) == t);
  const Result r = sample_result();
  CHECK(std::get<Result>(round_trip(r)) == r);
  Result f;
  f.id = 9;
  f.url = "http://x.test/missing.jpg";
  f.status = Status::failed;
  f.http_code = 404;
  f.reason = Reason::http_client;
  f.detail = "HTTP 404";
  CHECK(std::get<Result>(round_trip(f)) == f);
  const Job j = trawl::testsupport::job_of(1764507631000, 91, 80, 3, 10, true);
  CHECK(std::get<Job>(round_trip(j)) == j);
  CHECK(std::get<Job>(round_trip(trawl::testsupport::job_of(5, -1))).total == -1);
  const Ready ready{"host-1", 68, 3, 1000, {7, 8, 900}};
  CHECK(std::get<Ready>(round_trip(ready)) == ready);
  Ready full{"host-2", 5000, 4096, 5000, {}};
  for (std::uint64_t i = 0; i < kMaxReadyIds; ++i) full.ids.push_back(i + 1);
  CHECK(std::get<Ready>(round_trip(full)) == full);
  full.ids.push_back(1);
  CHECK_FALSE(std::holds_alternative<Message>(decode(encode(full))));
}

TEST_CASE("link has a stable golden encoding", "[proto]") {
  const std::string bytes = encode(Link{"a"});
  const std::string golden = "\x83"
                             "\xa1v" +
                             std::string(1, static_cast<char>(kProtocolVersion)) +
                             "\xa1t\xa4link"
                             "\xa3url\xa1"
                             "a";
  CHECK(bytes == golden);
}

TEST_CASE("task has a stable golden encoding", "[proto]") {
  const std::string bytes = encode(Task{1, "u", "n", 2});
  const std::string golden = std::string("\x86\xa1v") + static_cast<char>(kProtocolVersion) +
                             std::string("\xa1t\xa4task\xa2id\x01\xa3url\xa1u\xa4name\xa1n\xa3"
                                         "att\x02");
  CHECK(bytes == golden);
}

TEST_CASE("the version notice is a bare header that a peer of another version cannot decode",
          "[proto]") {
  const std::string notice = encode_version_notice();
  CHECK(notice ==
        std::string("\x82\xa1v") + static_cast<char>(kProtocolVersion) + "\xa1t\xa7version");
  // A peer of the same version never gets one, and would not take it for a message.
  CHECK(error_of(notice) == "unknown message type 'version'");
  // What the next version's notice does here: the error names both versions.
  std::string next = notice;
  next[3] = static_cast<char>(kProtocolVersion + 1);
  CHECK(error_of(next) == "protocol version " + std::to_string(kProtocolVersion + 1) +
                              " (this build speaks " + std::to_string(kProtocolVersion) + ")");
}

TEST_CASE("decode rejects empty, garbage and truncated frames", "[proto]") {
  CHECK_THAT(error_of(""), Catch::Contains("empty"));
  CHECK_THAT(error_of("\xc1"), Catch::Contains("malformed"));
  const std::string full = encode(sample_result());
  for (std::size_t cut = 1; cut < full.size(); ++cut)
    CHECK_FALSE(std::holds_alternative<Message>(decode(std::string_view(full).substr(0, cut))));
  CHECK_THAT(error_of(full + "x"), Catch::Contains("trailing"));
}

TEST_CASE("decode survives random bytes", "[proto]") {
  std::mt19937_64 rng(12345);
  for (int i = 0; i < 20000; ++i) {
    std::string s(1 + rng() % 64, '\0');
    for (auto& c : s) c = static_cast<char>(rng());
    if (i % 2) s[0] = static_cast<char>(0x80 | (rng() % 16)); // start with a small map header
    (void)decode(s);
  }
  SUCCEED("no crash, no exception");
}

TEST_CASE("decode refuses headers that ask for huge allocations", "[proto]") {
  // array32 of 2^32-1 elements, map32 of 2^32-1 entries, str32 of 4 GiB, bin32: five bytes each.
  CHECK_FALSE(std::holds_alternative<Message>(decode(std::string("\xdd\xff\xff\xff\xff", 5))));
  CHECK_FALSE(std::holds_alternative<Message>(decode(std::string("\xdf\xff\xff\xff\xff", 5))));
  CHECK_FALSE(std::holds_alternative<Message>(decode(std::string("\xdb\xff\xff\xff\xff", 5))));
  CHECK_FALSE(std::holds_alternative<Message>(decode(std::string("\xc6\xff\xff\xff\xff", 5))));
  // A map inside a map: deeper than any message.
  auto nested = frame(3, [](auto& pk) {
    pk.pack(std::string("v"));
    pk.pack(kProtocolVersion);
    pk.pack(std::string("t"));
    pk.pack(std::string("link"));
    pk.pack(std::string("url"));
    pk.pack_map(1);
    pk.pack(std::string("a"));
    pk.pack(std::string("b"));
  });
  CHECK_FALSE(std::holds_alternative<Message>(decode(nested)));
  CHECK_THAT(error_of(std::string(kMaxFrameBytes + 1, 'x')), Catch::Contains("exceeds"));
}

TEST_CASE("decode rejects wrong version, type and field types", "[proto]") {
  auto with = [](std::uint64_t version, std::string type, auto&& fields, std::uint32_t n) {
    return frame(2 + n, [&](auto& pk) {
      pk.pack(std::string("v"));
      pk.pack(version);
      pk.pack(std::string("t"));
      pk.pack(type);
      fields(pk);
    });
  };
  auto url_field = [](auto& pk) {
    pk.pack(std::string("url"));
    pk.pack(std::string("http://x.test/a"));
  };
  CHECK_THAT(error_of(with(kProtocolVersion + 1, "link", url_field, 1)),
             Catch::Contains("protocol version " + std::to_string(kProtocolVersion + 1)));
  CHECK_THAT(error_of(with(kProtocolVersion, "bogus", url_field, 1)),
             Catch::Contains("unknown message type"));
  CHECK_THAT(error_of(with(
                 kProtocolVersion, "link", [](auto&) {}, 0)),
             Catch::Contains("'url': missing"));
  CHECK_THAT(error_of(with(
                 kProtocolVersion, "link",
                 [](auto& pk) {
                   pk.pack(std::string("url"));
                   pk.pack(17);
                 },
                 1)),
             Catch::Contains("not a string"));
  CHECK_THAT(error_of(with(
                 kProtocolVersion, "task",
                 [](auto& pk) {
                   pk.pack(std::string("id"));
                   pk.pack(-5);
                   pk.pack(std::string("url"));
                   pk.pack(std::string("http://x.test/a"));
                   pk.pack(std::string("name"));
                   pk.pack(std::string("a"));
                   pk.pack(std::string("att"));
                   pk.pack(1);
                 },
                 4)),
             Catch::Contains("'id'"));
  CHECK_THAT(error_of(frame(1, [](auto& pk) {
               pk.pack(std::string("t"));
               pk.pack(std::string("link"));
             })),
             Catch::Contains("'v': missing"));
  CHECK_THAT(error_of(std::string("\x92\x01\x02", 3)), Catch::Contains("not a map"));
}

TEST_CASE("decode rejects oversized fields", "[proto]") {
  CHECK_FALSE(std::holds_alternative<Message>(decode(encode(Link{std::string(kMaxUrlBytes + 1, 'a')}))));
  CHECK(std::holds_alternative<Message>(decode(encode(Link{std::string(kMaxUrlBytes, 'a')}))));
  CHECK_THAT(error_of(encode(Task{1, "http://x.test/a", std::string(kMaxNameBytes + 1, 'n'), 1})),
             Catch::Contains("'name': too long"));
  Result r = sample_result();
  r.node = std::string(kMaxNodeBytes + 1, 'n');
  CHECK_THAT(error_of(encode(r)), Catch::Contains("'node'"));
}

TEST_CASE("decode enforces result invariants", "[proto]") {
  Result r = sample_result();
  r.sha256 = "not-a-digest";
  CHECK_THAT(error_of(encode(r)), Catch::Contains("sha256"));
  r.sha256 = std::string(63, 'a');
  CHECK_THAT(error_of(encode(r)), Catch::Contains("sha256"));
  r.sha256 = std::string(64, 'A'); // lowercase only
  CHECK_THAT(error_of(encode(r)), Catch::Contains("sha256"));
  // A downloader run with --digest none sends a done result without one (protocol 3).
  r.sha256.clear();
  {
    const auto decoded = decode(encode(r));
    REQUIRE(std::holds_alternative<Message>(decoded));
    const auto* back = std::get_if<Result>(&std::get<Message>(decoded));
    REQUIRE(back != nullptr);
    CHECK(back->status == Status::done);
    CHECK(back->sha256.empty());
  }
  r = sample_result();
  r.status = Status::failed;
  r.reason = Reason::none;
  CHECK_THAT(error_of(encode(r)), Catch::Contains("without a reason"));
  // A reason number from the future is out of range, not a crash.
  auto bad_reason = frame(6, [](auto& pk) {
    pk.pack(std::string("v"));
    pk.pack(kProtocolVersion);
    pk.pack(std::string("t"));
    pk.pack(std::string("result"));
    pk.pack(std::string("id"));
    pk.pack(1);
    pk.pack(std::string("url"));
    pk.pack(std::string("http://x.test/a"));
    pk.pack(std::string("st"));
    pk.pack(1);
    pk.pack(std::string("why"));
    pk.pack(200);
  });
  CHECK_THAT(error_of(bad_reason), Catch::Contains("'why': out of range"));
}

TEST_CASE("unknown keys are ignored for forward compatibility", "[proto]") {
  auto f = frame(4, [](auto& pk) {
    pk.pack(std::string("v"));
    pk.pack(kProtocolVersion);
    pk.pack(std::string("t"));
    pk.pack(std::string("link"));
    pk.pack(std::string("url"));
    pk.pack(std::string("http://x.test/a"));
    pk.pack(std::string("caption"));
    pk.pack(std::string("added by a newer node"));
  });
  auto d = decode(f);
  REQUIRE(std::holds_alternative<Message>(d));
  CHECK(std::get<Link>(std::get<Message>(d)).url == "http://x.test/a");
}

TEST_CASE("fields are found in any order, next to lookalike keys", "[proto]") {
  // A result's fields in the reverse of the encoder's order, with the header last.
  const Result want = sample_result();
  auto reversed = frame(15, [&](auto& pk) {
    pairs(pk, "att", want.attempt, "err", want.detail, "why", static_cast<int>(want.reason), "node",
          want.node, "ttfb", want.ttfb_ms, "ms", want.ms, "sha", want.sha256, "bytes", want.bytes,
          "code", want.http_code, "st", static_cast<int>(want.status), "path", want.path, "url",
          want.url, "id", want.id, "t", std::string("result"), "v", kProtocolVersion);
  });
  auto d = decode(reversed);
  REQUIRE(std::holds_alternative<Message>(d));
  CHECK(std::get<Result>(std::get<Message>(d)) == want);

  // Keys of 8 bytes and more that share their length and first 7 bytes with a field's name, or
  // that are a field's name with a byte more or less, are other keys: ignored, before and after.
  const Job job = trawl::testsupport::job_of(1700000000000, 3, 2, 1, 0, true);
  auto lookalikes = frame(13, [&](auto& pk) {
    pairs(pk, "v", kProtocolVersion, "t", std::string("job"), "completX",
          false, // "complete" is 8 bytes
          "complet", 7, "start", job.started_unix_ms, "total", job.total, "done", job.done,
          "failed", job.failed, "skipped", job.skipped, "complete", true, "completes",
          std::string("x"), std::string("done\0", 5), 99);
    pk.pack(1); // a key that is not a string
    pk.pack(std::string("complete"));
  });
  d = decode(lookalikes);
  REQUIRE(std::holds_alternative<Message>(d));
  CHECK(std::get<Job>(std::get<Message>(d)) == job);
}

TEST_CASE("decode refuses a frame that gives a key twice", "[proto]") {
  auto link_with = [](auto&& extra, std::uint32_t n) {
    return frame(3 + n, [&](auto& pk) {
      pairs(pk, "v", kProtocolVersion, "t", std::string("link"), "url",
            std::string("http://x.test/a"));
      extra(pk);
    });
  };
  // Which of two values counts would depend on the decoder: neither does. Known keys, the
  // header's, an unknown one, a long one, the empty one.
  for (const std::string key : {"url", "v", "caption", "a key longer than seven bytes", ""}) {
    INFO("key '" << key << "'");
    const auto twice = link_with(
        [&](auto& pk) {
          for (int i = 0; i < 2; ++i) {
            pk.pack(key);
            pk.pack(i);
          }
        },
        2);
    CHECK_THAT(error_of(twice), Catch::Contains("field '" + key + "': given twice"));
  }
  // The empty key once is ignored like any unknown key.
  CHECK(std::holds_alternative<Message>(decode(link_with(
      [](auto& pk) {
        pk.pack(std::string());
        pk.pack(1);
      },
      1))));
  // Two long keys that differ after their 7th byte are two keys.
  auto d = decode(link_with(
      [](auto& pk) {
        pk.pack(std::string("caption-a"));
        pk.pack(1);
        pk.pack(std::string("caption-b"));
        pk.pack(2);
      },
      2));
  CHECK(std::holds_alternative<Message>(d));
  // Two keys that are not strings are not looked up: no refusal.
  d = decode(link_with(
      [](auto& pk) {
        pk.pack(5);
        pk.pack(1);
        pk.pack(5);
        pk.pack(2);
      },
      2));
  CHECK(std::holds_alternative<Message>(d));
}

TEST_CASE("reasons have names and one retry decision", "[proto]") {
  CHECK(reason_name(Reason::http_client) == "http-4xx");
  CHECK(is_retryable(Reason::http_server));
  CHECK(is_retryable(Reason::rate_limited));
  CHECK_FALSE(is_retryable(Reason::http_client));
  CHECK_FALSE(is_retryable(Reason::scheme));
  CHECK(reason_for_http(200) == Reason::none);
  CHECK(reason_for_http(404) == Reason::http_client);
  CHECK(reason_for_http(408) == Reason::timeout);
  CHECK(reason_for_http(429) == Reason::rate_limited);
  CHECK(reason_for_http(503) == Reason::http_server);
  CHECK_FALSE(reason_from_number(kReasonMax + 1).has_value());
}
