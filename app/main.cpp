// trawl: one binary, one subcommand per actor. main parses flags (cli.cpp: flags, config file,
// environment), sets up logging and signals, runs one actor and maps errors to the documented
// exit codes; all logic lives in the libraries.
#include <CLI/CLI.hpp>
#include <exception>
#include <filesystem>
#include <iostream>
#include <stdexcept>
#include <spdlog/spdlog.h>

#include "app/cli.hpp"
#include "app/docs.hpp"
#include "common/curve.hpp"
#include "common/exit_codes.hpp"
#include "common/log.hpp"
#include "common/signals.hpp"

int main(int argc, char** argv) {
  auto cli = trawl::app::make_cli(trawl::app::CliSettings::from_system());
  try {
    cli->app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = cli->app.exit(e);
    return code == 0 ? trawl::kExitOk : trawl::kExitUsage;
  }

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

  const std::string actor = cli->app.get_subcommands().front()->get_name();
  trawl::setup_logging(actor, cli->verbose - cli->quiet);
  trawl::install_stop_handlers();
  try {
    if (cli->fetch->parsed()) return trawl::fetcher::run(cli->fetch_opts);
    if (cli->vent->parsed()) return trawl::broker::run(cli->vent_opts);
    if (cli->download->parsed()) return trawl::downloader::run(cli->download_opts);
    if (cli->sink->parsed()) return trawl::broker::run(cli->sink_opts);
    if (cli->monitor->parsed()) return trawl::broker::run(cli->monitor_opts);
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return trawl::kExitFatal;
  }
  return trawl::kExitUsage;
}
