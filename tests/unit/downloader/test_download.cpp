// The downloader end to end within one process: run() in a thread, an in-process HTTP server on
// 127.0.0.1, a PUSH socket that plays the ventilator and a PULL socket that plays the sink.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <ctime>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <httplib.h>
#include <map>
#include <mutex>
#include <openssl/evp.h>
#include <thread>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zmq.hpp>

#include "common/exit_codes.hpp"
#include "common/signals.hpp"
#include "downloader/downloader.hpp"
#include "proto/messages.hpp"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using trawl::proto::Reason;
using trawl::proto::Result;
using trawl::proto::Status;
using trawl::proto::Task;

namespace {

std::string sha256_hex(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  static constexpr char digits[] = "0123456789abcdef";
  std::string s;
  for (unsigned i = 0; i < len; ++i) {
    s += digits[md[i] >> 4];
    s += digits[md[i] & 0x0F];
  }
  return s;
}

std::string pattern_body(std::size_t n, unsigned seed) {
  std::string s(n, '\0');
  std::uint32_t x = seed * 2654435761u + 1;
  for (auto& c : s) {
    x = x * 1103515245u + 12345u;
    c = static_cast<char>(x >> 24);
  }
  return s;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A fresh directory under the system temp dir, removed at scope exit.
struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "trawl-dl-test-XXXXXX").string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// A loopback port with nothing listening: bound without listen(), noted, closed.
int closed_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) == 0);
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::vector<std::string> part_files(const fs::path& dir) {
  std::vector<std::string> found;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.path().extension() == ".part") found.push_back(e.path().string());
  return found;
}

// The HTTP server the downloader fetches from, on an ephemeral loopback port.
class Server {
public:
  Server() {
    port_ = svr_.bind_to_any_port("127.0.0.1");
    REQUIRE(port_ > 0);
  }
  ~Server() { stop(); }
  void start() {
    thread_ = std::thread([this] { svr_.listen_after_bind(); });
    // stop() is a no-op until the accept loop runs; connections queue in the backlog meanwhile.
    while (!svr_.is_running()) std::this_thread::sleep_for(1ms);
  }
  void stop() {
    if (!thread_.joinable()) return;
    svr_.stop();
    thread_.join();
  }
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  httplib::Server& svr() { return svr_; }

private:
  httplib::Server svr_;
  int port_ = 0;
  std::thread thread_;
};

// The ventilator and sink ends, bound on ephemeral ports, plus run() in a thread.
class Harness {
public:
  explicit Harness(trawl::downloader::DownloadOptions o) : opt_(std::move(o)) {
    trawl::reset_stop_for_tests();
    tasks_.set(zmq::sockopt::linger, 0);
    tasks_.set(zmq::sockopt::sndtimeo, 5000);
    results_.set(zmq::sockopt::linger, 0);
    tasks_.bind("tcp://127.0.0.1:*");
    results_.bind("tcp://127.0.0.1:*");
    opt_.connect = {tasks_.get(zmq::sockopt::last_endpoint)};
    opt_.sink = {results_.get(zmq::sockopt::last_endpoint)};
    if (opt_.node.empty()) opt_.node = "test-node";
    exit_ = std::async(std::launch::async, [this] { return trawl::downloader::run(opt_); });
  }
  ~Harness() {
    if (exit_.valid()) {
      trawl::request_stop();
      exit_.wait();
    }
    trawl::reset_stop_for_tests();
  }

  void send(const Task& t) { send_raw(trawl::proto::encode(t)); }
  // Plays the ventilator: learns the downloader's routing id from its first ready message, then
  // sends it the frame (tests send at most the downloader's capacity at a time).
  void send_raw(const std::string& frame) {
    drain_ready(peer_.empty() ? 10s : 0ms);
    REQUIRE_FALSE(peer_.empty());
    REQUIRE(tasks_.send(zmq::buffer(peer_), zmq::send_flags::sndmore).has_value());
    REQUIRE(tasks_.send(zmq::buffer(frame), zmq::send_flags::none).has_value());
  }

