// Politeness, content checks and output layouts, end to end: the real sink, ventilator, two
// downloaders and the fetcher, against trawl-fixture listening as several virtual hosts
// (127.0.0.1:P1, 127.0.0.2:P2: the whole of 127/8 is loopback). Limits are judged where they
// matter, at the server: /stats counts each host's requests in flight (most at once) and when each
// request arrived. Every file that lands is checked byte for byte.
#include <catch2/catch.hpp>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sqlite3.h>
#include <sys/stat.h>
#include <thread>

#include "tests/support/corpus.hpp"
#include "tests/support/process.hpp"

namespace fs = std::filesystem;
using namespace trawl::testsupport;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// One job: sink, ventilator (with `vent_flags`), `downloaders` downloaders (with `dl_flags`) and
// the fetcher reading `urls` from a file; waits for the sink's exit.
struct JobResult {
  int status = -1;
  std::string summary;
  std::string out, state;
};

class Job {
public:
  Job(const TempDir& dir, std::vector<std::string> vent_flags, std::vector<std::string> dl_flags,
      int downloaders = 2)
      : dir_(dir), vent_flags_(std::move(vent_flags)), dl_flags_(std::move(dl_flags)),
        downloaders_(downloaders) {}

  JobResult run(const std::vector<std::string>& urls, std::chrono::seconds timeout = 90s) {
    const std::string ep = "ipc://" + dir_.path() + "/";
    const std::string list = dir_ / "urls.txt";
    {
      std::ofstream f(list);
      for (const auto& u : urls) f << u << "\n";
    }
    JobResult r;
    r.out = dir_ / "out";
    r.state = dir_ / "state";
    Child sink = spawn("sink", {"sink", "--bind", ep + "results", "--acks", ep + "acks", "--progress", "none"});
    std::vector<std::string> vent = {"vent", "--links", ep + "links", "--bind", ep + "tasks", "--acks",
                                     ep + "acks", "--sink", ep + "results", "--state", r.state};
    vent.insert(vent.end(), vent_flags_.begin(), vent_flags_.end());
    Child v = spawn("vent", vent);
    std::vector<Child> dls;
    for (int i = 0; i < downloaders_; ++i) {
      std::vector<std::string> dl = {"download", "--connect", ep + "tasks", "--sink", ep + "results",
                                     "--out", r.out, "--node", "node" + std::to_string(i)};
      dl.insert(dl.end(), dl_flags_.begin(), dl_flags_.end());
      dls.push_back(spawn("download" + std::to_string(i), dl));
    }
    Child fetch = spawn("fetch", {"fetch", "--source", list, "--connect", ep + "links"});
    const auto status = sink.wait_for(timeout);
    for (auto& d : dls) d.signal(SIGTERM);
    for (auto& d : dls) d.wait_for(20s);
    v.wait_for(10s);
    fetch.wait_for(5s);
    INFO("vent log:\n" << log("vent") << "\ndownload0 log:\n" << log("download0"));
    REQUIRE(status.has_value());
    r.status = *status;
    r.summary = read_file(dir_ / "sink.out");
    return r;
  }

  std::string log(const std::string& name) const {
    const std::string p = dir_ / (name + ".err");
    return fs::exists(p) ? read_file(p) : "";
  }

private:
  Child spawn(const std::string& name, std::vector<std::string> args) {
    args.insert(args.begin(), TRAWL_BIN);
    return Child::spawn(args, {}, dir_ / (name + ".out"), dir_ / (name + ".err"));
  }

  const TempDir& dir_;
  std::vector<std::string> vent_flags_, dl_flags_;
  int downloaders_;
};

// Every regular file under `out` (relative path -> SHA-256), the ledger directory aside.
std::map<std::string, std::string> tree(const std::string& out) {
  std::map<std::string, std::string> files;
  if (!fs::exists(out)) return files;
  for (auto it = fs::recursive_directory_iterator(out); it != fs::recursive_directory_iterator(); ++it) {
    const auto rel = fs::relative(it->path(), out).string();
    if (rel == ".trawl") {
      it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file()) files[rel] = sha256_file(it->path().string());
  }
  return files;
}

