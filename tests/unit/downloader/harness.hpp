// Shared by the downloader's tests: run() in a thread with a ROUTER that plays the ventilator and
// a PULL that plays the sink (Harness), an in-process cpp-httplib server on 127.0.0.1 (Server),
// temporary directories and the checks every result gets.
#pragma once

#include <catch2/catch.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <httplib.h>
#include <map>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <string>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>
#include <zmq.hpp>

#include "common/signals.hpp"
#include "downloader/downloader.hpp"
#include "downloader/transfer.hpp"
#include "proto/messages.hpp"

namespace trawl::dltest {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using trawl::proto::Reason;
using trawl::proto::Result;
using trawl::proto::Status;
using trawl::proto::Task;

// The settings the tests give a Transfer they drive themselves: a short connect timeout.
inline trawl::downloader::TransferSettings transfer_settings() {
  trawl::downloader::TransferSettings s;
  s.connect_timeout_s = 5;
  s.user_agent = "trawl-test";
  return s;
}

inline std::string sha256_hex(const std::string& data) {
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

inline std::string pattern_body(std::size_t n, unsigned seed) {
  std::string s(n, '\0');
  std::uint32_t x = seed * 2654435761u + 1;
  for (auto& c : s) {
    x = x * 1103515245u + 12345u;
    c = static_cast<char>(x >> 24);
  }
  return s;
}

inline std::string read_file(const fs::path& p) {
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

// A TCP socket bound to an ephemeral port of 127.0.0.1; `port` receives the port.
inline int bind_loopback(int& port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) == 0);
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  port = ntohs(addr.sin_port);
  return fd;
}

// A loopback port with nothing listening: bound without listen(), noted, closed.
inline int closed_port() {
  int port = 0;
  ::close(bind_loopback(port));
  return port;
}

inline bool send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// Reads a request head into `got` (up to the blank line, at most 16 KiB, at most 2 s, less when
// `quit` is set meanwhile). False when it did not come whole.
inline bool read_request_head(int fd, std::string& got, const std::atomic<bool>& quit) {
  const auto deadline = std::chrono::steady_clock::now() + 2s;
  char buf[4096];
  while (got.find("\r\n\r\n") == std::string::npos && got.size() < 16384) {
    if (quit || std::chrono::steady_clock::now() >= deadline) return false;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return false;
    got.append(buf, static_cast<std::size_t>(n));
  }
  return true;
}

// A TCP server on 127.0.0.1 that hands every connection to `handler` on its own thread (at most
// `max_conns` connections, accepted for at most a minute), then closes it. The handler must
// return soon after `quit`. Without `accept`, the listen backlog of 0 makes a queue of one that a
// test can fill.
class RawServer {
public:
  using Handler = std::function<void(int fd, const std::atomic<bool>& quit)>;

  explicit RawServer(Handler h, bool accept = true, std::size_t max_conns = 16)
      : handler_(std::move(h)), max_conns_(max_conns) {
    fd_ = bind_loopback(port_);
    REQUIRE(::listen(fd_, accept ? 16 : 0) == 0);
    if (accept) thread_ = std::thread([this] { accept_loop(); });
  }
  ~RawServer() {
    quit_ = true;
    if (thread_.joinable()) thread_.join();
    for (auto& t : conns_) t.join();
    ::close(fd_);
  }
  RawServer(const RawServer&) = delete;
  RawServer& operator=(const RawServer&) = delete;

  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  int port() const { return port_; }
  int hits() const { return hits_; }

private:
  void accept_loop() {
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (!quit_ && std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      if (conns_.size() >= max_conns_) {
        ::close(c);
        continue;
      }
      ++hits_;
      conns_.emplace_back([this, c] {
        handler_(c, quit_);
        ::shutdown(c, SHUT_RDWR);
        ::close(c);
      });
    }
  }

  Handler handler_;
  std::size_t max_conns_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> quit_{false};
  std::atomic<int> hits_{0};
  std::thread thread_;
  std::vector<std::thread> conns_;
};

inline std::vector<std::string> part_files(const fs::path& dir) {
  std::vector<std::string> found;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.path().extension() == ".part") found.push_back(e.path().string());
  return found;
}

