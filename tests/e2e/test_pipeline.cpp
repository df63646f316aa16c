// End to end: launch/pipeline starts sink, ventilator, two downloaders and the fetcher as real
// processes; the fixture server on 127.0.0.1 serves a generated gallery. Every byte is checked.
#include <catch2/catch.hpp>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "tests/support/corpus.hpp"
#include "tests/support/process.hpp"

namespace fs = std::filesystem;
using namespace trawl::testsupport;

namespace {

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
  if (!status) {
    child.signal(SIGKILL);
    FAIL("pipeline did not finish within the timeout; stderr:\n" << read_file(dir / "stderr"));
  }
  r.status = *status;
  r.out = read_file(dir / "stdout");
  r.err = read_file(dir / "stderr");
  std::ifstream pids(run_dir + "/pids");
  std::string name;
  pid_t pid;
  while (pids >> name >> pid) r.pids.push_back(pid);
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

void check_all_gone(const PipelineRun& r) {
  CHECK(r.pids.size() >= 4);
  for (pid_t p : r.pids) CHECK_FALSE(pid_alive(p));
}

} // namespace

TEST_CASE("classic job: 91 jpgs of a gallery with gifs and albums, 200 ms per response", "[e2e]") {
  auto fixture = FixtureServer::start({"--corpus", "classic", "--delay-ms", "200"});
  TempDir dir("trawl-e2e-classic");
  const std::string out = dir / "out";
  auto r = run_pipeline(dir, {"--source", fixture.url() + "/3/gallery/hot/viral/0.json", "--out", out,
                              "--downloaders", "2", "--concurrency", "64", "--ext", ".jpg"});
  INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
  CHECK(r.status == 0);

  std::map<std::string, std::string> expected;
  for (const auto& item : classic_gallery())
    if (!item.is_album && item.name.ends_with(".jpg"))
      expected[item.name] = sha256_hex(file_bytes(item.name, item.size));
  REQUIRE(expected.size() == 91);
  CHECK(files_in(out) == expected); // every file, right bytes, nothing else (no .part, no gif)
  CHECK_THAT(r.out, Catch::Contains("trawl: 91 links: 91 done, 0 failed"));
  CHECK(file_requests(fixture) == 91); // each file fetched once, nothing skipped fetched
  check_all_gone(r);
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
  INFO("stderr:\n" << r.err);
  CHECK(r.status == 3);
  CHECK_THAT(r.err, Catch::Contains("IMGUR_CLIENT_ID"));
  CHECK_THAT(r.err, Catch::Contains("401"));
  check_all_gone(r);

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
  INFO("stderr:\n" << read_file(dir / "stderr"));
  REQUIRE(status);
  CHECK(*status == 130);
  std::ifstream pids(run_dir + "/pids");
  std::string name;
  pid_t pid;
  int n = 0;
  while (pids >> name >> pid) {
    ++n;
    CHECK_FALSE(pid_alive(pid));
  }
  CHECK(n == 5); // sink, vent, two downloaders, fetcher
  const auto first = files_in(out);
  for (const auto& [file, sha] : first) CHECK_FALSE(file.ends_with(".part"));
  CHECK(first.size() > 0);
  CHECK(first.size() < 400);
  const auto requested_first = file_requests(fixture);
  CHECK(requested_first == first.size()); // every transfer that ran was finished and kept

  // The same job again: only what is missing is requested.
  TempDir again("trawl-e2e-sigint-again");
  auto r = run_pipeline(again, {"--source", fixture.url() + "/list.txt", "--out", out});
  INFO("second run stdout:\n" << r.out << "\nstderr:\n" << r.err);
  CHECK(r.status == 0);
  CHECK_THAT(r.out, Catch::Contains("400 links: 400 done, 0 failed (" + std::to_string(first.size()) +
                                    " skipped"));
  std::map<std::string, std::string> expected;
  for (const auto& item : uniform_corpus(400, 50000, 1))
    expected[item.name] = sha256_hex(file_bytes(item.name, item.size));
  CHECK(files_in(out) == expected);
  CHECK(file_requests(fixture) == 400); // nothing fetched twice
}
