// End to end: launch/pipeline starts sink, ventilator, two downloaders and the fetcher as real
// processes; the fixture server on 127.0.0.1 serves a generated gallery. Every byte is checked.
#include <algorithm>
#include <catch2/catch.hpp>
#include <csignal>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <pthread.h>
#include <set>
#include <sstream>
#include <string_view>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

#include "common/signals.hpp"
#include "tests/support/corpus.hpp"
#include "tests/support/process.hpp"

namespace fs = std::filesystem;
using namespace trawl::testsupport;

namespace {

// The run directory's pids file: process name (vent, fetch, sink, download-N) -> PID.
std::map<std::string, pid_t> pids_in(const std::string& run_dir) {
  std::map<std::string, pid_t> pids;
  std::ifstream in(run_dir + "/pids");
  std::string name;
  pid_t pid = -1;
  while (in >> name >> pid) pids[name] = pid;
  return pids;
}

// A URL list (DIR/list.txt) of the classic gallery's first `n` files on `fixture`; returns what
// the job must keep, name -> SHA-256.
std::map<std::string, std::string> write_classic_list(const TempDir& dir,
                                                      const FixtureServer& fixture, std::size_t n) {
  const std::vector<Item> files = files_of(classic_gallery(), true);
  std::map<std::string, std::string> expected;
  std::ofstream list(dir / "list.txt");
  for (std::size_t i = 0; i < n; ++i) {
    list << fixture.url() << "/i/" << files[i].name << "\n";
    expected[files[i].name] = sha256_hex(file_bytes(files[i].name, files[i].size));
  }
  return expected;
}

struct PipelineRun {
  int status = -1;
  std::string out;  // stdout: the summary
  std::string err;  // stderr: logs
  std::vector<pid_t> pids;
};

PipelineRun run_pipeline(const TempDir& dir, std::vector<std::string> args,
                         std::vector<std::string> env = {}, std::string stdin_path = "",
                         std::chrono::seconds timeout = std::chrono::seconds(120)) {
  const std::string run_dir = dir / "run";
  fs::create_directories(run_dir);
  std::vector<std::string> argv = {TRAWL_PIPELINE, "--trawl", TRAWL_BIN, "--run-dir", run_dir,
                                   "--progress", "lines"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto child = Child::spawn(argv, env, dir / "stdout", dir / "stderr", stdin_path);
  PipelineRun r;
  auto status = child.wait_for(timeout);
  if (!status)
    FAIL(stop_hung_pipeline(
        child, "pipeline did not finish within " + std::to_string(timeout.count()) + " s", run_dir,
        dir / "stderr"));
  r.status = *status;
  r.out = read_file(dir / "stdout");
  r.err = read_file(dir / "stderr");
  for (const auto& [name, pid] : pids_in(run_dir)) r.pids.push_back(pid);
  return r;
}

// Every file in `out`, name -> sha256.
std::map<std::string, std::string> files_in(const std::string& out) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::directory_iterator(out))
    if (e.path().filename() != ".trawl") // the job's ledger
      files[e.path().filename().string()] = sha256_file(e.path().string());
  return files;
}

std::uint64_t file_requests(const FixtureServer& f) {
  return nlohmann::json::parse(http_get(f.url() + "/stats"))["file_requests"].get<std::uint64_t>();
}

// What a classic job keeps: the gallery's .jpg files (no album, no gif), name -> SHA-256.
std::map<std::string, std::string> classic_jpgs() {
  std::map<std::string, std::string> expected;
  for (const auto& item : classic_gallery())
    if (!item.is_album && item.name.ends_with(".jpg"))
      expected[item.name] = sha256_hex(file_bytes(item.name, item.size));
  return expected;
}

void check_all_gone(const PipelineRun& r) {
  CHECK(r.pids.size() >= 4);
  for (pid_t p : r.pids) CHECK_FALSE(pid_alive(p));
}

} // namespace

