// BodyGather (downloader/transfer.hpp): libcurl's pieces of a body gathered into writes of up to
// BodyGather::kBytes, one buffer for every transfer of a loop. Recording sinks stand in for the
// transfers: each keeps the bytes and the size of every write it was asked for, and can be told
// to fail. End to end, every download test goes through it (the downloader sets it on every
// transfer) and checks each byte of each file.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <string>
#include <unistd.h>
#include <vector>

#include "downloader/transfer.hpp"
#include "tests/unit/downloader/harness.hpp"

using namespace trawl::dltest;
using trawl::downloader::BodyGather;
using trawl::downloader::Finished;
using trawl::downloader::TempFile;
using trawl::downloader::Transfer;

namespace {

constexpr std::size_t kPiece = 16 * 1024; // what libcurl 7.88 hands over at most

class Recorder final : public BodyGather::Sink {
public:
  bool write_gathered(const char* data, std::size_t n) override {
    writes.push_back(n);
    if (fail) return false;
    bytes.append(data, n);
    return true;
  }
  std::string bytes;
  std::vector<std::size_t> writes;
  bool fail = false;
};

// `n` bytes that tell their offset apart: a misplaced or reordered piece shows.
std::string pattern(std::size_t n, char salt) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 31 + (i >> 8) + salt) & 0xff);
  return s;
}

} // namespace

TEST_CASE("BodyGather writes libcurl's pieces in writes of up to kBytes, in order",
          "[downloader][gather]") {
  BodyGather g;
  Recorder a;
  const std::string body = pattern(300000, 1); // 18 pieces and a bit
  for (std::size_t at = 0; at < body.size(); at += kPiece) {
    const std::size_t n = std::min(kPiece, body.size() - at);
    REQUIRE(g.add(a, body.data() + at, n));
    CHECK(g.held() <= BodyGather::kBytes);
  }
  CHECK(a.bytes.size() + g.held() == body.size());
  REQUIRE(g.flush());
  CHECK(g.held() == 0);
  CHECK(a.bytes == body);
  // 300,000 bytes: four full writes of 64 KiB, then the rest (37,856) at the flush.
  CHECK(a.writes == std::vector<std::size_t>{65536, 65536, 65536, 65536, 37856});
  CHECK(g.writes() == 5);
  CHECK(g.flush()); // nothing held: no write
  CHECK(a.writes.size() == 5);
}

TEST_CASE("BodyGather writes one transfer's bytes before another's come", "[downloader][gather]") {
  BodyGather g;
  Recorder a, b;
  const std::string pa = pattern(3 * kPiece, 2), pb = pattern(2 * kPiece + 7, 3);
  REQUIRE(g.add(a, pa.data(), kPiece));
  REQUIRE(g.add(a, pa.data() + kPiece, kPiece));
  CHECK(a.writes.empty());
  REQUIRE(g.add(b, pb.data(), kPiece)); // a's two pieces go first, in one write
  CHECK(a.writes == std::vector<std::size_t>{2 * kPiece});
  REQUIRE(g.add(a, pa.data() + 2 * kPiece, kPiece)); // then b's one
  CHECK(b.writes == std::vector<std::size_t>{kPiece});
  REQUIRE(g.add(b, pb.data() + kPiece, kPiece + 7));
  // flush(s) writes only what is s's.
  CHECK(g.flush(a));
  CHECK(a.bytes == pa);
  CHECK(g.held() == kPiece + 7);
  CHECK(g.flush(b));
  CHECK(b.bytes == pb);
  CHECK(g.held() == 0);
}

TEST_CASE("BodyGather forgets a transfer's bytes, and passes large pieces straight through",
          "[downloader][gather]") {
  BodyGather g;
  Recorder a, b;
  const std::string p = pattern(BodyGather::kBytes + 10, 4);
  REQUIRE(g.add(a, p.data(), 100));
  g.forget(b); // not b's: kept
  CHECK(g.held() == 100);
  g.forget(a);
  CHECK(g.held() == 0);
  CHECK(g.flush());
  CHECK(a.writes.empty()); // its file went: nothing written for it
  // A piece of kBytes or more is written at once, after what was held of the same transfer.
  REQUIRE(g.add(b, p.data(), 10));
  REQUIRE(g.add(b, p.data() + 10, BodyGather::kBytes));
  CHECK(b.writes == std::vector<std::size_t>{10, BodyGather::kBytes});
  CHECK(b.bytes == p);
  CHECK(g.held() == 0);
}

