#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "fetcher/html_source.hpp"

using namespace trawl::fetcher;

namespace {

std::vector<std::string> drain(LinkSource& s) {
  std::vector<std::string> out;
  while (auto u = s.next()) out.push_back(*u);
  return out;
}

} // namespace

TEST_CASE("resolve_url: RFC 3986 reference resolution (5.4.1 examples)", "[fetcher][html]") {
  const std::string base = "http://a/b/c/d;p?q";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"g", "http://a/b/c/g"},          {"./g", "http://a/b/c/g"},
      {"g/", "http://a/b/c/g/"},        {"/g", "http://a/g"},
      {"//g", "http://g/"},             {"?y", "http://a/b/c/d;p?y"},
      {"g?y", "http://a/b/c/g?y"},      {"g#s", "http://a/b/c/g"},
      {"..", "http://a/b/"},            {"../g", "http://a/b/g"},
      {"../..", "http://a/"},           {"../../g", "http://a/g"},
      {"../../../g", "http://a/g"},     {"g;x?y#s", "http://a/b/c/g;x?y"},
      {"https://other/x.jpg", "https://other/x.jpg"},
      {"  g.jpg \n", "http://a/b/c/g.jpg"},
      {"a b.jpg", "http://a/b/c/a%20b.jpg"},
  };
  for (const auto& [ref, want] : cases) {
    INFO(ref);
    auto got = resolve_url(base, ref);
    REQUIRE(got);
    CHECK(*got == want);
  }
  CHECK_FALSE(resolve_url("", "relative.jpg"));
  CHECK_FALSE(resolve_url(base, "http://[::1"));
  CHECK(resolve_url("", "http://h/x.jpg") == std::optional<std::string>("http://h/x.jpg"));
}

TEST_CASE("parse_srcset: candidates without descriptors", "[fetcher][html]") {
  CHECK(parse_srcset("a.jpg 1x, b.jpg 2x") == std::vector<std::string>{"a.jpg", "b.jpg"});
  CHECK(parse_srcset("a.jpg") == std::vector<std::string>{"a.jpg"});
  CHECK(parse_srcset(" a.jpg, b.jpg 480w ,  c.jpg 800w") ==
        std::vector<std::string>{"a.jpg", "b.jpg", "c.jpg"});
  CHECK(parse_srcset("x.jpg (min-width: 1px, a) 1x, y.jpg") == std::vector<std::string>{"x.jpg", "y.jpg"});
  CHECK(parse_srcset("a,b.jpg 1x") == std::vector<std::string>{"a,b.jpg"});
  CHECK(parse_srcset("  ,  ").empty());
  CHECK(parse_srcset("").empty());
}

TEST_CASE("html source: a, img src/srcset, picture source, base href, junk", "[fetcher][html]") {
  const std::string page = R"HTML(<!DOCTYPE html>
<html><head><base href="../img/"><title>t</title>
<script>var s = "<a href='/in-script.jpg'>";</script></head>
<body>
<!-- <a href="/in-comment.jpg"> -->
<a href="one.jpg">1</a>
<a href="https://cdn.example/two.jpg">2</a>
<IMG SRC="three.png" srcset="four.jpg 1x, /five.jpg 2x">
<picture><source srcset="six.webp 640w"><img src="seven.jpg"></picture>
<a href="mailto:x@y">m</a> <a href="javascript:void(0)">j</a> <a href="#top">t</a>
<a>none</a> <img src=""> <a href="http://[::1">bad</a>
<div><p>unclosed <a href="//other.example/eight.jpg">8</a>
)HTML";
  HtmlSource src(page, "http://site.example/pages/sub/index.html");
  CHECK(src.base() == "http://site.example/pages/img/");
  CHECK(drain(src) == std::vector<std::string>{
                          "http://site.example/pages/img/one.jpg",
                          "https://cdn.example/two.jpg",
                          "http://site.example/pages/img/three.png",
                          "http://site.example/pages/img/four.jpg",
                          "http://site.example/five.jpg",
                          "http://site.example/pages/img/six.webp",
                          "http://site.example/pages/img/seven.jpg",
                          "http://other.example/eight.jpg",
                      });
  CHECK(src.skipped() == 1);        // the unparsable URL, with a warning
  CHECK(src.other_schemes() == 2);  // mailto:, javascript:
}

TEST_CASE("html source: without a base URL, relative links are skipped and absolute kept", "[fetcher][html]") {
  HtmlSource src(R"(<a href="rel.jpg">r</a><a href="http://h/abs.jpg">a</a>)", "");
  CHECK(drain(src) == std::vector<std::string>{"http://h/abs.jpg"});
  CHECK(src.skipped() == 1);
  CHECK_THAT(src.where(), Catch::Contains("line 1") && Catch::Contains("<a href>"));
}

TEST_CASE("html source: binary garbage, empty input and deep nesting do not break it", "[fetcher][html]") {
  std::string garbage;
  for (int i = 0; i < 100000; ++i) garbage.push_back(static_cast<char>((i * 7919) & 0xff));
  CHECK_NOTHROW(HtmlSource(garbage, "http://h/"));
  HtmlSource empty("", "http://h/");
  CHECK_FALSE(empty.next());
  std::string deep;
  for (int i = 0; i < 5000; ++i) deep += "<div>";
  deep += "<a href=\"deep.jpg\">x</a>";
  HtmlSource nested(deep, "http://h/");
  CHECK(drain(nested) == std::vector<std::string>{"http://h/deep.jpg"});
}