// url -> (state, reason, detail, name), from the ledger.
struct Row {
  int state = -1, reason = 0;
  std::string detail, name;
};
std::map<std::string, Row> ledger_rows(const std::string& state_dir) {
  sqlite3* db = nullptr;
  std::map<std::string, Row> rows;
  REQUIRE(sqlite3_open_v2((state_dir + "/ledger.sqlite").c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "SELECT url, state, coalesce(reason, 0), coalesce(detail, ''), name FROM links",
                             -1, &st, nullptr) == SQLITE_OK);
  auto text = [st](int c) {
    const auto* p = sqlite3_column_text(st, c);
    return p ? std::string(reinterpret_cast<const char*>(p)) : std::string();
  };
  while (sqlite3_step(st) == SQLITE_ROW)
    rows[text(0)] = Row{sqlite3_column_int(st, 1), sqlite3_column_int(st, 2), text(3), text(4)};
  sqlite3_finalize(st);
  sqlite3_close(db);
  return rows;
}

// A fixture with `vhosts` extra hosts; hosts()[0] is 127.0.0.1, hosts()[1] 127.0.0.2, ...
class Hosts {
public:
  explicit Hosts(std::vector<std::string> args, int vhosts) {
    args.push_back("--vhosts");
    args.push_back(std::to_string(vhosts));
    fixture_.emplace(FixtureServer::start(args));
    // The ready file names the virtual hosts; FixtureServer knows the first. Ask each for /stats
    // to be sure it answers, and learn its URL from the fixture's ready file in its log dir.
    urls_.push_back(fixture_->url());
    const auto ready = read_ready();
    for (int i = 1; i <= vhosts; ++i) {
      const auto it = ready.find("vhost." + std::to_string(i));
      REQUIRE(it != ready.end());
      urls_.push_back(it->second);
    }
  }
  const std::string& url(std::size_t i) const { return urls_.at(i); }
  // "127.0.0.2:PORT": the Host header, as /stats keys it.
  std::string host(std::size_t i) const { return urls_.at(i).substr(7); }
  // /stats once no request is in flight (a response reaches the client a moment before the
  // server counts it out).
  json stats() const {
    json j;
    for (int i = 0; i < 100; ++i) {
      j = json::parse(http_get(urls_[0] + "/stats"));
      bool quiet = true;
      for (const auto& [name, h] : j["hosts"].items()) quiet = quiet && h["in_flight"] == 0;
      if (quiet) break;
      std::this_thread::sleep_for(20ms);
    }
    return j;
  }

private:
  std::map<std::string, std::string> read_ready() {
    // FixtureServer's ready file lives next to its log.
    const std::string ready = fs::path(fixture_->log_path()).parent_path() / "ready";
    return wait_ready_file(ready, 5s);
  }
  std::optional<FixtureServer> fixture_;
  std::vector<std::string> urls_;
};

std::vector<std::string> corpus_urls(const std::string& base, std::size_t from, std::size_t n) {
  std::vector<std::string> urls;
  const auto items = uniform_corpus(from + n, 20000, 1);
  for (std::size_t i = from; i < from + n; ++i) urls.push_back(base + "/i/" + items[i].name);
  return urls;
}

std::string expected_sha(const std::string& url) {
  const auto name = url.substr(url.rfind('/') + 1);
  for (const auto& item : uniform_corpus(400, 20000, 1))
    if (item.name == name) return sha256_hex(file_bytes(item.name, item.size));
  FAIL("not in the corpus: " << url);
  return "";
}

std::vector<std::int64_t> times_of(const json& stats, const std::string& host) {
  return stats["hosts"][host]["times_ms"].get<std::vector<std::int64_t>>();
}

} // namespace

