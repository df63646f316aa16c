#include <catch2/catch.hpp>
#include <sstream>
#include <string>

#include "fetcher/source.hpp"
#include "fetcher/stream.hpp"
#include "tests/support/sources.hpp"

using namespace trawl::fetcher;

namespace {

std::unique_ptr<std::istream> text(const std::string& s) { return std::make_unique<std::istringstream>(s); }

std::string read_all(std::istream& in) { return read_bounded(in, 1ull << 30, "test"); }

std::string sample_text(std::size_t n) {
  std::string s;
  for (std::size_t i = 0; s.size() < n; ++i) s += "http://h/" + std::to_string(i * 2654435761u % 1000003) + ".jpg\n";
  s.resize(n);
  return s;
}

} // namespace

TEST_CASE("head stream: the first bytes are seen and then read again", "[fetcher][stream]") {
  const std::string data = sample_text(200000);
  HeadStream in(text(data));
  CHECK(in.head(10) == data.substr(0, 10));
  CHECK(in.head(4096) == data.substr(0, 4096));
  CHECK(read_all(in) == data);
  HeadStream short_in(text("abc"));
  CHECK(short_in.head(4096) == "abc");
  CHECK(read_all(short_in) == "abc");
}

TEST_CASE("gunzip: round trip, several members, sniffed by magic", "[fetcher][stream]") {
  const std::string data = sample_text(300000);
  bool gz = false;
  auto in = open_maybe_gzip(text(trawl::testsupport::gzip(data)), "x.gz", &gz);
  CHECK(gz);
  CHECK(in->head(20) == data.substr(0, 20));
  CHECK(read_all(*in) == data);

  // Two members one after the other, as `cat a.gz b.gz` makes.
  auto two = open_maybe_gzip(text(trawl::testsupport::gzip("first\n") + trawl::testsupport::gzip("second\n")), "x.gz");
  CHECK(read_all(*two) == "first\nsecond\n");

  auto plain = open_maybe_gzip(text("http://h/1.jpg\n"), "x", &gz);
  CHECK_FALSE(gz);
  CHECK(read_all(*plain) == "http://h/1.jpg\n");
}

TEST_CASE("gunzip: corrupt and truncated data are a SourceError naming the source", "[fetcher][stream]") {
  const std::string packed = trawl::testsupport::gzip(sample_text(100000));
  std::string corrupt = packed;
  for (std::size_t i = 20; i < 60; ++i) corrupt[i] = static_cast<char>(corrupt[i] ^ 0x5a);
  auto bad = open_maybe_gzip(text(corrupt), "bad.gz");
  try {
    read_all(*bad);
    FAIL("no error");
  } catch (const SourceError& e) {
    CHECK_THAT(e.what(), Catch::Contains("bad.gz"));
  }
  auto cut = open_maybe_gzip(text(packed.substr(0, packed.size() / 2)), "cut.gz");
  CHECK_THROWS_WITH(read_all(*cut), Catch::Contains("cut.gz") && Catch::Contains("truncated"));
  // Magic bytes and nothing else.
  auto magic = open_maybe_gzip(text("\x1f\x8b"), "magic.gz");
  CHECK_THROWS_AS(read_all(*magic), SourceError);
}

TEST_CASE("gunzip: a list streams through ListSource with bounded reads", "[fetcher][stream]") {
  std::string list;
  for (int i = 0; i < 20000; ++i) list += "http://h/" + std::to_string(i) + ".jpg\n";
  ListSource src(open_maybe_gzip(text(trawl::testsupport::gzip(list)), "l.gz"));
  int n = 0;
  std::string last;
  while (auto u = src.next()) {
    ++n;
    last = *u;
  }
  CHECK(n == 20000);
  CHECK(last == "http://h/19999.jpg");
}