TEST_CASE("classic job: 91 jpgs of a gallery with gifs and albums, 200 ms per response", "[e2e]") {
  auto fixture = FixtureServer::start({"--corpus", "classic", "--delay-ms", "200"});
  TempDir dir("trawl-e2e-classic");
  const std::string out = dir / "out";
  // The sink waits for a downloader's word (--sink-wait-ms is far beyond the run's limit).
  auto r = run_pipeline(dir,
                        {"--source", fixture.url() + "/3/gallery/hot/viral/0.json", "--out", out,
                         "--downloaders", "2", "--concurrency", "64", "--ext", ".jpg",
                         "--sink-wait-ms", "60000"},
                        {}, "", std::chrono::seconds(40));
  INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
  CHECK(r.status == 0);

  const auto expected = classic_jpgs();
  REQUIRE(expected.size() == 91);
  CHECK(files_in(out) == expected); // every file, right bytes, nothing else (no .part, no gif)
  CHECK_THAT(r.out, Catch::Contains("trawl: 91 links: 91 done, 0 failed"));
  CHECK(file_requests(fixture) == 91); // each file fetched once, nothing skipped fetched
  check_all_gone(r);
  // The sink started after a downloader had its first tasks.
  const auto first_task = r.err.find("first task after");
  const auto sink_up = r.err.find("] results on ");
  REQUIRE(first_task != std::string::npos);
  REQUIRE(sink_up != std::string::npos);
  CHECK(sink_up > first_task);
  // Each downloader made the pages of its receive buffers present before its first responses
  // (downloader/recv_prefault.hpp): one buffer of 64 KiB and a byte (17 pages) per transfer
  // started by then, noted through the allocation functions libcurl was initialised with.
  constexpr std::string_view kSummary = "downloader summary:",
                             kPopulated = "receive buffers populated ahead: ";
  std::size_t summaries = 0;
  for (std::size_t at = r.err.find(kSummary); at != std::string::npos;
       at = r.err.find(kSummary, at + 1)) {
    ++summaries;
    const auto line = r.err.substr(at, r.err.find('\n', at) - at);
    const auto kib = line.find(kPopulated);
    REQUIRE(kib != std::string::npos);
    const auto populated = std::stoul(line.substr(kib + kPopulated.size()));
    CHECK(populated >= 68);      // KiB: at least one buffer
    CHECK(populated <= 64 * 68); // at most one per transfer (-j 64)
  }
  CHECK(summaries == 2);
  // The launcher stopped both downloaders with the job-complete word once the sink had every
  // result (no grace, no teardown: common/signals.hpp), not with an ordinary stop, which waits
  // up to --grace-ms for transfers in flight.
  CHECK(count_of(r.err, "stopping: 0 transfers in flight, waiting up to 0 ms") == 2);
}

TEST_CASE("one link, two downloaders: the idle one does not hold the sink back", "[e2e]") {
  auto fixture = FixtureServer::start();
  TempDir dir("trawl-e2e-one-link");
  const auto expected = write_classic_list(dir, fixture, 1);
  const std::string out = dir / "out";
  const auto started = std::chrono::steady_clock::now();
  // Without the busy downloader's word the sink would start after 60 s, beyond the limit.
  auto r = run_pipeline(
      dir,
      {"--source", dir / "list.txt", "--out", out, "--downloaders", "2", "--sink-wait-ms", "60000"},
      {}, "", std::chrono::seconds(40));
  const auto took = std::chrono::steady_clock::now() - started;
  INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
  CHECK(r.status == 0);
  CHECK(files_in(out) == expected);
  CHECK_THAT(r.out, Catch::Contains("trawl: 1 links: 1 done, 0 failed"));
  CHECK(took < std::chrono::seconds(30));
  check_all_gone(r);
}

TEST_CASE("classic job: no digest by default, every SHA-256 with --digest sha256", "[e2e]") {
  auto fixture = FixtureServer::start({"--corpus", "classic"});
  const auto expected = classic_jpgs();
  REQUIRE(expected.size() == 91);
  for (const bool sha : {false, true}) {
    INFO((sha ? "--digest sha256" : "default"));
    TempDir dir(sha ? "trawl-e2e-digest" : "trawl-e2e-nodigest");
    const std::string out = dir / "out";
    std::vector<std::string> args = {"--source",   fixture.url() + "/3/gallery/hot/viral/0.json",
                                     "--out",      out,
                                     "--ext",      ".jpg",
                                     "--manifest", dir / "manifest.jsonl"};
    if (sha) args.insert(args.end(), {"--", "--digest", "sha256"});
    auto r = run_pipeline(dir, args);
    INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
    CHECK(r.status == 0);
    CHECK(files_in(out) == expected);
    CHECK_THAT(r.out, Catch::Contains("trawl: 91 links: 91 done, 0 failed"));
    std::ifstream manifest(dir / "manifest.jsonl");
    std::string line;
    std::size_t rows = 0;
    while (std::getline(manifest, line)) {
      const auto row = nlohmann::json::parse(line);
      INFO(line);
      CHECK(row["status"] == "done");
      const std::string name = fs::path(row["path"].get<std::string>()).filename().string();
      CHECK(row["sha256"] == (sha ? expected.at(name) : ""));
      CHECK(row["bytes"].get<std::uint64_t>() == fs::file_size(fs::path(out) / name));
      ++rows;
    }
    CHECK(rows == 91);
    check_all_gone(r);
  }
}

