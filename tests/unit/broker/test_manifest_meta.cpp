// The manifest carries each link's meta (the other columns of its CSV row, say): JSON Lines as a
// "meta" object member, CSV as one "meta" column holding the object's JSON text. A result's meta
// and a ledger row's meta both get there; a meta that is not a JSON object is written as null.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include "broker/ledger.hpp"
#include "broker/names.hpp"
#include "broker/report.hpp"
#include "tests/support/process.hpp"

using namespace trawl;
using namespace trawl::broker;

namespace {

ManifestRow row_with_meta(std::uint64_t id, std::string meta) {
  ManifestRow r;
  r.id = id;
  r.url = "http://x.test/" + std::to_string(id) + ".jpg";
  r.status = "done";
  r.meta = std::move(meta);
  return r;
}

const std::string kPrefix = ",\"path\":\"\",\"node\":\"\",\"status\":\"done\",\"http_code\":0,\"bytes\":0,\"sha256\":\"\","
                            "\"attempts\":0,\"ms\":null,\"ttfb_ms\":null,\"reason\":\"\",\"error\":\"\",\"meta\":";

std::string jsonl_row(std::uint64_t id, const std::string& meta_json) {
  return "{\"id\":" + std::to_string(id) + ",\"url\":\"http://x.test/" + std::to_string(id) + ".jpg\"" + kPrefix +
         meta_json + "}\n";
}

} // namespace

TEST_CASE("manifest meta: a result's meta is written as it came, JSON Lines and CSV", "[report][meta]") {
  trawl::testsupport::TempDir dir("trawl-unit-manifest-meta");
  const std::string caption = R"({"id":"a1","caption":"Photo a1, \"nice\"\nsecond line","type":"jpg","n":[1,{"x":null}]})";
  const std::string with_breaks = "{\n  \"caption\": \"two\",\r\n  \"k\": [1, 2]\n}";
  const std::string utf8 = "{\"caption\":\"caf\xC3\xA9 \\u00e9\"}";
  proto::Result res;
  res.id = 4;
  res.url = "http://x.test/4.jpg";
  res.status = proto::Status::done;
  res.meta = caption;
  CHECK(manifest_row(res).meta == caption); // carried from the result
  const std::vector<ManifestRow> rows = {
      row_with_meta(1, caption),
      row_with_meta(2, ""),           // no meta
      row_with_meta(3, with_breaks),  // valid, but on several lines: re-serialised on one
      row_with_meta(5, utf8),         // UTF-8 and escapes kept as they are
      row_with_meta(6, "[1,2]"),      // not an object
      row_with_meta(7, "{\"a\":"),    // not JSON
      row_with_meta(8, "{\"a\":\"\xff\"}"), // invalid UTF-8
      row_with_meta(9, "{\"a\":1}\n{\"b\":2}"), // two objects (a row break in the manifest)
  };
  {
    ManifestWriter w(dir / "m.jsonl");
    for (const auto& r : rows) w.write(r);
    w.close();
    CHECK(w.bad_meta() == 4);
  }
  const std::string jsonl = trawl::testsupport::read_file(dir / "m.jsonl");
  CHECK(jsonl == jsonl_row(1, caption) + jsonl_row(2, "null") + jsonl_row(3, R"({"caption":"two","k":[1,2]})") +
                     jsonl_row(5, utf8) + jsonl_row(6, "null") + jsonl_row(7, "null") + jsonl_row(8, "null") +
                     jsonl_row(9, "null"));
  // Every line is one JSON object whose "meta" is the object given.
  std::size_t lines = 0;
  for (std::size_t at = 0; at < jsonl.size(); ++lines) {
    const auto end = jsonl.find('\n', at);
    REQUIRE(end != std::string::npos);
    const auto row = nlohmann::json::parse(jsonl.substr(at, end - at));
    if (row["id"] == 1) CHECK(row["meta"] == nlohmann::json::parse(caption));
    at = end + 1;
  }
  CHECK(lines == rows.size());
  {
    ManifestWriter w(dir / "m.csv");
    w.write(rows[0]);
    w.write(rows[1]);
    w.write(rows[4]);
    w.close();
    CHECK(w.bad_meta() == 1);
  }
  CHECK(trawl::testsupport::read_file(dir / "m.csv") ==
        "id,url,path,node,status,http_code,bytes,sha256,attempts,ms,ttfb_ms,reason,error,meta\n"
        "1,http://x.test/1.jpg,,,done,0,0,,0,,,,,"
        "\"{\"\"id\"\":\"\"a1\"\",\"\"caption\"\":\"\"Photo a1, \\\"\"nice\\\"\"\\nsecond line\"\",\"\"type\"\":\"\"jpg\"\","
        "\"\"n\"\":[1,{\"\"x\"\":null}]}\"\n"
        "2,http://x.test/2.jpg,,,done,0,0,,0,,,,,\n"
        "6,http://x.test/6.jpg,,,done,0,0,,0,,,,,\n");
}

TEST_CASE("manifest meta: the ledger pass gives each link its meta, also from a ledger without the column",
          "[report][meta]") {
  trawl::testsupport::TempDir dir("trawl-unit-manifest-meta-ledger");
  {
    Ledger ledger(dir.path(), false);
    NameAssigner names;
    ledger.add_link("http://x.test/1.jpg", names, R"({"caption":"one"})");
    ledger.add_link("http://x.test/2.jpg", names);
    ledger.commit();
  }
  std::vector<ManifestRow> rows;
  CHECK(for_each_ledger_row(dir / "ledger.sqlite", [](std::uint64_t) { return false; },
                            [&rows](const ManifestRow& r) { rows.push_back(r); }) == 2);
  REQUIRE(rows.size() == 2);
  CHECK(rows[0].meta == R"({"caption":"one"})");
  CHECK(rows[1].meta.empty());

  // A ledger of a build before meta (no column): read all the same, without meta.
  const std::string old = dir / "old.sqlite";
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(old.c_str(), &db) == SQLITE_OK);
    const char* sql =
        "CREATE TABLE links(id INTEGER PRIMARY KEY, url TEXT NOT NULL UNIQUE, name TEXT NOT NULL,"
        " state INTEGER NOT NULL, attempts INTEGER NOT NULL, lease_until INTEGER, node TEXT, path TEXT,"
        " http_code INTEGER, bytes INTEGER, sha256 TEXT, reason INTEGER, detail TEXT);"
        "INSERT INTO links(url, name, state, attempts) VALUES('http://old.test/a.jpg', 'a.jpg', 0, 0);";
    REQUIRE(sqlite3_exec(db, sql, nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
  }
  rows.clear();
  CHECK(for_each_ledger_row(old, [](std::uint64_t) { return false; },
                            [&rows](const ManifestRow& r) { rows.push_back(r); }) == 1);
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].url == "http://old.test/a.jpg");
  CHECK(rows[0].status == "pending");
  CHECK(rows[0].meta.empty());
}
