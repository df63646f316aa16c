// End to end, one per source format and pagination style: the real `trawl fetch` reads the
// fixture server's gallery pages, JSON APIs, HTML page, CSV/TSV/JSON Lines tables and their .gz
// forms, and sends the links to a real `trawl vent`; the vent's ledger must then hold exactly the
// corpus's links (and the tables' other columns as each link's meta). Two jobs go through the
// whole pipeline (sink, vent, downloader, fetch) and every downloaded byte is checked.
#include <catch2/catch.hpp>
#include <csignal>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <sqlite3.h>

#include "tests/support/corpus.hpp"
#include "tests/support/process.hpp"
#include "tests/support/sources.hpp"

namespace fs = std::filesystem;
using namespace trawl::testsupport;
using namespace std::chrono_literals;

namespace {

struct LedgerRow {
  std::string url, meta;
};

std::vector<LedgerRow> ledger_rows(const std::string& db_path) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "SELECT url, meta FROM links ORDER BY id", -1, &st, nullptr) == SQLITE_OK);
  std::vector<LedgerRow> rows;
  while (sqlite3_step(st) == SQLITE_ROW) {
    auto text = [st](int c) {
      const auto* p = sqlite3_column_text(st, c);
      return p ? std::string(reinterpret_cast<const char*>(p)) : std::string();
    };
    rows.push_back({text(0), text(1)});
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return rows;
}

struct FetchRun {
  int status = -1;
  std::string err;
  std::vector<LedgerRow> rows;
};

// A vent with its ledger in a fresh directory, then `trawl fetch ARGS --connect <vent>`; waits
// for the fetcher, stops the vent, and reads its ledger.
FetchRun fetch_into_vent(const std::vector<std::string>& fetch_args) {
  TempDir dir("trawl-e2e-sources");
  const std::string ep = "ipc://" + dir.path() + "/";
  auto vent = Child::spawn({TRAWL_BIN, "vent", "--links", ep + "links", "--bind", ep + "tasks", "--acks",
                            ep + "acks", "--sink", ep + "results", "--state", dir / "state",
                            "--ready-file", dir / "vent.ready"},
                           {}, dir / "vent.out", dir / "vent.err");
  wait_ready_file(dir / "vent.ready", 10s, &vent);
  std::vector<std::string> argv = {TRAWL_BIN, "fetch", "--connect", ep + "links"};
  argv.insert(argv.end(), fetch_args.begin(), fetch_args.end());
  auto fetch = Child::spawn(argv, {}, dir / "fetch.out", dir / "fetch.err");
  FetchRun r;
  auto status = fetch.wait_for(30s);
  r.err = read_file(dir / "fetch.err");
  if (!status) FAIL("fetch did not finish within 30 s; stderr:\n" << r.err);
  r.status = *status;
  vent.signal(SIGTERM);
  CHECK(vent.wait_for(10s).has_value());
  r.rows = ledger_rows(dir / "state/ledger.sqlite");
  return r;
}

std::vector<std::string> urls_of(const FetchRun& r) {
  std::vector<std::string> v;
  for (const auto& row : r.rows) v.push_back(row.url);
  return v;
}

std::set<std::string> sorted(const std::vector<std::string>& v) { return {v.begin(), v.end()}; }

} // namespace

TEST_CASE("sources: CSV, TSV and JSON Lines tables, plain and gzip, carry their other columns as meta", "[e2e][sources]") {
  auto fixture = FixtureServer::start({"--corpus", "classic"});
  const auto items = classic_gallery();
  const auto files = files_of(items, false);
  const auto want = single_urls(items, fixture.url());
  REQUIRE(want.size() == 98);
  for (const std::string path : {"/list.csv", "/list.tsv", "/list.jsonl", "/list.csv.gz", "/list.tsv.gz",
                                 "/list.jsonl.gz", "/list.txt.gz"}) {
    INFO(path);
    auto r = fetch_into_vent({"--source", fixture.url() + path});
    INFO(r.err);
    CHECK(r.status == 0);
    CHECK(urls_of(r) == want); // every link, in the table's order; the bad rows skipped
    if (path.find(".txt") != std::string::npos) continue;
    CHECK_THAT(r.err, Catch::Contains(path.find("jsonl") != std::string::npos ? "line 2: not valid JSON"
                                                                                : "1 fields, no \"url\""));
    REQUIRE(r.rows.size() == files.size());
    for (std::size_t i = 0; i < files.size(); ++i) {
      const auto meta = nlohmann::json::parse(r.rows[i].meta);
      CHECK(meta["id"] == files[i].id);
      CHECK(meta["caption"] == caption_for(files[i], path.find("tsv") == std::string::npos));
      if (path.find("jsonl") != std::string::npos) CHECK(meta["size"] == files[i].size);
      else CHECK(meta["type"] == files[i].type);
    }
  }
}

