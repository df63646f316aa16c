// Man pages and bash completion from the command-line tree; see docs.hpp.
#include "app/docs.hpp"

#include <sstream>
#include <stdexcept>

namespace trawl::app {
namespace {

// Text for a roff line: backslashes and dashes escaped, no line starting with a control
// character, a blank line becoming a paragraph break.
std::string roff(const std::string& text) {
  std::string out;
  bool line_start = true;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\n') {
      if (i + 1 < text.size() && text[i + 1] == '\n') {
        out += "\n.PP\n";
        while (i + 1 < text.size() && text[i + 1] == '\n') ++i;
      } else {
        out += '\n';
      }
      line_start = true;
      continue;
    }
    if (line_start && (c == '.' || c == '\'')) out += "\\&";
    line_start = false;
    if (c == '\\')
      out += "\\e";
    else if (c == '-')
      out += "\\-";
    else
      out += c;
  }
  return out;
}

bool visible(const CLI::Option* opt) { return !opt->get_group().empty(); }

std::vector<const CLI::App*> visible_subcommands(const CLI::App& app) {
  return app.get_subcommands([](const CLI::App* s) { return !s->get_group().empty(); });
}

// "\fB\-j\fR, \fB\-\-concurrency\fR \fIINT\fR"
std::string option_head(const CLI::Option* opt) {
  std::string head;
  if (opt->get_positional()) return "\\fI" + roff(opt->get_name(true)) + "\\fR";
  for (const auto& s : opt->get_snames()) head += (head.empty() ? "" : ", ") + ("\\fB" + roff("-" + s) + "\\fR");
  for (const auto& l : opt->get_lnames()) head += (head.empty() ? "" : ", ") + ("\\fB" + roff("--" + l) + "\\fR");
  if (opt->get_expected_min() > 0 && !opt->get_type_name().empty())
    head += " \\fI" + roff(opt->get_type_name()) + "\\fR";
  return head;
}

void write_options(std::ostream& out, const CLI::App* owner, const std::vector<const CLI::Option*>& opts,
                   bool env) {
  for (const CLI::Option* opt : opts) {
    if (!visible(opt)) continue;
    out << ".TP\n" << option_head(opt) << "\n" << roff(opt->get_description()) << "\n";
    std::string notes;
    auto note = [&notes](const std::string& n) { notes += (notes.empty() ? "" : "; ") + n; };
    if (!opt->get_default_str().empty() && opt->get_expected_min() > 0)
      note("default: " + opt->get_default_str());
    if (opt->get_items_expected_max() > 1 && !opt->get_positional()) note("may be repeated");
    if (env) {
      if (const auto name = env_name(owner, *opt); !name.empty()) note("environment: " + name);
    }
    if (!notes.empty()) out << ".br\n" << roff(notes) << "\n";
  }
}

std::string page_name(const std::string& sub) { return sub.empty() ? "trawl" : "trawl-" + sub; }

std::string upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

void write_common_tail(std::ostream& out, const std::string& sub) {
  out << ".SH FILES\n"
      << ".TP\n" << roff("~/.config/trawl/trawl.conf ($XDG_CONFIG_HOME/trawl/trawl.conf)") << "\n"
      << roff("Read when --config is not given and it exists.") << "\n"
      << ".TP\n" << roff("/etc/trawl/trawl.conf") << "\n"
      << roff("Read when --config is not given, the file above does not exist and this one does.") << "\n"
      << ".PP\n"
      << roff("A config file is TOML or INI: '#' comments, 'key = value' lines, one [section] per "
              "subcommand ([fetch], [vent], [download], [sink]); top-level keys (verbose, quiet) "
              "come before the first section. Keys are the long flag names without the dashes; a "
              "repeatable flag takes a list, key = [\"a\", \"b\"]. An unknown key or a bad value is "
              "an error; check a file with \\fBtrawl config check\\fR FILE.")
      << "\n.PP\n"
      << roff("Precedence: flags on the command line, then environment variables, then the config "
              "file, then the built-in defaults.")
      << "\n";
  if (sub == "download") {
    out << ".PP\n" << roff("Example:") << "\n.PP\n.nf\n"
        << roff("[download]\nconnect = [\"tcp://vent.example:5558\"]\nsink = [\"tcp://sink.example:5559\"]\n"
                "out = \"/srv/trawl\"\nconcurrency = 64")
        << "\n.fi\n";
  }
  out << ".SH EXIT STATUS\n"
      << roff("0 every link done; 1 the job ran and some links failed; 2 usage error (bad flag, "
              "config file or value); 3 fatal error (a process could not run: bind failed, source "
              "unreadable, API refused); 130 interrupted.")
      << "\n.SH SEE ALSO\n";
  std::string also;
  for (const std::string s : {"", "fetch", "vent", "download", "sink", "config"})
    if (s != sub) also += (also.empty() ? "" : ",\n") + ("\\fB" + roff(page_name(s)) + "\\fR(1)");
  out << also << "\n.PP\n"
      << roff("/usr/share/doc/trawl/OPERATIONS.md: ports, systemd, upgrades, monitoring.") << "\n";
}

} // namespace

