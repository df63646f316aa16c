// TempPool: empty temporary files created ahead by a background thread, taken by the event loop
// without waiting; and the transfer that takes one (or, when the pool is empty, creates its own
// and reports why it could not).
#include <catch2/catch.hpp>

#include <cerrno>
#include <fcntl.h>
#include <functional>
#include <linux/capability.h>
#include <sched.h>
#include <set>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include "downloader/temp_pool.hpp"
#include "downloader/transfer.hpp"
#include "tests/unit/downloader/harness.hpp"

using namespace trawl::dltest;
using trawl::downloader::Finished;
using trawl::downloader::TempFile;
using trawl::downloader::TempPool;
using trawl::downloader::Transfer;

namespace {

// Names like the downloader's, .trawl-PID-N.part, in `dir`.
struct Names {
  explicit Names(fs::path d) : dir(std::move(d)) {}
  fs::path dir;
  std::atomic<int> n{0};
  std::string prefix = ".trawl-" + std::to_string(getpid()) + "-";
  TempPool::NameFn fn() {
    return [this] { return (dir / (prefix + std::to_string(n++) + ".part")).string(); };
  }
};

} // namespace

TEST_CASE("temp pool: hands out distinct, empty, writable files of its directory and refills",
          "[downloader][temppool]") {
  TempDir tmp;
  Names names(tmp.path);
  TempPool pool(4, names.fn());
  REQUIRE(pool.wait_ready(4, 5s));
  CHECK(pool.stats().ready == 4); // never more than its capacity
  CHECK(part_files(tmp.path).size() == 4);

  std::vector<TempFile> taken;
  std::set<std::string> paths;
  std::set<ino_t> inodes;
  for (int i = 0; i < 4; ++i) {
    TempFile f = pool.take();
    REQUIRE(f);
    INFO(f.path());
    struct stat st {};
    REQUIRE(::fstat(f.fd(), &st) == 0);
    CHECK(S_ISREG(st.st_mode));
    CHECK(st.st_size == 0);
    CHECK(fs::path(f.path()).parent_path() == tmp.path);
    CHECK(fs::path(f.path()).filename().string().rfind(names.prefix, 0) == 0);
    struct stat by_name {};
    REQUIRE(::lstat(f.path().c_str(), &by_name) == 0); // the descriptor is the named file
    CHECK(by_name.st_ino == st.st_ino);
    CHECK(::write(f.fd(), "abc", 3) == 3);
    CHECK(fs::file_size(f.path()) == 3);
    paths.insert(f.path());
    inodes.insert(st.st_ino);
    taken.push_back(std::move(f));
  }
  CHECK(paths.size() == 4);
  CHECK(inodes.size() == 4);
  const auto after_taking = pool.stats();
  CHECK(after_taking.taken == 4);
  CHECK(after_taking.missed == 0);
  // Taking makes room: the thread fills the pool again, with new files.
  REQUIRE(pool.wait_ready(4, 5s));
  const auto refilled = pool.stats();
  CHECK(refilled.created == 8);
  CHECK(refilled.failures == 0);
  CHECK(part_files(tmp.path).size() == 8);
  TempFile more = pool.take();
  REQUIRE(more);
  CHECK(paths.count(more.path()) == 0);
}

TEST_CASE("temp pool: files never taken are removed when it goes, taken ones are the taker's",
          "[downloader][temppool]") {
  TempDir tmp;
  Names names(tmp.path);
  TempFile kept;
  {
    TempPool pool(3, names.fn());
    REQUIRE(pool.wait_ready(3, 5s));
    kept = pool.take();
    REQUIRE(kept);
    REQUIRE(pool.wait_ready(3, 5s));
    CHECK(part_files(tmp.path).size() == 4);
  }
  CHECK(part_files(tmp.path) == std::vector<std::string>{kept.path()});
  kept.reset();
  CHECK(part_files(tmp.path).empty());
  CHECK_FALSE(kept);
}

