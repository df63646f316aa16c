// Hostile frames, end to end: the real `trawl vent`, `trawl sink` and `trawl download` processes
// get random bytes, truncated msgpack, wrong types, five-byte headers claiming gigabytes, wrong
// protocol versions, oversized frames (ZMQ_MAXMSGSIZE disconnects the sender), valid frames of
// the wrong type, and non-ZMTP bytes on their sockets; then they must be alive, have logged the
// drops, and still complete a small real job. Every loop is bounded in count and time.
#include <catch2/catch.hpp>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <sys/socket.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>
#include <vector>
#include <zmq.hpp>

#include "proto/messages.hpp"
#include "proto/version.hpp"
#include "tests/support/corpus.hpp"
#include "tests/support/process.hpp"

namespace fs = std::filesystem;
using namespace trawl::testsupport;
using namespace std::chrono_literals;
namespace proto = trawl::proto;

namespace {

// A msgpack map with string keys and already-encoded values.
std::string mp_str(const std::string& s) {
  std::string out;
  if (s.size() < 32) {
    out.push_back(static_cast<char>(0xa0 | s.size()));
  } else {
    out.push_back(static_cast<char>(0xd9));
    out.push_back(static_cast<char>(s.size()));
  }
  return out + s;
}
std::string mp_map(const std::vector<std::pair<std::string, std::string>>& kv) {
  std::string out(1, static_cast<char>(0x80 | kv.size()));
  for (const auto& [k, v] : kv) out += mp_str(k) + v;
  return out;
}
std::string mp_uint(std::uint8_t v) { return std::string(1, static_cast<char>(v & 0x7f)); }

// Frames that no decoder may accept, whatever the socket.
std::vector<std::string> garbage_frames() {
  std::vector<std::string> f;
  std::mt19937 rng(20261130);
  // Frames that look valid carry our protocol version; the "wrong version" ones the next.
  const auto ours = static_cast<std::uint8_t>(proto::kProtocolVersion);
  for (int i = 0; i < 60; ++i) {
    std::string s(rng() % 300, '\0');
    for (auto& c : s) c = static_cast<char>(rng());
    f.push_back(s);
  }
  f.push_back("");
  // Truncated msgpack: a valid task cut at every length.
  const std::string task =
      proto::encode(proto::Task{7, "http://127.0.0.1:9/x.jpg", "x.jpg", 1});
  for (std::size_t n = 1; n < task.size(); n += 3) f.push_back(task.substr(0, n));
  f.push_back(task + "trailing");
  // Wrong types.
  f.push_back(mp_map({{"v", mp_uint(ours)}, {"t", mp_str("link")}, {"url", mp_uint(42)}}));
  f.push_back(mp_map({{"v", mp_str("1")}, {"t", mp_str("link")}, {"url", mp_str("http://x/")}}));
  f.push_back(mp_map({{"v", mp_uint(ours)}, {"t", mp_uint(3)}}));
  f.push_back(mp_map({{"v", mp_uint(ours)}}));
  f.push_back(std::string("\x92\x01\x02", 3)); // an array at the top
  f.push_back(std::string("\xc0", 1));         // nil
  f.push_back(mp_str("just a string"));
  f.push_back(mp_map({{"v", mp_uint(ours)},
                      {"t", mp_str("link")},
                      {"url", mp_map({{"a", mp_map({{"b", mp_uint(1)}})}})}}));
  // Five-byte headers that claim gigabytes, alone and as a field's value.
  for (const char* h : {"\xdd\xff\xff\xff\xff", "\xdf\xff\xff\xff\xff", "\xdb\xff\xff\xff\xff",
                        "\xc6\xff\xff\xff\xff", "\xc9\xff\xff\xff\xff"}) {
    f.push_back(std::string(h, 5));
    f.push_back(mp_map({{"v", mp_uint(ours)}, {"t", mp_str("link")}, {"url", std::string(h, 5)}}));
  }
  // Wrong protocol versions.
  f.push_back(mp_map({{"v", mp_uint(static_cast<std::uint8_t>(ours + 1))},
                      {"t", mp_str("link")},
                      {"url", mp_str("http://x/")}}));
  f.push_back(mp_map({{"v", mp_uint(0)}, {"t", mp_str("link")}, {"url", mp_str("http://x/")}}));
  f.push_back(mp_map({{"v", std::string("\xce\xff\xff\xff\xff", 5)}, {"t", mp_str("link")},
                      {"url", mp_str("http://x/")}}));
  return f;
}

// The count of lines of `path` that contain `what`.
std::size_t lines_with(const std::string& path, const std::string& what) {
  std::ifstream in(path);
  std::size_t n = 0;
  for (std::string line; std::getline(in, line);) n += line.find(what) != std::string::npos;
  return n;
}

// Waits (at most `timeout`) until `path` has at least `n` lines containing `what`.
std::size_t wait_lines(const std::string& path, const std::string& what, std::size_t n,
                       std::chrono::milliseconds timeout = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::size_t got = 0;
  while ((got = lines_with(path, what)) < n && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  return got;
}

// Sends every frame on a fresh socket of `type` connected to `endpoint`, then one frame over the
// size limit, which makes the receiver drop the connection. Each send waits at most a second.
void bombard(zmq::context_t& ctx, zmq::socket_type type, const std::string& endpoint,
             const std::vector<std::string>& frames) {
  zmq::socket_t s(ctx, type);
  s.set(zmq::sockopt::linger, 1000);
  s.set(zmq::sockopt::sndtimeo, 1000);
  s.connect(endpoint);
  for (const auto& f : frames) REQUIRE(s.send(zmq::buffer(f), zmq::send_flags::none).has_value());
  // A multi-part message, then a frame above 256 KiB (the peer disconnects us on its header).
  REQUIRE(s.send(zmq::str_buffer("part one"), zmq::send_flags::sndmore).has_value());
  REQUIRE(s.send(zmq::str_buffer("part two"), zmq::send_flags::none).has_value());
  const std::string big(proto::kMaxFrameBytes + 44 * 1024, 'x');
  REQUIRE(s.send(zmq::buffer(big), zmq::send_flags::none).has_value());
}

// Writes bytes that are not ZMTP at all (and a greeting with a huge length) to an ipc socket.
void raw_bytes(const std::string& ipc_endpoint) {
  const std::string path = ipc_endpoint.substr(std::string("ipc://").size());
  for (int i = 0; i < 3; ++i) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    REQUIRE(path.size() < sizeof addr.sun_path);
    std::copy(path.begin(), path.end(), addr.sun_path);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      std::string bytes = i == 0 ? std::string(4096, '\xff')
                          : i == 1 ? std::string("\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", 10) +
                                         std::string(2000, 'A')
                                   : std::string("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
      (void)::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      std::this_thread::sleep_for(20ms);
    }
    ::close(fd);
  }
}

// Resident memory of a process in KiB (VmRSS), 0 when unknown.
long rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return 0;
}

} // namespace

