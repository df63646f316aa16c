// The downloader end to end within one process: run() in a thread, an in-process HTTP server on
// 127.0.0.1, a ROUTER socket that plays the ventilator and a PULL socket that plays the sink
// (harness.hpp).
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <ctime>
#include <mutex>
#include <set>
#include <thread>

#include <CLI/CLI.hpp>

#include "common/exit_codes.hpp"
#include "downloader/transfer.hpp"
#include "tests/unit/downloader/harness.hpp"

using namespace trawl::dltest;

TEST_CASE("downloader: files, failures, a retry, redirects and the size cap", "[downloader]") {
  TempDir tmp;
  const fs::path out = tmp.path / "out" / "nested"; // run() creates it
  const std::string body_a = pattern_body(40 * 1024, 1);
  const std::string body_r = pattern_body(1000, 2);
  const std::string body_big = pattern_body(100 * 1024, 3);

  Server server;
  std::atomic<int> flaky_hits{0};
  auto& svr = server.svr();
  svr.Get("/a.bin", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(body_a, "application/octet-stream");
  });
  svr.Get("/empty", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content("", "text/plain");
  });
  svr.Get("/missing", [&](const httplib::Request&, httplib::Response& res) {
    res.status = 404;
    res.set_content("no such thing", "text/plain");
  });
  svr.Get("/flaky", [&](const httplib::Request&, httplib::Response& res) {
    if (flaky_hits.fetch_add(1) == 0) {
      res.status = 500;
      res.set_content("try again", "text/plain");
      return;
    }
    res.set_content("recovered", "text/plain");
  });
  svr.Get("/redirect", [&](const httplib::Request&, httplib::Response& res) {
    res.set_redirect("/target");
  });
  svr.Get("/target", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(body_r, "application/octet-stream");
  });
  svr.Get("/to-file", [&](const httplib::Request&, httplib::Response& res) {
    res.set_redirect("file:///etc/passwd");
  });
  svr.Get("/big", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(body_big, "application/octet-stream"); // announces its length
  });
  svr.Get("/big-chunked", [&](const httplib::Request&, httplib::Response& res) {
    // No Content-Length: only the running count in the write callback can catch it.
    res.set_chunked_content_provider("application/octet-stream",
                                     [&](std::size_t offset, httplib::DataSink& sink) {
                                       if (offset >= body_big.size()) {
                                         sink.done();
                                         return true;
                                       }
                                       const auto n = std::min<std::size_t>(
                                           8192, body_big.size() - offset);
                                       return sink.write(body_big.data() + offset, n);
                                     });
  });
  server.start();

  trawl::downloader::DownloadOptions o;
  o.out = out.string();
  o.concurrency = 4; // fewer slots than tasks: exercises the cap and the reuse of handles
  o.max_size = 64 * 1024;
  o.retries = 2;
  o.grace = 2000ms;
  Harness h(o);

  const std::vector<Task> tasks = {
      {1, server.url("/a.bin"), "a.bin", 1},
      {2, server.url("/empty"), "empty.txt", 1},
      {3, server.url("/missing"), "missing.txt", 1},
      {4, server.url("/flaky"), "flaky.txt", 1},
      {5, server.url("/redirect"), "redirected.bin", 1},
      {6, server.url("/to-file"), "passwd", 1},
      {7, server.url("/big"), "big.bin", 1},
      {8, server.url("/big-chunked"), "big-chunked.bin", 1},
      {9, server.url("/a.bin"), "../x", 1},
  };
  h.send(tasks[0]);
  // Frames that are not tasks are dropped (and counted); the downloader carries on.
  h.send_raw("this is not msgpack");
  h.send_raw(trawl::proto::encode(trawl::proto::Link{"http://example.com/"}));
  for (std::size_t i = 1; i < tasks.size(); ++i) h.send(tasks[i]);

  auto results = h.collect(tasks.size(), 20s);
  REQUIRE(results.size() == tasks.size());

  check_done(results[1], tasks[0], out, body_a);
  check_done(results[2], tasks[1], out, "");
  check_failed(results[3], tasks[2], out, Reason::http_client, 404);
  CHECK(results[3].detail == "HTTP 404");
  check_done(results[4], tasks[3], out, "recovered", 2);
  CHECK(flaky_hits.load() == 2);
  check_done(results[5], tasks[4], out, body_r);
  check_failed(results[6], tasks[5], out, Reason::scheme, 302);
  check_failed(results[7], tasks[6], out, Reason::too_large, 200);
  check_failed(results[8], tasks[7], out, Reason::too_large, 200);
  check_failed(results[9], tasks[8], out, Reason::bad_url, 0);
  CHECK_FALSE(fs::exists(out.parent_path() / "x"));
  CHECK_FALSE(fs::exists(out / "x"));

  // Nothing else arrives: one result per task, none for the dropped frames.
  CHECK(h.collect(1, 300ms).empty());
  CHECK(h.stop() == trawl::kExitOk);
  CHECK(part_files(tmp.path).empty());
}