std::vector<std::string> man_subcommands(const Cli& cli) {
  std::vector<std::string> names;
  for (const CLI::App* s : visible_subcommands(cli.app)) names.push_back(s->get_name());
  return names;
}

std::string render_man(const Cli& cli, const std::string& subcommand) {
  const CLI::App* app = &cli.app;
  if (!subcommand.empty()) {
    app = nullptr;
    for (const CLI::App* s : visible_subcommands(cli.app))
      if (s->get_name() == subcommand) app = s;
    if (app == nullptr) throw std::invalid_argument("no subcommand '" + subcommand + "'");
  }
  const std::string name = page_name(subcommand);
  std::ostringstream out;
  out << ".\\\" Generated by `trawl manpage" << (subcommand.empty() ? "" : " " + subcommand)
      << "` from the same tree as --help. Do not edit.\n"
      << ".TH " << roff(upper(name)) << " 1 \"\" \"" << roff(version_string()) << "\" \"User Commands\"\n"
      << ".SH NAME\n" << roff(name) << " \\- ";
  std::string summary = app->get_description();
  if (subcommand.empty()) summary = "a distributed bulk downloader";
  out << roff(summary.substr(0, summary.find('\n'))) << "\n";

  out << ".SH SYNOPSIS\n";
  if (subcommand.empty()) {
    out << ".B trawl\n[\\fIOPTIONS\\fR] \\fISUBCOMMAND\\fR [\\fIOPTIONS\\fR]\n";
  } else {
    const auto subs = visible_subcommands(*app);
    if (subs.empty()) {
      out << ".B trawl " << roff(subcommand) << "\n[\\fIOPTIONS\\fR]";
      for (const CLI::Option* opt : app->get_options())
        if (opt->get_positional()) out << " \\fI" << roff(opt->get_name(true)) << "\\fR";
      out << "\n";
    }
    for (const CLI::App* s : subs) {
      out << ".br\n.B trawl " << roff(subcommand + " " + s->get_name()) << "\n[\\fIOPTIONS\\fR]";
      for (const CLI::Option* opt : s->get_options())
        if (opt->get_positional()) out << " \\fI" << roff(opt->get_name(true)) << "\\fR";
      out << "\n";
    }
  }

  out << ".SH DESCRIPTION\n" << roff(app->get_description()) << "\n";
  if (subcommand.empty()) {
    out << ".SH COMMANDS\n";
    for (const CLI::App* s : visible_subcommands(cli.app))
      out << ".TP\n\\fB" << roff(s->get_name()) << "\\fR\n" << roff(s->get_description())
          << "\nSee \\fB" << roff(page_name(s->get_name())) << "\\fR(1).\n";
  }

  const bool actor = subcommand.empty() || app->get_parent() == &cli.app;
  out << ".SH OPTIONS\n";
  write_options(out, subcommand.empty() ? nullptr : app, app->get_options(), actor);
  for (const CLI::App* s : visible_subcommands(*app)) {
    if (subcommand.empty()) break;
    out << ".SS " << roff(subcommand + " " + s->get_name()) << "\n" << roff(s->get_description()) << "\n";
    write_options(out, s, s->get_options(), false);
  }
  if (!subcommand.empty()) {
    out << ".SS Common options\n"
        << roff("Accepted before or after the subcommand:") << "\n";
    std::vector<const CLI::Option*> common;
    for (const CLI::Option* opt : cli.app.get_options())
      if (!opt->get_lnames().empty() && opt->get_lnames().front() != "help" &&
          opt->get_lnames().front() != "version")
        common.push_back(opt);
    write_options(out, nullptr, common, true);
  }

  out << ".SH ENVIRONMENT\n"
      << roff("Every flag of fetch, vent, download and sink can be set by the variable "
              "TRAWL_<SUBCOMMAND>_<FLAG>: the long flag name in capitals, dashes as underscores "
              "(TRAWL_DOWNLOAD_CONCURRENCY=32, TRAWL_SINK_PROGRESS=lines); TRAWL_VERBOSE and "
              "TRAWL_QUIET for -v and -q. A repeatable flag takes a list as [a,b]. Each option "
              "above names its variable. SPDLOG_LEVEL sets the log level; IMGUR_CLIENT_ID is sent "
              "by fetch to the Imgur API.")
      << "\n";
  write_common_tail(out, subcommand);
  return out.str();
}

