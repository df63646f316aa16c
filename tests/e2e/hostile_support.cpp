#include "tests/e2e/hostile_support.hpp"

#include <catch2/catch.hpp>
#include <sqlite3.h>
#include <sys/mount.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>

#include "tests/support/corpus.hpp"

namespace fs = std::filesystem;
using namespace trawl::testsupport;

namespace trawl::e2e {

testsupport::Child start_pipeline(const TempDir& dir, const std::string& tag,
                                  std::vector<std::string> args, const std::string& list_path) {
  const std::string run_dir = dir / (tag + ".run");
  fs::create_directories(run_dir);
  std::vector<std::string> argv = {TRAWL_PIPELINE, "--trawl", TRAWL_BIN, "--run-dir", run_dir,
                                   "--progress", "none", "--source", "-"};
  argv.insert(argv.end(), args.begin(), args.end());
  return Child::spawn(argv, {}, dir / (tag + ".out"), dir / (tag + ".err"), list_path);
}

PipelineRun run_pipeline(const TempDir& dir, const std::string& tag,
                         std::vector<std::string> args, const std::string& list_path,
                         std::chrono::seconds timeout) {
  auto child = start_pipeline(dir, tag, std::move(args), list_path);
  const auto status = child.wait_for(timeout);
  if (!status)
    FAIL(stop_hung_pipeline(
        child, "pipeline did not finish within " + std::to_string(timeout.count()) + " s",
        dir / (tag + ".run"), dir / (tag + ".err")));
  return PipelineRun{*status, read_file(dir / (tag + ".out")), read_file(dir / (tag + ".err"))};
}

std::map<std::string, LedgerRow> read_ledger(const std::string& state_dir) {
  std::map<std::string, LedgerRow> rows;
  const std::string path = state_dir + "/ledger.sqlite";
  if (!fs::exists(path)) return rows;
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    sqlite3_close(db);
    throw std::runtime_error("cannot open " + path);
  }
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt* st = nullptr;
  const char* sql = "SELECT url, name, state, coalesce(reason, 0), coalesce(detail, ''),"
                    " coalesce(path, ''), coalesce(sha256, ''), coalesce(bytes, 0) FROM links";
  if (sqlite3_prepare_v2(db, sql, -1, &st, nullptr) != SQLITE_OK) {
    sqlite3_close(db);
    return rows; // the table is not there yet
  }
  auto text = [&](int i) {
    const auto* p = sqlite3_column_text(st, i);
    return p ? std::string(reinterpret_cast<const char*>(p)) : std::string();
  };
  while (sqlite3_step(st) == SQLITE_ROW) {
    LedgerRow r;
    r.name = text(1);
    r.state = sqlite3_column_int(st, 2);
    r.reason = sqlite3_column_int(st, 3);
    r.detail = text(4);
    r.path = text(5);
    r.sha256 = text(6);
    r.bytes = static_cast<std::uint64_t>(sqlite3_column_int64(st, 7));
    rows[text(0)] = std::move(r);
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return rows;
}

std::map<std::string, std::string> tree(const std::string& root) {
  std::map<std::string, std::string> out;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator();
       ++it) {
    const auto rel = fs::relative(it->path(), root).string();
    const auto st = it->symlink_status();
    if (fs::is_symlink(st)) out[rel] = "l " + fs::read_symlink(it->path()).string();
    else if (fs::is_directory(st)) out[rel] = "d";
    else if (fs::is_regular_file(st)) out[rel] = "f " + sha256_file(it->path().string());
    else out[rel] = "o";
  }
  return out;
}

Tmpfs::Tmpfs(const std::string& path, const std::string& size) : path_(path) {
  fs::create_directories(path);
  const std::string opts = "size=" + size + ",mode=0755";
  if (::mount("tmpfs", path.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, opts.c_str()) == 0) {
    mounted_ = true;
  } else {
    why_ = std::string("mount -t tmpfs: ") + std::strerror(errno);
  }
}

Tmpfs::~Tmpfs() {
  if (mounted_) ::umount2(path_.c_str(), MNT_DETACH);
}

} // namespace trawl::e2e
