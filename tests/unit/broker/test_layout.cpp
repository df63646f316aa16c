// Output layouts chosen by the ventilator (broker/names.hpp): --name basename|hash|index, --shard.
#include <catch2/catch.hpp>
#include <filesystem>
#include <set>
#include <unistd.h>

#include "broker/ledger.hpp"
#include "broker/names.hpp"
#include "common/names.hpp"

using namespace trawl;
using namespace trawl::broker;

TEST_CASE("layout names: parse, extension, split", "[broker][names]") {
  CHECK(parse_layout("basename") == NameLayout::basename);
  CHECK(parse_layout("hash") == NameLayout::hash);
  CHECK(parse_layout("index") == NameLayout::index);
  CHECK_FALSE(parse_layout("Hash"));
  CHECK(plain_extension("http://x.test/a/Cat.JPG?x=1") == ".jpg");
  CHECK(plain_extension("http://x.test/a/cat.tar.gz") == ".gz");
  CHECK(plain_extension("http://x.test/a/cat") == "");
  CHECK(plain_extension("http://x.test/a/cat.j%20g") == "");     // a space: dropped
  CHECK(plain_extension("http://x.test/a/cat.abcdefghijklmnopq") == ""); // too long
  CHECK(split_name("0000/cat.jpg") == std::pair<std::string_view, std::string_view>{"0000", "cat.jpg"});
  CHECK(split_name("cat.jpg") == std::pair<std::string_view, std::string_view>{"", "cat.jpg"});
}

TEST_CASE("hash layout: SHA-256 of the URL plus its extension", "[broker][names]") {
  NameAssigner names(NamingOptions{NameLayout::hash, 0});
  // sha256("http://x.test/a.jpg"), computed independently with sha256sum.
  CHECK(names.assign("http://x.test/a.jpg", 1) ==
        "f5848b8a508f82cfff8b0e8666a8746d4bdcc181e8ef619482793be0fe701113.jpg");
  const std::string n = names.assign("http://x.test/b", 2);
  CHECK(n.size() == 64);
  CHECK(is_safe_name(n));
}

TEST_CASE("index layout: the job order, zero-padded, plus the extension", "[broker][names]") {
  NameAssigner names(NamingOptions{NameLayout::index, 0});
  CHECK(names.assign("http://x.test/a.jpg", 42) == "000000042.jpg");
  CHECK(names.assign("http://x.test/b.PNG", 43) == "000000043.png");
  CHECK(names.assign("http://x.test/", 44) == "000000044");
  CHECK(names.assign("http://x.test/c.jpg", 1234567890) == "1234567890.jpg");
}

TEST_CASE("shard: at most N per directory, by job order, names stay unique", "[broker][names]") {
  NameAssigner names(NamingOptions{NameLayout::basename, 3});
  std::vector<std::string> got;
  for (std::uint64_t i = 1; i <= 7; ++i) got.push_back(names.assign("http://x.test/" + std::to_string(i) + "/cat.jpg", i));
  CHECK(got[0] == "0000/cat.jpg");
  CHECK(got[1].rfind("0000/cat-", 0) == 0);
  CHECK(got[2].rfind("0000/cat-", 0) == 0);
  CHECK(got[3].rfind("0001/cat", 0) == 0);
  CHECK(got[6].rfind("0002/cat", 0) == 0);
  std::set<std::string> bases;
  for (const auto& g : got) {
    const auto [dir, base] = split_name(g);
    CHECK(is_safe_name(dir));
    CHECK(is_safe_name(base));
    bases.insert(std::string(base));
  }
  CHECK(bases.size() == 7); // unique across the job, not only within a directory
}

TEST_CASE("the ledger names links by their position in the job", "[broker][names]") {
  const auto dir = std::filesystem::temp_directory_path() / ("trawl-layout-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  {
    Ledger l(dir.string(), true);
    NameAssigner names(NamingOptions{NameLayout::index, 2});
    CHECK(l.add_link("http://a.test/x.jpg", names).id == 1);
    CHECK(l.add_link("http://a.test/y.jpg", names).id == 2);
    const auto third = l.add_link("http://b.test:8080/z.gif", names);
    CHECK(third.id == 3);
    CHECK(third.host == "b.test:8080");
    CHECK(l.task(1)->name == "0000/000000001.jpg");
    CHECK(l.task(2)->name == "0000/000000002.jpg");
    CHECK(l.task(3)->name == "0001/000000003.gif");
    CHECK(l.pending_hosts().size() == 2);
    const auto a = l.pending_of_host("a.test", 0, 10);
    REQUIRE(a.size() == 2);
    CHECK(a[0].id == 1);
    CHECK(l.pending_of_host("a.test", 1, 10).size() == 1);
    CHECK(l.lease(1, "n1", 0));
    CHECK_FALSE(l.lease(1, "n1", 0)); // not pending any more
    CHECK(l.pending_of_host("a.test", 0, 10).size() == 1);
    CHECK(l.leased_hosts() == std::vector<std::pair<std::uint64_t, std::string>>{{1, "a.test"}});
    l.commit();
  }
  {
    // Reopened: ids continue after the last one.
    Ledger l(dir.string(), false);
    NameAssigner names(NamingOptions{NameLayout::index, 2});
    CHECK(l.add_link("http://c.test/w.jpg", names).id == 4);
    CHECK(l.task(4)->name == "0001/000000004.jpg");
  }
  std::filesystem::remove_all(dir);
}
