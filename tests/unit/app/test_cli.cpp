// The command line's layers: flags > environment > config file > defaults; config check.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>
#include <vector>

#include "app/cli.hpp"

namespace {

namespace fs = std::filesystem;

// A config file in a fresh temporary directory, removed with it.
class TempConfig {
public:
  explicit TempConfig(const std::string& text) {
    std::string tmpl = (fs::temp_directory_path() / "trawl-cli-XXXXXX").string();
    dir_ = ::mkdtemp(tmpl.data());
    path_ = dir_ + "/trawl.conf";
    std::ofstream(path_) << text;
  }
  ~TempConfig() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  TempConfig(const TempConfig&) = delete;
  TempConfig& operator=(const TempConfig&) = delete;
  const std::string& path() const { return path_; }

private:
  std::string dir_;
  std::string path_;
};

// Sets an environment variable for the life of the object.
class ScopedEnv {
public:
  ScopedEnv(const char* name, const char* value) : name_(name) { ::setenv(name, value, 1); }
  ~ScopedEnv() { ::unsetenv(name_); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

private:
  const char* name_;
};

std::unique_ptr<trawl::app::Cli> parse(std::vector<std::string> args,
                                       const std::string& default_config = "",
                                       const std::string& only = "") {
  trawl::app::CliSettings settings;
  settings.default_config = default_config;
  settings.only = only;
  auto cli = trawl::app::make_cli(settings);
  std::vector<const char*> argv{"trawl"};
  for (const auto& a : args) argv.push_back(a.c_str());
  cli->app.parse(static_cast<int>(argv.size()), argv.data());
  return cli;
}

const char* kFile = "verbose = 1\n"
                    "[download]\n"
                    "concurrency = 32\n"
                    "out = \"/from/file\"\n"
                    "connect = [\"tcp://a:5558\", \"tcp://b:5558\"]\n"
                    "[fetch]\n"
                    "source = \"list.txt\"\n"
                    "ext = [\".jpg\", \".png\"]\n"
                    "[sink]\n"
                    "progress = \"lines\"\n";

} // namespace

TEST_CASE("defaults apply when nothing else is set", "[app]") {
  auto cli = parse({"download"});
  CHECK(cli->download_opts.concurrency == 64);
  CHECK(cli->download->parsed());
}

TEST_CASE("a config file sets flags of its subcommand's section", "[app]") {
  TempConfig file(kFile);
  auto cli = parse({"--config", file.path(), "download"});
  CHECK(cli->download_opts.concurrency == 32);
  CHECK(cli->download_opts.out == "/from/file");
  CHECK(cli->download_opts.connect == std::vector<std::string>{"tcp://a:5558", "tcp://b:5558"});
  CHECK(cli->verbose == 1);

  auto fetch = parse({"fetch", "--config", file.path()}); // --config after the subcommand too
  CHECK(fetch->fetch_opts.source == "list.txt");
  CHECK(fetch->fetch_opts.exts.size() == 2);
}

TEST_CASE("the default config file is read when --config is not given", "[app]") {
  TempConfig file(kFile);
  CHECK(parse({"download"}, file.path())->download_opts.concurrency == 32);
  CHECK(parse({"download"}, file.path() + ".missing")->download_opts.concurrency == 64);
}

TEST_CASE("precedence: flags > environment > file > defaults", "[app]") {
  TempConfig file(kFile);
  ScopedEnv env("TRAWL_DOWNLOAD_CONCURRENCY", "16");
  ScopedEnv env_out("TRAWL_DOWNLOAD_OUT", "/from/env");
  SECTION("environment beats the file") {
    auto cli = parse({"--config", file.path(), "download"});
    CHECK(cli->download_opts.concurrency == 16);
    CHECK(cli->download_opts.out == "/from/env");
    CHECK(cli->download_opts.connect.size() == 2); // not in the environment: from the file
  }
  SECTION("flags beat the environment and the file") {
    auto cli = parse({"--config", file.path(), "download", "-j", "8", "--out", "/from/flag"});
    CHECK(cli->download_opts.concurrency == 8);
    CHECK(cli->download_opts.out == "/from/flag");
  }
  SECTION("environment beats the defaults") {
    CHECK(parse({"download"})->download_opts.concurrency == 16);
  }
}

TEST_CASE("a bad value in the environment is a usage error naming the flag", "[app]") {
  ScopedEnv env("TRAWL_DOWNLOAD_CONCURRENCY", "0");
  CHECK_THROWS_WITH(parse({"download"}), Catch::Contains("--concurrency"));
}

TEST_CASE("a config file with an unknown key or bad value stops the parse", "[app]") {
  TempConfig unknown("[download]\noutt = \"/x\"\n");
  CHECK_THROWS_AS(parse({"--config", unknown.path(), "download"}), CLI::ConfigError);
  TempConfig bad("[download]\nconcurrency = 0\n");
  CHECK_THROWS_AS(parse({"--config", bad.path(), "download"}), CLI::ValidationError);
  CHECK_THROWS_AS(parse({"--config", unknown.path() + ".missing", "download"}), CLI::FileError);
}

TEST_CASE("config check accepts a good file", "[app]") {
  TempConfig file(kFile);
  CHECK(trawl::app::check_config_file(file.path()).empty());
}

TEST_CASE("config check names an unknown key, section or bad value", "[app]") {
  TempConfig unknown("[download]\nconcurrency = 4\noutt = \"/x\"\n");
  CHECK_THAT(trawl::app::check_config_file(unknown.path()), Catch::Contains("unknown key 'download.outt'"));
  TempConfig section("[downloader]\nout = \"/x\"\n");
  CHECK_THAT(trawl::app::check_config_file(section.path()), Catch::Contains("unknown section [downloader]"));
  TempConfig range("[download]\nconcurrency = 0\n");
  CHECK_THAT(trawl::app::check_config_file(range.path()),
             Catch::Contains("bad value for 'download.concurrency'"));
  TempConfig choice("[sink]\nprogress = \"loud\"\n");
  CHECK_THAT(trawl::app::check_config_file(choice.path()), Catch::Contains("sink.progress"));
  CHECK_THAT(trawl::app::check_config_file(range.path() + ".missing"), Catch::Contains("not a readable file"));
}

TEST_CASE("config check ignores the environment", "[app]") {
  // A variable that would hide the file's bad value in a real run must not hide it here.
  ScopedEnv env("TRAWL_DOWNLOAD_CONCURRENCY", "16");
  TempConfig range("[download]\nconcurrency = 0\n");
  CHECK_FALSE(trawl::app::check_config_file(range.path()).empty());
}

TEST_CASE("every subcommand answers --version with the protocol version", "[app]") {
  for (const char* sub : {"fetch", "vent", "download", "sink", "config"}) {
    INFO(sub);
    try {
      parse({sub, "--version"});
      FAIL("no --version");
    } catch (const CLI::CallForVersion& e) {
      CHECK_THAT(std::string(e.what()), Catch::Contains("(protocol "));
    }
  }
  CHECK(trawl::app::env_name(nullptr, *parse({"download"})->app.get_option("--verbose")) == "TRAWL_VERBOSE");
}

TEST_CASE("one actor's tree parses its command line as the whole tree does", "[app]") {
  TempConfig file(kFile); // [download], [fetch] and [sink] sections
  ScopedEnv env("TRAWL_DOWNLOAD_OUT", "/from/env");
  const std::vector<std::string> dl = {"-v", "--config", file.path(), "download", "-j", "8"};
  auto whole = parse(dl);
  auto one = parse(dl, "", "download");
  CHECK(one->download->parsed());
  CHECK(one->fetch == nullptr);
  CHECK(one->vent == nullptr);
  CHECK(one->sink == nullptr);
  CHECK(one->pipeline == nullptr);
  CHECK(one->actors() == std::vector<CLI::App*>{one->download});
  CHECK(one->download_opts.concurrency == 8);                        // flag
  CHECK(one->download_opts.out == "/from/env");                      // environment
  CHECK(one->download_opts.connect == whole->download_opts.connect); // file
  CHECK(one->download_opts.connect.size() == 2);
  CHECK(one->verbose == whole->verbose); // -v (and the file's verbose = 1)
  CHECK(one->verbose >= 1);
  auto fetch = parse({"fetch", "--config", file.path()}, "", "fetch");
  CHECK(fetch->fetch_opts.source == "list.txt");
  CHECK(fetch->fetch_opts.exts == parse({"fetch", "--config", file.path()})->fetch_opts.exts);
  // The file's keys are the whole parse's to check (trawl pipeline's own, before any fork): one
  // actor's tree ignores the keys it does not know, in any section. A bad value of its own is
  // still refused.
  TempConfig unknown("[download]\noutt = \"/x\"\n[vent]\nper-hostt = 3\n");
  CHECK_THROWS_AS(parse({"--config", unknown.path(), "download"}), CLI::ConfigError);
  CHECK_NOTHROW(parse({"--config", unknown.path(), "download"}, "", "download"));
  CHECK_NOTHROW(parse({"--config", unknown.path(), "sink"}, "", "sink"));
  TempConfig bad("[download]\nconcurrency = 0\n");
  CHECK_THROWS_AS(parse({"--config", bad.path(), "download"}, "", "download"),
                  CLI::ValidationError);
  // Another actor's command line is refused; a name that is no actor builds the whole tree.
  CHECK_THROWS(parse({"vent"}, "", "download"));
  CHECK(parse({"vent"}, "", "monitor")->vent->parsed());
}

TEST_CASE(
    "the downloader's exit sweep is turned off by --no-exit-sweep in flags or file or environment",
    "[app]") {
  CHECK_FALSE(parse({"download"})->download_opts.no_exit_sweep);
  CHECK(parse({"download", "--no-exit-sweep"})->download_opts.no_exit_sweep);
  TempConfig file("[download]\nno-exit-sweep = true\n");
  CHECK(parse({"--config", file.path(), "download"})->download_opts.no_exit_sweep);
  TempConfig off("[download]\nno-exit-sweep = false\n");
  CHECK_FALSE(parse({"--config", off.path(), "download"})->download_opts.no_exit_sweep);
  ScopedEnv env("TRAWL_DOWNLOAD_NO_EXIT_SWEEP", "1");
  CHECK(parse({"download"})->download_opts.no_exit_sweep);
}
