// Documents generated from the command-line tree itself (cli.hpp): the man pages and the bash
// completion script. The build writes them with `trawl manpage [SUB]` and `trawl completion bash`,
// so they list exactly the flags that --help lists.
#pragma once

#include <string>

#include "app/cli.hpp"

namespace trawl::app {

// The man page (roff, man macros) of `trawl` (subcommand "") or of one visible subcommand
// (trawl-fetch(1), ...). Throws std::invalid_argument for an unknown subcommand.
std::string render_man(const Cli& cli, const std::string& subcommand);

// A bash completion script for the subcommands, their flags and the values of some flags.
// Needs no bash-completion helpers.
std::string render_bash_completion(const Cli& cli);

// The subcommands that get a man page of their own, in order.
std::vector<std::string> man_subcommands(const Cli& cli);

} // namespace trawl::app
