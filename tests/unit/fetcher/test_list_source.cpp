#include <catch2/catch.hpp>
#include <sstream>
#include <string>
#include <sys/resource.h>
#include <unistd.h>
#include <vector>

#include "fetcher/filter.hpp"
#include "fetcher/source.hpp"
#include "proto/messages.hpp"

using namespace trawl::fetcher;

namespace {

std::vector<std::string> drain(LinkSource& s) {
  std::vector<std::string> out;
  while (auto u = s.next()) out.push_back(*u);
  return out;
}

std::vector<std::string> parse(const std::string& text) {
  std::istringstream in(text);
  ListSource src(in);
  return drain(src);
}

// An endless-looking stream: `filler` bytes of one character, then `tail`, generated on the fly
// so that a reader which buffered a whole line would allocate the full size.
class GeneratedBuf : public std::streambuf {
public:
  GeneratedBuf(std::uint64_t filler, char c, std::string tail)
      : left_(filler), tail_(std::move(tail)) {
    std::fill(std::begin(chunk_), std::end(chunk_), c);
  }

protected:
  int_type underflow() override {
    if (left_ > 0) {
      const std::size_t n = left_ < sizeof chunk_ ? static_cast<std::size_t>(left_) : sizeof chunk_;
      left_ -= n;
      setg(chunk_, chunk_, chunk_ + n);
      return traits_type::to_int_type(chunk_[0]);
    }
    if (!tail_done_ && !tail_.empty()) {
      tail_done_ = true;
      setg(tail_.data(), tail_.data(), tail_.data() + tail_.size());
      return traits_type::to_int_type(tail_[0]);
    }
    return traits_type::eof();
  }

private:
  std::uint64_t left_;
  std::string tail_;
  bool tail_done_ = false;
  char chunk_[64 * 1024];
};

long max_rss_kb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

} // namespace

TEST_CASE("list: comments, blanks, CRLF and whitespace", "[fetcher]") {
  const std::string text = "http://a/1.jpg\n"
                           "\n"
                           "   # a comment\n"
                           "#another\n"
                           "\t http://a/2.jpg  \r\n"
                           "http://a/3.jpg\r\n"
                           "\r\n"
                           "   \t \n"
                           "http://a/4.jpg#not-a-comment\n"
                           "http://a/5.jpg"; // no final newline
  CHECK(parse(text) == std::vector<std::string>{"http://a/1.jpg", "http://a/2.jpg", "http://a/3.jpg",
                                                "http://a/4.jpg#not-a-comment", "http://a/5.jpg"});
}

TEST_CASE("list: empty inputs", "[fetcher]") {
  CHECK(parse("").empty());
  CHECK(parse("\n\n\n").empty());
  CHECK(parse("# only a comment").empty());
  CHECK(parse("\r\n  \r\n").empty());
}

TEST_CASE("list: where() names the line", "[fetcher]") {
  std::istringstream in("# header\n\nhttp://a/1\nhttp://a/2\n");
  ListSource src(in);
  REQUIRE(src.next() == "http://a/1");
  CHECK(src.where() == "line 3");
  REQUIRE(src.next() == "http://a/2");
  CHECK(src.where() == "line 4");
  CHECK_FALSE(src.next());
  CHECK_FALSE(src.next()); // stays at the end
}

TEST_CASE("list: a leading UTF-8 BOM is ignored", "[fetcher]") {
  CHECK(parse("\xEF\xBB\xBFhttp://a/1\nhttp://a/2\n") ==
        std::vector<std::string>{"http://a/1", "http://a/2"});
  CHECK(parse("\xEF\xBB\xBF# comment\nhttp://a/2\n") == std::vector<std::string>{"http://a/2"});
  CHECK(parse("\xEF\xBB\xBF\nhttp://a/2\n") == std::vector<std::string>{"http://a/2"});
}

TEST_CASE("list: a line over the limit is skipped and the next one read", "[fetcher]") {
  constexpr std::size_t kMax = trawl::proto::kMaxUrlBytes;
  const std::string too_long = "http://a/" + std::string(kMax, 'x');
  const std::string just_fits = "http://a/" + std::string(kMax - 9, 'y');
  REQUIRE(just_fits.size() == kMax);
  std::istringstream in("http://a/first\n" + too_long + "\n" + "  " + just_fits + "  \r\n" +
                        "http://a/next\n");
  ListSource src(in);
  CHECK(src.next() == "http://a/first");
  CHECK(src.next() == just_fits);
  CHECK(src.where() == "line 3");
  CHECK(src.next() == "http://a/next");
  CHECK(src.where() == "line 4");
  CHECK_FALSE(src.next());
  CHECK(src.skipped() == 1);
}