TEST_CASE("URL list on stdin: duplicates once, 404 reported, clashing names kept apart", "[e2e]") {
  auto fixture = FixtureServer::start();
  TempDir dir("trawl-e2e-list");
  std::vector<Item> files = files_of(classic_gallery(), true);
  std::ostringstream list;
  list << "# a comment, then a blank line\n\n";
  std::map<std::string, std::string> expected;
  for (std::size_t i = 0; i < 20; ++i) {
    list << fixture.url() << "/i/" << files[i].name << "\n";
    expected[files[i].name] = sha256_hex(file_bytes(files[i].name, files[i].size));
  }
  list << fixture.url() << "/i/" << files[0].name << "\n";             // exact duplicate: dropped
  list << fixture.url() << "/i/" << files[1].name << "?size=large\n";  // same base name, other URL
  list << fixture.url() << "/i/doesnotexist.jpg\n";                    // 404
  list << "not a url\n";
  std::ofstream(dir / "list.txt") << list.str();

  const std::string out = dir / "out";
  auto r = run_pipeline(dir, {"--source", "-", "--out", out}, {}, dir / "list.txt");
  INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
  CHECK(r.status == 1);
  CHECK_THAT(r.out, Catch::Contains("trawl: 22 links: 21 done, 1 failed"));
  CHECK_THAT(r.out, Catch::Contains("http-4xx"));
  CHECK_THAT(r.out, Catch::Contains("doesnotexist.jpg"));

  auto got = files_in(out);
  CHECK(got.size() == 21);
  for (const auto& [name, sha] : expected) CHECK(got[name] == sha);
  // The second URL for files[1] got its own name, with the same content.
  const std::string stem = files[1].name.substr(0, files[1].name.size() - 4);
  int clones = 0;
  for (const auto& [name, sha] : got)
    if (name != files[1].name && name.starts_with(stem + "-")) {
      ++clones;
      CHECK(sha == expected[files[1].name]);
    }
  CHECK(clones == 1);
  CHECK(file_requests(fixture) == 22);
  check_all_gone(r);
}

TEST_CASE("a gallery API that refuses the client id stops the job with a clear error", "[e2e]") {
  auto fixture = FixtureServer::start({"--require-client-id", "sekrit"});
  TempDir dir("trawl-e2e-401");
  const std::string src = fixture.url() + "/3/gallery/hot/viral/0.json";
  auto r = run_pipeline(dir, {"--source", src, "--out", dir / "out", "--ext", ".jpg"}, {},
                        "", std::chrono::seconds(60));
  {
    INFO("stderr:\n" << r.err); // scoped: a hang of the next run must lead its own failure
    CHECK(r.status == 3);
    CHECK_THAT(r.err, Catch::Contains("IMGUR_CLIENT_ID"));
    CHECK_THAT(r.err, Catch::Contains("401"));
    check_all_gone(r);
  }

  TempDir ok("trawl-e2e-401-ok");
  auto r2 = run_pipeline(ok, {"--source", src, "--out", ok / "out", "--ext", ".jpg"},
                         {"IMGUR_CLIENT_ID=sekrit"});
  INFO("stderr:\n" << r2.err);
  CHECK(r2.status == 0);
  CHECK(files_in(ok / "out").size() == 91);
}