TEST_CASE("sources: an HTML page (base href, relative, absolute, srcset, junk), plain and gzip", "[e2e][sources]") {
  auto fixture = FixtureServer::start({"--corpus", "classic"});
  const auto want = single_urls(classic_gallery(), fixture.url());
  for (const std::string path : {"/html/page.html", "/html/page.html.gz"}) {
    INFO(path);
    auto r = fetch_into_vent({"--source", fixture.url() + path});
    INFO(r.err);
    CHECK(r.status == 0);
    CHECK(urls_of(r) == want); // in document order; no link from a comment, a script or junk
    CHECK_THAT(r.err, Catch::Contains("\"http://[::1\" is not a URL, skipped"));
  }
}

TEST_CASE("sources: JSON API with numbered pages ({page}) and with next links", "[e2e][sources]") {
  auto fixture = FixtureServer::start({"--corpus", "classic", "--api-per-page", "10", "-v"});
  const auto want = single_urls(classic_gallery(), fixture.url());
  {
    auto r = fetch_into_vent({"--source", fixture.url() + "/api/pages/{page}.json", "--first-page", "1",
                              "--links", "data[].link"});
    INFO(r.err);
    CHECK(r.status == 0);
    CHECK(urls_of(r) == want);
    CHECK_THAT(r.err, Catch::Contains("page 11 (" + fixture.url() + "/api/pages/11.json) is empty"));
  }
  {
    auto r = fetch_into_vent({"--source", fixture.url() + "/api/pages/{page}.json", "--first-page", "1",
                              "--links", "data[].link", "--pages", "3"});
    INFO(r.err);
    CHECK(r.status == 0);
    CHECK(urls_of(r) == std::vector<std::string>(want.begin(), want.begin() + 30));
  }
  {
    auto r = fetch_into_vent({"--source", fixture.url() + "/api/next/1.json", "--links",
                              "items[].images[].url", "--next", "next"});
    INFO(r.err);
    CHECK(r.status == 0);
    CHECK(urls_of(r) == want);
    CHECK_THAT(r.err, Catch::Contains("10 pages read"));
  }
  {
    // --limit stops the paging too: 25 links are on the first 3 pages; page 4 is never asked for.
    auto r = fetch_into_vent({"--source", fixture.url() + "/api/next/1.json", "--links",
                              "items[].images[].url", "--next", "next", "--limit", "25"});
    INFO(r.err);
    CHECK(r.status == 0);
    CHECK(urls_of(r) == std::vector<std::string>(want.begin(), want.begin() + 25));
    const auto stats = nlohmann::json::parse(http_get(fixture.url() + "/stats"));
    CHECK(stats["by_path"]["/api/next/3.json"] == 2); // this run and the one before
    CHECK(stats["by_path"]["/api/next/4.json"] == 1); // the one before only
  }
}

