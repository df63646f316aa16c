#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "fetcher/json_source.hpp"

using namespace trawl::fetcher;

namespace {

std::vector<std::string> drain(LinkSource& s) {
  std::vector<std::string> out;
  while (auto u = s.next()) out.push_back(*u);
  return out;
}

struct Walk {
  std::vector<std::string> found, where, problems;
};

Walk walk(const std::string& path, const std::string& json) {
  Walk w;
  JsonPath(path).each(
      nlohmann::json::parse(json),
      [&](const std::string& v, const std::string& at) {
        w.found.push_back(v);
        w.where.push_back(at);
      },
      [&](const std::string& at, const std::string& why) { w.problems.push_back(at + ": " + why); });
  return w;
}

} // namespace

TEST_CASE("json path: the documented forms", "[fetcher][json]") {
  auto w = walk("data[].link", R"({"data":[{"link":"a"},{"link":"b"}]})");
  CHECK(w.found == std::vector<std::string>{"a", "b"});
  CHECK(w.where == std::vector<std::string>{"data[0].link", "data[1].link"});

  w = walk("items[].images[].url",
           R"({"items":[{"images":[{"url":"1"},{"url":"2"}]},{"images":[]},{"images":[{"url":"3"}]}]})");
  CHECK(w.found == std::vector<std::string>{"1", "2", "3"});
  CHECK(w.where.back() == "items[2].images[0].url");

  w = walk("urls[]", R"({"urls":["x","y"]})");
  CHECK(w.found == std::vector<std::string>{"x", "y"});

  w = walk("[].href", R"([{"href":"p"},{"href":"q"}])");
  CHECK(w.found == std::vector<std::string>{"p", "q"});

  w = walk("paging.next", R"({"paging":{"next":"n"}})");
  CHECK(w.found == std::vector<std::string>{"n"});

  w = walk("m[][]", R"({"m":[["a","b"],["c"]]})");
  CHECK(w.found == std::vector<std::string>{"a", "b", "c"});
}

TEST_CASE("json path: entries of the wrong shape are problems naming their place", "[fetcher][json]") {
  auto w = walk("data[].link", R"({"data":[{"link":1},{"nolink":"x"},"str",{"link":null},{"link":"ok"}]})");
  CHECK(w.found == std::vector<std::string>{"ok"});
  CHECK(w.problems == std::vector<std::string>{
                          "data[0].link: is number, expected a string",
                          "data[1].link: missing",
                          "data[2]: is string, expected an object with \"link\"",
                          "data[3].link: missing",
                      });
  w = walk("data[].link", R"({"data":{"link":"x"}})");
  CHECK(w.found.empty());
  CHECK(w.problems == std::vector<std::string>{"data: is object, expected an array"});
  w = walk("data[].link", R"([1,2])");
  CHECK(w.problems == std::vector<std::string>{"the document: is array, expected an object with \"data\""});
}

TEST_CASE("json path: malformed paths are rejected", "[fetcher][json]") {
  for (const char* bad : {"", ".", "data..link", "data[0].link", "da ta", "data[", "a.", "[]x"})
    CHECK_THROWS_AS(JsonPath(bad), std::invalid_argument);
  CHECK_NOTHROW(JsonPath("[]"));
  CHECK_NOTHROW(JsonPath("a_b-c.d$"));
}

TEST_CASE("json source: links, skips, and the next page", "[fetcher][json]") {
  const JsonPath links("data[].link");
  const JsonPath next("paging.next");
  JsonSource src(R"({"data":[{"link":"http://h/1.jpg"},{"link":7},{"link":"http://h/2.jpg"}],
                     "paging":{"next":"/api?page=2"}})",
                 links, &next, "page");
  CHECK(src.found() == 2);
  CHECK(drain(src) == std::vector<std::string>{"http://h/1.jpg", "http://h/2.jpg"});
  CHECK(src.where() == "data[2].link");
  CHECK(src.skipped() == 1);
  REQUIRE(src.next_page());
  CHECK(*src.next_page() == "/api?page=2");

  JsonSource last(R"({"data":[],"paging":{"next":null}})", links, &next, "page");
  CHECK(last.found() == 0);
  CHECK_FALSE(last.next_page());
}

TEST_CASE("json source: bad JSON is a SourceError naming the document", "[fetcher][json]") {
  const JsonPath links("data[].link");
  for (const std::string& bad : {std::string("{\"data\":[{\"link\":\"x\"}"), std::string("not json"),
                                std::string("\x89PNG\r\n\x1a\n\0\0", 10), std::string()}) {
    try {
      JsonSource src(bad, links, nullptr, "http://api/page1");
      FAIL("no error for " << bad);
    } catch (const SourceError& e) {
      CHECK_THAT(e.what(), Catch::Contains("http://api/page1") && Catch::Contains("does not parse"));
    }
  }
}
