// Nodes that must not get work, end to end on loopback with the real processes:
// - CurveZMQ: vent and sink with keys over tcp://127.0.0.1; an authorised downloader does the
//   whole job, one without keys and one with an unauthorised key get no task, write nothing, and
//   the refusals are logged;
// - a non-loopback bind without keys is refused unless --insecure;
// - a node of another protocol version (frames with v=2, crafted here: this is not a second
//   build) gets no task, and the ventilator says why in a few log lines, not one per frame.
#include <catch2/catch.hpp>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <openssl/sha.h>
#include <string>
#include <thread>
#include <zmq.hpp>

#include "proto/messages.hpp"
#include "proto/version.hpp"
#include "tests/support/process.hpp"

namespace fs = std::filesystem;
using namespace trawl::testsupport;
using namespace std::chrono_literals;
namespace proto = trawl::proto;

namespace {

std::size_t lines_with(const std::string& path, const std::string& what) {
  std::ifstream in(path);
  std::size_t n = 0;
  for (std::string line; std::getline(in, line);) n += line.find(what) != std::string::npos;
  return n;
}

std::string sha256_file(const std::string& path) {
  const std::string data = read_file(path);
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  std::string hex;
  static const char* digits = "0123456789abcdef";
  for (unsigned char c : md) {
    hex += digits[c >> 4];
    hex += digits[c & 15];
  }
  return hex;
}

// name -> sha256 from the fixture's manifest.tsv
std::map<std::string, std::string> manifest(const FixtureServer& fx) {
  std::map<std::string, std::string> m;
  std::istringstream in(http_get(fx.url() + "/manifest.tsv"));
  for (std::string line; std::getline(in, line);) {
    const auto a = line.find('\t'), b = line.rfind('\t');
    if (a != std::string::npos && b != a) m[line.substr(0, a)] = line.substr(b + 1);
  }
  return m;
}

std::size_t count_files(const std::string& dir) {
  std::size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir))
    n += e.is_regular_file() && !e.path().filename().string().starts_with(".trawl-");
  return n;
}

void keygen(const std::string& base) {
  auto c = Child::spawn({TRAWL_BIN, "keygen", "--out", base});
  REQUIRE(c.wait_for(10s) == std::optional<int>(0));
}

} // namespace

TEST_CASE("curve: only the authorised node downloads, keyless and unknown keys are refused",
          "[e2e][curve]") {
  auto fixture = FixtureServer::start({"--corpus", "uniform", "--count", "60", "--size", "2000"});
  TempDir dir("trawl-e2e-curve");
  const std::string keys = dir / "keys";
  fs::create_directories(keys + "/authorized");
  for (const char* k : {"server", "good", "stranger"}) keygen(keys + "/" + k);
  fs::copy_file(keys + "/good.pub", keys + "/authorized/good.pub");
  const std::vector<std::string> server_keys{"--curve-secret", keys + "/server.key",
                                             "--curve-authorized", keys + "/authorized"};
  const auto with = [](std::vector<std::string> a, const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };

  auto sink = Child::spawn(with({TRAWL_BIN, "sink", "--bind", "tcp://127.0.0.1:*", "--acks",
                                 "ipc://" + (dir / "acks"), "--progress", "none", "--ready-file",
                                 dir / "sink.ready"},
                                server_keys),
                           {}, dir / "sink.out", dir / "sink.err");
  const auto results = wait_ready_file(dir / "sink.ready", 10s, &sink).at("results");
  auto vent = Child::spawn(with({TRAWL_BIN, "vent", "--links", "ipc://" + (dir / "links"), "--bind",
                                 "tcp://127.0.0.1:*", "--acks", "ipc://" + (dir / "acks"),
                                 "--sink", results, "--state", dir / "state", "--ready-file",
                                 dir / "vent.ready"},
                                server_keys),
                           {}, "", dir / "vent.err");
  const auto tasks = wait_ready_file(dir / "vent.ready", 10s, &vent).at("tasks");

  const auto node = [&](const std::string& name, const std::vector<std::string>& curve) {
    fs::create_directories(dir / ("out-" + name));
    return Child::spawn(with({TRAWL_BIN, "download", "--connect", tasks, "--sink", results, "--out",
                              dir / ("out-" + name), "-j", "4", "--node", name},
                             curve),
                        {}, "", dir / (name + ".err"));
  };
  // The strangers first, so they would be served first if they could be.
  auto keyless = node("keyless", {});
  auto stranger = node("stranger", {"--curve-secret", keys + "/stranger.key", "--curve-server",
                                    keys + "/server.pub"});
  std::this_thread::sleep_for(300ms); // let them knock (and be refused) before work exists
  auto fetch = Child::spawn({TRAWL_BIN, "fetch", "--source", fixture.url() + "/list.txt",
                             "--connect", "ipc://" + (dir / "links"), "--curve-secret",
                             keys + "/server.key", "--curve-server", keys + "/server.pub"},
                            {}, "", dir / "fetch.err");
  REQUIRE(fetch.wait_for(30s) == std::optional<int>(0));
  std::this_thread::sleep_for(300ms); // the job is waiting: nobody may have taken a task
  CHECK(count_files(dir / "out-keyless") == 0);
  CHECK(count_files(dir / "out-stranger") == 0);
  auto good = node("good", {"--curve-secret", keys + "/good.key", "--curve-server",
                            keys + "/server.pub"});

  const auto status = sink.wait_for(60s);
  REQUIRE(status.has_value());
  CHECK(*status == 0);
  CHECK_THAT(read_file(dir / "sink.out"), Catch::Contains("60 done"));
  CHECK(vent.wait_for(10s) == std::optional<int>(0));

  const auto want = manifest(fixture);
  REQUIRE(want.size() == 60);
  for (const auto& [name, sha] : want) {
    const std::string path = dir / ("out-good/" + name);
    REQUIRE(fs::exists(path));
    CHECK(sha256_file(path) == sha);
  }
  CHECK(count_files(dir / "out-keyless") == 0);
  CHECK(count_files(dir / "out-stranger") == 0);
  CHECK(lines_with(dir / "keyless.err", "first task") == 0);
  CHECK(lines_with(dir / "stranger.err", "first task") == 0);
  // The unknown key is refused by the ZAP handler (with its address), the keyless node by the
  // mechanism check; both are logged by vent and sink, a bounded number of times.
  CHECK(lines_with(dir / "vent.err", "refused a connection from 127.0.0.1") >= 1);
  CHECK(lines_with(dir / "sink.err", "refused a connection from 127.0.0.1") >= 1);
  CHECK(lines_with(dir / "vent.err", "refused a connection on the tasks socket") >= 1);
  CHECK(lines_with(dir / "vent.err", "refused a connection") < 40);
  for (auto* c : {&keyless, &stranger, &good}) c->signal(SIGTERM);
  CHECK(good.wait_for(15s) == std::optional<int>(0));
}