TEST_CASE("sources: Imgur's gallery paged by number, sections, albums expanded", "[e2e][sources]") {
  auto fixture = FixtureServer::start({"--corpus", "classic", "--gallery-per-page", "20"});
  const auto items = classic_gallery();
  const auto singles = single_urls(items, fixture.url());
  {
    auto r = fetch_into_vent({"--source", fixture.url() + "/3/gallery/hot/viral/0.json", "--pages", "10"});
    INFO(r.err);
    CHECK(r.status == 0);
    CHECK(urls_of(r) == singles); // 101 items on 6 pages; the 7th is empty
    CHECK_THAT(r.err, Catch::Contains("7 pages read") && Catch::Contains("3 albums skipped"));
    // The pages came over one connection (kept alive by the fixture), not one each.
    const auto stats = nlohmann::json::parse(http_get(fixture.url() + "/stats"));
    CHECK(stats["requests"] == 7);
    CHECK(stats["connections"] == 1);
  }
  {
    auto r = fetch_into_vent({"--source", "imgur:top/top/week", "--imgur-api", fixture.url(), "--pages", "10",
                              "--expand-albums"});
    INFO(r.err);
    CHECK(r.status == 0);
    std::vector<std::string> all;
    for (const auto& f : files_of(items, true)) all.push_back(fixture.url() + "/i/" + f.name);
    CHECK(sorted(urls_of(r)) == sorted(all));
    CHECK(r.rows.size() == all.size());
    const auto stats = nlohmann::json::parse(http_get(fixture.url() + "/stats"));
    CHECK(stats["by_path"]["/3/gallery/top/top/week/0.json"] == 1);
    CHECK(stats["by_path"]["/3/gallery/top/top/week/6.json"] == 1);
    // Its 7 pages (the albums' images are in them) over one connection of its own (the first
    // run had one).
    CHECK(stats["requests"] == 7 + 7);
    CHECK(stats["connections"] == 2);
  }
  {
    // --pages 2 reads two pages, no more.
    auto r = fetch_into_vent({"--source", "imgur:user/rising", "--imgur-api", fixture.url(), "--pages", "2"});
    CHECK(r.status == 0);
    std::vector<std::string> first40;
    for (std::size_t i = 0; i < 40; ++i)
      if (!items[i].is_album) first40.push_back(fixture.url() + "/i/" + items[i].name);
    CHECK(urls_of(r) == first40);
  }
}

TEST_CASE("sources: a later page that fails keeps the links read before it, and exits 3", "[e2e][sources]") {
  auto fixture = FixtureServer::start({"--corpus", "classic", "--api-per-page", "10", "--api-fail-page", "3"});
  const auto want = single_urls(classic_gallery(), fixture.url());
  auto r = fetch_into_vent({"--source", fixture.url() + "/api/next/1.json", "--links", "items[].images[].url",
                            "--next", "next"});
  INFO(r.err);
  CHECK(r.status == 3);
  CHECK(urls_of(r) == std::vector<std::string>(want.begin(), want.begin() + 20));
  CHECK_THAT(r.err, Catch::Contains("page 3 (" + fixture.url() + "/api/next/3.json): GET") &&
                        Catch::Contains("HTTP 500") && Catch::Contains("not read to its end"));
  const auto stats = nlohmann::json::parse(http_get(fixture.url() + "/stats"));
  CHECK(stats["by_path"]["/api/next/3.json"] == 3); // tried three times
}

namespace {

struct Manifest {
  std::map<std::string, std::string> sha; // name -> sha256
};

Manifest manifest_of(const FixtureServer& f) {
  Manifest m;
  std::istringstream in(http_get(f.url() + "/manifest.tsv"));
  std::string name, size, sha;
  while (in >> name >> size >> sha) m.sha[name] = sha;
  return m;
}

} // namespace

TEST_CASE("sources: whole pipeline from an HTML page and from a gzip CSV, every byte checked", "[e2e][sources]") {
  auto fixture = FixtureServer::start({"--corpus", "classic"});
  const auto manifest = manifest_of(fixture);
  const auto files = files_of(classic_gallery(), false);
  for (const std::string path : {"/html/page.html", "/list.csv.gz"}) {
    INFO(path);
    TempDir dir("trawl-e2e-sources-pipeline");
    const std::string out = dir / "out";
    const std::string run_dir = dir / "run";
    fs::create_directories(run_dir);
    auto child =
        Child::spawn({TRAWL_PIPELINE, "--trawl", TRAWL_BIN, "--run-dir", run_dir, "--progress",
                      "none", "--source", fixture.url() + path, "--out", out, "--downloaders", "1"},
                     {}, dir / "stdout", dir / "stderr");
    auto status = child.wait_for(90s);
    if (!status)
      FAIL(stop_hung_pipeline(child, "pipeline did not finish within 90 s", run_dir,
                              dir / "stderr"));
    INFO("stdout:\n" << read_file(dir / "stdout") << "\nstderr:\n" << read_file(dir / "stderr"));
    REQUIRE(status);
    CHECK(*status == 0);
    std::map<std::string, std::string> got;
    for (const auto& e : fs::directory_iterator(out))
      if (e.path().filename() != ".trawl") got[e.path().filename().string()] = sha256_file(e.path().string());
    REQUIRE(got.size() == files.size());
    for (const auto& f : files) {
      INFO(f.name);
      REQUIRE(got.count(f.name) == 1);
      CHECK(got[f.name] == manifest.sha.at(f.name));
    }
  }
}

