// End to end: the output directory is a 2 MiB tmpfs that fills up. A link that does not fit fails
// with reason disk and leaves nothing behind (no file under its name, no temporary file); every
// file that lands is whole; a downloader whose disk stays full pauses instead of failing the whole
// job, carries on when space comes back, and a re-run of the job fetches what failed.
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "proto/reason.hpp"
#include "tests/e2e/hostile_support.hpp"
#include "tests/support/corpus.hpp"

namespace fs = std::filesystem;
using namespace trawl::testsupport;
using namespace trawl::e2e;

namespace {

constexpr int kDone = 2, kFailed = 3;
constexpr int kDisk = static_cast<int>(trawl::proto::Reason::disk);

struct Link {
  std::string url;
  std::string key;
  std::uint64_t size;
};

std::vector<Link> links_of(const FixtureServer& fixture, const std::string& prefix, int count,
                           std::uint64_t size) {
  std::vector<Link> links;
  for (int i = 0; i < count; ++i) {
    const std::string key = prefix + std::to_string(i);
    links.push_back({fixture.url() + "/h/f/" + key + ".bin?k=" + key + "&n=" + std::to_string(size),
                     key, size});
  }
  return links;
}

void write_list(const std::string& path, const std::vector<Link>& links) {
  std::ofstream out(path);
  for (const auto& l : links) out << l.url << "\n";
}

// Fills the file system of `dir` with one file until write(2) says ENOSPC.
void fill(const std::string& path) {
  const int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0644);
  REQUIRE(fd >= 0);
  const std::string block(64 * 1024, 'x');
  for (int i = 0; i < 4096; ++i) {
    const ssize_t n = ::write(fd, block.data(), block.size());
    if (n < static_cast<ssize_t>(block.size())) break;
  }
  ::close(fd);
}

// Every link is done with its exact bytes at its path inside `out`, or failed with reason disk
// and has no file; nothing else is in `out` (no temporary file, no partial file).
void check_outcome(const std::vector<Link>& links, const std::map<std::string, LedgerRow>& ledger,
                   const std::string& out, const std::set<std::string>& extra_files,
                   int& done, int& failed) {
  done = failed = 0;
  std::set<std::string> expected_files = extra_files;
  for (const auto& l : links) {
    INFO(l.url);
    const auto row = ledger.find(l.url);
    REQUIRE(row != ledger.end());
    if (row->second.state == kDone) {
      ++done;
      CHECK(row->second.path == out + "/" + row->second.name);
      CHECK(row->second.bytes == l.size);
      CHECK(sha256_file(row->second.path) == sha256_hex(file_bytes(l.key, l.size)));
      CHECK(row->second.sha256 == sha256_hex(file_bytes(l.key, l.size)));
      expected_files.insert(row->second.name);
    } else {
      ++failed;
      CHECK(row->second.state == kFailed);
      CHECK(row->second.reason == kDisk);
      CHECK_THAT(row->second.detail, Catch::Contains("No space left on device"));
    }
  }
  std::set<std::string> files;
  for (const auto& e : fs::directory_iterator(out)) files.insert(e.path().filename().string());
  CHECK(files == expected_files);
}

} // namespace