TEST_CASE("list: trailing blanks do not count toward the limit, inner ones do", "[fetcher]") {
  constexpr std::size_t kMax = trawl::proto::kMaxUrlBytes;
  const std::string fits = std::string(kMax, 'u');
  const std::string blanks(2 * kMax, ' ');
  CHECK(parse(fits + blanks + "\nnext\n") == std::vector<std::string>{fits, "next"});
  CHECK(parse(std::string(kMax - 10, 'u') + blanks + "x\nnext\n") ==
        std::vector<std::string>{"next"});
  CHECK(parse(std::string(kMax - 10, 'u') + std::string(9, ' ') + "x\n") ==
        std::vector<std::string>{std::string(kMax - 10, 'u') + std::string(9, ' ') + "x"});
}

TEST_CASE("list: a huge comment line is skipped without counting", "[fetcher]") {
  std::istringstream in("#" + std::string(100000, 'c') + "\nhttp://a/1\n");
  ListSource src(in);
  CHECK(drain(src) == std::vector<std::string>{"http://a/1"});
  CHECK(src.skipped() == 0);
}

TEST_CASE("list: a 256 MiB line is read in bounded memory", "[fetcher]") {
  GeneratedBuf buf(256ull * 1024 * 1024, 'z', "\nhttp://a/after\n");
  std::istream in(&buf);
  const long before = max_rss_kb();
  ListSource src(in);
  CHECK(drain(src) == std::vector<std::string>{"http://a/after"});
  CHECK(src.skipped() == 1);
  CHECK(max_rss_kb() - before < 64 * 1024); // far below the 256 MiB a buffered line would take
}

TEST_CASE("list: binary garbage lines come out and are rejected as invalid", "[fetcher]") {
  const std::string garbage1("\x00\x01\x02\xFF\xFE garbage", 13);
  const std::string garbage2("http://a/\x00\x7F", 11);
  const std::string text = garbage1 + "\nhttp://a/ok.jpg\n" + garbage2 + "\n\x89PNG\r\n\x1A\n";
  std::istringstream in(text);
  ListSource src(in);
  LinkFilter filter({});
  std::vector<std::string> accepted;
  while (auto u = src.next())
    if (filter.check(*u, src.where()) == LinkFilter::Verdict::accept) accepted.push_back(*u);
  CHECK(accepted == std::vector<std::string>{"http://a/ok.jpg"});
  CHECK(filter.invalid() == 4);
}

TEST_CASE("list: FdStream reads a pipe and peeks without consuming", "[fetcher]") {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const std::string text = "  http://a/1\nhttp://a/2\n";
  REQUIRE(::write(fds[1], text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  ::close(fds[1]);
  auto stream = std::make_unique<FdStream>(fds[0], "pipe", true);
  CHECK(stream->peek(4) == "  ht");
  CHECK(stream->peek(1000) == text);
  CHECK_FALSE(looks_like_json(stream->peek(4096)));
  ListSource src(std::move(stream));
  CHECK(drain(src) == std::vector<std::string>{"http://a/1", "http://a/2"});
}

TEST_CASE("looks_like_json checks the first non-blank byte", "[fetcher]") {
  CHECK(looks_like_json("{}"));
  CHECK(looks_like_json(" \r\n\t{\"data\":[]}"));
  CHECK(looks_like_json("\xEF\xBB\xBF {"));
  CHECK_FALSE(looks_like_json("http://a/{"));
  CHECK_FALSE(looks_like_json("[1]"));
  CHECK_FALSE(looks_like_json(""));
  CHECK_FALSE(looks_like_json("   "));
}

TEST_CASE("read_bounded enforces its cap", "[fetcher]") {
  std::istringstream small("hello");
  CHECK(read_bounded(small, 5, "x") == "hello");
  std::istringstream big(std::string(100, 'a'));
  CHECK_THROWS_WITH(read_bounded(big, 99, "the doc"),
                    Catch::Contains("the doc") && Catch::Contains("99 bytes"));
}