TEST_CASE("SIGINT stops in order, records what finished, and a re-run fetches only the rest", "[e2e]") {
  auto fixture = FixtureServer::start({"--corpus", "uniform", "--count", "400", "--size", "50000",
                                       "--delay-ms", "300"});
  TempDir dir("trawl-e2e-sigint");
  const std::string run_dir = dir / "run";
  fs::create_directories(run_dir);
  const std::string out = dir / "out";
  auto child = Child::spawn({TRAWL_PIPELINE, "--trawl", TRAWL_BIN, "--run-dir", run_dir, "--progress",
                             "none", "--source", fixture.url() + "/list.txt", "--out", out,
                             "--concurrency", "8"},
                            {}, dir / "stdout", dir / "stderr");
  // Wait until some files have landed (not just temporary ones), then interrupt.
  auto landed = [&] {
    if (!fs::exists(out)) return false;
    for (const auto& e : fs::directory_iterator(out))
      if (!e.path().filename().string().ends_with(".part") && e.path().filename() != ".trawl")
        return true;
    return false;
  };
  for (int i = 0; i < 300 && !landed(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  child.signal(SIGINT);
  auto status = child.wait_for(std::chrono::seconds(60));
  if (!status)
    FAIL(stop_hung_pipeline(child, "pipeline did not stop within 60 s of SIGINT", run_dir,
                            dir / "stderr"));
  std::size_t first_count = 0;
  {
    INFO("stderr:\n" << read_file(dir / "stderr")); // scoped: see the second run below
    CHECK(*status == 130);
    const auto pids = pids_in(run_dir);
    for (const auto& [name, pid] : pids) CHECK_FALSE(pid_alive(pid));
    CHECK(pids.size() == 5); // sink, vent, two downloaders, fetcher
    const auto first = files_in(out);
    for (const auto& [file, sha] : first) CHECK_FALSE(file.ends_with(".part"));
    CHECK(first.size() > 0);
    CHECK(first.size() < 400);
    const auto requested_first = file_requests(fixture);
    CHECK(requested_first == first.size()); // every transfer that ran was finished and kept
    first_count = first.size();
  }

  // The same job again: only what is missing is requested.
  TempDir again("trawl-e2e-sigint-again");
  auto r = run_pipeline(again, {"--source", fixture.url() + "/list.txt", "--out", out});
  INFO("second run stdout:\n" << r.out << "\nstderr:\n" << r.err);
  CHECK(r.status == 0);
  CHECK_THAT(r.out, Catch::Contains("400 links: 400 done, 0 failed (" +
                                    std::to_string(first_count) + " skipped"));
  std::map<std::string, std::string> expected;
  for (const auto& item : uniform_corpus(400, 50000, 1))
    expected[item.name] = sha256_hex(file_bytes(item.name, item.size));
  CHECK(files_in(out) == expected);
  CHECK(file_requests(fixture) == 400); // nothing fetched twice
}

namespace {

// The lines of `path` that contain `needle` (none when the file is not there yet).
std::vector<std::string> lines_with(const std::string& path, const std::string& needle) {
  std::vector<std::string> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);)
    if (line.find(needle) != std::string::npos) out.push_back(line);
  return out;
}

// Waits (polling every 20 ms, up to `within`) until `path` has `n` lines with `needle`; returns
// them (fewer on timeout).
std::vector<std::string> await_lines(const std::string& path, const std::string& needle,
                                     std::size_t n, std::chrono::milliseconds within) {
  const auto deadline = std::chrono::steady_clock::now() + within;
  auto found = lines_with(path, needle);
  while (found.size() < n && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    found = lines_with(path, needle);
  }
  return found;
}

} // namespace