TEST_CASE("per-host cap: --per-host holds across two downloaders, as seen by each host", "[e2e][polite]") {
  for (const int cap : {3, 0}) {
    DYNAMIC_SECTION("--per-host " << cap) {
      Hosts hosts({"--corpus", "uniform", "--count", "400", "--size", "20000", "--delay-ms", "100"}, 1);
      std::vector<std::string> urls = corpus_urls(hosts.url(0), 0, 60);
      const auto more = corpus_urls(hosts.url(1), 60, 60);
      urls.insert(urls.end(), more.begin(), more.end());
      TempDir dir("trawl-e2e-perhost");
      Job job(dir, {"--per-host", std::to_string(cap)}, {"-j", "16"});
      const auto r = job.run(urls);
      CHECK(r.status == 0);
      const auto stats = hosts.stats();
      INFO(stats["hosts"].dump());
      for (std::size_t h = 0; h < 2; ++h) {
        const auto& s = stats["hosts"][hosts.host(h)];
        CHECK(s["requests"] == 60);
        CHECK(s["in_flight"] == 0); // every request counted in was counted out
        if (cap > 0) {
          CHECK(s["max_in_flight"].get<int>() <= cap);
          CHECK(s["max_in_flight"].get<int>() == cap); // and it was used
        } else {
          CHECK(s["max_in_flight"].get<int>() > 3); // without the cap the measure sees more
        }
      }
      std::map<std::string, std::string> expected;
      for (const auto& u : urls) expected[u.substr(u.rfind('/') + 1)] = expected_sha(u);
      CHECK(tree(r.out) == expected);
    }
  }
}

TEST_CASE("a host held to 5 requests/s does not slow another host", "[e2e][polite]") {
  Hosts hosts({"--corpus", "uniform", "--count", "400", "--size", "20000", "--delay-ms", "50"}, 1);
  // The strict host's links come first in the list: a first-in-first-out dispatcher would make
  // the other host's wait behind them.
  std::vector<std::string> urls = corpus_urls(hosts.url(0), 0, 16);
  const auto fast = corpus_urls(hosts.url(1), 16, 100);
  urls.insert(urls.end(), fast.begin(), fast.end());
  TempDir dir("trawl-e2e-rate");
  Job job(dir, {"--per-host", "8", "--host-rate", hosts.host(0) + "=5"}, {"-j", "16"});
  const auto r = job.run(urls);
  CHECK(r.status == 0);
  const auto stats = hosts.stats();
  const auto strict = times_of(stats, hosts.host(0));
  const auto free = times_of(stats, hosts.host(1));
  REQUIRE(strict.size() == 16);
  REQUIRE(free.size() == 100);
  INFO("strict host arrivals (ms): " << json(strict).dump() << "\nother host: " << json(free).dump());
  // The strict host: the ventilator spaces its 16 starts 200 ms apart. The server sees them a
  // little irregularly (a downloader's start latency varies: up to ~180 ms was seen for the first
  // requests of a job), so: at most 5.5/s over the whole run, never more than 5 in any second (+1
  // for the window's edges).
  CHECK(strict.back() - strict.front() >= 15 * 1000 / 5.5);
  for (std::size_t i = 0; i < strict.size(); ++i) {
    std::size_t in_window = 0;
    for (std::size_t k = i; k < strict.size() && strict[k] < strict[i] + 1000; ++k) ++in_window;
    CHECK(in_window <= 6);
  }
  // The other host: 100 files of 50 ms, 8 at a time, about 0.7 s; done long before the strict
  // host's last request, although its links came after all of the strict host's.
  CHECK(free.back() - free.front() < 2000);
  CHECK(free.back() < strict.back() - 1000);
  CHECK(tree(r.out).size() == 116);
}