TEST_CASE("without keys, binding beyond loopback is refused", "[e2e][curve]") {
  TempDir dir("trawl-e2e-bind");
  auto vent = Child::spawn({TRAWL_BIN, "vent", "--links", "ipc://" + (dir / "links"), "--bind",
                            "tcp://0.0.0.0:*", "--acks", "ipc://" + (dir / "acks"), "--sink",
                            "ipc://" + (dir / "results"), "--state", dir / "state"},
                           {}, "", dir / "vent.err");
  const auto vs = vent.wait_for(10s);
  REQUIRE(vs.has_value());
  CHECK(*vs != 0);
  CHECK_THAT(read_file(dir / "vent.err"), Catch::Contains("refusing to bind tcp://0.0.0.0:*") &&
                                               Catch::Contains("--insecure"));
  auto sink = Child::spawn({TRAWL_BIN, "sink", "--bind", "tcp://*:*", "--acks", "", "--progress",
                            "none"},
                           {}, "", dir / "sink.err");
  const auto ss = sink.wait_for(10s);
  REQUIRE(ss.has_value());
  CHECK(*ss != 0);
  CHECK_THAT(read_file(dir / "sink.err"), Catch::Contains("refusing to bind tcp://*:*"));
}

TEST_CASE("a node of another protocol version gets no task and is named in a few log lines",
          "[e2e][version]") {
  auto fixture = FixtureServer::start({"--corpus", "uniform", "--count", "40", "--size", "1000",
                                       "--delay-ms", "20"});
  TempDir dir("trawl-e2e-version");
  auto broker = start_broker(TRAWL_BIN, dir.path());
  const std::string &links = broker.links, &tasks = broker.tasks, &results = broker.results;
  Child& sink = broker.sink;

  // A "version 2" node: a DEALER announcing plenty of room, every frame with v=2.
  zmq::context_t ctx(1);
  zmq::socket_t v2(ctx, zmq::socket_type::dealer);
  v2.set(zmq::sockopt::linger, 0);
  v2.connect(tasks);
  proto::Ready ready;
  ready.node = "v2-node";
  ready.capacity = 100;
  std::string frame = proto::encode(ready);
  // encode() writes the map header, then "v" (0xa1 'v'), then the version as a positive fixint.
  const auto at = frame.find(std::string("\xa1v", 2));
  REQUIRE(at != std::string::npos);
  REQUIRE(static_cast<unsigned char>(frame[at + 2]) == proto::kProtocolVersion);
  constexpr auto other = proto::kProtocolVersion + 1;
  frame[at + 2] = static_cast<char>(other);
  const auto send_v2 = [&](int n) {
    for (int i = 0; i < n; ++i) {
      REQUIRE(v2.send(zmq::buffer(frame), zmq::send_flags::none).has_value());
      std::this_thread::sleep_for(20ms);
    }
  };
  send_v2(10);
  fs::create_directories(dir / "out");
  auto fetch = Child::spawn({TRAWL_BIN, "fetch", "--source", fixture.url() + "/list.txt",
                             "--connect", links},
                            {}, "", dir / "fetch.err");
  REQUIRE(fetch.wait_for(30s) == std::optional<int>(0));
  send_v2(30); // work waits, a v2 node asks: no task may come, only the version notice
  zmq::message_t got;
  // Every frame the v2 node gets is the ventilator's version notice (a header with v=1), no task.
  const auto only_notices = [&] {
    int notices = 0;
    while (v2.recv(got, zmq::recv_flags::dontwait)) {
      CHECK(got.to_string() == proto::encode_version_notice());
      ++notices;
    }
    return notices;
  };
  const int notices = only_notices();
  CHECK(notices >= 1);
  CHECK(notices <= 15);
  auto good = Child::spawn({TRAWL_BIN, "download", "--connect", tasks, "--sink", results, "--out",
                            dir / "out", "-j", "8", "--node", "v1-node"},
                           {}, "", dir / "download.err");
  const auto status = sink.wait_for(60s);
  REQUIRE(status.has_value());
  CHECK(*status == 0);
  CHECK_THAT(read_file(dir / "sink.out"), Catch::Contains("40 done"));
  CHECK(only_notices() + notices <= 15);
  // Every v2 frame was dropped; the log names both versions, a few times, not 40.
  const auto named =
      lines_with(dir / "vent.err", "protocol version " + std::to_string(other) + " (this build speaks " +
                                       std::to_string(proto::kProtocolVersion) + ")");
  CHECK(named >= 1);
  CHECK(named <= 15);
  good.signal(SIGTERM);
  CHECK(good.wait_for(15s) == std::optional<int>(0));
}