TEST_CASE("temp pool: a directory that takes no more files empties the pool, and the transfer "
          "reports the error itself",
          "[downloader][temppool]") {
  TempDir tmp;
  const fs::path dir = tmp.path / "out";
  fs::create_directory(dir);
  Names names(dir);
  TempPool pool(2, names.fn(), 200ms);
  REQUIRE(pool.wait_ready(2, 5s));

  // The directory goes (moved away: this works for root too, which permissions do not stop).
  // What was made before stays usable; nothing more can be made.
  fs::rename(dir, tmp.path / "moved");
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (pool.stats().failures == 0 && std::chrono::steady_clock::now() < deadline) {
    (void)pool.take();
    std::this_thread::sleep_for(5ms);
  }
  REQUIRE(pool.stats().failures >= 1);
  for (int i = 0; i < 4 && pool.take(); ++i) { // one file begun before the move, at most
  }
  // Backing off, not spinning: a few attempts in 600 ms, and no file.
  const auto failed = pool.stats().failures;
  std::this_thread::sleep_for(600ms);
  const auto later = pool.stats();
  CHECK(later.ready == 0);
  CHECK(later.failures - failed <= 4);
  CHECK(later.failures - failed >= 1); // it tries again after its backoff

  // The event loop finds the pool empty and creates the file itself: the error is its own.
  trawl::downloader::curl_global_once();
  Transfer t(EVP_sha256());
  const std::string temp = (dir / ".trawl-sync.part").string();
  const std::string err = t.begin(Task{1, "http://127.0.0.1:9/x", "x.bin", 1}, 1,
                                  transfer_settings(), temp, std::nullopt, pool.take());
  CHECK(err == "cannot create " + temp + ": " + std::strerror(ENOENT));
  CHECK(t.begin_reason() == Reason::io);
  CHECK(pool.stats().missed >= 1);

  // The directory is back: after its backoff the pool fills again.
  fs::create_directory(dir);
  REQUIRE(pool.wait_ready(2, 5s));
  CHECK(part_files(dir).size() == 2);
}

TEST_CASE("temp pool: a transfer writes its body into the file it was given and renames it",
          "[downloader][temppool]") {
  TempDir tmp;
  Server server;
  const std::string body = pattern_body(100000, 7);
  serve_body(server, "/f", body);
  trawl::downloader::curl_global_once();
  Names names(tmp.path);
  TempPool pool(1, names.fn());
  REQUIRE(pool.wait_ready(1, 5s));

  TempFile f = pool.take();
  REQUIRE(f);
  const std::string given = f.path();
  const std::string own = (tmp.path / ".trawl-own.part").string();
  Transfer t(EVP_sha256());
  REQUIRE(t.begin(Task{1, server.url("/f"), "f.bin", 1}, 1, transfer_settings(), own, std::nullopt,
                  std::move(f))
              .empty());
  CHECK(fs::exists(given));
  CHECK_FALSE(fs::exists(own)); // the given file is used: none is created
  const CURLcode code = curl_easy_perform(t.easy().get());
  const Finished fin = t.finish(code, (tmp.path / "f.bin").string());
  CHECK(fin.reason == Reason::none);
  CHECK(fin.sha256 == sha256_hex(body));
  CHECK(read_file(tmp.path / "f.bin") == body);
  CHECK_FALSE(fs::exists(given));

  // Without a file given, the transfer creates its own, as before the pool.
  REQUIRE(t.begin(Task{2, server.url("/f"), "g.bin", 1}, 1, transfer_settings(), own).empty());
  CHECK(fs::exists(own));
  const Finished fin2 = t.finish(curl_easy_perform(t.easy().get()), (tmp.path / "g.bin").string());
  CHECK(fin2.reason == Reason::none);
  CHECK(read_file(tmp.path / "g.bin") == body);
  CHECK_FALSE(fs::exists(own));
}

TEST_CASE("temp pool: keeps ready only the files it is told are wanted", "[downloader][temppool]") {
  TempDir tmp;
  Names names(tmp.path);
  TempPool pool(8, names.fn(), std::chrono::seconds(1), 0);
  std::this_thread::sleep_for(100ms);
  CHECK(pool.stats().created == 0); // none wanted: none made
  CHECK(part_files(tmp.path).empty());

  pool.want(3);
  REQUIRE(pool.wait_ready(3, 5s));
  std::this_thread::sleep_for(100ms);
  CHECK(pool.stats().created == 3);

  // Taking one refills up to what is wanted; wanting fewer removes none and makes none.
  TempFile f = pool.take();
  REQUIRE(f);
  REQUIRE(pool.wait_ready(3, 5s));
  pool.want(1);
  (void)pool.take();
  std::this_thread::sleep_for(100ms);
  CHECK(pool.stats().ready == 2);
  CHECK(pool.stats().created == 4);

  pool.want(100); // at most the capacity
  REQUIRE(pool.wait_ready(8, 5s));
  std::this_thread::sleep_for(100ms);
  CHECK(pool.stats().ready == 8);
}

