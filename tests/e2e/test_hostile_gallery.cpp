// End to end: the whole pipeline on a hostile URL list served against trawl-fixture's /h/ routes
// (tests/support/fixture_hostile.hpp): traversal names (plain, percent-encoded, absolute,
// backslashes), NUL and control bytes, an 8,000-byte name, names differing only in case, Windows
// device names, invalid UTF-8, '.', '..' and empty names, foreign schemes (listed and behind
// redirects), bodies beyond --max-size (announced or chunked), Content-Length lying both ways, a
// stalled and a silent server, and a gzip bomb, among good links. Checked: nothing is written
// outside --out (a canary directory beside it and the whole test tree are unchanged), --out holds
// only regular files with safe names, every good link is done and byte-exact, every bad link failed
// with the right reason in the ledger and the sink's summary, and every listed foreign or invalid
// URL is dropped by the fetcher with a line naming it.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <set>

#include "common/names.hpp"
#include "proto/reason.hpp"
#include "tests/e2e/hostile_support.hpp"
#include "tests/support/corpus.hpp"

namespace fs = std::filesystem;
using namespace trawl::testsupport;
using namespace trawl::e2e;
using trawl::proto::Reason;

namespace {

constexpr int kDone = 2, kFailed = 3;

std::string encode(std::string_view s) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

struct Good {
  std::string url;
  std::string sha256;
  std::uint64_t size;
};

struct Bad {
  std::string url;
  Reason reason;
};

} // namespace

