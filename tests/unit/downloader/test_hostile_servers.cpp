// Hostile servers and URLs against one transfer and against the whole downloader: foreign schemes
// (also behind redirects), redirect loops, bodies longer or shorter than announced or never
// announced, servers that never answer or trickle, compressed bodies (stored as sent), planted
// symbolic links in --out, hostile names through the ventilator's naming, and --deny-private.
// Servers are raw sockets or cpp-httplib on 127.0.0.1; every loop is bounded in count and time,
// and the limits are set to a second so the whole file runs in seconds.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <fcntl.h>
#include <functional>
#include <mutex>
#include <poll.h>
#include <set>
#include <sys/stat.h>
#include <thread>

#include "broker/names.hpp"
#include "common/exit_codes.hpp"
#include "common/names.hpp"
#include "downloader/address_policy.hpp"
#include "downloader/transfer.hpp"
#include "tests/unit/downloader/harness.hpp"

using namespace trawl::dltest;
using trawl::downloader::Finished;
using trawl::downloader::Transfer;
using trawl::downloader::TransferSettings;
using Clock = std::chrono::steady_clock;

namespace {

// Sleeps `ms` in slices; false when told to quit meanwhile.
bool pause_for(int ms, const std::atomic<bool>& quit) {
  for (int i = 0; i < ms / 10 && !quit; ++i) std::this_thread::sleep_for(10ms);
  return !quit;
}

// Reads (and drops) the request head.
bool read_request(int fd) {
  static const std::atomic<bool> never{false};
  std::string head;
  return read_request_head(fd, head, never);
}

// Limits of a second, so that every bad server is given up on within about two.
TransferSettings tight() {
  TransferSettings s;
  s.connect_timeout_s = 1;
  s.low_speed_time_s = 1;
  s.low_speed_limit = 1024;
  s.timeout_s = 0;
  s.max_redirects = 3;
  s.max_size = 64 * 1024;
  s.user_agent = "trawl-test";
  return s;
}

struct Fetched {
  Finished f;
  std::chrono::milliseconds took{};
};

// One attempt of one transfer, driven by curl_easy_perform, into `dir/name`.
Fetched fetch_once(const std::string& url, const TransferSettings& s, const fs::path& dir,
                   const std::string& name = "body.bin") {
  trawl::downloader::curl_global_once();
  Transfer t(EVP_sha256());
  REQUIRE(t.begin(Task{1, url, name, 1}, 1, s, (dir / ".trawl-test.part").string()).empty());
  const auto t0 = Clock::now();
  const CURLcode code = curl_easy_perform(t.easy().get());
  Fetched r;
  r.took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
  r.f = t.finish(code, (dir / name).string());
  return r;
}

std::string describe(const Finished& f) {
  return std::string(trawl::proto::reason_name(f.reason)) + " (" + f.detail + "), HTTP " +
         std::to_string(f.http_status);
}

// 1 MiB of zeros, gzip -9: 1051 bytes, mostly zeros; the non-zero bytes are listed.
std::string gzip_of_a_mebibyte_of_zeros() {
  std::string z(1051, '\0');
  const std::pair<int, unsigned char> set[] = {
      {0, 31},    {1, 139},   {2, 8},     {8, 2},     {9, 3},     {10, 237},  {11, 193},
      {12, 49},   {13, 1},    {17, 194},  {18, 160},  {19, 245},  {20, 79},   {21, 109},
      {22, 8},    {23, 95},   {24, 160},  {1041, 62}, {1042, 3},  {1043, 28}, {1044, 234},
      {1045, 56}, {1046, 167}, {1049, 16}};
  for (const auto& [at, b] : set) z[static_cast<std::size_t>(at)] = static_cast<char>(b);
  return z;
}

} // namespace

