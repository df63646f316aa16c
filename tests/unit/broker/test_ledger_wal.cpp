// The ledger's WAL stays small while a job runs: SQLite checkpoints it as the commits go, so
// closing the ledger at the end of a job does not copy every page of the job back at once.
#include <catch2/catch.hpp>
#include <filesystem>
#include <string>
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
    for (int i = 0; i < 40000; ++i) {
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
    CHECK(l.counts().pending == 40000);
  }
  // 40,000 links write some 16 MB of pages in all; SQLite's automatic checkpoint (every 1,000
  // pages, 4 MB) keeps the WAL near that size when nothing holds a read open across commits.
  INFO("largest WAL: " << largest << " bytes");
  CHECK(largest > 0);
  CHECK(largest < 8u * 1024 * 1024);
  CHECK_FALSE(fs::exists(wal)); // closed: checkpointed and removed
  {
    Ledger again(dir.string(), false);
    CHECK(again.counts().pending == 40000);
  }
  fs::remove_all(dir);
}
