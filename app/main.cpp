// trawl: one binary, one subcommand per actor. main parses flags (cli.cpp: flags, config file,
// environment), sets up logging and signals, runs one actor and maps errors to the documented
// exit codes; all logic lives in the libraries.
#include <CLI/CLI.hpp>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <iostream>
#include <memory>
#include <spdlog/spdlog.h>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "app/cli.hpp"
#include "app/docs.hpp"
#include "app/pipeline.hpp"
#include "common/curve.hpp"
#include "common/exit_codes.hpp"
#include "common/log.hpp"
#include "common/signals.hpp"

#ifdef TRAWL_JEMALLOC
// jemalloc's options, which it reads from this name in the program when it starts: one arena
// rather than 4 per core. Each process here is one event loop with a few helper threads, whose
// allocations the per-thread caches serve without the arena's lock; every arena more is pages to
// touch, and mutexes that jemalloc's fork handlers take and release at every fork.
extern "C" {
extern const char* const malloc_conf;
const char* const malloc_conf = "narenas:1";
}
#endif

namespace {

// One actor (fetch, vent, download, sink, monitor) of a parsed command line.
int run_actor(trawl::app::Cli& cli) {
  const std::string actor = cli.app.get_subcommands().front()->get_name();
  trawl::setup_logging(actor, cli.verbose - cli.quiet);
  // A tree built for one actor (CliSettings::only) has only that one.
  const auto parsed = [](const CLI::App* sub) { return sub != nullptr && sub->parsed(); };
  // Before the stop handlers' thread, the process's first beside this one.
  if (parsed(cli.download)) trawl::downloader::reserve_descriptors(cli.download_opts.concurrency);
  trawl::install_stop_handlers();
  try {
    if (parsed(cli.fetch)) return trawl::fetcher::run(cli.fetch_opts);
    if (parsed(cli.vent)) return trawl::broker::run(cli.vent_opts);
    if (parsed(cli.download)) return trawl::downloader::run(cli.download_opts);
    if (parsed(cli.sink)) return trawl::broker::run(cli.sink_opts);
    if (parsed(cli.monitor)) return trawl::broker::run(cli.monitor_opts);
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return trawl::kExitFatal;
  }
  return trawl::kExitUsage;
}

// Parses `args` (a command line without the program name) as trawl would; nullptr and a message on
// stderr when they are refused. `code` gets the exit status for that case. `only`: the actor
// subcommand of a command line made by `trawl pipeline` (CliSettings::only), else empty.
std::unique_ptr<trawl::app::Cli> parse_args(const std::vector<std::string>& args, int& code,
                                            const std::string& only = "") {
  auto settings = trawl::app::CliSettings::from_system();
  settings.only = only;
  auto cli = trawl::app::make_cli(settings);
  std::vector<std::string> reversed(args.rbegin(), args.rend()); // CLI11 takes them in reverse
  try {
    cli->app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    code = cli->app.exit(e) == 0 ? trawl::kExitOk : trawl::kExitUsage;
    return nullptr;
  }
  return cli;
}

// A role's exception, as main reports it: on stderr, with the fatal status.
int fatal(const char* what) {
  std::cerr << "trawl: " << what << "\n";
  return trawl::kExitFatal;
}

// trawl::app::PrepareRole for `trawl pipeline`: the launcher parses the role's line, the forked
// child runs it (or returns the status of its refusal).
trawl::app::RoleRunner prepare_role(const std::vector<std::string>& args,
                                    const std::string& role_name) {
  int status = trawl::kExitUsage;
  std::shared_ptr<trawl::app::Cli> role;
  try {
    role = parse_args(args, status, role_name);
  } catch (const std::exception& e) {
    return [what = std::string(e.what())] { return fatal(what.c_str()); };
  }
  if (!role) return [status] { return status; };
  return [role] {
    try {
      return run_actor(*role);
    } catch (const std::exception& e) {
      return fatal(e.what());
    }
  };
}

// `trawl pipeline`: the roles are forked from this process and run their actor from a command
// line of their own, parsed as if exec'd (config file and environment included).
int run_pipeline(trawl::app::Cli& cli) {
  const auto& o = cli.pipeline_opts;
  std::vector<std::string> global;
  for (int i = 0; i < cli.verbose; ++i) global.emplace_back("-v");
  for (int i = 0; i < cli.quiet; ++i) global.emplace_back("-q");
  if (const auto* config = cli.app.get_option_no_throw("--config");
      config != nullptr && config->count() > 0)
    global.insert(global.end(), {"--config", config->as<std::string>()});
  // The flags after -- are checked once here, not by each downloader after the job has started.
  std::vector<std::string> check = global;
  check.insert(check.end(), {"download", "--out", o.out});
  check.insert(check.end(), o.download_flags.begin(), o.download_flags.end());
  int ignored = 0;
  const auto checked = parse_args(check, ignored, "download");
  if (!checked) {
    std::cerr << "trawl pipeline: the download flags after -- were refused (see above)\n";
    return trawl::kExitUsage;
  }
  if (const std::string why = trawl::downloader::check_options(checked->download_opts);
      !why.empty()) {
    std::cerr << "trawl pipeline: the download flags after -- were refused: " << why << "\n";
    return trawl::kExitUsage;
  }
  trawl::app::PipelineOptions job = o;
  job.downloaders_hash = trawl::downloader::hashes_bodies(checked->download_opts);
  return trawl::app::run_pipeline(job, global, prepare_role);
}

} // namespace

