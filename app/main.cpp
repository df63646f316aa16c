// trawl: one binary, one subcommand per actor. main parses flags, sets up logging and signals,
// runs one actor and maps errors to the documented exit codes; all logic lives in the libraries.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <spdlog/spdlog.h>

#include "broker/sink.hpp"
#include "broker/vent.hpp"
#include "common/exit_codes.hpp"
#include "common/log.hpp"
#include "common/signals.hpp"
#include "downloader/downloader.hpp"
#include "fetcher/fetch.hpp"
#include "proto/messages.hpp"

namespace {

constexpr const char* kDescription =
    "trawl: a distributed bulk downloader.\n"
    "A pipeline of processes joined by ZeroMQ: `fetch` emits links, `vent` fans them out as\n"
    "tasks, any number of `download` processes (on any number of hosts) fetch them with\n"
    "libcurl, and `sink` collects results and prints the summary. launch/pipeline starts all\n"
    "of them on one machine.\n\n"
    "Exit status: 0 every link done, 1 some links failed, 2 usage error, 3 fatal error,\n"
    "130 interrupted.";

} // namespace

int main(int argc, char** argv) {
  CLI::App app{kDescription, "trawl"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "trawl " TRAWL_VERSION " (protocol " +
                                        std::to_string(trawl::proto::kProtocolVersion) + ")");
  int verbose = 0, quiet = 0;
  app.add_flag("-v,--verbose", verbose, "More log output on stderr (-vv for trace)");
  app.add_flag("-q,--quiet", quiet, "Less log output on stderr (-qq for errors only)");

  trawl::fetcher::FetchOptions fetch_opts;
  auto* fetch = app.add_subcommand("fetch", "Read links from a source and send them to the ventilator");
  trawl::fetcher::add_options(*fetch, fetch_opts);

  trawl::broker::VentOptions vent_opts;
  auto* vent = app.add_subcommand("vent", "Hand links out to downloaders as tasks (the ventilator)");
  trawl::broker::add_options(*vent, vent_opts);

  trawl::downloader::DownloadOptions dl_opts;
  auto* download = app.add_subcommand("download", "Download tasks with libcurl and report results to the sink");
  trawl::downloader::add_options(*download, dl_opts);

  trawl::broker::SinkOptions sink_opts;
  auto* sink = app.add_subcommand("sink", "Collect results, show progress and print the summary");
  trawl::broker::add_options(*sink, sink_opts);

  for (auto* sub : {fetch, vent, download, sink}) sub->fallthrough();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? trawl::kExitOk : trawl::kExitUsage;
  }

  const std::string actor = app.get_subcommands().front()->get_name();
  trawl::setup_logging(actor, verbose - quiet);
  trawl::install_stop_handlers();
  try {
    if (fetch->parsed()) return trawl::fetcher::run(fetch_opts);
    if (vent->parsed()) return trawl::broker::run(vent_opts);
    if (download->parsed()) return trawl::downloader::run(dl_opts);
    if (sink->parsed()) return trawl::broker::run(sink_opts);
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return trawl::kExitFatal;
  }
  return trawl::kExitUsage;
}
