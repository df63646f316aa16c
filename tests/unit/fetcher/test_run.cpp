#include <catch2/catch.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>
#include <zmq.hpp>

#include "common/exit_codes.hpp"
#include "fetcher/fetch.hpp"
#include "proto/messages.hpp"

using namespace trawl;
using namespace std::chrono_literals;

namespace {

// A temporary file removed at the end of the test.
struct TempFile {
  explicit TempFile(const std::string& content, const std::string& suffix = ".txt") {
    static int counter = 0;
    path = (std::filesystem::temp_directory_path() /
            ("trawl-fetch-test-" + std::to_string(::getpid()) + "-" + std::to_string(++counter) +
             suffix))
               .string();
    std::ofstream(path, std::ios::binary) << content;
  }
  ~TempFile() { std::remove(path.c_str()); }
  std::string path;
};

struct Received {
  std::vector<std::string> urls;
  std::optional<std::uint64_t> end_count;
  int bad_frames = 0;
};

// Plays the ventilator's links socket (a ROUTER): receives until LinksEnd arrives or nothing
// comes for `quiet`, and answers LinksEnd with the receipt the fetcher waits for.
Received receive_all(zmq::socket_t& pull, std::chrono::milliseconds quiet = 5000ms) {
  Received r;
  pull.set(zmq::sockopt::rcvtimeo, static_cast<int>(quiet.count()));
  for (;;) {
    zmq::message_t id, msg;
    if (!pull.recv(id)) break;
    if (!id.more() || !pull.recv(msg)) break;
    auto d = proto::decode(msg.to_string_view());
    if (!std::holds_alternative<proto::Message>(d)) {
      ++r.bad_frames;
      continue;
    }
    const auto& m = std::get<proto::Message>(d);
    if (const auto* link = std::get_if<proto::Link>(&m)) {
      r.urls.push_back(link->url);
    } else if (const auto* end = std::get_if<proto::LinksEnd>(&m)) {
      r.end_count = end->count;
      pull.send(id, zmq::send_flags::sndmore);
      pull.send(zmq::buffer(proto::encode(proto::LinksEnd{r.urls.size()})), zmq::send_flags::none);
      break;
    } else {
      ++r.bad_frames;
    }
  }
  return r;
}

struct Pull {
  zmq::context_t ctx{1};
  zmq::socket_t sock{ctx, zmq::socket_type::router};
  std::string endpoint;
  Pull() {
    sock.set(zmq::sockopt::linger, 0);
    sock.bind("tcp://127.0.0.1:*");
    endpoint = sock.get(zmq::sockopt::last_endpoint);
  }
};

fetcher::FetchOptions options(const std::string& source, const std::string& endpoint) {
  fetcher::FetchOptions o;
  o.source = source;
  o.connect = {endpoint};
  o.linger = 5000ms;
  return o;
}

const auto never = [] { return false; };

} // namespace

TEST_CASE("run sends the filtered list then LinksEnd", "[fetcher]") {
  Pull pull;
  TempFile list("# my list\n"
                "http://h/1.jpg\n"
                "http://h/2.png\n"
                "  http://h/3.JPG?size=big  \r\n"
                "\n"
                "http://h/1.jpg\n"           // duplicate
                "not a url\n"                // invalid
                "\x01\x02\xff garbage\n"     // invalid
                "ftp://h/4.jpg\n"            // invalid scheme
                "https://h/5.jpg#frag\n"
                "http://h/" + std::string(20000, 'x') + ".jpg\n" // too long
                "http://h/6.jpg");
  auto o = options(list.path, pull.endpoint);
  o.exts = {".jpg"};
  auto rc = std::async(std::launch::async, [&] { return fetcher::run(o, never); });
  const Received r = receive_all(pull.sock);
  CHECK(rc.get() == kExitOk);
  CHECK(r.bad_frames == 0);
  CHECK(r.urls == std::vector<std::string>{"http://h/1.jpg", "http://h/3.JPG?size=big",
                                           "https://h/5.jpg#frag", "http://h/6.jpg"});
  REQUIRE(r.end_count);
  CHECK(*r.end_count == 4);
}

TEST_CASE("run on the sample gallery with --ext jpg", "[fetcher]") {
  Pull pull;
  auto o = options(std::string(TRAWL_SAMPLES_DIR) + "/imgur-gallery-hot-viral-0.json",
                   pull.endpoint);
  o.exts = {"jpg"};
  auto rc = std::async(std::launch::async, [&] { return fetcher::run(o, never); });
  const Received r = receive_all(pull.sock);
  CHECK(rc.get() == kExitOk);
  CHECK(r.urls == std::vector<std::string>{"https://i.imgur.com/aB3dE5f.jpg",
                                           "https://i.imgur.com/Jk0lM2n.jpg",
                                           "https://i.imgur.com/De5fG7h.jpg"});
  REQUIRE(r.end_count);
  CHECK(*r.end_count == 3);
}

TEST_CASE("run detects a gallery file by content and honours --format", "[fetcher]") {
  const std::string doc = R"(  {"data":[{"link":"http://h/a.jpg"},{"link":"http://h/b.gif"}]})";
  TempFile file(doc, ".txt"); // not .json: detected by its first non-blank byte
  {
    Pull pull;
    auto o = options(file.path, pull.endpoint);
    auto rc = std::async(std::launch::async, [&] { return fetcher::run(o, never); });
    const Received r = receive_all(pull.sock);
    CHECK(rc.get() == kExitOk);
    CHECK(r.urls == std::vector<std::string>{"http://h/a.jpg", "http://h/b.gif"});
  }
  {
    Pull pull; // forced to a list, the JSON line is one invalid URL
    auto o = options(file.path, pull.endpoint);
    o.format = "list";
    auto rc = std::async(std::launch::async, [&] { return fetcher::run(o, never); });
    const Received r = receive_all(pull.sock);
    CHECK(rc.get() == kExitOk);
    CHECK(r.urls.empty());
    REQUIRE(r.end_count);
    CHECK(*r.end_count == 0);
  }
}