TEST_CASE("temp pool: a file taken with the taker's new count is not made again",
          "[downloader][temppool]") {
  TempDir tmp;
  Names names(tmp.path);
  TempPool pool(8, names.fn(), std::chrono::seconds(1), 0);
  pool.want(4);
  REQUIRE(pool.wait_ready(4, 5s));
  // Four transfers take their files, each saying how many are still wanted once it has its own.
  std::vector<TempFile> taken;
  for (std::size_t left = 4; left-- > 0;) {
    taken.push_back(pool.take(left));
    REQUIRE(taken.back());
  }
  std::this_thread::sleep_for(200ms); // time for the thread to make any it would
  CHECK(pool.stats().created == 4);
  CHECK(pool.stats().ready == 0);
  CHECK(part_files(tmp.path).size() == 4); // the four taken, nothing more

  // A take without a count leaves the level as it was: the file taken is made again.
  pool.want(2);
  REQUIRE(pool.wait_ready(2, 5s));
  (void)pool.take();
  REQUIRE(pool.wait_ready(2, 5s));
  CHECK(pool.stats().created == 7);
}

TEST_CASE("temp pool: a take whose count grows wakes the thread as want() does",
          "[downloader][temppool]") {
  TempDir tmp;
  Names names(tmp.path);
  TempPool pool(8, names.fn(), std::chrono::seconds(1), 0);
  // An empty pool whose thread sleeps: one file made, nothing wanted any more, the file taken.
  pool.want(1);
  REQUIRE(pool.wait_ready(1, 5s));
  pool.want(0);
  REQUIRE(pool.take());
  std::this_thread::sleep_for(100ms); // time for the thread to go back to its wait
  CHECK(pool.stats().ready == 0);

  CHECK_FALSE(pool.take(3)); // none ready; three wanted from now on, and the thread told
  REQUIRE(pool.wait_ready(3, 5s));
  CHECK(pool.stats().created == 4);
  CHECK(pool.stats().missed == 1);
}

TEST_CASE("temp pool: its thread runs as SCHED_BATCH, the taker's policy is left alone",
          "[downloader][temppool]") {
  TempDir tmp;
  Names names(tmp.path);
  const int taker = sched_getscheduler(0);
  std::atomic<int> policy{-1};
  auto make = names.fn();
  TempPool pool(1, TempPool::CreateFn([&] {
                  policy = sched_getscheduler(0); // on the pool's thread
                  return trawl::downloader::create_temp_file(make());
                }));
  REQUIRE(pool.wait_ready(1, 5s));
  CHECK(policy == SCHED_BATCH);
  CHECK(sched_getscheduler(0) == taker);
}

TEST_CASE("temp pool: with a file source, a transfer asks for its file at the first body byte "
          "and only for a body it keeps",
          "[downloader][temppool]") {
  TempDir tmp;
  Server server;
  const std::string body = pattern_body(70000, 3);
  serve_body(server, "/f", body);
  server.svr().Get("/empty", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("", "application/octet-stream");
  });
  trawl::downloader::curl_global_once();
  Names names(tmp.path);
  int asked = 0;
  int fail_with = 0; // errno the source fails with, 0: it makes the file
  Transfer t(EVP_sha256());
  t.set_file_source([&](std::string& tried) {
    ++asked;
    tried = names.fn()();
    if (fail_with != 0) {
      errno = fail_with;
      return TempFile{};
    }
    return trawl::downloader::create_temp_file(tried);
  });
  const auto run = [&](std::uint64_t id, const std::string& path, const std::string& name) {
    REQUIRE(t.begin(Task{id, server.url(path), name, 1}, 1, transfer_settings(), "").empty());
    CHECK(t.file_pending());
    CHECK(asked == 0); // no file before the response
    CHECK(part_files(tmp.path).empty());
    return t.finish(curl_easy_perform(t.easy().get()), (tmp.path / name).string());
  };

  SECTION("a body: one file, asked for once") {
    const Finished fin = run(1, "/f", "f.bin");
    CHECK(fin.reason == Reason::none);
    CHECK(asked == 1);
    CHECK(read_file(tmp.path / "f.bin") == body);
    CHECK(fin.sha256 == sha256_hex(body));
    CHECK(part_files(tmp.path).empty());
  }
  SECTION("an empty body: still a file") {
    const Finished fin = run(2, "/empty", "e.bin");
    CHECK(fin.reason == Reason::none);
    CHECK(asked == 1);
    REQUIRE(fs::exists(tmp.path / "e.bin"));
    CHECK(fs::file_size(tmp.path / "e.bin") == 0);
  }
  SECTION("an error status: no file at all") {
    const Finished fin = run(3, "/missing", "m.bin");
    CHECK(fin.reason == Reason::http_client);
    CHECK(asked == 0);
    CHECK_FALSE(fs::exists(tmp.path / "m.bin"));
    CHECK(part_files(tmp.path).empty());
  }
  SECTION("a file that cannot be made ends the transfer, as a full disk when it is one") {
    fail_with = ENOSPC;
    const Finished fin = run(4, "/f", "n.bin");
    CHECK(asked == 1);
    CHECK(fin.reason == Reason::disk);
    CHECK(fin.detail.find("cannot create " + tmp.path.string()) == 0);
    CHECK(fin.detail.find(std::strerror(ENOSPC)) != std::string::npos);
    CHECK_FALSE(fs::exists(tmp.path / "n.bin"));
  }
}

