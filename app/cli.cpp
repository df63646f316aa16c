// The trawl command line; see cli.hpp.
#include "app/cli.hpp"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string_view>

#include "proto/messages.hpp"
#include "proto/version.hpp"

namespace trawl::app {
namespace {

constexpr const char* kDescription =
    "trawl: a distributed bulk downloader.\n"
    "A pipeline of processes joined by ZeroMQ: `fetch` emits links, `vent` fans them out as\n"
    "tasks, any number of `download` processes (on any number of hosts) fetch them with\n"
    "libcurl, and `sink` collects results and prints the summary. `pipeline` (launch/pipeline)\n"
    "starts all of them on one machine.\n\n"
    "Every flag can also be set in a config file (--config FILE, default "
    "~/.config/trawl/trawl.conf\n"
    "or /etc/trawl/trawl.conf; a [section] per subcommand, keys named like the flags) or in an\n"
    "environment variable TRAWL_<SUBCOMMAND>_<FLAG>. Flags win over the environment, the\n"
    "environment over the file, the file over the defaults.\n\n"
    "Exit status: 0 every link done, 1 some links failed, 2 usage error, 3 fatal error,\n"
    "130 interrupted.";

// The option a config item names, or nullptr (unknown section or key).
const CLI::Option* find_option(const CLI::App& root, const CLI::ConfigItem& item) {
  const CLI::App* app = &root;
  for (const auto& parent : item.parents) {
    try {
      app = app->get_subcommand(parent);
    } catch (const CLI::OptionNotFound&) {
      return nullptr;
    }
  }
  if (const auto* opt = app->get_option_no_throw("--" + item.name)) return opt;
  if (item.name.size() == 1)
    if (const auto* opt = app->get_option_no_throw("-" + item.name)) return opt;
  return nullptr;
}

// CLI11 2.1 applies the config file before the environment, and a value once set is kept, so a
// file would beat an environment variable. Dropping the file's items whose variable is set gives
// the documented order: flags > environment > file > defaults.
class EnvAwareConfig : public CLI::ConfigTOML {
public:
  EnvAwareConfig(const CLI::App* root, bool use_environment)
      : root_(root), use_environment_(use_environment) {}

