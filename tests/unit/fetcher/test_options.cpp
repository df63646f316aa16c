#include <catch2/catch.hpp>
#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "fetcher/fetch.hpp"

using namespace trawl::fetcher;

namespace {

// Parses `args` (after the program name) with a `fetch` subcommand carrying the fetch flags.
void parse(FetchOptions& o, std::vector<std::string> args) {
  CLI::App app("trawl");
  auto* fetch = app.add_subcommand("fetch");
  add_options(*fetch, o);
  std::reverse(args.begin(), args.end()); // CLI11 takes the arguments in reverse order
  app.parse(args);
}

} // namespace

TEST_CASE("fetch flags parse into FetchOptions", "[fetcher]") {
  FetchOptions o;
  parse(o, {"fetch", "--source", "list.txt", "--ext", "jpg,PNG", "--ext", ".gif", "--connect",
            "tcp://vent:1", "--connect", "ipc:///tmp/links", "--format", "list", "--linger-ms",
            "250"});
  CHECK(o.source == "list.txt");
  CHECK(o.exts == std::vector<std::string>{"jpg", "PNG", ".gif"});
  CHECK(o.connect == std::vector<std::string>{"tcp://vent:1", "ipc:///tmp/links"});
  CHECK(o.format == "list");
  CHECK(o.linger == std::chrono::milliseconds(250));
}

TEST_CASE("fetch flags have defaults", "[fetcher]") {
  FetchOptions o;
  parse(o, {"fetch", "--source", "-"});
  CHECK(o.source == "-");
  CHECK(o.exts.empty());
  CHECK(o.connect == std::vector<std::string>{"tcp://127.0.0.1:5557"});
  CHECK(o.format == "auto");
  CHECK(o.linger == std::chrono::milliseconds(60000));
  CHECK(o.max_body_bytes == 64ull * 1024 * 1024);
}

TEST_CASE("fetch flags are validated", "[fetcher]") {
  FetchOptions o;
  CHECK_THROWS_AS(parse(o, {"fetch"}), CLI::RequiredError);
  CHECK_THROWS_AS(parse(o, {"fetch", "--source", "x", "--format", "xml"}), CLI::ValidationError);
  CHECK_THROWS_AS(parse(o, {"fetch", "--source", "x", "--ext", "a/b"}), CLI::ValidationError);
  CHECK_THROWS_AS(parse(o, {"fetch", "--source", "x", "--ext", "."}), CLI::ValidationError);
  CHECK_THROWS_AS(parse(o, {"fetch", "--source", "x", "--linger-ms", "-1"}), CLI::ValidationError);
}

TEST_CASE("fetch help explains every flag", "[fetcher]") {
  FetchOptions o;
  CLI::App app("trawl");
  auto* fetch = app.add_subcommand("fetch");
  add_options(*fetch, o);
  const std::string help = fetch->help();
  for (const char* flag : {"--source", "--ext", "--connect", "--format", "--linger-ms",
                           "--max-body-bytes", "IMGUR_CLIENT_ID", "stdin"})
    CHECK_THAT(help, Catch::Contains(flag));
}