TEST_CASE("temp pool: as many ready files as transfers, at most 64, none when descriptors are "
          "short",
          "[downloader][temppool]") {
  CHECK(TempPool::capacity_for(64, 1024) == 64);
  CHECK(TempPool::capacity_for(8, 1024) == 8);
  CHECK(TempPool::capacity_for(0, 1024) == 1);
  CHECK(TempPool::capacity_for(1000, UINT64_MAX) == 64);
  // 450 transfers hold 900 descriptors; 64 more for sockets and logs leave 60 of 1024.
  CHECK(TempPool::capacity_for(450, 1024) == 60);
  CHECK(TempPool::capacity_for(480, 1024) == 0);
  CHECK(TempPool::capacity_for(4000, 1024) == 0);
  CHECK(TempPool::capacity_for(4, 64) == 0);
}

TEST_CASE("temp pool: a downloader's whole descriptor budget, capped by the limit",
          "[downloader][temppool]") {
  CHECK(TempPool::descriptors_for(64, 1024) == 2 * 64 + 64 + 64);
  CHECK(TempPool::descriptors_for(8, 1024) == 2 * 8 + 64 + 8);
  CHECK(TempPool::descriptors_for(450, 1024) == 1024); // 964 + the 60 ready files
  CHECK(TempPool::descriptors_for(4000, 1024) == 1024);
  CHECK(TempPool::descriptors_for(1000, UINT64_MAX) == 2 * 1000 + 64 + 64);
}

namespace {

// Creates three unnamed files holding "a", "b" and "c", calls `between`, then links them as
// dir/a, dir/b and dir/a again (taken). 0 when the first two got their names and bytes and the
// third failed with EEXIST, else the number of the step that failed.
int link_three(const fs::path& dir, const std::function<bool()>& between) {
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) return 1;
  std::vector<TempFile> files;
  for (const char* body : {"a", "b", "c"}) {
    files.push_back(trawl::downloader::create_unnamed_file(dir.string()));
    if (!files.back() || ::write(files.back().fd(), body, 1) != 1) return 2;
  }
  if (!between()) return 3;
  if (!trawl::downloader::link_unnamed_file(files[0].fd(), dir_fd, "a")) return 4;
  if (!trawl::downloader::link_unnamed_file(files[1].fd(), dir_fd, "b")) return 5;
  if (trawl::downloader::link_unnamed_file(files[2].fd(), dir_fd, "a") || errno != EEXIST) return 6;
  ::close(dir_fd);
  if (read_file(dir / "a") != "a" || read_file(dir / "b") != "b") return 7;
  return 0;
}

} // namespace

TEST_CASE("temp pool: an unnamed file is linked by its descriptor, or through /proc by a process "
          "that may not (no CAP_DAC_READ_SEARCH), and a taken name fails with EEXIST either way",
          "[downloader][temppool]") {
  TempDir tmp;
  if (!trawl::downloader::unnamed_files_work(tmp.path.string(), ".trawl-probe.part")) {
    WARN("SKIPPED: this file system has no O_TMPFILE");
    return;
  }
  fs::create_directories(tmp.path / "privileged");
  fs::create_directories(tmp.path / "unprivileged");
  CHECK(link_three(tmp.path / "privileged", [] { return true; }) == 0);

  // A child that drops CAP_DAC_READ_SEARCH after its files were opened (the kernel links by
  // descriptor only with the capability or the credentials that opened the file; capset makes
  // new ones): the same links, through /proc.
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    bool refused = false;
    const int linked = link_three(tmp.path / "unprivileged", [&] {
      TempFile probe = trawl::downloader::create_unnamed_file((tmp.path / "unprivileged").string());
      __user_cap_header_struct head{_LINUX_CAPABILITY_VERSION_3, 0};
      __user_cap_data_struct caps[2]{};
      if (::syscall(SYS_capget, &head, caps) != 0) return false;
      caps[CAP_DAC_READ_SEARCH / 32].effective &= ~(1u << (CAP_DAC_READ_SEARCH % 32));
      if (::syscall(SYS_capset, &head, caps) != 0) return false;
      refused = probe && ::linkat(probe.fd(), "", AT_FDCWD, (tmp.path / "probe").c_str(),
                                  AT_EMPTY_PATH) != 0;
      return true;
    });
    ::_exit(refused ? linked : linked == 0 ? 50 : 51);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 50) {
    WARN("this kernel links by descriptor without CAP_DAC_READ_SEARCH: /proc was not needed");
    return;
  }
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(!fs::exists(tmp.path / "probe"));
}