namespace {

// `s` as a JSON string literal, escaped by hand (the captions hold quotes and line breaks).
std::string json_quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') (out += '\\') += c;
    else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else out += c;
  }
  return out + "\"";
}

std::vector<std::string> lines_of_file(const std::string& path) {
  std::vector<std::string> v;
  std::istringstream in(read_file(path));
  for (std::string line; std::getline(in, line);) v.push_back(line);
  return v;
}

} // namespace

TEST_CASE("sources: a CSV's captions reach the manifest, JSON Lines and CSV, also on resume", "[e2e][sources][manifest]") {
  auto fixture = FixtureServer::start({"--corpus", "classic"});
  const auto manifest = manifest_of(fixture);
  const auto files = files_of(classic_gallery(), false);
  // The meta of each file's link, as the fetcher builds it from /list.csv (id,url,caption,type).
  std::map<std::string, std::string> meta_of, caption_of; // url -> meta text, caption
  for (const auto& f : files) caption_of[fixture.url() + "/i/" + f.name] = caption_for(f, true);
  for (const auto& f : files)
    meta_of[fixture.url() + "/i/" + f.name] = "{\"id\":" + json_quoted(f.id) + ",\"caption\":" +
                                              json_quoted(caption_for(f, true)) + ",\"type\":" + json_quoted(f.type) + "}";
  TempDir dir("trawl-e2e-sources-manifest");
  const std::string out = dir / "out";
  auto run = [&](const std::string& manifest_file) {
    const std::string run_dir = dir / "run";
    fs::remove_all(run_dir); // a fresh pids file for each run
    fs::create_directories(run_dir);
    auto child = Child::spawn({TRAWL_PIPELINE, "--trawl", TRAWL_BIN, "--run-dir", run_dir,
                               "--progress", "none", "--source", fixture.url() + "/list.csv",
                               "--out", out, "--downloaders", "1", "--manifest", manifest_file,
                               "--", "--digest", "sha256"},
                              {}, dir / "stdout", dir / "stderr");
    auto status = child.wait_for(90s);
    if (!status)
      FAIL(stop_hung_pipeline(child, "pipeline did not finish within 90 s", run_dir,
                              dir / "stderr"));
    INFO("stdout:\n" << read_file(dir / "stdout") << "\nstderr:\n" << read_file(dir / "stderr"));
    REQUIRE(status);
    CHECK(*status == 0);
  };

  // First run: every row from a result; its "meta" is the link's columns, byte for byte.
  run(dir / "manifest.jsonl");
  const auto rows = lines_of_file(dir / "manifest.jsonl");
  REQUIRE(rows.size() == files.size());
  std::string want_csv = "id,url,path,node,status,http_code,bytes,sha256,attempts,ms,ttfb_ms,reason,error,meta\n";
  std::set<std::string> seen;
  std::map<std::uint64_t, std::string> csv_rows; // by id: the ledger pass writes them in id order
  for (const auto& line : rows) {
    INFO(line);
    const auto row = nlohmann::json::parse(line);
    const std::string url = row["url"];
    REQUIRE(meta_of.count(url) == 1);
    CHECK(seen.insert(url).second);
    CHECK(row["status"] == "done");
    const std::string name = url.substr(url.rfind('/') + 1);
    CHECK(row["sha256"] == manifest.sha.at(name));
    const std::string tail = ",\"meta\":" + meta_of[url] + "}";
    CHECK(line.size() > tail.size());
    CHECK(line.compare(line.size() - tail.size(), tail.size(), tail) == 0);
    CHECK(row["meta"]["caption"] == caption_of[url]);
    const auto id = row["id"].get<std::uint64_t>();
    csv_rows[id] = std::to_string(id) + "," + url + "," + csv_field(row["path"].get<std::string>()) + "," +
                   csv_field(row["node"].get<std::string>()) + ",skipped," +
                   std::to_string(row["http_code"].get<std::uint32_t>()) + "," +
                   std::to_string(row["bytes"].get<std::uint64_t>()) + "," + row["sha256"].get<std::string>() + "," +
                   std::to_string(row["attempts"].get<std::uint32_t>()) + ",,,,," + csv_field(meta_of[url]) + "\n";
  }

  // Second run, same state: nothing to download; every row comes from the ledger, with its meta.
  run(dir / "manifest.csv");
  for (const auto& [id, line] : csv_rows) want_csv += line;
  CHECK(read_file(dir / "manifest.csv") == want_csv);
}