TEST_CASE("hostile: only http and https, as task URLs and as redirect targets", "[downloader][hostile]") {
  TempDir tmp;
  Server server;
  const std::vector<std::string> foreign = {
      "file:///etc/passwd", "FILE:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1/x",
      "dict://127.0.0.1/d:x", "scp://127.0.0.1/x", "ldap://127.0.0.1/x", "telnet://127.0.0.1/",
      "smb://127.0.0.1/x"};
  auto& svr = server.svr();
  svr.Get(R"(/to/(\d+))", [&](const httplib::Request& req, httplib::Response& res) {
    res.set_redirect(foreign.at(std::stoul(req.matches[1].str())));
  });
  std::atomic<int> loop_hits{0};
  svr.Get("/loop", [&](const httplib::Request&, httplib::Response& res) {
    ++loop_hits;
    res.set_redirect("/loop");
  });
  svr.Get("/ok", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content("fine", "text/plain");
  });
  server.start();

  for (std::size_t i = 0; i < foreign.size(); ++i) {
    INFO(foreign[i]);
    const auto direct = fetch_once(foreign[i], tight(), tmp.path);
    CHECK(direct.f.reason == Reason::scheme);
    CHECK(direct.f.http_status == 0);
    const auto via = fetch_once(server.url("/to/" + std::to_string(i)), tight(), tmp.path);
    INFO(describe(via.f));
    CHECK(via.f.reason == Reason::scheme);
    CHECK(via.f.http_status == 302);
    CHECK_FALSE(fs::exists(tmp.path / "body.bin"));
  }
  const auto loop = fetch_once(server.url("/loop"), tight(), tmp.path);
  CHECK(loop.f.reason == Reason::redirects);
  CHECK(loop_hits == 4); // the request and three redirects (max_redirects = 3)
  CHECK(fetch_once(server.url("/ok"), tight(), tmp.path).f.reason == Reason::none);
  CHECK(part_files(tmp.path).empty());
}

