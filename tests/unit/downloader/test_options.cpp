// The `trawl download` flags: names, defaults and units.
#include <catch2/catch.hpp>

#include <CLI/CLI.hpp>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "downloader/downloader.hpp"
#include "downloader/temp_pool.hpp"

TEST_CASE("download flags parse into DownloadOptions", "[downloader]") {
  CLI::App app;
  trawl::downloader::DownloadOptions o;
  trawl::downloader::add_options(app, o);

  SECTION("defaults") {
    app.parse(std::vector<std::string>{});
    CHECK(o.connect == std::vector<std::string>{"tcp://127.0.0.1:5558"});
    CHECK(o.sink == std::vector<std::string>{"tcp://127.0.0.1:5559"});
    CHECK(o.concurrency == 64);
    CHECK(o.max_size == (1ULL << 30));
    CHECK(o.grace == std::chrono::milliseconds(10000));
    CHECK(o.coalesce == std::chrono::milliseconds(10));
  }
  SECTION("--coalesce-ms") {
    app.parse(std::vector<std::string>{"0", "--coalesce-ms"});
    CHECK(o.coalesce == std::chrono::milliseconds(0));
    app.parse(std::vector<std::string>{"25", "--coalesce-ms"});
    CHECK(o.coalesce == std::chrono::milliseconds(25));
  }
  SECTION("every flag") {
    // CLI11 parses a reversed argv vector.
    std::vector<std::string> args = {
        "--connect", "tcp://a:1", "--connect", "tcp://b:2", "--sink", "ipc:///tmp/s",
        "--out", "dl", "-j", "8", "--prefetch", "2", "--node", "n1", "--connect-timeout", "5",
        "--timeout", "60", "--low-speed-time", "7", "--max-redirects", "3", "--max-size", "2M",
        "--retries", "5", "--grace-ms", "1500", "--per-host", "4", "--user-agent", "ua/1"};
    std::reverse(args.begin(), args.end());
    app.parse(args);
    CHECK(o.connect == std::vector<std::string>{"tcp://a:1", "tcp://b:2"});
    CHECK(o.sink == std::vector<std::string>{"ipc:///tmp/s"});
    CHECK(o.out == "dl");
    CHECK(o.concurrency == 8);
    CHECK(o.prefetch == 2);
    CHECK(o.node == "n1");
    CHECK(o.connect_timeout_s == 5);
    CHECK(o.timeout_s == 60);
    CHECK(o.low_speed_time_s == 7);
    CHECK(o.max_redirects == 3);
    CHECK(o.max_size == 2 * 1024 * 1024);
    CHECK(o.retries == 5);
    CHECK(o.grace == std::chrono::milliseconds(1500));
    CHECK(o.per_host == 4);
    CHECK(o.user_agent == "ua/1");
  }
  SECTION("out-of-range values are usage errors") {
    CHECK_THROWS_AS(app.parse(std::vector<std::string>{"0", "-j"}), CLI::ValidationError);
    CHECK_THROWS_AS(app.parse(std::vector<std::string>{"1001", "--coalesce-ms"}),
                    CLI::ValidationError);
  }
}

namespace {

// This process's descriptor table size (FDSize in /proc/self/status), or -1.
long fd_table_size() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("FDSize:", 0) == 0) return std::stol(line.substr(7));
  return -1;
}

std::size_t open_descriptors() {
  return static_cast<std::size_t>(std::distance(
      std::filesystem::directory_iterator("/proc/self/fd"), std::filesystem::directory_iterator{}));
}

} // namespace

TEST_CASE("reserve_descriptors grows the descriptor table and leaves no descriptor open",
          "[downloader]") {
  const long before = fd_table_size();
  REQUIRE(before > 0);
  // Ask for more than the table holds: 2 x c + 64 + the ready files for c transfers.
  const int concurrency = static_cast<int>(before);
  const std::uint64_t expected = trawl::downloader::TempPool::descriptors_for(
      concurrency, trawl::downloader::descriptor_limit());
  if (expected <= static_cast<std::uint64_t>(before)) {
    WARN("SKIPPED: ulimit -n leaves no room to grow the descriptor table");
    return;
  }
  const std::size_t open_before = open_descriptors();
  trawl::downloader::reserve_descriptors(concurrency);
  CHECK(fd_table_size() >= static_cast<long>(expected));
  CHECK(open_descriptors() == open_before);
}