TEST_CASE("a hostile gallery: nothing escapes --out, bad links fail with their reason, good links "
          "land byte-exact",
          "[e2e][hostile]") {
  auto fixture = FixtureServer::start();
  const std::string f = fixture.url();
  TempDir dir("trawl-e2e-hostile");
  const std::string out = dir / "out";
  const std::string canary = dir / "canary";
  fs::create_directories(canary + "/etc");
  std::ofstream(canary + "/etc/passwd") << "root:x:0:0::/root:/bin/sh\n";
  std::ofstream(canary + "/keep.txt") << "must not change\n";
  std::ofstream(dir / "passwd") << "beside --out\n";

  std::vector<Good> good;
  auto keyed = [&](const std::string& url_path, const std::string& key, std::uint64_t n) {
    good.push_back({f + url_path + (url_path.find('?') == std::string::npos ? "?" : "&") + "k=" +
                        encode(key) + "&n=" + std::to_string(n),
                    sha256_hex(file_bytes(key, n)), n});
  };
  keyed("/h/f/plain.bin", "plain", 5000);
  keyed("/h/../../etc/passwd", "dotdot", 3000); // dot segments: the request is for /etc/passwd
  keyed("/h/f/..%2f..%2fetc%2fpasswd", "encoded-dotdot", 3001);
  keyed("/h/f/%2e%2e%2f%2e%2e%2f%2e%2e%2fescape.txt", "encoded-dots", 3002);
  keyed("/h/f/%2Fetc%2Fshadow", "absolute", 3003);
  keyed("/h/f/..%5c..%5cwindows%5cwin.ini", "backslash-encoded", 3004);
  keyed("/h/f/a\\b\\..\\..\\c.txt", "backslash", 3005);
  keyed("/h/f/nul%00byte%0a%0d%1b%7f.txt", "control", 3006);
  // 8,000 bytes: Debian's httplib (a shared library) answers 414 to request URIs over 8 KiB.
  // 10,000-byte names are in the unit tests (test_names.cpp, test_hostile_servers.cpp).
  keyed("/h/f/" + std::string(8000, 'A') + ".jpg", "long", 3007);
  keyed("/h/f/Photo.JPG", "case-upper", 3008);
  keyed("/h/f/photo.jpg", "case-lower", 3009);
  keyed("/h/f/CON", "con", 3010);
  keyed("/h/f/nul.txt", "nul", 3011);
  keyed("/h/f/Com1.jpg", "com1", 3012);
  keyed("/h/f/LPT9.tar.gz", "lpt9", 3013);
  keyed("/h/f/%ff%fe%c3%28.bin", "bad-utf8", 3014);
  keyed("/h/f/%2e", "dot", 3015);
  keyed("/h/f/%2e%2e", "dotdot-name", 3016);
  keyed("/h/f/", "empty", 3017);
  keyed("/h/f/.trawl", "dotfile", 3018);
  keyed("/h/chunked", "chunked", 200000); // no Content-Length, under --max-size
  keyed("/h/f/redirected.bin", "redirected", 4000);
  const Good redirected = good.back();
  good.back().url = f + "/h/redirect?to=" + encode(redirected.url);
  // Content-Length 1000, then 5000 bytes: what was announced is the body; the rest is not kept.
  // It leaves 4000 stale bytes on its keep-alive connection; through another host name
  // ("localhost", its own connection pool entry) no other link's request can go out on that
  // connection and read them as its answer (which made the stalled and silent links end, now
  // and then, as `truncated` instead of `timeout`).
  std::string f_alone = f;
  if (const auto at = f_alone.find("127.0.0.1"); at != std::string::npos)
    f_alone.replace(at, 9, "localhost");
  good.push_back({f_alone + "/h/long?k=long-cl&n=1000&send=5000",
                  sha256_hex(file_bytes("long-cl", 1000)), 1000});
  // A gzip bomb with Content-Encoding: gzip is stored as sent (64 MiB if expanded: too large).
  const std::string bomb_facts = http_get(f + "/h/bomb.gz.sha256"); // "SHA256 SIZE"
  const std::string bomb_sha = bomb_facts.substr(0, 64);
  const std::uint64_t bomb_size = std::stoull(bomb_facts.substr(65));
  REQUIRE(bomb_size < 1'000'000);
  good.push_back({f + "/h/bomb.gz", bomb_sha, bomb_size});

  std::vector<Bad> bad;
  for (const std::string to : {"file:///etc/passwd", "ftp://127.0.0.1:1/x", "gopher://127.0.0.1:1/x",
                               "dict://127.0.0.1:1/x", "scp://127.0.0.1/x", "FILE:///etc/shadow"})
    bad.push_back({f + "/h/redirect?to=" + encode(to), Reason::scheme});
  bad.push_back({f + "/h/f/huge.bin?k=huge&n=3000000", Reason::too_large});      // announced
  bad.push_back({f + "/h/chunked?k=huge-chunked&n=3000000", Reason::too_large}); // not announced
  bad.push_back({f + "/h/short?k=short&n=100000&send=50000", Reason::truncated});
  bad.push_back({f + "/h/stall?k=stall&n=100000&after=1000&ms=15000", Reason::timeout});
  bad.push_back({f + "/h/silent?ms=15000", Reason::timeout});

  // Dropped by the fetcher: not http(s), not a URL, invalid UTF-8, longer than 16 KiB.
  const std::vector<std::string> dropped = {
      "file:///etc/passwd", "ftp://127.0.0.1:1/x", "gopher://127.0.0.1:1/x",
      "dict://127.0.0.1:1/x", "scp://127.0.0.1/x", "javascript:alert(1)", "/etc/passwd",
      f + "/h/f/\xff\xfe.bin", "http://" + std::string(20000, 'a') + "/x"};

  std::ofstream list(dir / "list.txt");
  std::map<std::size_t, std::string> dropped_lines;
  std::size_t line = 0;
  auto emit = [&](const std::string& url) {
    list << url << "\n";
    return ++line;
  };
  for (std::size_t i = 0; i < std::max(good.size(), bad.size()); ++i) {
    if (i < good.size()) emit(good[i].url);
    if (i < bad.size()) emit(bad[i].url);
    if (i < dropped.size()) dropped_lines[emit(dropped[i])] = dropped[i];
  }
  list.close();

  const auto before = tree(dir.path());
  const std::string state = dir / "state";
  auto r =
      run_pipeline(dir, "run",
                   {"--out", out, "--state", state, "--downloaders", "2", "--concurrency", "8",
                    // Two retries: a link whose request went out on the connection that
                    // /h/long left stale bytes on reads them as its answer (reason truncated,
                    // retryable), once; the stalled link spends one retry on its own timeout
                    // first, and was seen (once in a CI run) to meet the stale connection next.
                    "--", "--retries", "2", "--max-size", "1000000", "--low-speed-time", "2",
                    "--low-speed-limit", "1000", "--timeout", "30", "--digest", "sha256"},
                   dir / "list.txt", std::chrono::seconds(120));
  INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err.substr(0, 8000));
  CHECK(r.status == 1); // some links failed

  // Nothing outside --out changed: the whole test tree, less --out, the ledger and the run's
  // own files, is as it was.
  auto after = tree(dir.path());
  for (auto it = after.begin(); it != after.end();) {
    const std::string& p = it->first;
    const bool ours = p == "out" || p.starts_with("out/") || p == "state" ||
                      p.starts_with("state/") || p.starts_with("run.");
    it = ours ? after.erase(it) : std::next(it);
  }
  CHECK(after == before);
  CHECK(read_file(canary + "/etc/passwd") == "root:x:0:0::/root:/bin/sh\n");

  // --out holds regular files with safe names, nothing else.
  std::set<std::string> names_lower;
  std::size_t files = 0;
  for (const auto& [rel, what] : tree(out)) {
    INFO("in --out: " << rel << " " << what);
    CHECK(rel.find('/') == std::string::npos);
    CHECK(what.starts_with("f "));
    CHECK(trawl::is_safe_name(rel));
    CHECK_FALSE(rel.ends_with(".part"));
    std::string lower = rel;
    for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    CHECK(names_lower.insert(lower).second); // distinct also for a case-insensitive file system
    ++files;
  }
  CHECK(files == good.size());

  const auto ledger = read_ledger(state);
  CHECK(ledger.size() == good.size() + bad.size()); // the dropped ones never reached the vent
  for (const auto& g : good) {
    INFO("good: " << g.url.substr(0, 200));
    const auto row = ledger.find(g.url);
    REQUIRE(row != ledger.end());
    CHECK(row->second.state == kDone);
    CHECK(row->second.detail == "");
    CHECK(row->second.path == out + "/" + row->second.name);
    CHECK(row->second.bytes == g.size);
    CHECK(row->second.sha256 == g.sha256);
    if (row->second.state == kDone) CHECK(sha256_file(row->second.path) == g.sha256);
    CHECK(row->second.name.size() <= trawl::kMaxFileNameBytes);
  }
  for (const auto& b : bad) {
    INFO("bad: " << b.url);
    const auto row = ledger.find(b.url);
    REQUIRE(row != ledger.end());
    CHECK(row->second.state == kFailed);
    CHECK(row->second.reason == static_cast<int>(b.reason));
    CHECK(row->second.detail != "");
    CHECK_FALSE(fs::exists(out + "/" + row->second.name));
  }
  // The reserved and traversal names, as the ledger recorded them.
  auto name_of = [&](std::size_t i) { return ledger.at(good[i].url).name; };
  CHECK(name_of(1) == "passwd");
  CHECK(name_of(11) == "_CON");
  CHECK(name_of(12) == "_nul.txt");
  CHECK(name_of(13) == "_Com1.jpg");
  CHECK(name_of(14) == "_LPT9.tar.gz");
  CHECK(name_of(8).size() <= trawl::kMaxFileNameBytes);
  CHECK(name_of(8).ends_with(".jpg"));
  const std::string bomb = read_file(out + "/" + ledger.at(good.back().url).name);
  CHECK(bomb.substr(0, 2) == "\x1f\x8b");

  // The sink's summary names each reason; the fetcher named each dropped line.
  for (const char* reason : {"scheme", "too-large", "truncated", "timeout"})
    CHECK_THAT(r.out, Catch::Contains(reason));
  for (const auto& [n, url] : dropped_lines) {
    INFO("dropped: " << url.substr(0, 100));
    const bool too_long = url.size() > 16 * 1024;
    CHECK_THAT(r.err, Catch::Contains("line " + std::to_string(n) +
                                      (too_long ? ": longer than" : ": not a valid http(s) URL")));
  }
}

