// The ledger's WAL stays small while a job runs: SQLite checkpoints it as the commits go, so
// closing the ledger at the end of a job does not copy every page of the job back at once.
#include <catch2/catch.hpp>
#include <filesystem>
#include <set>
#include <sqlite3.h>
#include <string>
#include <sys/inotify.h>
#include <unistd.h>

#include "broker/ledger.hpp"
#include "broker/names.hpp"

using namespace trawl;
using namespace trawl::broker;

TEST_CASE("ledger: the WAL is checkpointed during a job, also after one-row lookups", "[broker]") {
  namespace fs = std::filesystem;
  const auto dir = fs::temp_directory_path() / ("trawl-ledger-wal-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  const std::string wal = (dir / "ledger.sqlite-wal").string();
  std::uintmax_t largest = 0;
  {
    Ledger l(dir.string(), false);
    NameAssigner names;
    // A lookup that returns its one row (as the ventilator's host_of, task and meta reads do)
    // before each commit, as in the ventilator's loop.
    for (int i = 0; i < 120000; ++i) {
      const auto added = l.add_link("http://h" + std::to_string(i % 97) + ".test/file-" +
                                        std::to_string(i) + "-with-a-longer-name.jpg",
                                    names);
      REQUIRE(added.is_new);
      if (i % 200 == 199) {
        CHECK(l.host_of(added.id) == added.host);
        l.commit();
        largest = std::max(largest, fs::file_size(wal));
      }
    }
    CHECK(l.counts().pending == 120000);
  }
  // 120,000 links write some 48 MB of pages in all; the automatic checkpoint (every 4,000 pages,
  // 16 MB: see Ledger) keeps the WAL near that size when nothing holds a read open across commits.
  INFO("largest WAL: " << largest << " bytes");
  CHECK(largest > 0);
  CHECK(largest < 24u * 1024 * 1024);
  CHECK_FALSE(fs::exists(wal)); // closed: checkpointed and removed
  {
    Ledger again(dir.string(), false);
    CHECK(again.counts().pending == 120000);
  }
  fs::remove_all(dir);
}

TEST_CASE("ledger: a new ledger is made in WAL mode without a rollback journal file", "[broker]") {
  namespace fs = std::filesystem;
  const auto dir = fs::temp_directory_path() / ("trawl-ledger-new-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const int in = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  REQUIRE(in >= 0);
  REQUIRE(::inotify_add_watch(in, dir.c_str(), IN_CREATE) >= 0);
  std::set<std::string> created;
  {
    Ledger l(dir.string(), true);
    NameAssigner names;
    REQUIRE(l.add_link("http://h.test/a.jpg", names).is_new);
    l.commit();
    alignas(inotify_event) char buf[8192];
    for (ssize_t n; (n = ::read(in, buf, sizeof buf)) > 0;)
      for (char* p = buf; p < buf + n;) {
        const auto* e = reinterpret_cast<const inotify_event*>(p);
        if (e->len > 0) created.insert(e->name);
        p += sizeof(inotify_event) + e->len;
      }
    // Another connection sees the WAL mode, and the link.
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open_v2((dir / "ledger.sqlite").c_str(), &db, SQLITE_OPEN_READONLY, nullptr) ==
            SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    CHECK(std::string(reinterpret_cast<const char*>(sqlite3_column_text(st, 0))) == "wal");
    sqlite3_finalize(st);
    REQUIRE(sqlite3_prepare_v2(db, "SELECT count(*) FROM links", -1, &st, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    CHECK(sqlite3_column_int(st, 0) == 1);
    sqlite3_finalize(st);
    sqlite3_close(db);
  }
  ::close(in);
  CHECK(created.count("ledger.sqlite") == 1);
  CHECK(created.count("ledger.sqlite-wal") == 1);
  CHECK(created.count("ledger.sqlite-journal") == 0);
  fs::remove_all(dir);
}

TEST_CASE("ledger: SQLite keeps no memory statistics (no global mutex per allocation)",
          "[broker]") {
  namespace fs = std::filesystem;
  const auto dir = fs::temp_directory_path() / ("trawl-ledger-mem-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  {
    Ledger l(dir.string(), true);
    NameAssigner names;
    for (int i = 0; i < 500; ++i)
      REQUIRE(l.add_link("http://h.test/f" + std::to_string(i) + ".jpg", names).is_new);
    l.commit();
    // With statistics on (SQLite's default), this counts the page cache and the prepared
    // statements the open ledger holds: hundreds of kilobytes.
    sqlite3_int64 used = -1, highest = -1;
    REQUIRE(sqlite3_status64(SQLITE_STATUS_MEMORY_USED, &used, &highest, 0) == SQLITE_OK);
    CHECK(used == 0);
    CHECK(highest == 0);
  }
  fs::remove_all(dir);
}