TEST_CASE("a link larger than the free disk fails with reason disk, the rest land whole",
          "[e2e][disk]") {
  TempDir dir("trawl-e2e-disk");
  const std::string out = dir / "out";
  Tmpfs tmpfs(out, "2m");
  if (!tmpfs.mounted()) {
    WARN("SKIPPED: needs a tmpfs (root, or CAP_SYS_ADMIN): " << tmpfs.why());
    return;
  }
  auto fixture = FixtureServer::start();
  std::vector<Link> links = links_of(fixture, "huge", 1, 3'000'000);
  for (const auto& l : links_of(fixture, "small", 12, 100'000)) links.push_back(l);
  write_list(dir / "list.txt", links);

  const std::string state = dir / "state";
  auto r = run_pipeline(dir, "run",
                        {"--out", out, "--state", state, "--downloaders", "1", "--concurrency", "2",
                         "--", "--retries", "0", "--digest", "sha256"},
                        dir / "list.txt", std::chrono::seconds(90));
  INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
  CHECK(r.status == 1);
  CHECK_THAT(r.out, Catch::Contains("disk"));
  CHECK_THAT(r.err, Catch::Contains("is full"));

  const auto ledger = read_ledger(state);
  REQUIRE(ledger.size() == links.size());
  const auto& huge = ledger.at(links[0].url);
  CHECK(huge.state == kFailed);
  CHECK(huge.reason == kDisk);
  int done = 0, failed = 0;
  check_outcome(links, ledger, out, {}, done, failed);
  // With two transfers at once, at most one small file shared the disk with the huge one.
  CHECK(failed <= 2);
  CHECK(done >= 11);
}

TEST_CASE("a full disk pauses the downloader, freed space lets the job finish, a re-run fetches "
          "what failed",
          "[e2e][disk]") {
  TempDir dir("trawl-e2e-disk-full");
  const std::string out = dir / "out";
  Tmpfs tmpfs(out, "2m");
  if (!tmpfs.mounted()) {
    WARN("SKIPPED: needs a tmpfs (root, or CAP_SYS_ADMIN): " << tmpfs.why());
    return;
  }
  auto fixture = FixtureServer::start();
  const auto links = links_of(fixture, "f", 30, 20'000);
  write_list(dir / "list.txt", links);
  const std::string filler = out + "/filler";
  fill(filler);

  const std::string state = dir / "state";
  const std::vector<std::string> args = {
      "--out", out,  "--state",   state, "--downloaders", "1",     "--concurrency",
      "4",     "--", "--retries", "0",   "--digest",      "sha256"};
  auto child = start_pipeline(dir, "run", args, dir / "list.txt");
  auto count = [&](int st) {
    int n = 0;
    for (const auto& [url, row] : read_ledger(state)) n += row.state == st;
    return n;
  };
  // The first failures: the transfers that were running when the disk was found full.
  const auto t0 = std::chrono::steady_clock::now();
  while (count(kFailed) == 0 && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(30))
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  REQUIRE(count(kFailed) > 0);
  std::this_thread::sleep_for(std::chrono::seconds(3));
  // Three seconds later the downloader has paused (2 s) and probed once, one transfer at a time:
  // at most the 4 that were running and the 4 whose files the file thread was finishing (the
  // first write that met the full disk is on that thread), plus one probe, have failed; most of
  // the job is still to do.
  const int failed_while_full = count(kFailed);
  {
    INFO("stderr:\n" << read_file(dir / "run.err")); // scoped: a hang below leads its own failure
    CHECK(failed_while_full <= 9);
    CHECK(count(kDone) == 0);
  }

  fs::remove(filler);
  const auto status = child.wait_for(std::chrono::seconds(90));
  if (!status)
    FAIL(stop_hung_pipeline(child, "pipeline did not finish within 90 s of the disk's freeing",
                            dir / "run.run", dir / "run.err"));
  CHECK(*status == 1); // the links that failed with reason disk
  const std::string err = read_file(dir / "run.err");
  CHECK_THAT(err, Catch::Contains("is full"));
  CHECK_THAT(err, Catch::Contains("takes files again"));
  int done = 0, failed = 0;
  check_outcome(links, read_ledger(state), out, {}, done, failed);
  CHECK(failed == failed_while_full); // nothing failed once there was room
  CHECK(done == 30 - failed);

  // The same job again: the failed links are fetched, the others skipped.
  auto again = run_pipeline(dir, "again", args, dir / "list.txt", std::chrono::seconds(60));
  INFO("second run stdout:\n" << again.out << "\nstderr:\n" << again.err);
  CHECK(again.status == 0);
  check_outcome(links, read_ledger(state), out, {}, done, failed);
  CHECK(done == 30);
  CHECK(failed == 0);
}