TEST_CASE("a job with --deny-private: links to loopback fail with reason denied, the server is "
          "never asked",
          "[e2e][hostile]") {
  auto fixture = FixtureServer::start({"--corpus", "uniform", "--count", "12", "--size", "2000"});
  TempDir dir("trawl-e2e-deny");
  const std::string out = dir / "out";
  const std::string state = dir / "state";
  std::ofstream(dir / "list.txt") << http_get(fixture.url() + "/list.txt");
  auto r = run_pipeline(dir, "run",
                        {"--out", out, "--state", state, "--downloaders", "2", "--concurrency", "4",
                         "--", "--deny-private", "--retries", "3"},
                        dir / "list.txt", std::chrono::seconds(60));
  INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err.substr(0, 8000));
  CHECK(r.status == 1);
  const auto ledger = read_ledger(state);
  CHECK(ledger.size() == 12);
  for (const auto& [url, row] : ledger) {
    INFO(url);
    CHECK(row.state == kFailed);
    CHECK(row.reason == static_cast<int>(Reason::denied));
    CHECK(row.detail == "refused by --deny-private: 127.0.0.1 (loopback)");
  }
  CHECK(tree(out).empty());
  const auto stats = http_get(fixture.url() + "/stats");
  CHECK_THAT(stats, Catch::Contains("\"file_requests\":0"));
  CHECK_THAT(r.out, Catch::Contains("denied"));
  CHECK_THAT(r.out, Catch::Contains("12 links: 0 done, 12 failed"));
}