TEST_CASE("downloader: stop aborts what outlives the grace period, leaving no temporary file",
          "[downloader]") {
  TempDir tmp;
  Server server;
  std::atomic<bool> quit{false};
  std::atomic<int> slow_hits{0};
  std::atomic<int> busy_hits{0};
  auto& svr = server.svr();
  svr.Get("/slow", [&](const httplib::Request&, httplib::Response& res) {
    ++slow_hits;
    res.set_chunked_content_provider("application/octet-stream",
                                     [&](std::size_t, httplib::DataSink& sink) {
                                       std::this_thread::sleep_for(20ms);
                                       if (quit || !sink.is_writable()) return false;
                                       const std::string chunk(1024, 'z');
                                       return sink.write(chunk.data(), chunk.size());
                                     });
  });
  svr.Get("/busy", [&](const httplib::Request&, httplib::Response& res) {
    ++busy_hits;
    res.status = 503;
    res.set_header("Retry-After", "30");
    res.set_content("busy", "text/plain");
  });
  server.start();

  trawl::downloader::DownloadOptions o;
  o.out = tmp.path.string();
  o.grace = 300ms;
  Harness h(o);
  const Task slow{1, server.url("/slow"), "slow.bin", 1};
  const Task busy{2, server.url("/busy"), "busy.bin", 1};
  h.send(slow);
  h.send(busy);

  // Wait until the slow body is being streamed and the busy task waits for its retry. (Its file
  // is unnamed where the file system has O_TMPFILE, and its bytes wait in a 64 KiB chunk for
  // the file thread: nothing shows in the directory.)
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while ((slow_hits == 0 || busy_hits == 0) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  REQUIRE(busy_hits == 1);
  REQUIRE(slow_hits == 1);
  std::this_thread::sleep_for(100ms); // a few chunks of the body have come

  const auto t0 = std::chrono::steady_clock::now();
  CHECK(h.stop() == trawl::kExitInterrupted);
  const auto took = std::chrono::steady_clock::now() - t0;
  CHECK(took >= 250ms);
  CHECK(took < 3s);

  auto results = h.collect(2, 5s);
  REQUIRE(results.size() == 2);
  check_failed(results[1], slow, tmp.path, Reason::aborted, 0);
  CHECK(results[1].detail.find("grace") != std::string::npos);
  check_failed(results[2], busy, tmp.path, Reason::aborted, 0);
  CHECK(results[2].detail.rfind("stopped before retry; last attempt: http-5xx", 0) == 0);
  CHECK(busy_hits == 1);
  CHECK(part_files(tmp.path).empty());
  quit = true;
}

TEST_CASE("downloader: retries stop after 1 + --retries attempts and honour Retry-After",
          "[downloader]") {
  TempDir tmp;
  Server server;
  std::mutex mu;
  std::vector<std::chrono::steady_clock::time_point> busy_at;
  std::atomic<int> gone_hits{0};
  auto& svr = server.svr();
  svr.Get("/busy", [&](const httplib::Request&, httplib::Response& res) {
    {
      std::lock_guard lock(mu);
      busy_at.push_back(std::chrono::steady_clock::now());
    }
    res.status = 429;
    res.set_header("Retry-After", "1");
    res.set_content("slow down", "text/plain");
  });
  svr.Get("/gone", [&](const httplib::Request&, httplib::Response& res) {
    ++gone_hits;
    res.status = 410;
  });
  server.start();

  const std::string refused_url = "http://127.0.0.1:" + std::to_string(closed_port()) + "/x";

  trawl::downloader::DownloadOptions o;
  o.out = tmp.path.string();
  o.retries = 1;
  Harness h(o);
  const std::vector<Task> tasks = {
      {1, server.url("/busy"), "busy.bin", 1},
      {2, refused_url, "refused.bin", 1},
      {3, server.url("/gone"), "gone.bin", 1},
      {4, "notascheme://x/y", "weird.bin", 1},
  };
  for (const auto& t : tasks) h.send(t);
  auto results = h.collect(tasks.size(), 10s);
  REQUIRE(results.size() == tasks.size());

  check_failed(results[1], tasks[0], tmp.path, Reason::rate_limited, 429, 2);
  {
    std::lock_guard lock(mu);
    REQUIRE(busy_at.size() == 2);
    CHECK(busy_at[1] - busy_at[0] >= 950ms); // Retry-After: 1 beats the 250-500 ms backoff
  }
  check_failed(results[2], tasks[1], tmp.path, Reason::connect, 0, 2);
  check_failed(results[3], tasks[2], tmp.path, Reason::http_client, 410, 1); // not retried
  CHECK(gone_hits == 1);
  check_failed(results[4], tasks[3], tmp.path, Reason::scheme, 0, 1);

  CHECK(h.stop() == trawl::kExitOk);
  CHECK(part_files(tmp.path).empty());
}

TEST_CASE("downloader: unusable output directory or options end run() at once", "[downloader]") {
  TempDir tmp;
  const fs::path file = tmp.path / "a-file";
  std::ofstream(file) << "x";

  trawl::downloader::DownloadOptions o;
  o.out = (file / "sub").string(); // a directory inside a regular file cannot exist
  CHECK(trawl::downloader::run(o) == trawl::kExitFatal);

  o.out = tmp.path.string();
  o.concurrency = 0;
  CHECK(trawl::downloader::run(o) == trawl::kExitUsage);

  o.concurrency = 4;
  o.connect = {"nonsense://endpoint"};
  CHECK(trawl::downloader::run(o) == trawl::kExitUsage);

  // --dedupe-content finds copies by their SHA-256: with an explicit --digest none there is none.
  o = trawl::downloader::DownloadOptions{};
  o.out = tmp.path.string();
  o.digest = "none";
  CHECK(trawl::downloader::check_options(o).empty());
  o.dedupe_content = true;
  CHECK_THAT(trawl::downloader::check_options(o), Catch::Contains("--digest none"));
  CHECK(trawl::downloader::run(o) == trawl::kExitUsage);
  o.dedupe_content = false;
  o.digest = "md5";
  CHECK_THAT(trawl::downloader::check_options(o), Catch::Contains("--digest"));
}

TEST_CASE(
    "downloader: bodies are hashed with --digest sha256 or --dedupe-content and not by default",
    "[downloader]") {
  using trawl::downloader::hashes_bodies;
  trawl::downloader::DownloadOptions o;
  CHECK(o.digest.empty());
  CHECK_FALSE(hashes_bodies(o));
  CHECK(trawl::downloader::check_options(o).empty());
  o.dedupe_content = true; // needs the digest: turns it on
  CHECK(hashes_bodies(o));
  o.digest = "sha256";
  CHECK(hashes_bodies(o));
  o.dedupe_content = false;
  CHECK(hashes_bodies(o));
  o.digest = "none";
  CHECK_FALSE(hashes_bodies(o));

  // From the command line, as `trawl download` parses it.
  CLI::App app;
  trawl::downloader::DownloadOptions parsed;
  trawl::downloader::add_options(app, parsed);
  app.parse(std::vector<std::string>{"--dedupe-content"}); // CLI11 takes argv reversed
  CHECK(parsed.digest.empty());
  CHECK(hashes_bodies(parsed));
  CHECK_THROWS(app.parse(std::vector<std::string>{"md5", "--digest"}));
}

TEST_CASE("downloader: --digest none writes the same files and sends results without a digest",
          "[downloader]") {
  TempDir tmp;
  const fs::path out = tmp.path / "out";
  const std::string small = pattern_body(1000, 7);
  const std::string big = pattern_body(700 * 1024, 8); // several chunks for the file thread
  const std::string empty;
  Server server;
  serve_bodies(server, {{"/small", &small}, {"/big", &big}, {"/empty", &empty}});

  trawl::downloader::DownloadOptions o;
  o.out = out.string();
  o.digest = "none";
  Harness h(o);
  const std::vector<Task> tasks = {{1, server.url("/small"), "small.bin", 1},
                                   {2, server.url("/big"), "big.bin", 1},
                                   {3, server.url("/empty"), "empty.bin", 1}};
  for (const auto& t : tasks) h.send(t);
  auto results = h.collect(tasks.size(), 20s);
  REQUIRE(results.size() == tasks.size());
  const std::string bodies[] = {small, big, ""};
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    const Result& r = results[tasks[i].id];
    INFO("task " << tasks[i].id << ": " << trawl::proto::reason_name(r.reason) << " " << r.detail);
    CHECK(r.status == Status::done);
    CHECK(r.reason == Reason::none);
    CHECK(r.sha256.empty());
    CHECK(r.bytes == bodies[i].size());
    CHECK(r.path == (out / tasks[i].name).string());
    CHECK(read_file(out / tasks[i].name) == bodies[i]);
  }
  CHECK(h.stop() == trawl::kExitOk);
  CHECK(part_files(tmp.path).empty());
}