TEST_CASE("BodyGather reports a failed write to its own transfer only", "[downloader][gather]") {
  BodyGather g;
  Recorder a, b;
  const std::string p = pattern(5 * kPiece, 5);
  a.fail = true;
  REQUIRE(g.add(a, p.data(), kPiece)); // held: nothing written yet
  // b's bytes write a's first; a's failure is a's (kept by it), not b's.
  CHECK(g.add(b, p.data(), kPiece));
  CHECK(a.writes == std::vector<std::size_t>{kPiece});
  // a's own next bytes that need room see its write fail.
  CHECK(g.flush(b));
  for (int i = 0; i < 4; ++i) REQUIRE(g.add(a, p.data() + i * kPiece, kPiece));
  CHECK_FALSE(g.add(a, p.data() + 4 * kPiece, kPiece)); // 4 held, a fifth: the write fails
  CHECK(g.held() == 0);
  // flush() says so too.
  REQUIRE(g.add(a, p.data(), kPiece));
  CHECK_FALSE(g.flush());
  CHECK(b.bytes == p.substr(0, kPiece));
}

TEST_CASE("a transfer through a BodyGather writes its body whole, in fewer writes than libcurl's "
          "pieces",
          "[downloader][gather]") {
  TempDir tmp;
  Server server;
  const std::string body = pattern_body(1000000, 7); // announced: written as it comes
  serve_body(server, "/f", body);
  trawl::downloader::curl_global_once();
  BodyGather g;
  Transfer t(EVP_sha256());
  t.set_gather(&g);
  const std::string part = (tmp.path / ".trawl-g.part").string();
  REQUIRE(t.begin(Task{1, server.url("/f"), "f.bin", 1}, 1, transfer_settings(), part).empty());
  const std::string final_path = (tmp.path / "f.bin").string();
  const Finished f = t.finish(curl_easy_perform(t.easy().get()), final_path);
  CHECK(f.reason == Reason::none);
  CHECK(f.bytes == body.size());
  CHECK(f.sha256 == sha256_hex(body));
  CHECK(read_file(final_path) == body);
  CHECK(g.held() == 0); // finishing wrote the last bytes
  // libcurl hands over at most 16 KiB at a time (62 pieces or more here); each gathered write
  // but the last holds more than kBytes - 16 KiB.
  INFO("writes: " << g.writes());
  CHECK(g.writes() >= 1);
  CHECK(g.writes() <= body.size() / (BodyGather::kBytes - kPiece) + 1);
}

TEST_CASE("a transfer through a BodyGather whose write fails ends as disk, with the error, and "
          "leaves no file",
          "[downloader][gather]") {
  TempDir tmp;
  Server server;
  const std::string body = pattern_body(300000, 8);
  serve_body(server, "/f", body);
  trawl::downloader::curl_global_once();
  // /dev/full as the body's file: every write fails with ENOSPC.
  const int fd = ::open("/dev/full", O_WRONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  const std::string never = (tmp.path / ".trawl-never.part").string(); // not created
  BodyGather g;
  Transfer t(EVP_sha256());
  t.set_gather(&g);
  REQUIRE(t.begin(Task{1, server.url("/f"), "f.bin", 1}, 1, transfer_settings(), "", std::nullopt,
                  TempFile(fd, never))
              .empty());
  const std::string final_path = (tmp.path / "f.bin").string();
  const CURLcode code = curl_easy_perform(t.easy().get());
  CHECK(code == CURLE_WRITE_ERROR); // the first full gather failed: the next piece stopped it
  const Finished f = t.finish(code, final_path);
  CHECK(f.reason == Reason::disk);
  CHECK_THAT(f.detail, Catch::Contains("No space left on device"));
  CHECK(f.sha256.empty());
  CHECK_FALSE(fs::exists(final_path));
  CHECK(g.held() == 0);
}