  // Reads the downloader's ready messages; waits up to `wait` for the first one.
  void drain_ready(std::chrono::milliseconds wait) {
    const auto deadline = std::chrono::steady_clock::now() + wait;
    do {
      zmq::message_t id, body;
      while (tasks_.recv(id, zmq::recv_flags::dontwait)) {
        REQUIRE(id.more());
        REQUIRE(tasks_.recv(body));
        auto decoded = trawl::proto::decode(std::string_view(body.data<char>(), body.size()));
        REQUIRE(std::holds_alternative<trawl::proto::Message>(decoded));
        last_ready_ = std::get<trawl::proto::Ready>(std::get<trawl::proto::Message>(decoded));
        peer_ = id.to_string();
      }
      if (!peer_.empty()) return;
      std::this_thread::sleep_for(10ms);
    } while (std::chrono::steady_clock::now() < deadline);
  }

  const trawl::proto::Ready& last_ready() const { return last_ready_; }

  // Collects results until `n` arrived or `timeout` passed.
  std::map<std::uint64_t, Result> collect(std::size_t n, std::chrono::milliseconds timeout) {
    std::map<std::uint64_t, Result> got;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (got.size() < n && std::chrono::steady_clock::now() < deadline) {
      zmq::pollitem_t item{results_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, 100ms);
      zmq::message_t msg;
      while (results_.recv(msg, zmq::recv_flags::dontwait)) {
        auto decoded = trawl::proto::decode(std::string_view(msg.data<char>(), msg.size()));
        REQUIRE(std::holds_alternative<trawl::proto::Message>(decoded));
        auto& m = std::get<trawl::proto::Message>(decoded);
        REQUIRE(std::holds_alternative<Result>(m));
        auto r = std::get<Result>(m);
        CHECK(got.count(r.id) == 0); // exactly one result per task
        got[r.id] = r;
      }
    }
    return got;
  }

  // Asks run() to stop and returns its exit code (fails the test if it does not return).
  int stop(std::chrono::milliseconds timeout = 10s) {
    trawl::request_stop();
    REQUIRE(exit_.wait_for(timeout) == std::future_status::ready);
    return exit_.get();
  }

  const trawl::downloader::DownloadOptions& options() const { return opt_; }

private:
  trawl::downloader::DownloadOptions opt_;
  zmq::context_t ctx_{1};
  zmq::socket_t tasks_{ctx_, zmq::socket_type::router};
  zmq::socket_t results_{ctx_, zmq::socket_type::pull};
  std::string peer_;
  trawl::proto::Ready last_ready_;
  std::future<int> exit_;
};

void check_done(const Result& r, const Task& t, const fs::path& out, const std::string& body,
                std::uint32_t attempt = 1) {
  INFO("task " << t.id << " " << t.url << ": " << trawl::proto::reason_name(r.reason) << " "
               << r.detail);
  CHECK(r.status == Status::done);
  CHECK(r.reason == Reason::none);
  CHECK(r.url == t.url);
  CHECK(r.path == (out / t.name).string());
  CHECK(fs::path(r.path).is_absolute());
  CHECK(r.bytes == body.size());
  CHECK(r.sha256 == sha256_hex(body));
  CHECK(r.http_code == 200);
  CHECK(r.node == "test-node");
  CHECK(r.attempt == attempt);
  CHECK(r.ttfb_ms <= r.ms);
  CHECK(r.detail.empty());
  CHECK(read_file(out / t.name) == body);
}

void check_failed(const Result& r, const Task& t, const fs::path& out, Reason reason,
                  std::uint32_t http_code, std::uint32_t attempt = 1) {
  INFO("task " << t.id << " " << t.url << ": " << trawl::proto::reason_name(r.reason) << " "
               << r.detail);
  CHECK(r.status == Status::failed);
  CHECK(r.reason == reason);
  CHECK(r.url == t.url);
  CHECK(r.path.empty());
  CHECK(r.sha256.empty());
  CHECK(r.bytes == 0);
  CHECK(r.http_code == http_code);
  CHECK(r.node == "test-node");
  CHECK(r.attempt == attempt);
  CHECK_FALSE(r.detail.empty());
  CHECK(r.detail.size() <= trawl::proto::kMaxDetailBytes);
  CHECK_FALSE(fs::exists(out / t.name));
}

} // namespace

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

  // Wait until the slow body is being streamed into a temporary file and the busy task waits
  // for its retry.
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while ((part_files(tmp.path).empty() || busy_hits == 0) &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  REQUIRE(busy_hits == 1);
  REQUIRE(part_files(tmp.path).size() == 1);

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