int main(int argc, char** argv) {
  // Set by launch/pipeline for this process's start alone (GnuTLS read it as it loaded): what
  // trawl runs (a --trawl wrapper, the roles it execs) sets GnuTLS up as usual.
  ::unsetenv("GNUTLS_NO_IMPLICIT_INIT");
  // `trawl pipeline` (the subcommand word among the arguments before --): its set-up for the
  // forks runs while the arguments are parsed. Should the word be a flag's value instead, the
  // set-up only ran for nothing.
  trawl::app::ForkWarmUp warm_up;
  for (int i = 1; i < argc && std::string_view(argv[i]) != "--"; ++i)
    if (std::string_view(argv[i]) == "pipeline") {
      warm_up.start();
      break;
    }
  int code = trawl::kExitUsage;
  auto cli = parse_args(std::vector<std::string>(argv + 1, argv + argc), code);
  if (!cli) return code;

  if (cli->config_check->parsed()) {
    const std::string err = trawl::app::check_config_file(cli->check_file);
    if (!err.empty()) {
      std::cerr << "trawl config check: " << err << "\n";
      return trawl::kExitUsage;
    }
    std::cout << cli->check_file << ": ok\n";
    return trawl::kExitOk;
  }
  if (cli->completion->parsed()) {
    std::cout << trawl::app::render_bash_completion(*cli);
    return trawl::kExitOk;
  }
  if (cli->keygen->parsed()) {
    try {
      const std::filesystem::path base(cli->keygen_out);
      if (base.has_parent_path() && !std::filesystem::exists(base.parent_path())) {
        std::filesystem::create_directories(base.parent_path());
        std::filesystem::permissions(base.parent_path(), std::filesystem::perms::owner_all);
      }
      const auto pair = trawl::generate_keypair();
      trawl::write_keypair(pair, cli->keygen_out, cli->keygen_force);
      std::cout << "public key " << pair.public_z85 << "\nwrote " << cli->keygen_out
                << ".key (secret, mode 0600) and " << cli->keygen_out << ".pub\n";
      return trawl::kExitOk;
    } catch (const std::exception& e) {
      std::cerr << "trawl keygen: " << e.what() << "\n";
      return trawl::kExitFatal;
    }
  }
  if (cli->manpage->parsed()) {
    try {
      std::cout << trawl::app::render_man(*cli, cli->man_subcommand);
      return trawl::kExitOk;
    } catch (const std::invalid_argument& e) {
      std::cerr << "trawl manpage: " << e.what() << "\n";
      return trawl::kExitUsage;
    }
  }

  // A job's processes (and the launcher) end at once when done (see exit_process).
  if (cli->pipeline->parsed()) trawl::exit_process(run_pipeline(*cli));
  trawl::exit_process(run_actor(*cli));
}