TEST_CASE("429 with Retry-After from a host slows that host for every node", "[e2e][polite]") {
  Hosts hosts({"--corpus", "uniform", "--count", "400", "--size", "20000", "--delay-ms", "50"}, 1);
  std::vector<std::string> urls;
  const auto items = uniform_corpus(400, 20000, 1);
  // Host 1: its first request is answered 429, Retry-After: 2. Host 0: plenty of ordinary work.
  for (std::size_t i = 0; i < 30; ++i) urls.push_back(hosts.url(1) + "/x/busy/2/i/" + items[i].name);
  const auto other = corpus_urls(hosts.url(0), 30, 120);
  urls.insert(urls.end(), other.begin(), other.end());
  TempDir dir("trawl-e2e-429");
  Job job(dir, {"--per-host", "2"}, {"-j", "8"});
  const auto r = job.run(urls);
  CHECK(r.status == 0); // the 429 was retried after its pause
  const auto stats = hosts.stats();
  const auto busy = times_of(stats, hosts.host(1));
  const auto calm = times_of(stats, hosts.host(0));
  INFO("busy host arrivals (ms): " << json(busy).dump() << "\nother host: " << json(calm).dump()
                                   << "\nvent log:\n" << job.log("vent"));
  REQUIRE(busy.size() == 31); // 30 files + the one 429
  const auto t0 = busy.front();
  // Before the pause: the requests that were already out (at most --per-host). During it: none,
  // from either node, although both had room and the host had 28 links waiting.
  std::size_t early = 0, during = 0;
  for (auto t : busy) {
    if (t < t0 + 300) ++early;
    else if (t < t0 + 1800) ++during;
  }
  CHECK(early <= 3); // 2 out, and one more if a result beat the throttle message to the vent
  CHECK(during == 0);
  // Meanwhile the other host was served.
  std::size_t calm_during = 0;
  for (auto t : calm) calm_during += (t > t0 + 300 && t < t0 + 1800);
  CHECK(calm_during >= 10);
  CHECK_THAT(job.log("vent"), Catch::Contains("asked to wait 2000 ms"));
  CHECK(tree(r.out).size() == 150);
}

TEST_CASE("content checks: --expect image and --min-size: junk fails with reason content, nothing lands", "[e2e][polite]") {
  Hosts hosts({"--corpus", "uniform", "--count", "400", "--size", "20000"}, 0);
  const auto good = corpus_urls(hosts.url(0), 0, 5); // JPEGs
  std::vector<std::string> urls = good;
  const std::string html = hosts.url(0) + "/x/html/photo-of-the-day.jpg";
  const std::string tiny = hosts.url(0) + "/x/placeholder/removed.gif";
  urls.push_back(html);
  urls.push_back(tiny);
  TempDir dir("trawl-e2e-expect");
  Job job(dir, {}, {"--expect", "image", "--min-size", "100"});
  const auto r = job.run(urls);
  CHECK(r.status == 1);
  CHECK_THAT(r.summary, Catch::Contains("content"));
  std::map<std::string, std::string> expected;
  for (const auto& u : good) expected[u.substr(u.rfind('/') + 1)] = expected_sha(u);
  CHECK(tree(r.out) == expected); // no photo-of-the-day.jpg, no removed.gif, no .part
  const auto rows = ledger_rows(r.state);
  REQUIRE(rows.count(html));
  CHECK(rows.at(html).state == 3);
  CHECK(rows.at(html).reason == 17);
  CHECK_THAT(rows.at(html).detail, Catch::Contains("not an image") && Catch::Contains("HTML"));
  REQUIRE(rows.count(tiny));
  CHECK(rows.at(tiny).state == 3);
  CHECK(rows.at(tiny).reason == 17);
  CHECK_THAT(rows.at(tiny).detail, Catch::Contains("35 bytes"));
  for (const auto& u : good) CHECK(rows.at(u).state == 2);
}