TEST_CASE("SIGUSR1: the vent, the sink and a downloader each log a status line and keep running",
          "[e2e]") {
  using namespace std::chrono_literals;
  TempDir dir("trawl-e2e-status");
  auto b = start_broker(TRAWL_BIN, dir.path());
  auto dl = Child::spawn({TRAWL_BIN, "download", "--connect", b.tasks, "--sink", b.results, "--out",
                          dir / "out", "-j", "4", "--node", "status-node"},
                         {}, "", dir / "dl.err");
  REQUIRE(await_lines(dir / "vent.err", "downloader status-node joined", 1, 10s).size() == 1);

  const std::string vent_err = dir / "vent.err", sink_err = dir / "sink.err",
                    dl_err = dir / "dl.err";
  for (Child* c : {&b.vent, &b.sink, &dl}) c->signal(SIGUSR1);
  const auto vent = await_lines(vent_err, "] status: ", 1, 5s);
  const auto sink = await_lines(sink_err, "] status: ", 1, 5s);
  const auto down = await_lines(dl_err, "] status: ", 1, 5s);
  REQUIRE(vent.size() == 1);
  REQUIRE(sink.size() == 1);
  REQUIRE(down.size() == 1);
  CHECK_THAT(vent[0],
             Catch::Contains("[vent " + std::to_string(b.vent.pid()) +
                             "] status: "
                             "links_ended=false pending=0 leased=0 done=0 failed=0 leases=0"));
  CHECK_THAT(vent[0], Catch::Contains(" peers=1 [status-node credit="));
  CHECK_THAT(vent[0], Catch::Contains(" received=0 leases=0 seen_ms="));
  CHECK_THAT(sink[0], Catch::Contains("[sink " + std::to_string(b.sink.pid()) +
                                      "] status: "
                                      "results=0 total=-1 complete=false"));
  CHECK_THAT(sink[0], Catch::Contains(" pending_acks=0 "));
  CHECK_THAT(sink[0], Catch::Contains(" last_result_ms=- last_job_ms="));
  CHECK_THAT(down[0],
             Catch::Contains("[download " + std::to_string(dl.pid()) +
                             "] status: "
                             "node=status-node stopping=false active=0 finishing=0 queued=0 "
                             "waiting=0"));
  CHECK_THAT(down[0], Catch::Contains(" unsent_results=0 received=0 "));
  CHECK_THAT(down[0], Catch::Contains(" ready_blocked=false "));

  // One line per request, as often as asked.
  for (Child* c : {&b.vent, &b.sink, &dl}) c->signal(SIGUSR1);
  CHECK(await_lines(vent_err, "] status: ", 2, 5s).size() == 2);
  CHECK(await_lines(sink_err, "] status: ", 2, 5s).size() == 2);
  CHECK(await_lines(dl_err, "] status: ", 2, 5s).size() == 2);
  CHECK(b.vent.running());
  CHECK(b.sink.running());
  CHECK(dl.running());

  // And SIGTERM still stops each as before.
  dl.signal(SIGTERM);
  CHECK(dl.wait_for(10s) == std::optional<int>(0));
  b.sink.signal(SIGTERM);
  CHECK(b.sink.wait_for(10s) == std::optional<int>(130));
  b.vent.signal(SIGTERM);
  CHECK(b.vent.wait_for(10s) == std::optional<int>(130));
}

// SIGRTMIN blocked in this thread for a test, and whatever is left of it taken at the end.
struct StartedSignals {
  sigset_t set{}, old{};
  StartedSignals() {
    sigemptyset(&set);
    sigaddset(&set, trawl::started_signal());
    pthread_sigmask(SIG_BLOCK, &set, &old);
  }
  ~StartedSignals() {
    const timespec none{};
    while (sigtimedwait(&set, nullptr, &none) > 0) {
    }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
  }
  // The sender of the next one within `ms`, or -1.
  pid_t next(long ms) {
    const timespec ts{ms / 1000, (ms % 1000) * 1000000L};
    siginfo_t info{};
    return sigtimedwait(&set, &info, &ts) > 0 ? info.si_pid : -1;
  }
  StartedSignals(const StartedSignals&) = delete;
  StartedSignals& operator=(const StartedSignals&) = delete;
};