TEST_CASE("hostile: bodies that lie about their length", "[downloader][hostile]") {
  TempDir tmp;
  const std::string big = pattern_body(200 * 1024, 11);

  SECTION("more than Content-Length: only the announced bytes are kept") {
    RawServer srv([&](int fd, const std::atomic<bool>&) {
      if (!read_request(fd)) return;
      send_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n");
      send_all(fd, big);
    });
    const auto r = fetch_once(srv.url("/more"), tight(), tmp.path);
    INFO(describe(r.f));
    REQUIRE(r.f.reason == Reason::none);
    CHECK(r.f.bytes == 10);
    CHECK(read_file(tmp.path / "body.bin") == big.substr(0, 10));
  }
  SECTION("no Content-Length, more than --max-size: too-large, nothing kept") {
    for (const char* head : {"HTTP/1.0 200 OK\r\n\r\n", "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"}) {
      INFO(head);
      RawServer srv([&](int fd, const std::atomic<bool>&) {
        if (!read_request(fd)) return;
        send_all(fd, head);
        send_all(fd, big);
      });
      const auto r = fetch_once(srv.url("/unannounced"), tight(), tmp.path);
      INFO(describe(r.f));
      CHECK(r.f.reason == Reason::too_large);
      CHECK_FALSE(fs::exists(tmp.path / "body.bin"));
    }
  }
  SECTION("Content-Length above --max-size: refused before the body") {
    RawServer srv([&](int fd, const std::atomic<bool>&) {
      if (!read_request(fd)) return;
      send_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 1099511627776\r\n\r\nxyz");
    });
    const auto r = fetch_once(srv.url("/huge"), tight(), tmp.path);
    CHECK(r.f.reason == Reason::too_large);
    CHECK_FALSE(fs::exists(tmp.path / "body.bin"));
  }
  SECTION("less than Content-Length, then the connection closes: truncated, nothing kept") {
    RawServer srv([&](int fd, const std::atomic<bool>&) {
      if (!read_request(fd)) return;
      send_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
      send_all(fd, big.substr(0, 500));
    });
    const auto r = fetch_once(srv.url("/short"), tight(), tmp.path);
    INFO(describe(r.f));
    CHECK(r.f.reason == Reason::truncated);
    CHECK(r.f.path.empty());
    CHECK_FALSE(fs::exists(tmp.path / "body.bin"));
  }
  SECTION("a chunked body cut before its last chunk: truncated") {
    RawServer srv([&](int fd, const std::atomic<bool>&) {
      if (!read_request(fd)) return;
      send_all(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n");
      send_all(fd, big.substr(0, 0x400));
      send_all(fd, "\r\n400\r\nabc");
    });
    const auto r = fetch_once(srv.url("/chunks"), tight(), tmp.path);
    INFO(describe(r.f));
    CHECK(r.f.reason == Reason::truncated);
    CHECK_FALSE(fs::exists(tmp.path / "body.bin"));
  }
  CHECK(part_files(tmp.path).empty());
}

TEST_CASE("hostile: servers that stall or trickle give up their slot", "[downloader][hostile]") {
  TempDir tmp;
  SECTION("never answers") {
    RawServer srv([](int fd, const std::atomic<bool>& quit) {
      if (read_request(fd)) pause_for(10000, quit);
    });
    const auto r = fetch_once(srv.url("/silent"), tight(), tmp.path);
    INFO(describe(r.f));
    CHECK(r.f.reason == Reason::timeout);
    CHECK(r.took < 4s);
  }
  SECTION("trickles the header, a byte every 200 ms") {
    RawServer srv([](int fd, const std::atomic<bool>& quit) {
      if (!read_request(fd) || !send_all(fd, "HTTP/1.1 200 OK\r\nX-Slow: ")) return;
      for (int i = 0; i < 50 && pause_for(200, quit); ++i)
        if (!send_all(fd, "a")) return;
    });
    const auto r = fetch_once(srv.url("/slow-head"), tight(), tmp.path);
    INFO(describe(r.f));
    CHECK(r.f.reason == Reason::timeout);
    CHECK(r.took < 4s);
  }
  SECTION("trickles the body, a byte every 100 ms, below --low-speed-limit") {
    RawServer srv([](int fd, const std::atomic<bool>& quit) {
      if (!read_request(fd) || !send_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"))
        return;
      for (int i = 0; i < 100 && pause_for(100, quit); ++i)
        if (!send_all(fd, "b")) return;
    });
    const auto r = fetch_once(srv.url("/slow-body"), tight(), tmp.path);
    INFO(describe(r.f));
    CHECK(r.f.reason == Reason::timeout);
    CHECK(r.took < 4s);
    CHECK_FALSE(fs::exists(tmp.path / "body.bin"));
  }
  SECTION("fast enough for the low-speed check, but --timeout ends it") {
    RawServer srv([](int fd, const std::atomic<bool>& quit) {
      if (!read_request(fd) ||
          !send_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n"))
        return;
      const std::string chunk(4096, 'c');
      for (int i = 0; i < 200 && pause_for(20, quit); ++i)
        if (!send_all(fd, chunk)) return;
    });
    auto s = tight();
    s.timeout_s = 1;
    s.max_size = 1ULL << 30;
    const auto r = fetch_once(srv.url("/endless"), s, tmp.path);
    INFO(describe(r.f));
    CHECK(r.f.reason == Reason::timeout);
    CHECK(r.took >= 900ms);
    CHECK(r.took < 3s);
    CHECK_FALSE(fs::exists(tmp.path / "body.bin"));
  }
  SECTION("never accepts (a full listen queue): the connect timeout") {
    RawServer srv([](int, const std::atomic<bool>&) {}, /*accept=*/false);
    // Fill the accept queue so the kernel drops further SYNs.
    std::vector<int> fillers;
    for (int i = 0; i < 8; ++i) {
      const int c = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      REQUIRE(c >= 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      addr.sin_port = htons(static_cast<std::uint16_t>(srv.port()));
      ::connect(c, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
      fillers.push_back(c);
    }
    const auto r = fetch_once(srv.url("/nobody"), tight(), tmp.path);
    for (int c : fillers) ::close(c);
    INFO(describe(r.f));
    CHECK(r.f.reason == Reason::timeout);
    CHECK(r.took < 4s);
  }
  CHECK(part_files(tmp.path).empty());
}

TEST_CASE("hostile: a gzip body is stored as sent, never expanded", "[downloader][hostile]") {
  TempDir tmp;
  const std::string gz = gzip_of_a_mebibyte_of_zeros();
  Server server;
  std::string accept_encoding = "unset";
  server.svr().Get("/bomb.bin", [&](const httplib::Request& req, httplib::Response& res) {
    accept_encoding = req.get_header_value("Accept-Encoding");
    res.set_header("Content-Encoding", "gzip");
    res.set_content(gz, "application/octet-stream");
  });
  server.start();
  auto s = tight();
  s.max_size = 4096; // far below the 1 MiB it would expand to
  const auto r = fetch_once(server.url("/bomb.bin"), s, tmp.path);
  INFO(describe(r.f));
  REQUIRE(r.f.reason == Reason::none);
  CHECK(r.f.bytes == gz.size());
  CHECK(r.f.sha256 == sha256_hex(gz));
  CHECK(read_file(tmp.path / "body.bin") == gz);
  CHECK(accept_encoding.empty()); // trawl asks for no encoding
}

TEST_CASE("hostile: a link planted at the final name is replaced, never written through",
          "[downloader][hostile]") {
  TempDir tmp;
  const fs::path out = tmp.path / "out";
  const fs::path outside = tmp.path / "outside";
  fs::create_directories(out);
  fs::create_directories(outside);
  std::ofstream(outside / "secret.txt") << "secret";
  fs::create_symlink(outside / "secret.txt", out / "victim.bin");
  fs::create_symlink(outside / "created-by-trawl", out / "dangling.bin");
  fs::create_directory_symlink(outside, out / "dirlink");
  fs::create_directories(out / "a-directory");

  Server server;
  server.svr().Get(R"(/(.+))", [&](const httplib::Request& req, httplib::Response& res) {
    res.set_content("payload of " + req.matches[1].str(), "application/octet-stream");
  });
  server.start();

  trawl::downloader::DownloadOptions o;
  o.out = out.string();
  o.retries = 0;
  Harness h(o);
  const std::vector<Task> tasks = {{1, server.url("/victim.bin"), "victim.bin", 1},
                                   {2, server.url("/dangling.bin"), "dangling.bin", 1},
                                   {3, server.url("/dirlink"), "dirlink", 1},
                                   {4, server.url("/a-directory"), "a-directory", 1}};
  for (const auto& t : tasks) h.send(t);
  auto results = h.collect(tasks.size(), 10s);
  REQUIRE(results.size() == tasks.size());
  for (std::uint64_t id = 1; id <= 3; ++id) {
    const auto& t = tasks[id - 1];
    check_done(results[id], t, out, "payload of " + t.url.substr(t.url.rfind('/') + 1));
    CHECK_FALSE(fs::is_symlink(out / t.name));
    CHECK(fs::is_regular_file(fs::symlink_status(out / t.name)));
  }
  CHECK(read_file(outside / "secret.txt") == "secret");
  CHECK_FALSE(fs::exists(outside / "created-by-trawl"));
  std::size_t outside_entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(outside)) ++outside_entries;
  CHECK(outside_entries == 1);
  // A directory in the way is not replaced: the link fails with io and the directory stays.
  CHECK(results[4].status == Status::failed);
  CHECK(results[4].reason == Reason::io);
  CHECK(fs::is_directory(out / "a-directory"));
  CHECK(h.stop() == trawl::kExitOk);
  CHECK(part_files(tmp.path).empty());
}

TEST_CASE("hostile: a link planted at the temporary name is not followed", "[downloader][hostile]") {
  TempDir tmp;
  std::ofstream(tmp.path / "target") << "untouched";
  const fs::path temp = tmp.path / ".trawl-planted.part";
  fs::create_symlink(tmp.path / "target", temp);
  fs::create_symlink(tmp.path / "nowhere", tmp.path / ".trawl-dangling.part");
  trawl::downloader::curl_global_once();
  Transfer t(EVP_sha256());
  const auto err = t.begin(Task{1, "http://127.0.0.1:1/x", "x", 1}, 1, tight(), temp.string());
  CHECK_THAT(err, Catch::Contains("File exists"));
  t.discard();
  Transfer t2(EVP_sha256());
  CHECK_FALSE(t2.begin(Task{2, "http://127.0.0.1:1/y", "y", 1}, 1, tight(),
                       (tmp.path / ".trawl-dangling.part").string())
                  .empty());
  t2.discard();
  CHECK(read_file(tmp.path / "target") == "untouched");
  CHECK_FALSE(fs::exists(tmp.path / "nowhere"));
  CHECK(fs::is_symlink(temp)); // left as it was: not ours to remove
}

TEST_CASE("hostile: URLs through the ventilator's naming and the downloader land inside --out",
          "[downloader][hostile]") {
  TempDir tmp;
  const fs::path out = tmp.path / "out";
  Server server;
  std::atomic<int> hits{0};
  server.svr().Get(R"(/.*)", [&](const httplib::Request&, httplib::Response& res) {
    ++hits;
    res.set_content("same body", "application/octet-stream");
  });
  server.start();
  const std::string base = server.url("");
  const std::string long_name(10000, 'L');
  std::string invalid_utf8 = "/bad\xC0\xAF\xFF\xED\xA0\x80.jpg";
  const std::vector<std::string> urls = {
      base + "/a/../../etc/passwd",      base + "/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
      base + "/%2e%2e",                  base + "/%2e",
      base + "/x/%2F%2Fetc%2Fshadow",    base + "/%2Fabs%2Fpath.jpg",
      base + "/a%5c..%5c..%5cwin.ini",   base + "/nul%00byte.jpg",
      base + "/ctl%01%1b%7f.jpg",        base + "/" + long_name + ".jpg",
      base + "/" + long_name,            base + "/Case.JPG",
      base + "/case.jpg",                base + "/CASE.jpg",
      base + "/",                        base + "/dir/",
      base + "/.",                       base + "/..",
      base + invalid_utf8,               base + "/%C0%AF.jpg",
      base + "/.hidden",                 base + "/trailing.%20.",
      base + "/?name=../../x",           base + "/pic.jpg#../../y",
  };
  trawl::broker::NameAssigner names;
  std::vector<Task> tasks;
  std::set<std::string> folded;
  for (const auto& url : urls) {
    Task t{tasks.size() + 1, url, names.assign(url), 1};
    INFO(url << " -> " << t.name);
    CHECK(trawl::is_safe_name(t.name));
    CHECK(t.name.size() <= trawl::kMaxFileNameBytes);
    std::string lower = t.name;
    for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    CHECK(folded.insert(lower).second); // unique, also ignoring case
    tasks.push_back(std::move(t));
  }

  trawl::downloader::DownloadOptions o;
  o.out = out.string();
  o.retries = 0;
  o.concurrency = 8;
  Harness h(o);
  // At most the downloader's capacity at a time.
  std::map<std::uint64_t, Result> results;
  for (std::size_t i = 0; i < tasks.size(); i += 8) {
    for (std::size_t k = i; k < std::min(tasks.size(), i + 8); ++k) h.send(tasks[k]);
    auto got = h.collect(std::min<std::size_t>(8, tasks.size() - i), 10s);
    results.insert(got.begin(), got.end());
  }
  REQUIRE(results.size() == tasks.size());
  for (const auto& t : tasks) {
    const auto& r = results[t.id];
    INFO(t.url << " -> " << t.name << ": " << trawl::proto::reason_name(r.reason) << " "
                 << r.detail);
    // The server may refuse a 10,000-byte path (414): then nothing is written.
    if (r.status == Status::done) {
      CHECK(fs::path(r.path).parent_path() == out);
      CHECK(fs::is_regular_file(out / t.name));
    } else {
      CHECK(r.path.empty());
      CHECK_FALSE(fs::exists(out / t.name));
    }
  }
  // Once it stopped (a running downloader keeps empty temporary files ready): nothing beside
  // --out, nothing but the named files inside it.
  CHECK(h.stop() == trawl::kExitOk);
  std::size_t beside = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(tmp.path)) ++beside;
  CHECK(beside == 1);
  std::size_t files = 0;
  for (const auto& e : fs::recursive_directory_iterator(out)) {
    CHECK(e.is_regular_file());
    ++files;
  }
  std::size_t done = 0;
  for (const auto& [id, r] : results) done += r.status == Status::done;
  CHECK(files == done);
  CHECK(done >= tasks.size() - 2);
}

TEST_CASE("hostile: the downloader refuses unsafe names it is sent", "[downloader][hostile]") {
  TempDir tmp;
  const fs::path out = tmp.path / "out";
  Server server;
  server.svr().Get("/x", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("x", "text/plain");
  });
  server.start();
  trawl::downloader::DownloadOptions o;
  o.out = out.string();
  Harness h(o);
  const std::vector<std::string> bad = {
      "/etc/passwd", "../x", "a/b", "..", ".", ".hidden", "a\\b", std::string("a\0b", 3),
      "tab\there", "\xFF.jpg", "trailing.", " lead", std::string(201, 'a'), "a\x7f", "con:x"};
  std::vector<Task> tasks;
  for (const auto& name : bad) tasks.push_back(Task{tasks.size() + 1, server.url("/x"), name, 1});
  std::map<std::uint64_t, Result> results;
  for (std::size_t i = 0; i < tasks.size(); i += 8) {
    for (std::size_t k = i; k < std::min(tasks.size(), i + 8); ++k) h.send(tasks[k]);
    auto got = h.collect(std::min<std::size_t>(8, tasks.size() - i), 10s);
    results.insert(got.begin(), got.end());
  }
  REQUIRE(results.size() == tasks.size());
  for (const auto& t : tasks) {
    INFO("name: " << t.name);
    const auto& r = results[t.id];
    CHECK(r.status == Status::failed);
    CHECK(r.reason == Reason::bad_url);
    CHECK(r.path.empty());
    CHECK(r.attempt == 1);
    CHECK_THAT(r.detail, Catch::StartsWith("unsafe file name: "));
    CHECK(r.detail.size() <= trawl::proto::kMaxDetailBytes);
  }
  CHECK(h.stop() == trawl::kExitOk); // a running downloader keeps empty temporary files ready
  std::size_t entries = 0;
  for ([[maybe_unused]] const auto& e : fs::recursive_directory_iterator(tmp.path)) ++entries;
  CHECK(entries == 1); // out itself, empty
}

namespace {
std::string_view deny_127_0_0_2(const sockaddr* sa, socklen_t len) noexcept {
  return trawl::downloader::address_text(sa, len) == "127.0.0.2" ? "test range" : "";
}
} // namespace

TEST_CASE("hostile: --deny-private refuses loopback, without retry, allows it when off",
          "[downloader][hostile][address]") {
  TempDir tmp;
  Server server;
  std::atomic<int> hits{0};
  server.svr().Get("/f.bin", [&](const httplib::Request&, httplib::Response& res) {
    ++hits;
    res.set_content("internal", "application/octet-stream");
  });
  server.start();
  const std::string localhost_url =
      "http://localhost:" + server.url("").substr(server.url("").rfind(':') + 1) + "/f.bin";

  {
    trawl::downloader::DownloadOptions o;
    o.out = tmp.path.string();
    o.deny_private = true;
    o.retries = 3;
    Harness h(o);
    const Task t1{1, server.url("/f.bin"), "f.bin", 1};
    const Task t2{2, localhost_url, "g.bin", 1};
    const Task t3{3, "http://[::ffff:127.0.0.1]:1/f.bin", "h.bin", 1};
    h.send(t1);
    h.send(t2);
    h.send(t3);
    auto results = h.collect(3, 10s);
    REQUIRE(results.size() == 3);
    check_failed(results[1], t1, tmp.path, Reason::denied, 0, 1); // one attempt: no retry
    CHECK(results[1].detail == "refused by --deny-private: 127.0.0.1 (loopback)");
    check_failed(results[2], t2, tmp.path, Reason::denied, 0, 1);
    CHECK_THAT(results[2].detail, Catch::StartsWith("refused by --deny-private: ") &&
                                      Catch::EndsWith(" (loopback)"));
    check_failed(results[3], t3, tmp.path, Reason::denied, 0, 1);
    CHECK(hits == 0);
    CHECK(h.stop() == trawl::kExitOk);
  }
  {
    trawl::downloader::DownloadOptions o;
    o.out = tmp.path.string();
    Harness h(o);
    const Task t{1, server.url("/f.bin"), "f.bin", 1};
    h.send(t);
    auto results = h.collect(1, 10s);
    REQUIRE(results.size() == 1);
    check_done(results[1], t, tmp.path, "internal");
    CHECK(hits == 1);
    CHECK(h.stop() == trawl::kExitOk);
  }
}

TEST_CASE("hostile: the address check also holds after a redirect", "[downloader][hostile][address]") {
  TempDir tmp;
  // Two loopback addresses: a test filter refuses only 127.0.0.2, standing for an internal host
  // that a public one redirects to.
  httplib::Server inner;
  std::atomic<int> inner_hits{0};
  inner.Get("/secret", [&](const httplib::Request&, httplib::Response& res) {
    ++inner_hits;
    res.set_content("secret", "text/plain");
  });
  const int inner_port = inner.bind_to_any_port("127.0.0.2");
  REQUIRE(inner_port > 0);
  std::thread inner_thread([&] { inner.listen_after_bind(); });
  while (!inner.is_running()) std::this_thread::sleep_for(1ms);

  Server outer;
  const std::string inner_url = "http://127.0.0.2:" + std::to_string(inner_port) + "/secret";
  outer.svr().Get("/go", [&](const httplib::Request&, httplib::Response& res) {
    res.set_redirect(inner_url);
  });
  outer.start();

  auto s = tight();
  s.address_filter = &deny_127_0_0_2;
  const auto direct = fetch_once(inner_url, s, tmp.path);
  CHECK(direct.f.reason == Reason::denied);
  CHECK(direct.f.permanent);
  const auto r = fetch_once(outer.url("/go"), s, tmp.path);
  INFO(describe(r.f));
  CHECK(r.f.reason == Reason::denied);
  CHECK(r.f.permanent);
  CHECK(r.f.detail == "refused by --deny-private: 127.0.0.2 (test range)");
  CHECK(inner_hits == 0);
  CHECK_FALSE(fs::exists(tmp.path / "body.bin"));

  // The same redirect without the filter reaches the inner server: the test proves the check.
  const auto open = fetch_once(outer.url("/go"), tight(), tmp.path);
  CHECK(open.f.reason == Reason::none);
  CHECK(inner_hits == 1);

  inner.stop();
  inner_thread.join();
}