TEST_CASE("layouts: --name and --shard produce exactly the expected tree", "[e2e][polite]") {
  Hosts hosts({"--corpus", "uniform", "--count", "400", "--size", "20000"}, 0);
  const auto urls = corpus_urls(hosts.url(0), 0, 5);
  auto ext = [](const std::string& u) { return u.substr(u.rfind('.')); };

  SECTION("index, 2 per directory") {
    TempDir dir("trawl-e2e-index");
    const auto r = Job(dir, {"--name", "index", "--shard", "2"}, {}).run(urls);
    CHECK(r.status == 0);
    std::map<std::string, std::string> expected;
    const char* dirs[] = {"0000", "0000", "0001", "0001", "0002"};
    for (std::size_t i = 0; i < urls.size(); ++i) {
      char name[32];
      std::snprintf(name, sizeof name, "%s/%09zu", dirs[i], i + 1);
      expected[name + ext(urls[i])] = expected_sha(urls[i]);
    }
    CHECK(tree(r.out) == expected);
  }
  SECTION("hash of the URL") {
    TempDir dir("trawl-e2e-hash");
    const auto r = Job(dir, {"--name", "hash"}, {}).run(urls);
    CHECK(r.status == 0);
    std::map<std::string, std::string> expected;
    for (const auto& u : urls) expected[sha256_hex(u) + ext(u)] = expected_sha(u);
    CHECK(tree(r.out) == expected);
  }
  SECTION("basename, 3 per directory") {
    TempDir dir("trawl-e2e-basename");
    const auto r = Job(dir, {"--shard", "3"}, {}).run(urls);
    CHECK(r.status == 0);
    std::map<std::string, std::string> expected;
    for (std::size_t i = 0; i < urls.size(); ++i)
      expected[std::string(i < 3 ? "0000/" : "0001/") + urls[i].substr(urls[i].rfind('/') + 1)] =
          expected_sha(urls[i]);
    CHECK(tree(r.out) == expected);
  }
}

TEST_CASE("dedupe: --dedupe-content stores identical bodies once, --user-agent and -H are sent", "[e2e][polite]") {
  Hosts hosts({"--corpus", "uniform", "--count", "400", "--size", "20000"}, 0);
  std::vector<std::string> urls = corpus_urls(hosts.url(0), 0, 2);
  for (const char* n : {"a.jpg", "b.jpg", "c.jpg"}) urls.push_back(hosts.url(0) + "/x/same/" + n);
  urls.push_back(hosts.url(0) + "/x/headers/seen.txt");
  TempDir dir("trawl-e2e-dedupe");
  const auto r = Job(dir, {"--shard", "2"},
                     {"--dedupe-content", "--user-agent", "polite-test/1", "-H", "X-Api-Token: s3cret",
                      "--header", "Accept: image/*"})
                     .run(urls);
  CHECK(r.status == 0);
  const auto files = tree(r.out);
  REQUIRE(files.size() == 6);
  // The three identical bodies: one inode, three names.
  std::set<ino_t> inodes;
  const auto rows = ledger_rows(r.state);
  int linked = 0;
  for (const char* n : {"a.jpg", "b.jpg", "c.jpg"}) {
    const auto& row = rows.at(hosts.url(0) + "/x/same/" + n);
    CHECK(row.state == 2);
    struct stat st {};
    REQUIRE(::stat((r.out + "/" + row.name).c_str(), &st) == 0);
    inodes.insert(st.st_ino);
    CHECK(st.st_nlink == 3);
    linked += row.detail.find("same content as") != std::string::npos;
  }
  CHECK(inodes.size() == 1);
  CHECK(linked == 2);
  const std::string headers = read_file(r.out + "/" + rows.at(hosts.url(0) + "/x/headers/seen.txt").name);
  CHECK_THAT(headers, Catch::Contains("User-Agent: polite-test/1"));
  CHECK_THAT(headers, Catch::Contains("X-Api-Token: s3cret"));
  CHECK_THAT(headers, Catch::Contains("Accept: image/*"));
}

TEST_CASE("headers: -H with CR or LF is refused before anything runs", "[e2e][polite]") {
  TempDir dir("trawl-e2e-badheader");
  auto child = Child::spawn({TRAWL_BIN, "download", "--out", dir / "out", "-H", "X-A: b\r\nHost: evil"}, {},
                            dir / "out.txt", dir / "err.txt");
  const auto status = child.wait_for(10s);
  REQUIRE(status);
  CHECK(*status == 2);
  CHECK_THAT(read_file(dir / "err.txt"), Catch::Contains("CR or LF"));
}