// The temporary files that hold body bytes: a running downloader also keeps empty ones ready for
// the transfers to come (downloader/temp_pool.hpp).
inline std::vector<std::string> body_part_files(const fs::path& dir) {
  std::vector<std::string> found;
  for (const auto& name : part_files(dir)) {
    std::error_code ec;
    if (fs::file_size(name, ec) > 0 && !ec) found.push_back(name);
  }
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

// Starts a server that answers GET `path` with `body` (the string must outlive the server).
inline void serve_body(Server& server, const std::string& path, const std::string& body) {
  server.svr().Get(path, [&body](const httplib::Request&, httplib::Response& res) {
    res.set_content(body, "application/octet-stream");
  });
  server.start();
}

// Starts a server that answers GET on each path with its body (the strings must outlive it).
inline void serve_bodies(Server& server,
                         const std::vector<std::pair<std::string, const std::string*>>& routes) {
  for (const auto& [path, body] : routes)
    server.svr().Get(path, [body](const httplib::Request&, httplib::Response& res) {
      res.set_content(*body, "application/octet-stream");
    });
  server.start();
}

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
    // These tests check every done result's SHA-256 (check_done): hashing is on unless a test
    // chooses (the default, no digest, has its own tests: "--digest none ...", resume).
    if (opt_.digest.empty()) opt_.digest = "sha256";
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

  // Reads the downloader's messages on the task socket (ready, and throttle after a 429 or 503
  // with Retry-After); waits up to `wait` for the first ready.
  void drain_ready(std::chrono::milliseconds wait) {
    const auto deadline = std::chrono::steady_clock::now() + wait;
    do {
      zmq::message_t id, body;
      while (tasks_.recv(id, zmq::recv_flags::dontwait)) {
        REQUIRE(id.more());
        REQUIRE(tasks_.recv(body));
        auto decoded = trawl::proto::decode(std::string_view(body.data<char>(), body.size()));
        REQUIRE(std::holds_alternative<trawl::proto::Message>(decoded));
        const auto& m = std::get<trawl::proto::Message>(decoded);
        if (std::holds_alternative<trawl::proto::Throttle>(m)) continue; // for the ventilator
        REQUIRE(std::holds_alternative<trawl::proto::Ready>(m));
        last_ready_ = std::get<trawl::proto::Ready>(m);
        ++readies_;
        peer_ = id.to_string();
      }
      if (!peer_.empty()) return;
      std::this_thread::sleep_for(10ms);
    } while (std::chrono::steady_clock::now() < deadline);
  }

  // Reads ready messages until `ok(last_ready())` holds or `within` passed; whether it holds.
  template <class Pred> bool await_ready(Pred ok, std::chrono::milliseconds within) {
    const auto until = std::chrono::steady_clock::now() + within;
    while (!ok(last_ready_) && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      drain_ready(std::chrono::milliseconds(0));
    }
    return ok(last_ready_);
  }

  const trawl::proto::Ready& last_ready() const { return last_ready_; }
  std::size_t readies() const { return readies_; }             // ready messages read so far
  std::size_t result_frames() const { return result_frames_; } // result(s) frames collected

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
        ++result_frames_;
        // A "result" alone or a "results" batch (the results of one turn of the loop).
        std::vector<Result> rs;
        if (const auto* one = std::get_if<Result>(&m)) rs.push_back(*one);
        else if (const auto* batch = std::get_if<trawl::proto::Results>(&m)) rs = batch->items;
        REQUIRE(!rs.empty());
        for (const auto& r : rs) {
          CHECK(got.count(r.id) == 0); // exactly one result per task
          got[r.id] = r;
        }
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
  std::size_t readies_ = 0, result_frames_ = 0;
  std::future<int> exit_;
};

inline void check_done(const Result& r, const Task& t, const fs::path& out, const std::string& body,
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

inline void check_failed(const Result& r, const Task& t, const fs::path& out, Reason reason,
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


} // namespace trawl::dltest
