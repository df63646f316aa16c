// proto::decode against hostile bytes: headers that claim gigabytes, every truncation and every
// single-bit flip of valid frames, and deterministic random frames. Decoding never throws (it is
// noexcept, so a throw would terminate) and whatever it accepts survives a round trip.
#include <catch2/catch.hpp>

#include <random>
#include <string>
#include <variant>

#include "proto/messages.hpp"
#include "proto/version.hpp"

using namespace trawl::proto;

namespace {

std::vector<Message> samples() {
  Result done;
  done.id = 3;
  done.url = "http://h/x.jpg";
  done.path = "/out/x.jpg";
  done.status = Status::done;
  done.http_code = 200;
  done.bytes = 1234;
  done.sha256 = std::string(64, 'a');
  done.node = "n1";
  done.reason = Reason::none;
  Result failed;
  failed.id = 4;
  failed.url = "http://h/y.jpg";
  failed.reason = Reason::http_client;
  failed.detail = "HTTP 404";
  Ready ready;
  ready.node = "n1";
  ready.capacity = 68;
  Job job;
  job.started_unix_ms = 1700000000000;
  job.total = 5;
  Tasks tasks{{Task{7, "http://h/b.png", "b.png", 2}, Task{8, "http://h/c.png", "c.png", 1}}};
  Results results{{done, failed}};
  return {Link{"http://h/a.jpg"},
          LinksEnd{9},
          Task{7, "http://h/b.png", "b.png", 2},
          done,
          failed,
          job,
          ready,
          tasks,
          results};
}

bool decodes(std::string_view frame) {
  return std::holds_alternative<Message>(decode(frame));
}

// Whatever decodes must encode back to something that decodes to the same message.
void check_round_trip(std::string_view frame) {
  auto d = decode(frame);
  if (auto* m = std::get_if<Message>(&d)) {
    auto again = decode(encode(*m));
    REQUIRE(std::holds_alternative<Message>(again));
    CHECK(std::get<Message>(again) == *m);
  }
}

} // namespace

TEST_CASE("decode refuses five-byte headers that claim gigabytes", "[proto][hostile]") {
  using namespace std::string_literals;
  const char version = static_cast<char>(kProtocolVersion);
  const std::string claims[] = {"\xdd\xff\xff\xff\xff"s, "\xdf\xff\xff\xff\xff"s,
                                "\xdb\xff\xff\xff\xff"s, "\xc6\xff\xff\xff\xff"s,
                                "\xc9\xff\xff\xff\xff\x01"s, "\xdc\xff\xff"s, "\xde\xff\xff"s};
  for (const auto& c : claims) {
    INFO("header bytes: " << c.size());
    CHECK_FALSE(decodes(c));
    // As a field's value, and as a key.
    CHECK_FALSE(decodes("\x83\xa1v"s + version + "\xa1t\xa4link\xa3url"s + c));
    CHECK_FALSE(decodes("\x83\xa1v"s + version + "\xa1t\xa4link"s + c + "\x01"s));
    // Followed by as many bytes as a frame may hold: still refused.
    CHECK_FALSE(decodes(c + std::string(kMaxFrameBytes - c.size(), '\x01')));
  }
  CHECK_FALSE(decodes(std::string(kMaxFrameBytes + 1, '\x80')));
}

TEST_CASE("decode refuses every truncation and survives every bit flip", "[proto][hostile]") {
  std::size_t accepted_flips = 0, flips = 0;
  for (const auto& m : samples()) {
    const std::string frame = encode(m);
    INFO("type " << type_name(m));
    REQUIRE(decodes(frame));
    for (std::size_t n = 0; n < frame.size(); ++n) CHECK_FALSE(decodes(frame.substr(0, n)));
    CHECK_FALSE(decodes(frame + '\x00'));
    for (std::size_t i = 0; i < frame.size(); ++i) {
      for (int bit = 0; bit < 8; ++bit) {
        std::string f = frame;
        f[i] = static_cast<char>(f[i] ^ (1 << bit));
        accepted_flips += decodes(f);
        ++flips;
        check_round_trip(f);
      }
    }
  }
  CHECK(flips > 1000);
  CHECK(accepted_flips < flips); // most flips break the frame; the rest still round-trip
}

TEST_CASE("decode survives random frames", "[proto][hostile]") {
  std::mt19937_64 rng(5);
  std::size_t accepted = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string f(rng() % 200, '\0');
    for (auto& c : f) c = static_cast<char>(rng());
    // Half of them start as a plausible map, so the decoder gets past the first byte.
    if (i % 2 == 0 && !f.empty()) f[0] = static_cast<char>(0x80 | (rng() % 16));
    accepted += decodes(f);
    check_round_trip(f);
  }
  CHECK(accepted == 0); // random bytes never make a valid message with "v" and "t"
}

TEST_CASE("decode refuses deep nesting and too many entries", "[proto][hostile]") {
  const std::string version(1, static_cast<char>(kProtocolVersion));
  std::string deep = "\x83\xa1v" + version + "\xa1t\xa4link\xa3url";
  for (int i = 0; i < 1000; ++i) deep += "\x81\xa1k";
  deep += "\x01";
  CHECK_FALSE(decodes(deep));
  // 33 entries: one more than the limit.
  std::string many = "\xde";
  many += static_cast<char>(0);
  many += static_cast<char>(33);
  many += "\xa1v" + version + "\xa1t\xa4link\xa3url\xa8http://x";
  for (int i = 0; i < 30; ++i) many += "\xa1" + std::string(1, static_cast<char>('A' + i)) + "\x01";
  CHECK_FALSE(decodes(many));
  CHECK_FALSE(decodes(std::string("\xc1"))); // a type byte msgpack never uses
}