// --respect-robots: the fixture serves a robots.txt whose "trawl" group disallows /i/ but allows
// 6 of the 10 files by name (longer rules win); the "*" group's "Disallow: /" must not apply.
TEST_CASE("robots.txt: --respect-robots fails disallowed links with reason robots and are never "
          "requested",
          "[e2e][polite][robots]") {
  TempDir dir("trawl-e2e-robots");
  const std::vector<std::string> uniform = {"--corpus", "uniform", "--count",
                                            "400",      "--size",  "20000"};
  const std::string robots_path = dir / "robots.txt";
  auto by_path = [](const json& stats, const std::string& path) -> std::uint64_t {
    return stats["by_path"].contains(path) ? stats["by_path"][path].get<std::uint64_t>() : 0;
  };
  auto path_of = [](const std::string& url) { return url.substr(url.find('/', 7)); };

  SECTION("rules of the trawl group, longest match") {
    // The URLs only depend on the corpus, not on the port: learn them from a first fixture.
    std::vector<std::string> names;
    {
      Hosts probe(uniform, 0);
      for (const auto& u : corpus_urls(probe.url(0), 0, 10))
        names.push_back(u.substr(u.rfind('/') + 1));
    }
    {
      std::ofstream f(robots_path);
      f << "User-agent: *\nDisallow: /\n\n# trawl may take some files\nUser-agent: Trawl\n"
        << "Disallow: /i/\n";
      for (std::size_t i = 0; i < 6; ++i) f << "Allow: /i/" << names[i] << "$\n";
    }
    std::vector<std::string> args = uniform;
    args.insert(args.end(), {"--robots", robots_path});
    Hosts hosts(args, 0);
    const auto urls = corpus_urls(hosts.url(0), 0, 10);
    Job job(dir, {}, {"--respect-robots"});
    const auto r = job.run(urls);
    CHECK(r.status == 1);
    CHECK_THAT(r.summary, Catch::Contains("robots"));
    std::map<std::string, std::string> expected;
    for (std::size_t i = 0; i < 6; ++i) expected[names[i]] = expected_sha(urls[i]);
    CHECK(tree(r.out) == expected);
    const auto rows = ledger_rows(r.state);
    for (std::size_t i = 0; i < urls.size(); ++i) {
      INFO(urls[i]);
      REQUIRE(rows.count(urls[i]));
      if (i < 6) {
        CHECK(rows.at(urls[i]).state == 2);
      } else {
        CHECK(rows.at(urls[i]).state == 3);
        CHECK(rows.at(urls[i]).reason == 19);
        CHECK_THAT(rows.at(urls[i]).detail, Catch::Contains("Disallow: /i/"));
      }
    }
    const auto stats = hosts.stats();
    for (std::size_t i = 6; i < urls.size(); ++i) CHECK(by_path(stats, path_of(urls[i])) == 0);
    // Once per downloader process (two of them), not once per link.
    CHECK(by_path(stats, "/robots.txt") >= 1);
    CHECK(by_path(stats, "/robots.txt") <= 2);
    CHECK(stats["file_requests"] == 6);
  }

  SECTION("robots.txt answering 503: nothing of that host is fetched") {
    { std::ofstream(robots_path) << "User-agent: *\nAllow: /\n"; }
    std::vector<std::string> args = uniform;
    args.insert(args.end(), {"--robots", robots_path, "--robots-status", "503"});
    Hosts hosts(args, 0);
    const auto urls = corpus_urls(hosts.url(0), 0, 4);
    Job job(dir, {}, {"--respect-robots"});
    const auto r = job.run(urls);
    CHECK(r.status == 1);
    CHECK(tree(r.out).empty());
    const auto rows = ledger_rows(r.state);
    for (const auto& u : urls) {
      REQUIRE(rows.count(u));
      CHECK(rows.at(u).reason == 19);
      CHECK_THAT(rows.at(u).detail, Catch::Contains("HTTP 503"));
    }
    CHECK(hosts.stats()["file_requests"] == 0);
  }

  SECTION("no robots.txt (404): everything is fetched") {
    Hosts hosts(uniform, 0);
    const auto urls = corpus_urls(hosts.url(0), 0, 4);
    Job job(dir, {}, {"--respect-robots"});
    const auto r = job.run(urls);
    CHECK(r.status == 0);
    CHECK(tree(r.out).size() == 4);
    const auto stats = hosts.stats();
    CHECK(by_path(stats, "/robots.txt") >= 1);
    CHECK(stats["file_requests"] == 4);
  }
}
