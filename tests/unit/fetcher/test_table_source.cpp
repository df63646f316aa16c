#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "fetcher/table_source.hpp"
#include "proto/messages.hpp"

using namespace trawl::fetcher;

namespace {

struct Row {
  std::string url, meta, where;
  bool operator==(const Row&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Row& r) {
  return os << "{" << r.url << " | " << r.meta << " | " << r.where << "}";
}

std::vector<Row> drain(LinkSource& s) {
  std::vector<Row> out;
  while (auto u = s.next()) out.push_back({*u, std::string(s.meta()), s.where()});
  return out;
}

std::unique_ptr<std::istream> text(const std::string& s) { return std::make_unique<std::istringstream>(s); }

} // namespace

TEST_CASE("csv: RFC 4180 quoting, CRLF, embedded newlines, other columns become meta", "[fetcher][table]") {
  CsvSource src(text("id,URL,caption\r\n"
                     "1,http://h/1.jpg,\"A, b \"\"c\"\"\"\r\n"
                     "2,\"http://h/2.jpg\",\"two\nlines\"\r\n"
                     "3,http://h/3.jpg,\r\n"
                     "\r\n"
                     "4,http://h/4.jpg,last"),
                ',', "url");
  CHECK(drain(src) == std::vector<Row>{
                          {"http://h/1.jpg", R"({"id":"1","caption":"A, b \"c\""})", "line 2"},
                          {"http://h/2.jpg", R"({"id":"2","caption":"two\nlines"})", "line 3"},
                          {"http://h/3.jpg", R"({"id":"3"})", "line 5"},
                          {"http://h/4.jpg", R"({"id":"4","caption":"last"})", "line 7"},
                      });
  CHECK(src.skipped() == 0);
}

TEST_CASE("csv: bad rows are skipped with their line, the good ones kept", "[fetcher][table]") {
  const std::string long_field(kMaxRecordBytes + 10, 'x');
  CsvSource src(text("\xEF\xBB\xBFurl,caption\n"
                     "http://h/1.jpg,one\n"
                     "\n"
                     ",empty url\n"
                     "http://h/2.jpg,\"" + long_field + "\"\n"
                     "http://h/3.jpg,three,extra\n"
                     "http://h/4.jpg,\"unterminated\n"
                     "and more\n"),
                ',', "url");
  const auto rows = drain(src);
  REQUIRE(rows.size() == 2);
  CHECK(rows[0].url == "http://h/1.jpg");
  CHECK(rows[1].url == "http://h/3.jpg");
  CHECK(rows[1].meta == R"({"caption":"three"})");
  CHECK(src.skipped() == 3); // empty url, too long, unterminated
}

TEST_CASE("csv: a missing URL column or header is a SourceError naming the columns", "[fetcher][table]") {
  try {
    CsvSource src(text("id,link,caption\n1,http://h/1.jpg,x\n"), ',', "url");
    FAIL("no error");
  } catch (const SourceError& e) {
    CHECK_THAT(e.what(), Catch::Contains("no column \"url\"") && Catch::Contains("id, link, caption") &&
                             Catch::Contains("--url-column"));
  }
  CHECK_THROWS_AS(CsvSource(text(""), ',', "url"), SourceError);
  CsvSource by_name(text("id,Link\n1,http://h/1.jpg\n"), ',', "link");
  CHECK(drain(by_name).size() == 1);
}

TEST_CASE("tsv: tab-separated with the same rules", "[fetcher][table]") {
  CsvSource src(text("url\tcaption\ttags\nhttp://h/1.jpg\ta, b\tx\nhttp://h/2.jpg\n"), '\t', "url");
  CHECK(drain(src) == std::vector<Row>{
                          {"http://h/1.jpg", R"({"caption":"a, b","tags":"x"})", "line 2"},
                          {"http://h/2.jpg", "", "line 3"},
                      });
}

TEST_CASE("csv: meta is bounded, binary garbage in fields is carried as valid JSON", "[fetcher][table]") {
  const std::string big(3000, 'b');
  CsvSource src(text("url,a,b,c\nhttp://h/1.jpg," + big + "," + big + ",\xff\xfe\n"), ',', "url");
  const auto rows = drain(src);
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].meta.size() <= trawl::proto::kMaxMetaBytes);
  const auto meta = nlohmann::json::parse(rows[0].meta);
  CHECK(meta["a"] == big);
  CHECK_FALSE(meta.contains("b")); // would not fit
  CHECK(meta.contains("c"));       // invalid UTF-8 replaced, still valid JSON
}

TEST_CASE("jsonl: objects per line, bad lines skipped with their line number", "[fetcher][table]") {
  JsonLinesSource src(text("{\"url\":\"http://h/1.jpg\",\"caption\":\"one\",\"w\":640,\"tags\":[\"a\"]}\n"
                           "\n"
                           "not json\n"
                           "[1,2]\n"
                           "{\"caption\":\"no url\"}\n"
                           "{\"url\":5}\n"
                           "{\"url\":\"http://h/2.jpg\"}\r\n"
                           "{\"url\":\"http://h/3.jpg\",\"n\":null}"),
                      "url");
  CHECK(drain(src) == std::vector<Row>{
                          {"http://h/1.jpg", R"({"caption":"one","w":640,"tags":["a"]})", "line 1"},
                          {"http://h/2.jpg", "", "line 7"},
                          {"http://h/3.jpg", "", "line 8"},
                      });
  CHECK(src.skipped() == 4);
}

TEST_CASE("jsonl: a very long line and binary garbage are skipped, reading goes on", "[fetcher][table]") {
  std::string garbage;
  for (int i = 0; i < 5000; ++i) garbage.push_back(static_cast<char>((i * 31) & 0xff));
  for (auto& c : garbage)
    if (c == '\n') c = ' ';
  JsonLinesSource src(text("{\"url\":\"http://h/" + std::string(kMaxRecordBytes + 1, 'x') + "\"}\n" +
                           garbage + "\n{\"link\":\"http://h/ok.jpg\"}\n"),
                      "link");
  const auto rows = drain(src);
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].url == "http://h/ok.jpg");
  CHECK(rows[0].where == "line 3");
  CHECK(src.skipped() == 2);
}