TEST_CASE("temp pool: unnamed files leave no name behind, and a transfer links its body to its "
          "final name, replacing a file or a planted link there without following it",
          "[downloader][temppool]") {
  TempDir tmp;
  const fs::path dir = tmp.path / "out";
  fs::create_directories(dir);
  if (!trawl::downloader::unnamed_files_work(dir.string(), ".trawl-probe.part")) {
    WARN("SKIPPED: this file system has no O_TMPFILE");
    return;
  }
  CHECK(fs::is_empty(dir)); // the probe is gone
  Server server;
  const std::string body = pattern_body(300000, 3);
  serve_body(server, "/f", body);
  trawl::downloader::curl_global_once();
  TempPool pool(2, TempPool::CreateFn([d = dir.string()] {
                  return trawl::downloader::create_unnamed_file(d);
                }),
                1s);
  REQUIRE(pool.wait_ready(2, 5s));
  CHECK(fs::is_empty(dir)); // two files ready, no name

  // Into a free name; then over an existing file; then over a link to a file outside.
  const fs::path outside = tmp.path / "outside.txt";
  { std::ofstream(outside) << "keep me"; }
  for (int round = 0; round < 3; ++round) {
    INFO("round " << round);
    const fs::path final_path = dir / "f.bin";
    if (round == 1) CHECK(read_file(final_path) == body);
    if (round == 2) {
      fs::remove(final_path);
      fs::create_symlink(outside, final_path);
    }
    TempFile f = pool.take();
    REQUIRE(f);
    CHECK(f.path().empty());
    Transfer t(EVP_sha256());
    REQUIRE(t.begin(Task{1, server.url("/f"), "f.bin", 1}, 1, transfer_settings(), "", std::nullopt,
                    std::move(f))
                .empty());
    const Finished fin = t.finish(curl_easy_perform(t.easy().get()), final_path.string());
    CHECK(fin.reason == Reason::none);
    CHECK(fin.sha256 == sha256_hex(body));
    CHECK_FALSE(fs::is_symlink(final_path));
    CHECK(read_file(final_path) == body);
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename());
    CHECK(names == std::vector<std::string>{"f.bin"}); // no temporary name left
  }
  CHECK(read_file(outside) == "keep me");
}

TEST_CASE("temp pool: remove_stale_parts removes the temporary files of dead processes only",
          "[downloader][temppool]") {
  TempDir tmp;
  // A PID that ran and is gone: a child that has exited and been reaped.
  const pid_t dead = ::fork();
  REQUIRE(dead >= 0);
  if (dead == 0) ::_exit(0);
  REQUIRE(::waitpid(dead, nullptr, 0) == dead);
  const std::string d = std::to_string(dead), self = std::to_string(::getpid());
  const std::vector<std::string> kept{".trawl-" + self + "-2.part", // this process's
                                      ".trawl-1-3.part",            // a running PID's
                                      ".trawl-x" + d + "-4.part",   // not a PID
                                      ".trawl-" + d + "-5.tmp",     // not a temporary file
                                      "trawl-" + d + "-6.part",     // a name of the job's
                                      ".trawl--7.part",
                                      ".trawl-" + d + ".part",
                                      "photo.jpg"};
  const std::vector<std::string> gone{".trawl-" + d + "-1.part", ".trawl-" + d + "-8.part"};
  for (const auto& n : kept) std::ofstream(tmp.path / n) << n;
  for (const auto& n : gone) std::ofstream(tmp.path / n) << n;
  CHECK(trawl::downloader::remove_stale_parts(tmp.path.string()) == gone.size());
  for (const auto& n : kept) CHECK(fs::exists(tmp.path / n));
  for (const auto& n : gone) CHECK(!fs::exists(tmp.path / n));
  CHECK(trawl::downloader::remove_stale_parts(tmp.path.string()) == 0);
  CHECK(trawl::downloader::remove_stale_parts((tmp.path / "missing").string()) == 0);
}