TEST_CASE("run with more links than the high-water mark delivers them all in order", "[fetcher]") {
  std::string text;
  constexpr int kN = 5000;
  for (int i = 0; i < kN; ++i) text += "http://h/" + std::to_string(i) + ".jpg\n";
  TempFile list(text);
  Pull pull;
  pull.sock.set(zmq::sockopt::rcvhwm, 10);
  auto o = options(list.path, pull.endpoint);
  o.sndhwm = 10;
  auto rc = std::async(std::launch::async, [&] { return fetcher::run(o, never); });
  std::this_thread::sleep_for(200ms); // let the sender block at its high-water mark
  const Received r = receive_all(pull.sock);
  CHECK(rc.get() == kExitOk);
  REQUIRE(r.urls.size() == kN);
  for (int i = 0; i < kN; ++i) REQUIRE(r.urls[i] == "http://h/" + std::to_string(i) + ".jpg");
  REQUIRE(r.end_count);
  CHECK(*r.end_count == kN);
}

TEST_CASE("run stops without LinksEnd when a stop is requested", "[fetcher]") {
  TempFile list("http://h/1.jpg\nhttp://h/2.jpg\nhttp://h/3.jpg\n");
  Pull pull;
  auto o = options(list.path, pull.endpoint);
  int calls = 0;
  const auto stop_after_two = [&calls] { return ++calls > 2; };
  CHECK(fetcher::run(o, stop_after_two) == kExitInterrupted);
  const Received r = receive_all(pull.sock, 500ms);
  CHECK(r.urls.size() <= 2);
  CHECK_FALSE(r.end_count);
}

TEST_CASE("run with no ventilator waits without spinning and notices the stop", "[fetcher]") {
  // Find a loopback port that nobody listens on: bind, read it, close.
  std::string endpoint;
  {
    Pull probe;
    endpoint = probe.endpoint;
  }
  TempFile list("http://h/1.jpg\n");
  auto o = options(list.path, endpoint);
  const auto t0 = std::chrono::steady_clock::now();
  const auto deadline = t0 + 400ms;
  std::clock_t cpu0 = std::clock();
  const int rc = fetcher::run(o, [&] { return std::chrono::steady_clock::now() > deadline; });
  const auto wall = std::chrono::steady_clock::now() - t0;
  const double cpu_s = static_cast<double>(std::clock() - cpu0) / CLOCKS_PER_SEC;
  CHECK(rc == kExitInterrupted);
  CHECK(wall >= 400ms);
  CHECK(wall < 3s);
  CHECK(cpu_s < 0.2); // polling with a timeout, not a busy loop
}

TEST_CASE("run maps bad options and sources to exit codes", "[fetcher]") {
  Pull pull;
  TempFile list("http://h/1.jpg\n");
  {
    auto o = options(list.path, pull.endpoint);
    o.exts = {"a/b"};
    CHECK(fetcher::run(o, never) == kExitUsage);
  }
  {
    auto o = options(list.path, pull.endpoint);
    o.format = "xml";
    CHECK(fetcher::run(o, never) == kExitUsage);
  }
  {
    auto o = options(list.path, "no-such-transport://x");
    CHECK(fetcher::run(o, never) == kExitUsage);
  }
  {
    auto o = options(list.path, pull.endpoint);
    o.connect.clear();
    CHECK(fetcher::run(o, never) == kExitUsage);
  }
  {
    auto o = options("/nonexistent/trawl/list.txt", pull.endpoint);
    CHECK(fetcher::run(o, never) == kExitFatal);
  }
  {
    auto o = options(std::filesystem::temp_directory_path().string(), pull.endpoint);
    CHECK(fetcher::run(o, never) == kExitFatal);
  }
  {
    TempFile bad(R"({"data": 3})", ".json");
    auto o = options(bad.path, pull.endpoint);
    CHECK(fetcher::run(o, never) == kExitFatal);
  }
  {
    auto o = options(std::string(TRAWL_SAMPLES_DIR) + "/imgur-error-401.json", pull.endpoint);
    CHECK(fetcher::run(o, never) == kExitFatal);
  }
  {
    TempFile big(R"({"data": [)" + std::string(2000, ' ') + "]}", ".json");
    auto o = options(big.path, pull.endpoint);
    o.max_body_bytes = 1000;
    CHECK(fetcher::run(o, never) == kExitFatal);
  }
  // Nothing was sent by any of these.
  CHECK(receive_all(pull.sock, 200ms).urls.empty());
}

TEST_CASE("run reads the list from stdin with '-'", "[fetcher]") {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const int saved = ::dup(0);
  REQUIRE(saved >= 0);
  REQUIRE(::dup2(fds[0], 0) == 0);
  ::close(fds[0]);
  const std::string text = "http://h/in1.jpg\n# c\nhttp://h/in2.jpg\n";
  REQUIRE(::write(fds[1], text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  ::close(fds[1]);

  Pull pull;
  auto o = options("-", pull.endpoint);
  auto rc = std::async(std::launch::async, [&] { return fetcher::run(o, never); });
  const Received r = receive_all(pull.sock);
  const int code = rc.get();
  ::dup2(saved, 0);
  ::close(saved);
  CHECK(code == kExitOk);
  CHECK(r.urls == std::vector<std::string>{"http://h/in1.jpg", "http://h/in2.jpg"});
  REQUIRE(r.end_count);
  CHECK(*r.end_count == 2);
}