TEST_CASE(
    "downloader --notify-pid: its parent is signalled once its first transfers are under way, "
    "once",
    "[e2e]") {
  using namespace std::chrono_literals;
  StartedSignals signals;
  // Responses held 800 ms: the transfers are still under way when the word comes.
  auto fixture = FixtureServer::start({"--corpus", "classic", "--delay-ms", "800"});
  TempDir dir("trawl-e2e-notify");
  const auto expected = write_classic_list(dir, fixture, 3);
  auto b = start_broker(TRAWL_BIN, dir.path());
  const std::string out = dir / "out";
  auto dl =
      Child::spawn({TRAWL_BIN, "download", "--connect", b.tasks, "--sink", b.results, "--out", out,
                    "-j", "4", "--node", "notify-node", "--notify-pid", std::to_string(::getpid())},
                   {}, "", dir / "dl.err");
  REQUIRE(await_lines(dir / "vent.err", "downloader notify-node joined", 1, 10s).size() == 1);
  CHECK(signals.next(0) == -1); // joined, nothing to transfer: no word yet

  auto fetch =
      Child::spawn({TRAWL_BIN, "fetch", "--source", dir / "list.txt", "--connect", b.links}, {}, "",
                   dir / "fetch.err");
  const pid_t from = signals.next(10000);
  INFO("dl.err:\n" << read_file(dir / "dl.err"));
  CHECK(from == dl.pid());
  for (const auto& [name, sha] : expected) CHECK_FALSE(fs::exists(out + "/" + name)); // none yet

  // The job ends with every file; the word came once.
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (files_in(out).size() < expected.size() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  CHECK(files_in(out) == expected);
  CHECK(signals.next(0) == -1);
}

TEST_CASE(
    "ventilator --notify-pid: its parent is signalled once the fetcher is done and nothing is "
    "left to dispatch",
    "[e2e]") {
  using namespace std::chrono_literals;
  StartedSignals signals;
  TempDir dir("trawl-e2e-notify-vent");
  const std::string ep = "ipc://" + dir.path() + "/";
  const auto start_vent = [&](const std::string& state, const std::string& err) {
    return Child::spawn({TRAWL_BIN, "vent", "--links", ep + "links", "--tasks", ep + "tasks",
                         "--acks", ep + "acks", "--sink", ep + "results", "--state", dir / state,
                         "--notify-pid", std::to_string(::getpid())},
                        {}, "", dir / err);
  };
  const auto fetch_list = [&](const std::string& list, const std::string& err) {
    return Child::spawn({TRAWL_BIN, "fetch", "--source", dir / list, "--connect", ep + "links"}, {},
                        "", dir / err);
  };

  // Two links and no downloader: the fetcher is done, the links wait; no word.
  std::ofstream(dir / "two.txt") << "http://127.0.0.1:9/a.jpg\nhttp://127.0.0.1:9/b.jpg\n";
  {
    auto vent = start_vent("state-two", "vent-two.err");
    auto fetch = fetch_list("two.txt", "fetch-two.err");
    REQUIRE(fetch.wait_for(10s) == std::optional<int>(0));
    REQUIRE(await_lines(dir / "vent-two.err", "fetcher done", 1, 10s).size() == 1);
    CHECK(signals.next(300) == -1);
  }

  // An empty list: nothing will ever be dispatched, and the ventilator says so.
  std::ofstream(dir / "empty.txt").close();
  auto vent = start_vent("state-empty", "vent-empty.err");
  auto fetch = fetch_list("empty.txt", "fetch-empty.err");
  INFO("vent:\n" << read_file(dir / "vent-empty.err"));
  CHECK(signals.next(10000) == vent.pid());
}

TEST_CASE("a pipeline that does not finish: the failure names the live processes and their status "
          "first, and none is left",
          "[e2e]") {
  using namespace std::chrono_literals;
  TempDir dir("trawl-e2e-hung");
  const std::string run_dir = dir / "run", fifo = dir / "links.fifo";
  fs::create_directories(run_dir);
  // The list on stdin never ends: a writer that never writes holds the fifo open.
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  const int writer = ::open(fifo.c_str(), O_RDWR | O_CLOEXEC);
  REQUIRE(writer >= 0);
  auto child = Child::spawn({TRAWL_PIPELINE, "--trawl", TRAWL_BIN, "--run-dir", run_dir,
                             "--progress", "none", "--source", "-", "--out", dir / "out"},
                            {}, dir / "stdout", dir / "stderr", fifo);
  const auto joined = await_lines(dir / "stderr", "joined (capacity", 2, 15s);
  INFO("stderr:\n" << read_file(dir / "stderr"));
  REQUIRE(joined.size() == 2);
  // No link, so no transfer: the sink starts --sink-wait-ms (250) after the others.
  REQUIRE(await_lines(dir / "stderr", "] results on ", 1, 15s).size() == 1);
  REQUIRE(child.running());
  auto pids = pids_in(run_dir);
  REQUIRE(pids.size() == 5);

  const std::string msg =
      stop_hung_pipeline(child, "pipeline did not finish within 0 s", run_dir, dir / "stderr");
  ::close(writer);
  INFO("message:\n" << msg);
  std::vector<std::string> lines;
  std::istringstream in(msg);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  REQUIRE(lines.size() > 5);
  // First line: every process, alive, with its state from /proc.
  CHECK(lines[0].starts_with("pipeline did not finish within 0 s; still running: pipeline " +
                             std::to_string(child.pid()) + " "));
  for (const auto& [name, pid] : pids)
    CHECK_THAT(lines[0], Catch::Contains(", " + name + " " + std::to_string(pid) + " "));
  CHECK_THAT(lines[0], !Catch::Contains("not running"));
  // Then the status lines, in the order of the pids file (the order the processes were
  // started): vent, download-1, download-2, sink (the fetcher has none).
  const auto tag = [&](const std::string& role, const std::string& name) {
    return "[" + role + " " + std::to_string(pids[name]) + "] status: ";
  };
  CHECK_THAT(lines[1], Catch::Contains(tag("vent", "vent") + "links_ended=false"));
  CHECK_THAT(lines[1], Catch::Contains(" peers=2 ["));
  CHECK_THAT(lines[2], Catch::Contains(tag("download", "download-1") + "node="));
  CHECK_THAT(lines[3], Catch::Contains(tag("download", "download-2") + "node="));
  CHECK_THAT(lines[4], Catch::Contains(tag("sink", "sink") + "results=0 total=-1"));
  CHECK(lines[5].starts_with("--- last "));
  // Nothing is left running: the script and every process it started were killed.
  CHECK_FALSE(child.running());
  for (const auto& [name, pid] : pids) CHECK_FALSE(pid_alive(pid));
}

TEST_CASE("pipeline rusage log: a line per process, each reaped by the launcher that forked it",
          "[e2e]") {
  auto fixture = FixtureServer::start();
  TempDir dir("trawl-e2e-rusage");
  const auto expected = write_classic_list(dir, fixture, 5);
  const std::string out = dir / "out", log = dir / "rusage";
  auto r = run_pipeline(dir, {"--source", dir / "list.txt", "--out", out, "--rusage-log", log});
  INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
  CHECK(r.status == 0);
  CHECK(files_in(out) == expected);
  check_all_gone(r);
  // "SUBCOMMAND peak-RSS-KB user-s sys-s": the four processes of the job, then the launcher.
  std::multiset<std::string> who;
  std::ifstream in(log);
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    std::string name;
    long kb = 0;
    double user = -1, sys = -1;
    fields >> name >> kb >> user >> sys;
    INFO(line);
    CHECK_FALSE(fields.fail());
    CHECK(kb > 1000); // a process with libzmq and libcurl mapped, not a zero from a failed wait4
    CHECK(user >= 0);
    CHECK(sys >= 0);
    who.insert(name);
  }
  CHECK(who ==
        std::multiset<std::string>{"download", "download", "fetch", "pipeline", "sink", "vent"});
}