TEST_CASE("hostile frames on every socket: dropped, logged, and the job still completes",
          "[e2e][hostile]") {
  auto fixture = FixtureServer::start();
  TempDir dir("trawl-e2e-hostile");
  const std::string out = dir / "out";

  zmq::context_t ctx(1);
  // A second "ventilator" the downloader also connects to: the only way to reach the
  // downloader's task socket, which connects and binds nothing.
  zmq::socket_t fake_vent(ctx, zmq::socket_type::router);
  fake_vent.set(zmq::sockopt::linger, 0);
  fake_vent.set(zmq::sockopt::sndtimeo, 2000);
  fake_vent.set(zmq::sockopt::router_mandatory, 1); // wait for room rather than drop silently
  fake_vent.bind("tcp://127.0.0.1:*");
  const std::string fake_ep = fake_vent.get(zmq::sockopt::last_endpoint);

  auto broker = start_broker(TRAWL_BIN, dir.path());
  const std::string &links = broker.links, &tasks = broker.tasks, &acks = broker.acks,
                    &results = broker.results;
  Child &sink = broker.sink, &vent = broker.vent;
  auto download = Child::spawn({TRAWL_BIN, "download", "--connect", tasks, "--connect", fake_ep,
                                "--sink", results, "--out", out, "-j", "4", "--node", "dl1"},
                               {}, "", dir / "download.err");

  const auto frames = garbage_frames();
  // Valid frames of the wrong type for each socket.
  const std::string link = proto::encode(proto::Link{"http://127.0.0.1:9/wrong.jpg"});
  const std::string task = proto::encode(proto::Task{99, "http://127.0.0.1:9/t.jpg", "t.jpg", 1});
  proto::Result result;
  result.id = 99;
  result.url = "http://127.0.0.1:9/r.jpg";
  result.reason = proto::Reason::other;
  const std::string res = proto::encode(result);
  proto::Ready intruder;
  intruder.node = "intruder"; // capacity 0: asks for no task
  const std::string ready = proto::encode(intruder);
  proto::Job fake_job;
  fake_job.started_unix_ms = 1;
  fake_job.total = 5;
  const std::string job = proto::encode(fake_job);
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> all = frames;
    all.insert(all.end(), extra.begin(), extra.end());
    return all;
  };

  bombard(ctx, zmq::socket_type::dealer, links, with({task, res, ready, job}));
  bombard(ctx, zmq::socket_type::push, acks, with({link, task, ready, job}));
  bombard(ctx, zmq::socket_type::push, results, with({link, task, ready}));
  bombard(ctx, zmq::socket_type::dealer, tasks, with({link, task, res, job}));
  for (const auto& ep : {links, acks, results, tasks}) raw_bytes(ep);

  // The downloader's task socket: learn its routing id from a ready message, then the same.
  std::string peer;
  for (int i = 0; i < 300 && peer.empty(); ++i) {
    zmq::pollitem_t item{fake_vent.handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, 20ms);
    zmq::message_t id, body;
    if (fake_vent.recv(id, zmq::recv_flags::dontwait) && id.more() && fake_vent.recv(body))
      peer = id.to_string();
  }
  REQUIRE_FALSE(peer.empty());
  std::size_t to_downloader = 0;
  for (const auto& f : with({link, res, ready, job})) {
    REQUIRE(fake_vent.send(zmq::buffer(peer), zmq::send_flags::sndmore).has_value());
    REQUIRE(fake_vent.send(zmq::buffer(f), zmq::send_flags::none).has_value());
    ++to_downloader;
  }
  // Over the size limit: the downloader drops the connection (and reconnects).
  const std::string big(proto::kMaxFrameBytes + 1, 'x');
  REQUIRE(fake_vent.send(zmq::buffer(peer), zmq::send_flags::sndmore).has_value());
  REQUIRE(fake_vent.send(zmq::buffer(big), zmq::send_flags::none).has_value());

  // Every socket logged drops (a frame refused by the size limit is not seen by the code, and
  // libzmq may merge nothing: at least the plain garbage must show up, once per frame).
  const std::size_t expect = frames.size();
  CHECK(wait_lines(dir / "vent.err", "dropped a frame on links", expect) >= expect);
  CHECK(wait_lines(dir / "vent.err", "dropped a frame on acks", expect) >= expect);
  CHECK(wait_lines(dir / "vent.err", "dropped a frame on tasks", expect) >= expect);
  CHECK(wait_lines(dir / "sink.err", "dropped a frame", expect) >= expect);
  CHECK(wait_lines(dir / "download.err", "dropped a", to_downloader) >= to_downloader);
  fake_vent.close();

  REQUIRE(sink.running());
  REQUIRE(vent.running());
  REQUIRE(download.running());
  // Nothing was allocated for the gigabytes the headers claimed.
  for (pid_t pid : {sink.pid(), vent.pid(), download.pid()}) CHECK(rss_kib(pid) < 100 * 1024);

  // A small real job afterwards, through the same processes.
  std::vector<Item> files = files_of(classic_gallery(), true);
  REQUIRE(files.size() >= 5);
  std::ofstream list(dir / "list.txt");
  std::map<std::string, std::string> expected;
  for (std::size_t i = 0; i < 5; ++i) {
    list << fixture.url() << "/i/" << files[i].name << "\n";
    expected[files[i].name] = sha256_hex(file_bytes(files[i].name, files[i].size));
  }
  list.close();
  auto fetch = Child::spawn({TRAWL_BIN, "fetch", "--source", dir / "list.txt", "--connect", links},
                            {}, "", dir / "fetch.err");
  CHECK(fetch.wait_for(30s) == std::optional<int>(0));
  const auto sink_status = sink.wait_for(30s);
  INFO("sink: " << read_file(dir / "sink.err") << "\nvent: " << read_file(dir / "vent.err")
                << "\ndownload: " << read_file(dir / "download.err"));
  REQUIRE(sink_status.has_value());
  CHECK(*sink_status == 0);
  CHECK_THAT(read_file(dir / "sink.out"), Catch::Contains("5 done"));
  CHECK(vent.wait_for(10s).has_value());
  download.signal(SIGTERM);
  CHECK(download.wait_for(15s) == std::optional<int>(0));
  // After the downloader's exit: while it runs, its ready temporary files are in --out too.
  std::map<std::string, std::string> got;
  for (const auto& e : fs::directory_iterator(out))
    if (e.is_regular_file()) got[e.path().filename().string()] = sha256_file(e.path().string());
  CHECK(got == expected);
}
