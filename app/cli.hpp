// The trawl command line in one place: subcommands, their flags (registered by each library's
// add_options), the config file and TRAWL_* environment layers, and --version. main, the man
// pages, the bash completion and the tests all build this same tree, so they cannot drift.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "app/pipeline.hpp"
#include "broker/monitor.hpp"
#include "broker/sink.hpp"
#include "broker/vent.hpp"
#include "downloader/downloader.hpp"
#include "fetcher/fetch.hpp"

namespace trawl::app {

// Where the settings that are not on the command line come from.
struct CliSettings {
  // Read when --config is not given; empty for none. A missing default file is not an error.
  std::string default_config;
  // Read TRAWL_<SUBCOMMAND>_<FLAG> (and TRAWL_VERBOSE, TRAWL_QUIET) variables.
  bool use_environment = true;
  // Build only this actor subcommand ("fetch", "vent", "download" or "sink"), the others left
  // out (their pointers null), and ignore the config file's keys it does not know (in any
  // section: CLI11 checks them for the whole file or not at all); anything else: everything. For
  // a command line that `trawl pipeline` made, whose config file its own whole parse checked:
  // the whole tree costs 0.6-1.6 ms to build, one actor's 0.07-0.18 ms.
  std::string only;

  // The defaults of an installed trawl: the first of $XDG_CONFIG_HOME/trawl/trawl.conf
  // (~/.config/trawl/trawl.conf) and /etc/trawl/trawl.conf that exists; the environment is read.
  static CliSettings from_system();
};

// The parsed command line. Not movable (CLI::App is not), hence make_cli returns a unique_ptr.
struct Cli {
  CLI::App app;
  int verbose = 0;
  int quiet = 0;

  fetcher::FetchOptions fetch_opts;
  broker::VentOptions vent_opts;
  downloader::DownloadOptions download_opts;
  broker::SinkOptions sink_opts;
  broker::MonitorOptions monitor_opts;
  PipelineOptions pipeline_opts;
  std::string check_file;     // config check FILE
  std::string man_subcommand; // manpage [SUB]
  std::string shell;          // completion SHELL
  std::string keygen_out = "trawl"; // keygen --out BASE
  bool keygen_force = false;         // keygen --force

  CLI::App* fetch = nullptr;
  CLI::App* vent = nullptr;
  CLI::App* download = nullptr;
  CLI::App* sink = nullptr;
  CLI::App* monitor = nullptr;
  CLI::App* pipeline = nullptr; // the whole job on this machine (launch/pipeline)
  CLI::App* config = nullptr;
  CLI::App* config_check = nullptr;
  CLI::App* completion = nullptr;
  CLI::App* manpage = nullptr; // hidden: used by the build to write the man pages
  CLI::App* keygen = nullptr;

  Cli();
  Cli(const Cli&) = delete;
  Cli& operator=(const Cli&) = delete;

  // The actor subcommands (fetch, vent, download, sink) that were built, in pipeline order.
  std::vector<CLI::App*> actors() const {
    std::vector<CLI::App*> built;
    for (CLI::App* a : {fetch, vent, download, sink})
      if (a != nullptr) built.push_back(a);
    return built;
  }
};

// "trawl 0.1.0 (protocol 2)".
std::string version_string();

// The environment variable that sets `opt` of subcommand `sub` (nullptr: top level), e.g.
// TRAWL_DOWNLOAD_CONCURRENCY for `download --concurrency`; "" for options that have none.
std::string env_name(const CLI::App* sub, const CLI::Option& opt);

// Builds the whole command line (or one actor's: CliSettings::only).
std::unique_ptr<Cli> make_cli(const CliSettings& settings);

// Validates a config file against the command line: returns "" when every key is a known flag of
// its section and every value is accepted, else a message naming the file and the bad key.
std::string check_config_file(const std::string& path);

} // namespace trawl::app