TEST_CASE("GNUTLS_NO_IMPLICIT_INIT, set by launch/pipeline for trawl's start, is not passed on",
          "[e2e]") {
  // A --trawl wrapper (another binary: the roles are exec'd through it too) notes the variable
  // at each start: set for the launcher, which launch/pipeline starts with it; unset for the
  // roles, which trawl starts after it dropped it (a program started with it set skips GnuTLS's
  // own set-up and must make it itself).
  auto fixture = FixtureServer::start();
  TempDir dir("trawl-e2e-gnutls-env");
  const auto expected = write_classic_list(dir, fixture, 2);
  const std::string wrapper = dir / "wrapper", log = dir / "env.log", out = dir / "out";
  {
    std::ofstream w(wrapper);
    w << "#!/bin/sh\necho \"${GNUTLS_NO_IMPLICIT_INIT-unset}\" >> '" << log << "'\nexec '"
      << TRAWL_BIN << "' \"$@\"\n";
  }
  fs::permissions(wrapper, fs::perms::owner_all);
  const std::string run_dir = dir / "run";
  fs::create_directories(run_dir);
  auto child = Child::spawn({TRAWL_PIPELINE, "--trawl", wrapper, "--run-dir", run_dir, "--progress",
                             "none", "--source", dir / "list.txt", "--out", out},
                            {}, dir / "stdout", dir / "stderr");
  const auto status = child.wait_for(std::chrono::seconds(120));
  if (!status)
    FAIL(
        stop_hung_pipeline(child, "pipeline did not finish within 120 s", run_dir, dir / "stderr"));
  INFO("stderr:\n" << read_file(dir / "stderr"));
  CHECK(*status == 0);
  CHECK(files_in(out) == expected);
  std::vector<std::string> seen;
  std::ifstream in(log);
  for (std::string line; std::getline(in, line);) seen.push_back(line);
  // The launcher, then the sink, the ventilator, the fetcher and the two downloaders.
  REQUIRE(seen.size() == 6);
  CHECK(seen.front() == "1");
  CHECK(std::count(seen.begin(), seen.end(), "unset") == 5);
}

