#include <catch2/catch.hpp>
#include <stdexcept>
#include <string>

#include "fetcher/filter.hpp"
#include "proto/messages.hpp"

using namespace trawl::fetcher;
using Verdict = LinkFilter::Verdict;

TEST_CASE("is_valid_url accepts absolute http(s) URLs", "[fetcher]") {
  CHECK(is_valid_url("http://a/b"));
  CHECK(is_valid_url("https://i.imgur.com/aB3dE5f.jpg"));
  CHECK(is_valid_url("HTTPS://Example.COM/x.JPG"));
  CHECK(is_valid_url("http://h"));
  CHECK(is_valid_url("http://h?x=1"));
  CHECK(is_valid_url("http://user:pw@h:8080/x"));
  CHECK(is_valid_url("http://[::1]:8080/x"));
  CHECK(is_valid_url("http://127.0.0.1:1/"));
  CHECK(is_valid_url("http://h/caf\xC3\xA9.jpg"));
  CHECK(is_valid_url("http://h/" + std::string(trawl::proto::kMaxUrlBytes - 9, 'a')));
}

TEST_CASE("is_valid_url rejects everything else", "[fetcher]") {
  CHECK_FALSE(is_valid_url(""));
  CHECK_FALSE(is_valid_url("ftp://h/x"));
  CHECK_FALSE(is_valid_url("file:///etc/passwd"));
  CHECK_FALSE(is_valid_url("javascript:alert(1)"));
  CHECK_FALSE(is_valid_url("//h/x"));
  CHECK_FALSE(is_valid_url("/relative/x.jpg"));
  CHECK_FALSE(is_valid_url("http:/h/x"));
  CHECK_FALSE(is_valid_url("http://"));
  CHECK_FALSE(is_valid_url("http:///x"));
  CHECK_FALSE(is_valid_url("http://user@/x"));
  CHECK_FALSE(is_valid_url("http://:80/x"));
  CHECK_FALSE(is_valid_url("http://h:99999/"));
  CHECK_FALSE(is_valid_url("http://h:8a/"));
  CHECK_FALSE(is_valid_url("http://[::1/"));
  CHECK_FALSE(is_valid_url("http://a b/c"));
  CHECK_FALSE(is_valid_url("http://h/a b.jpg"));
  CHECK_FALSE(is_valid_url("http://h/a\tb"));
  CHECK_FALSE(is_valid_url("http://h/a\x7F"));
  CHECK_FALSE(is_valid_url(std::string("http://h/a\0b", 12)));
  CHECK_FALSE(is_valid_url("http://h/\xFF\xFE"));
  CHECK_FALSE(is_valid_url("http://h/\xC0\xAF")); // overlong
  CHECK_FALSE(is_valid_url("http://h/" + std::string(trawl::proto::kMaxUrlBytes, 'a')));
}

TEST_CASE("normalize_extension", "[fetcher]") {
  CHECK(normalize_extension("jpg") == ".jpg");
  CHECK(normalize_extension(".jpg") == ".jpg");
  CHECK(normalize_extension(".JPG") == ".jpg");
  CHECK(normalize_extension("Png") == ".png");
  CHECK_THROWS_AS(normalize_extension(""), std::invalid_argument);
  CHECK_THROWS_AS(normalize_extension("."), std::invalid_argument);
  CHECK_THROWS_AS(normalize_extension("a/b"), std::invalid_argument);
  CHECK_THROWS_AS(normalize_extension("j pg"), std::invalid_argument);
  CHECK_THROWS_AS(normalize_extension("tar.gz"), std::invalid_argument);
  CHECK_THROWS_AS(LinkFilter({"ok", "a?b"}), std::invalid_argument);
}

TEST_CASE("extension filter is case-insensitive and ignores the query", "[fetcher]") {
  LinkFilter f({"JPG"});
  CHECK(f.check("http://a/x.jpg", "line 1") == Verdict::accept);
  CHECK(f.check("http://a/y.JPG?x=1", "line 2") == Verdict::accept);
  CHECK(f.check("http://a/z.Jpg#frag", "line 3") == Verdict::accept);
  CHECK(f.check("http://a/q.jpeg", "line 4") == Verdict::wrong_extension);
  CHECK(f.check("http://a/q.png?name=x.jpg", "line 5") == Verdict::wrong_extension);
  CHECK(f.check("http://a/q.png#x.jpg", "line 6") == Verdict::wrong_extension);
  CHECK(f.check("http://a/noext", "line 7") == Verdict::wrong_extension);
  CHECK(f.check("http://a.jpg", "line 8") == Verdict::wrong_extension); // host, not a file
  CHECK(f.accepted() == 3);
  CHECK(f.wrong_extension() == 5);
}

TEST_CASE("extension filter with several extensions, and none", "[fetcher]") {
  LinkFilter several({".jpg", "png", ".PNG"});
  CHECK(several.extensions() == std::vector<std::string>{".jpg", ".png"});
  CHECK(several.check("http://a/1.png", "x") == Verdict::accept);
  CHECK(several.check("http://a/1.jpg", "x") == Verdict::accept);
  CHECK(several.check("http://a/1.gif", "x") == Verdict::wrong_extension);
  LinkFilter all({});
  CHECK(all.check("http://a/1.gif", "x") == Verdict::accept);
  CHECK(all.check("http://a/noext", "x") == Verdict::accept);
}

TEST_CASE("duplicates are emitted once", "[fetcher]") {
  LinkFilter f({".jpg"});
  CHECK(f.check("http://a/1.jpg", "line 1") == Verdict::accept);
  CHECK(f.check("http://a/2.jpg", "line 2") == Verdict::accept);
  CHECK(f.check("http://a/1.jpg", "line 3") == Verdict::duplicate);
  CHECK(f.check("http://a/1.jpg", "line 4") == Verdict::duplicate);
  CHECK(f.check("http://a/1.png", "line 5") == Verdict::wrong_extension);
  CHECK(f.check("http://a/1.png", "line 6") == Verdict::wrong_extension); // not a duplicate
  CHECK(f.check("not a url", "line 7") == Verdict::invalid);
  CHECK(f.check("not a url", "line 8") == Verdict::invalid);
  CHECK(f.check("http://a/1.jpg?v=2", "line 9") == Verdict::accept); // a different URL
  CHECK(f.accepted() == 3);
  CHECK(f.duplicates() == 2);
  CHECK(f.wrong_extension() == 2);
  CHECK(f.invalid() == 2);
}

TEST_CASE("de-duplication holds for many links", "[fetcher]") {
  LinkFilter f({});
  for (int round = 0; round < 2; ++round)
    for (int i = 0; i < 50'000; ++i) f.check("http://h/" + std::to_string(i) + ".jpg", "x");
  CHECK(f.accepted() == 50'000);
  CHECK(f.duplicates() == 50'000);
}