std::string render_bash_completion(const Cli& cli) {
  // Completion of a flag's value: choices from a "{a,b}" or "a|b" type name, directories for
  // --out, file names for files; nothing for endpoints and numbers.
  auto value_words = [](const CLI::Option* opt) -> std::string {
    const std::string type = opt->get_type_name();
    const std::string flag = opt->get_lnames().empty() ? "" : opt->get_lnames().front();
    const auto open = type.find('{');
    const auto close = type.find('}', open == std::string::npos ? 0 : open);
    std::string choices;
    if (open != std::string::npos && close != std::string::npos)
      choices = type.substr(open + 1, close - open - 1);
    else if (type.find('|') != std::string::npos && type.find(' ') == std::string::npos)
      choices = type;
    if (!choices.empty()) {
      for (char& c : choices)
        if (c == ',' || c == '|') c = ' ';
      return "COMPREPLY=($(compgen -W '" + choices + "' -- \"$cur\"))";
    }
    if (flag == "out") return "COMPREPLY=($(compgen -d -- \"$cur\"))";
    if (flag == "source" || flag == "config" || flag == "ready-file")
      return "COMPREPLY=($(compgen -f -- \"$cur\"))";
    return "COMPREPLY=()";
  };
  auto flags_of = [](const CLI::App& app, std::vector<std::string>& words) {
    for (const CLI::Option* opt : app.get_options()) {
      if (!visible(opt)) continue;
      for (const auto& s : opt->get_snames()) words.push_back("-" + s);
      for (const auto& l : opt->get_lnames()) words.push_back("--" + l);
    }
  };
  auto join = [](const std::vector<std::string>& words) {
    std::string s;
    for (const auto& w : words) s += (s.empty() ? "" : " ") + w;
    return s;
  };

  std::vector<std::string> top_flags;
  flags_of(cli.app, top_flags);
  std::vector<std::string> top_subs;
  for (const CLI::App* s : visible_subcommands(cli.app)) top_subs.push_back(s->get_name());

  std::ostringstream out;
  out << "# bash completion for trawl. Generated by `trawl completion bash` from the same tree as\n"
         "# --help; do not edit. Needs no bash-completion helpers.\n"
         "_trawl() {\n"
         "  local cur=\"${COMP_WORDS[COMP_CWORD]}\" prev=\"\" path=\"\" i w\n"
         "  [ \"$COMP_CWORD\" -gt 0 ] && prev=\"${COMP_WORDS[COMP_CWORD-1]}\"\n"
         "  # The subcommand path so far (\"download\", \"config check\").\n"
         "  for ((i = 1; i < COMP_CWORD; i++)); do\n"
         "    w=\"${COMP_WORDS[i]}\"\n"
         "    case \"$path:$w\" in\n";
  std::vector<std::pair<std::string, const CLI::App*>> paths{{"", &cli.app}};
  for (const CLI::App* s : visible_subcommands(cli.app)) {
    paths.emplace_back(s->get_name(), s);
    out << "      :" << s->get_name() << ") path=" << s->get_name() << " ;;\n";
    for (const CLI::App* s2 : visible_subcommands(*s)) {
      paths.emplace_back(s->get_name() + " " + s2->get_name(), s2);
      out << "      " << s->get_name() << ":" << s2->get_name() << ") path=\"" << s->get_name() << " "
          << s2->get_name() << "\" ;;\n";
    }
  }
  out << "    esac\n"
         "  done\n"
         "  # The value of the flag just typed.\n"
         "  case \"$prev\" in\n";
  // Top-level flags with values are accepted after any subcommand (fallthrough).
  for (const CLI::Option* opt : cli.app.get_options()) {
    if (!visible(opt) || opt->get_expected_min() == 0) continue;
    for (const auto& l : opt->get_lnames())
      out << "    --" << l << ") " << value_words(opt) << "; return ;;\n";
  }
  out << "  esac\n"
         "  case \"$path:$prev\" in\n";
  for (const auto& [path, app] : paths) {
    if (app == &cli.app) continue;
    for (const CLI::Option* opt : app->get_options()) {
      if (!visible(opt) || opt->get_expected_min() == 0 || opt->get_positional()) continue;
      std::string names;
      for (const auto& s : opt->get_snames()) names += (names.empty() ? "" : "|") + ("\"" + path + ":-" + s + "\"");
      for (const auto& l : opt->get_lnames()) names += (names.empty() ? "" : "|") + ("\"" + path + ":--" + l + "\"");
      out << "    " << names << ") " << value_words(opt) << "; return ;;\n";
    }
  }
  out << "  esac\n"
         "  local words\n"
         "  case \"$path\" in\n"
      << "    \"\") words=\"" << join(top_subs) << " " << join(top_flags) << "\" ;;\n";
  for (const auto& [path, app] : paths) {
    if (app == &cli.app) continue;
    std::vector<std::string> words;
    for (const CLI::App* s : visible_subcommands(*app)) words.push_back(s->get_name());
    flags_of(*app, words);
    for (const auto& f : top_flags)
      if (f != "-h" && f != "--help" && f != "--version") words.push_back(f);
    bool positional_file = false;
    for (const CLI::Option* opt : app->get_options())
      if (opt->get_positional() && opt->get_name(true) == "FILE") positional_file = true;
    out << "    \"" << path << "\") words=\"" << join(words) << "\"";
    if (positional_file)
      out << "\n      [[ \"$cur\" != -* ]] && { COMPREPLY=($(compgen -f -- \"$cur\")); return; }";
    out << " ;;\n";
  }
  out << "  esac\n"
         "  COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n"
         "}\n"
         "complete -F _trawl trawl\n";
  return out.str();
}

} // namespace trawl::app