TEST_CASE("downloader: the event loop does not spin, idle or at its cap", "[downloader]") {
  TempDir tmp;
  Server server;
  std::atomic<bool> quit{false};
  std::atomic<int> hits{0};
  server.svr().Get("/stall", [&](const httplib::Request&, httplib::Response& res) {
    ++hits;
    for (int i = 0; i < 200 && !quit; ++i) std::this_thread::sleep_for(10ms);
    res.set_content("late", "text/plain");
  });
  server.start();

  trawl::downloader::DownloadOptions o;
  o.out = tmp.path.string();
  o.concurrency = 1;
  o.grace = 0ms;
  Harness h(o);
  const auto cpu_during = [](std::chrono::milliseconds wall) {
    const std::clock_t c0 = std::clock();
    std::this_thread::sleep_for(wall);
    return 1000.0 * static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC;
  };
  CHECK(cpu_during(400ms) < 120.0); // idle: polls with a timeout

  // At the cap with more tasks arriving, the task socket is not read; its ZMQ_FD must not make
  // the poll return at once, again and again.
  h.send(Task{1, server.url("/stall"), "stall1", 1});
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (hits == 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
  REQUIRE(hits == 1);
  h.send(Task{2, server.url("/stall"), "stall2", 1});
  h.send(Task{3, server.url("/stall"), "stall3", 1});
  CHECK(cpu_during(400ms) < 120.0);
  CHECK(hits == 1); // the cap holds

  CHECK(h.stop() == trawl::kExitInterrupted);
  quit = true;
  auto results = h.collect(1, 2s);
  REQUIRE(results.size() == 1);
  CHECK(results[1].reason == Reason::aborted);
  CHECK(part_files(tmp.path).empty());
}

TEST_CASE("downloader: tasks that end at once are reported to the ventilator at once",
          "[downloader]") {
  // A task that fails before any transfer (here an unsafe file name) leaves `held` unchanged;
  // the ready message must still go out at once with the new `received` count, or the
  // ventilator sends nothing more until the next heartbeat (a second later): a job of such links
  // would crawl at one capacity's worth per second.
  TempDir tmp;
  trawl::downloader::DownloadOptions o;
  o.out = tmp.path.string();
  o.concurrency = 2;
  o.prefetch = 1;
  Harness h(o);
  h.drain_ready(10s);
  for (std::uint64_t id = 1; id <= 3; ++id) h.send(Task{id, "http://127.0.0.1:9/x", "../x", 1});
  auto results = h.collect(3, 5s);
  REQUIRE(results.size() == 3);
  h.await_ready([](const auto& r) { return r.received >= 3; }, 300ms);
  CHECK(h.last_ready().received == 3);
  CHECK(h.last_ready().held == 0);
  CHECK(h.stop() == trawl::kExitOk);
}

// Transfers that end one by one, a few ms apart (each response leaves at its own instant): with
// --coalesce-ms their results share frames and their freed slots share `ready` messages. With
// --coalesce-ms 0 (every change sent at once) this node sends about one frame of each per link.
TEST_CASE("downloader: results and credit of transfers that end one by one share messages",
          "[downloader][coalesce]") {
  TempDir tmp;
  Server server;
  server.svr().new_task_queue = [] { return new httplib::ThreadPool(24); };
  const auto t0 = std::chrono::steady_clock::now() + 300ms;
  server.svr().Get(R"(/f/(\d+))", [&](const httplib::Request& req, httplib::Response& res) {
    const int i = std::stoi(req.matches[1]);
    std::this_thread::sleep_until(t0 + i * 4ms); // the i-th answer at its own instant
    res.set_content("body " + std::to_string(i), "text/plain");
  });
  server.start();

  constexpr std::uint64_t n = 20;
  trawl::downloader::DownloadOptions o;
  o.out = tmp.path.string();
  o.concurrency = 4;   // 16 of the 20 wait in the node's queue: slots free one by one
  o.prefetch = 16;     // a ready once 8 slots are free (or the queue is empty)
  o.coalesce = 1000ms; // longer than the test: only the counts send anything
  Harness h(o);
  h.drain_ready(10s);
  const std::size_t readies_before = h.readies();
  std::vector<Task> tasks;
  for (std::uint64_t id = 1; id <= n; ++id)
    tasks.push_back(Task{id, server.url("/f/" + std::to_string(id)), "f" + std::to_string(id), 1});
  // One frame, as the ventilator would send it (capacity 20).
  h.send_raw(trawl::proto::encode(trawl::proto::Tasks{tasks}));
  auto results = h.collect(n, 10s);
  REQUIRE(results.size() == n);
  for (const auto& t : tasks)
    check_done(results[t.id], t, tmp.path, "body " + std::to_string(t.id));
  // The first 17 wait (tasks queued, or 3 of the 4 slots busy) until half the slots are free
  // with nothing queued (after the 18th); the last 2 then go one by one.
  CHECK(h.result_frames() <= 6);
  // The last ready leaves after the last result (a free slot, nothing queued: at once).
  h.await_ready([](const auto& r) { return r.received >= n && r.held == 0; }, 2s);
  const std::size_t readies = h.readies() - readies_before;
  INFO(readies << " ready messages for " << n << " transfers");
  // 16 queued tasks started as 16 slots freed: 2 readies; the last 4 with nothing queued: 4;
  // a heartbeat or two. One per link (and one per task frame received) before coalescing.
  CHECK(readies <= 10);
  CHECK(h.last_ready().held == 0);
  CHECK(h.last_ready().received == n);
  CHECK(h.stop() == trawl::kExitOk);
}

// libcurl's connection cache holds 4 idle connections per transfer in progress by default: as a
// burst of transfers ends one by one, the last ones to end would close warm connections (one per
// transfer from the 4th-last on), and the next burst would open new ones (a TLS handshake each
// over the Internet). The node keeps up to -j of them.
TEST_CASE("downloader: connections outlive a lull between bursts of tasks", "[downloader]") {
  TempDir tmp;
  Server server;
  constexpr int j = 16;
  server.svr().new_task_queue = [] { return new httplib::ThreadPool(j + 4); };
  std::mutex mu;
  std::set<int> ports; // one per connection the node opened
  std::atomic<int> arrived{0};
  server.svr().Get(R"(/f/(\d+))", [&](const httplib::Request& req, httplib::Response& res) {
    {
      std::lock_guard<std::mutex> lock(mu);
      ports.insert(req.remote_port);
    }
    const int i = std::stoi(req.matches[1]);
    // All of a burst in flight at once (each on its own connection), then answered one by
    // one, 20 ms apart, so that the transfers end one at a time.
    const int burst = (i - 1) / j;
    ++arrived;
    const auto until = std::chrono::steady_clock::now() + 3s;
    while (arrived < (burst + 1) * j && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(1ms);
    std::this_thread::sleep_for(((i - 1) % j) * 20ms);
    res.set_content("body " + std::to_string(i), "text/plain");
  });
  server.start();

  trawl::downloader::DownloadOptions o;
  o.out = tmp.path.string();
  o.concurrency = j;
  Harness h(o);
  h.drain_ready(10s);
  for (int burst = 0; burst < 2; ++burst) {
    std::vector<Task> tasks;
    for (int k = 1; k <= j; ++k) {
      const auto id = static_cast<std::uint64_t>(burst * j + k);
      tasks.push_back(
          Task{id, server.url("/f/" + std::to_string(id)), "f" + std::to_string(id), 1});
    }
    h.send_raw(trawl::proto::encode(trawl::proto::Tasks{tasks}));
    auto results = h.collect(j, 10s);
    REQUIRE(results.size() == static_cast<std::size_t>(j));
    for (const auto& t : tasks)
      check_done(results[t.id], t, tmp.path, "body " + std::to_string(t.id));
  }
  std::lock_guard<std::mutex> lock(mu);
  INFO(ports.size() << " connections for 2 bursts of " << j << " transfers");
  CHECK(ports.size() == static_cast<std::size_t>(j));
  CHECK(h.stop() == trawl::kExitOk);
}

// Two slow transfers keep the node busy for 4 s around a fast one.
struct SlowFastServer {
  Server server;
  std::atomic<bool> quit{false};
  SlowFastServer() {
    server.svr().Get("/fast", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("fast", "text/plain");
    });
    server.svr().Get(R"(/slow/\d+)", [this](const httplib::Request&, httplib::Response& res) {
      for (int i = 0; i < 400 && !quit; ++i) std::this_thread::sleep_for(10ms);
      res.set_content("slow", "text/plain");
    });
    server.start();
  }
  ~SlowFastServer() { quit = true; }
};

TEST_CASE("downloader: a result held back to share a frame still leaves within --coalesce-ms",
          "[downloader][coalesce]") {
  TempDir tmp;
  SlowFastServer s;
  trawl::downloader::DownloadOptions o;
  o.out = tmp.path.string();
  o.concurrency = 2; // slow 1 and fast run; slow 2 waits in the queue, then takes fast's slot
  o.prefetch = 4;
  o.coalesce = 200ms;
  o.grace = 0ms;
  Harness h(o);
  const Task fast{2, s.server.url("/fast"), "fast", 1};
  h.drain_ready(10s);
  const auto sent = std::chrono::steady_clock::now();
  h.send_raw(
      trawl::proto::encode(trawl::proto::Tasks{{Task{1, s.server.url("/slow/1"), "slow1", 1}, fast,
                                                Task{3, s.server.url("/slow/2"), "slow2", 1}}}));
  // Every slot busy, something in flight for 4 s: the fast result waits for company for
  // --coalesce-ms (200 ms), not for the slow ones. Generous bound: 2 s.
  auto results = h.collect(1, 3s);
  const auto took = std::chrono::steady_clock::now() - sent;
  REQUIRE(results.size() == 1);
  check_done(results[2], fast, tmp.path, "fast");
  CHECK(took < 2s);
  // Its freed slot (1, fewer than prefetch/2, more tasks may still come) goes to the ventilator
  // within --coalesce-ms too.
  const auto left =
      std::chrono::ceil<std::chrono::milliseconds>(sent + 2s - std::chrono::steady_clock::now());
  h.await_ready([](const auto& r) { return r.received >= 3; }, left);
  CHECK(h.last_ready().received == 3);
  CHECK(h.last_ready().held == 2);
  CHECK(h.stop() == trawl::kExitInterrupted);
}

TEST_CASE("downloader: with half the slots free and nothing queued, a result is not held back",
          "[downloader][coalesce]") {
  // The ventilator's per-host limit may be what keeps this node's slots empty: the host's next
  // task waits for this result, so it leaves at once, whatever --coalesce-ms says (here 1 of 4
  // slots stays busy).
  TempDir tmp;
  SlowFastServer s;
  trawl::downloader::DownloadOptions o;
  o.out = tmp.path.string();
  o.concurrency = 4;
  o.coalesce = 1000ms;
  o.grace = 0ms;
  Harness h(o);
  const Task fast{2, s.server.url("/fast"), "fast", 1};
  h.send(Task{1, s.server.url("/slow/1"), "slow1", 1});
  const auto sent = std::chrono::steady_clock::now();
  h.send(fast);
  auto results = h.collect(1, 3s);
  const auto took = std::chrono::steady_clock::now() - sent;
  REQUIRE(results.size() == 1);
  check_done(results[2], fast, tmp.path, "fast");
  CHECK(took < 500ms); // held back, it would have waited 1 s
  CHECK(h.stop() == trawl::kExitInterrupted);
}

namespace {

// A "tasks" frame of `count` tasks from id `first` on that end at once (an unusable name), freeing
// their slots like finished transfers.
std::string instant_tasks(std::uint64_t first, std::uint64_t count) {
  std::vector<Task> batch;
  for (std::uint64_t id = first; id < first + count; ++id)
    batch.push_back(Task{id, "http://127.0.0.1:9/x", "../x", 1});
  return trawl::proto::encode(trawl::proto::Tasks{batch});
}

} // namespace

TEST_CASE("downloader: freed slots are reported once prefetch/2 of them are free, or after "
          "--coalesce-ms",
          "[downloader][coalesce]") {
  // Tasks with unsafe names end at once and free their slot, like finished transfers.
  TempDir tmp;
  trawl::downloader::DownloadOptions o;
  o.out = tmp.path.string();
  o.concurrency = 2;
  o.prefetch = 16;    // a ready once 8 slots are free
  o.coalesce = 600ms; // or this long after the first (the heartbeat is 1 s)
  Harness h(o);
  h.drain_ready(10s);
  const auto ready_with = [&h](std::uint64_t received, std::chrono::milliseconds within) {
    return h.await_ready([received](const auto& r) { return r.received >= received; }, within);
  };

  // 7 free slots: not worth a ready yet (before coalescing, one went out at once).
  h.send_raw(instant_tasks(1, 7));
  REQUIRE(h.collect(7, 5s).size() == 7);
  CHECK_FALSE(ready_with(7, 300ms));
  CHECK(ready_with(7, 3s)); // --coalesce-ms later
  CHECK(h.last_ready().held == 0);

  // 8 free slots: at once.
  h.send_raw(instant_tasks(8, 8));
  REQUIRE(h.collect(8, 5s).size() == 8);
  CHECK(ready_with(15, 300ms));
  CHECK(h.stop() == trawl::kExitOk);
}

namespace {

// Plays the ventilator for `for_how_long`: sends as many tasks as the last ready's credit allows
// (capacity - held - on the way), tasks that end at once (an unusable name), in "tasks" frames.
// Returns the largest capacity a ready showed meanwhile, and counts the tasks in `sent`.
std::uint32_t feed_instant_tasks(Harness& h, std::chrono::milliseconds for_how_long,
                                 std::uint64_t& sent) {
  std::uint32_t largest = 0;
  const auto until = std::chrono::steady_clock::now() + for_how_long;
  while (std::chrono::steady_clock::now() < until) {
    h.drain_ready(0ms);
    const auto& r = h.last_ready();
    largest = std::max(largest, r.capacity);
    const auto credit = static_cast<std::int64_t>(r.capacity) - static_cast<std::int64_t>(r.held) -
                        static_cast<std::int64_t>(sent - r.received);
    if (credit > 0) {
      h.send_raw(instant_tasks(sent + 1, static_cast<std::uint64_t>(credit)));
      sent += static_cast<std::uint64_t>(credit);
    }
    std::this_thread::sleep_for(1ms);
  }
  return largest;
}

} // namespace

TEST_CASE("downloader: the queue grows to --prefetch-ms of work while tasks end fast, and "
          "shrinks back to --prefetch when they stop",
          "[downloader]") {
  TempDir tmp;
  trawl::downloader::DownloadOptions o;
  o.out = tmp.path.string();
  o.concurrency = 8;
  o.prefetch = 2;
  o.coalesce = 1ms;
  const bool adaptive = GENERATE(true, false);
  o.prefetch_work = adaptive ? 16ms : 0ms;
  INFO((adaptive ? "--prefetch-ms 16" : "--prefetch-ms 0"));
  Harness h(o);
  h.drain_ready(10s);
  REQUIRE(h.last_ready().capacity == 10); // concurrency + prefetch before anything ended
  // Thousands of tasks a second end here: 16 ms of them is more than twice the concurrency, the
  // cap (max_prefetch): 8 running and 16 queued.
  std::uint64_t sent = 0;
  const std::uint32_t largest = feed_instant_tasks(h, 600ms, sent);
  INFO("tasks sent " << sent);
  CHECK(sent > 200);
  CHECK(largest == (adaptive ? 24u : 10u));
  auto results = h.collect(sent, 10s);
  CHECK(results.size() == sent);
  // Nothing ends any more: within a few windows of 50 ms the queue is --prefetch again.
  CHECK(h.await_ready([](const auto& r) { return r.capacity == 10; }, 2s));
  CHECK(h.stop() == trawl::kExitOk);
}

// Figures, not checks: run with  trawl_unit_tests '[.downloader-bench]' -s
TEST_CASE("downloader bench: throughput against a loopback server", "[.downloader-bench]") {
  TempDir tmp;
  Server server;
  const std::string body = pattern_body(16 * 1024, 7);
  server.svr().Get(R"(/f/(\d+))", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(body, "application/octet-stream");
  });
  server.svr().set_tcp_nodelay(true);
  server.svr().new_task_queue = [] { return new httplib::ThreadPool(40); };
  server.start();

  trawl::downloader::DownloadOptions o;
  o.out = tmp.path.string();
  o.concurrency = 32;
  Harness h(o);
  const int n = 3000;
  const auto t0 = std::chrono::steady_clock::now();
  std::thread feeder([&] {
    for (int i = 1; i <= n; ++i)
      h.send(Task{static_cast<std::uint64_t>(i), server.url("/f/" + std::to_string(i)),
                  "f" + std::to_string(i) + ".bin", 1});
  });
  auto results = h.collect(n, 120s);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  feeder.join();
  REQUIRE(results.size() == static_cast<std::size_t>(n));
  std::size_t done = 0;
  for (const auto& [id, r] : results) done += r.status == Status::done;
  CHECK(done == static_cast<std::size_t>(n));
  WARN(n << " files of 16 KiB, concurrency 32: " << s << " s, " << n / s << " files/s, "
         << n * 16.0 / 1024 / s << " MiB/s");
  CHECK(h.stop() == trawl::kExitOk);
}