  std::vector<CLI::ConfigItem> from_config(std::istream& input) const override {
    auto parsed = CLI::ConfigTOML::from_config(input);
    if (use_environment_)
      std::erase_if(parsed, [this](const CLI::ConfigItem& item) {
        const CLI::Option* opt = find_option(*root_, item);
        if (opt == nullptr || opt->get_envname().empty()) return false;
        const char* value = std::getenv(opt->get_envname().c_str());
        return value != nullptr && *value != '\0';
      });
    return parsed;
  }

private:
  const CLI::App* root_;
  bool use_environment_;
};

std::string upper_snake(std::string s) {
  for (char& c : s) c = c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

bool is_regular_file(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec);
}

} // namespace

Cli::Cli() : app(kDescription, "trawl") {}

std::string version_string() {
  return "trawl " TRAWL_VERSION " (protocol " + std::to_string(proto::kProtocolVersion) + ")";
}

CliSettings CliSettings::from_system() {
  CliSettings s;
  std::string user;
  if (const char* xdg = std::getenv("XDG_CONFIG_HOME"); xdg != nullptr && *xdg == '/')
    user = std::string(xdg) + "/trawl/trawl.conf";
  else if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0')
    user = std::string(home) + "/.config/trawl/trawl.conf";
  s.default_config = !user.empty() && is_regular_file(user) ? user : "/etc/trawl/trawl.conf";
  return s;
}

std::string env_name(const CLI::App* sub, const CLI::Option& opt) {
  if (opt.get_lnames().empty() || opt.get_positional()) return "";
  const std::string& flag = opt.get_lnames().front();
  if (flag == "help" || flag == "version" || flag == "config") return "";
  if (sub == nullptr) return "TRAWL_" + upper_snake(flag);
  return "TRAWL_" + upper_snake(sub->get_name()) + "_" + upper_snake(flag);
}

namespace {

// What every subcommand built gets: -v, -q and --config after it, --version, and the environment.
void finish_cli(Cli& cli, const CliSettings& settings, const std::string& version) {
  CLI::App& app = cli.app;
  for (CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
    sub->fallthrough(); // -v, -q and --config may come after the subcommand
    sub->set_version_flag("--version", version, "Print the version and protocol version and exit");
  }
  if (!settings.use_environment) return;
  for (CLI::Option* opt : app.get_options())
    if (const auto env = env_name(nullptr, *opt); !env.empty()) opt->envname(env);
  std::vector<CLI::App*> with_env = cli.actors();
  if (cli.monitor != nullptr) with_env.push_back(cli.monitor);
  for (CLI::App* sub : with_env)
    for (CLI::Option* opt : sub->get_options())
      if (const auto env = env_name(sub, *opt); !env.empty()) opt->envname(env);
}

} // namespace

std::unique_ptr<Cli> make_cli(const CliSettings& settings) {
  auto cli = std::make_unique<Cli>();
  CLI::App& app = cli->app;
  app.require_subcommand(1);
  // Inherited by the subcommands, so set before they are added.
  app.config_formatter(std::make_shared<EnvAwareConfig>(&app, settings.use_environment));
  // Anything but an actor's name builds the whole tree.
  const std::string& o = settings.only;
  const std::string only =
      o == "fetch" || o == "vent" || o == "download" || o == "sink" ? o : std::string();
  // One actor's tree knows no other section of the file (the whole parse checked them).
  app.allow_config_extras(only.empty() ? CLI::config_extras_mode::error
                                       : CLI::config_extras_mode::ignore);
  const auto want = [&only](std::string_view name) { return only.empty() || only == name; };

  const std::string version = version_string();
  app.set_version_flag("--version", version, "Print the version and protocol version and exit");
  app.set_config("--config", settings.default_config,
                 "Read flags from this file: TOML/INI, keys named like the flags, a [section] per "
                 "subcommand ([download], [vent], ...). Default: ~/.config/trawl/trawl.conf, else "
                 "/etc/trawl/trawl.conf, when it exists")
      ->type_name("FILE");
  app.add_flag("-v,--verbose", cli->verbose, "More log output on stderr (-vv for trace)");
  app.add_flag("-q,--quiet", cli->quiet, "Less log output on stderr (-qq for errors only)");

  if (want("fetch")) {
    cli->fetch =
        app.add_subcommand("fetch", "Read links from a source and send them to the ventilator");
    fetcher::add_options(*cli->fetch, cli->fetch_opts);
  }
  if (want("vent")) {
    cli->vent =
        app.add_subcommand("vent", "Hand links out to downloaders as tasks (the ventilator)");
    broker::add_options(*cli->vent, cli->vent_opts);
  }
  if (want("download")) {
    cli->download = app.add_subcommand(
        "download", "Download tasks with libcurl and report results to the sink");
    downloader::add_options(*cli->download, cli->download_opts);
  }
  if (want("sink")) {
    cli->sink = app.add_subcommand("sink", "Collect results, show progress and print the summary");
    broker::add_options(*cli->sink, cli->sink_opts);
  }
  if (!only.empty()) {
    finish_cli(*cli, settings, version);
    return cli;
  }
  cli->monitor = app.add_subcommand(
      "monitor", "Show a running sink's live progress from any host (the sink's --monitor endpoint)");
  broker::add_options(*cli->monitor, cli->monitor_opts);
  cli->pipeline = app.add_subcommand(
      "pipeline", "Run a whole job on this machine: the ventilator, the fetcher, the sink and N "
                  "downloaders, joined by ipc:// sockets; prints the sink's summary");
  add_options(*cli->pipeline, cli->pipeline_opts);

  cli->config = app.add_subcommand("config", "Work with config files");
  cli->config->require_subcommand(1);
  cli->config_check = cli->config->add_subcommand(
      "check", "Validate a config file: every key must be a flag of its section and every value "
               "acceptable to it. Prints 'FILE: ok', or the bad key and exits 2");
  cli->config_check->add_option("FILE", cli->check_file, "The config file to check")->required();

  cli->keygen = app.add_subcommand(
      "keygen", "Make a CurveZMQ key pair: BASE.key (public and secret key, mode 0600: give it "
                "to --curve-secret) and BASE.pub (the public key: give it to --curve-server, or "
                "put it in a --curve-authorized file or directory)");
  cli->keygen->add_option("--out", cli->keygen_out,
                          "Path and base name of the files, e.g. keys/node1 writes keys/node1.key "
                          "and keys/node1.pub (the directory is created, mode 0700)")
      ->capture_default_str()
      ->type_name("BASE");
  cli->keygen->add_flag("--force", cli->keygen_force, "Replace existing key files");

  cli->completion = app.add_subcommand("completion", "Print the shell completion script");
  cli->completion->add_option("SHELL", cli->shell, "The shell (only bash for now)")
      ->check(CLI::IsMember({"bash"}))
      ->capture_default_str();
  cli->shell = "bash";

  cli->manpage = app.add_subcommand("manpage", "Print the man page of trawl or of a subcommand");
  cli->manpage->group(""); // hidden: the build writes the man pages with it
  cli->manpage->add_option("SUBCOMMAND", cli->man_subcommand, "fetch, vent, ...; none for trawl(1)");

  cli->config_check->fallthrough();
  finish_cli(*cli, settings, version);
  return cli;
}

std::string check_config_file(const std::string& path) {
  if (!is_regular_file(path) || !std::ifstream(path).good())
    return path + ": not a readable file";
  CliSettings settings;
  settings.use_environment = false;
  auto cli = make_cli(settings);
  // CLI11 takes a vector of arguments in reverse order.
  std::vector<std::string> args{path, "check", "config", path, "--config"};
  try {
    cli->app.parse(args);
    return "";
  } catch (const CLI::ConfigError& e) {
    // "INI was not able to parse download.outt": the key is unknown in its section.
    std::string what = e.what();
    const std::string prefix = "INI was not able to parse ";
    if (what.rfind(prefix, 0) == 0) {
      std::string key = what.substr(prefix.size());
      // A section that is no subcommand is reported by its opening marker, "nosuch.++".
      if (key.size() > 3 && key.ends_with(".++"))
        return path + ": unknown section [" + key.substr(0, key.size() - 3) + "]";
      return path + ": unknown key '" + key + "'";
    }
    return path + ": " + what;
  } catch (const CLI::ParseError& e) {
    // A rejected value: CLI11 names the flag (--concurrency); name the file's key instead.
    const std::string what = e.what();
    std::smatch m;
    if (std::regex_search(what, m, std::regex("--([A-Za-z0-9][-A-Za-z0-9_]*)"))) {
      std::ifstream in(path);
      CLI::ConfigTOML reader;
      for (const auto& item : reader.from_config(in)) {
        const CLI::Option* opt = find_option(cli->app, item);
        if (opt != nullptr && opt->check_name("--" + m[1].str()))
          return path + ": bad value for '" + item.fullname() + "': " + what;
      }
    }
    return path + ": " + what;
  }
}

} // namespace trawl::app
