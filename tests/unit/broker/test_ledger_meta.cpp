// The ledger keeps each link's meta (proto::Link::meta) and gives it back with the task; a
// ledger written before the column existed gets it on open.
#include <catch2/catch.hpp>
#include <filesystem>
#include <sqlite3.h>
#include <unistd.h>

#include "broker/ledger.hpp"
#include "broker/names.hpp"

using namespace trawl;
using namespace trawl::broker;

namespace {

std::string fresh_dir(const std::string& what) {
  const auto p = std::filesystem::temp_directory_path() /
                 ("trawl-ledger-meta-" + what + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(p);
  return p.string();
}

} // namespace

TEST_CASE("ledger: meta is stored with a new link and returned with its task", "[broker]") {
  const std::string dir = fresh_dir("store");
  {
    Ledger l(dir, false);
    NameAssigner names;
    const auto a = l.add_link("http://a.test/1.jpg", names, R"({"caption":"one"})");
    const auto b = l.add_link("http://a.test/2.jpg", names);
    const auto again = l.add_link("http://a.test/1.jpg", names, R"({"caption":"other"})");
    CHECK(again.id == a.id);
    CHECK(l.task(a.id)->meta == R"({"caption":"one"})"); // the first meta stays
    CHECK(l.task(b.id)->meta.empty());
    const auto rows = l.pending_after(0, 10);
    REQUIRE(rows.size() == 2);
    CHECK(rows[0].meta == R"({"caption":"one"})");
    CHECK(rows[1].meta.empty());
  }
  {
    Ledger l(dir, false); // reopened
    CHECK(l.task(1)->meta == R"({"caption":"one"})");
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("ledger: an older ledger without the meta column is upgraded on open", "[broker]") {
  const std::string dir = fresh_dir("old");
  std::filesystem::create_directories(dir);
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open((dir + "/ledger.sqlite").c_str(), &db) == SQLITE_OK);
    const char* sql =
        "CREATE TABLE links(id INTEGER PRIMARY KEY, url TEXT NOT NULL UNIQUE, name TEXT NOT NULL,"
        " state INTEGER NOT NULL, attempts INTEGER NOT NULL, lease_until INTEGER, node TEXT, path TEXT,"
        " http_code INTEGER, bytes INTEGER, sha256 TEXT, reason INTEGER, detail TEXT);"
        "INSERT INTO links(url, name, state, attempts) VALUES('http://old.test/a.jpg', 'a.jpg', 0, 0);";
    REQUIRE(sqlite3_exec(db, sql, nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
  }
  Ledger l(dir, false);
  REQUIRE(l.task(1));
  CHECK(l.task(1)->url == "http://old.test/a.jpg");
  CHECK(l.task(1)->meta.empty());
  NameAssigner names;
  l.load_names(names);
  const auto b = l.add_link("http://old.test/b.jpg", names, R"({"k":"v"})");
  CHECK(l.task(b.id)->meta == R"({"k":"v"})");
  std::filesystem::remove_all(dir);
}