TEST_CASE("downloader: an http_proxy in the environment carries the requests", "[downloader]") {
  // The handles are told "no proxy" once when no proxy variable is set (Transfer::configure): one
  // that is set must still be used, as libcurl reads it.
  TempDir tmp;
  const std::string body = pattern_body(5000, 31);
  std::mutex mu;
  std::vector<std::string> heads;
  RawServer proxy([&](int fd, const std::atomic<bool>& quit) {
    std::string head;
    if (!read_request_head(fd, head, quit)) return;
    {
      std::lock_guard lock(mu);
      heads.push_back(head);
    }
    send_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) +
                     "\r\nConnection: close\r\n\r\n" + body);
  });
  struct ProxyEnv {
    explicit ProxyEnv(const std::string& v) { ::setenv("http_proxy", v.c_str(), 1); }
    ~ProxyEnv() { ::unsetenv("http_proxy"); }
  } env("http://127.0.0.1:" + std::to_string(proxy.port()));
  REQUIRE_FALSE(trawl::downloader::no_proxy_in_environment());

  trawl::downloader::DownloadOptions o;
  o.out = tmp.path.string();
  Harness h(o);
  const Task t{1, "http://files.invalid/one.bin", "one.bin", 1};
  h.send(t);
  auto results = h.collect(1, 20s);
  REQUIRE(results.size() == 1);
  CHECK(h.stop() == trawl::kExitOk);
  check_done(results[1], t, tmp.path, body);
  std::lock_guard lock(mu);
  REQUIRE(heads.size() == 1);
  CHECK(heads[0].rfind("GET http://files.invalid/one.bin HTTP/1.1\r\n", 0) == 0);
}