TEST_CASE("flags after -- that a downloader would refuse stop the job before anything starts",
          "[e2e]") {
  TempDir dir("trawl-e2e-badflags");
  std::ofstream(dir / "list.txt") << "http://127.0.0.1:9/a.jpg\n";
  auto r = run_pipeline(dir, {"--source", dir / "list.txt", "--out", dir / "out", "--", "--retries",
                              "5", "--no-such-flag"});
  INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
  CHECK(r.status == 2);
  CHECK_THAT(r.err, Catch::Contains("--no-such-flag"));
  CHECK_THAT(r.err, Catch::Contains("the download flags after -- were refused"));
  CHECK(r.pids.empty()); // no process was started
  CHECK_FALSE(fs::exists(dir / "out"));

  // Flags that parse but do not go together are refused just as early.
  auto both = run_pipeline(dir, {"--source", dir / "list.txt", "--out", dir / "out", "--",
                                 "--digest", "none", "--dedupe-content"});
  INFO("stdout:\n" << both.out << "\nstderr:\n" << both.err);
  CHECK(both.status == 2);
  CHECK_THAT(both.err,
             Catch::Contains("the download flags after -- were refused: --dedupe-content"));
  CHECK(both.pids.empty());
  CHECK_FALSE(fs::exists(dir / "out"));
}

TEST_CASE("the downloaders stop once the sink has every result, while it still writes its files",
          "[e2e]") {
  auto fixture = FixtureServer::start();
  TempDir dir("trawl-e2e-early-stop");
  const auto expected = write_classic_list(dir, fixture, 8);
  // The sink writes the report to REPORT.tmp, then renames it: a FIFO there holds the sink in
  // its ending (open blocks) until this test reads it.
  const std::string report = dir / "report.json";
  REQUIRE(::mkfifo((report + ".tmp").c_str(), 0600) == 0);
  const std::string run_dir = dir / "run", out = dir / "out";
  fs::create_directories(run_dir);
  auto child = Child::spawn({TRAWL_PIPELINE, "--trawl", TRAWL_BIN, "--run-dir", run_dir,
                             "--progress", "none", "--source", dir / "list.txt", "--out", out,
                             "--downloaders", "2", "--report", report},
                            {}, dir / "stdout", dir / "stderr");
  // Bounded: 60 s for the job to reach its end with both downloaders gone.
  bool downloaders_gone = false;
  std::map<std::string, pid_t> pids;
  for (int i = 0; i < 600 && !downloaders_gone && child.running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    pids = pids_in(run_dir);
    downloaders_gone = pids.count("download-1") == 1 && pids.count("download-2") == 1 &&
                       !pid_alive(pids["download-1"]) && !pid_alive(pids["download-2"]);
  }
  INFO("stderr:\n" << read_file(dir / "stderr"));
  CHECK(downloaders_gone);
  // The sink (blocked on the FIFO) and the launcher still run: the downloaders were stopped by
  // the job's end, not by the sink's exit.
  CHECK(child.running());
  REQUIRE(pids.count("sink") == 1);
  CHECK(pid_alive(pids["sink"]));
  // Read the report through the FIFO: the sink finishes, renames it, and the job ends as usual.
  std::string text;
  {
    std::ifstream fifo(report + ".tmp", std::ios::binary);
    text.assign(std::istreambuf_iterator<char>(fifo), {});
  }
  const auto status = child.wait_for(std::chrono::seconds(60));
  REQUIRE(status);
  CHECK(*status == 0);
  CHECK(nlohmann::json::parse(text)["links"]["done"] == 8);
  CHECK(fs::exists(report));
  CHECK(files_in(out) == expected);
  CHECK_THAT(read_file(dir / "stderr"), !Catch::Contains("a downloader exited"));
  for (const auto& [name, pid] : pids_in(run_dir)) CHECK_FALSE(pid_alive(pid));
}
