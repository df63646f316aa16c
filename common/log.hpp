// Logging for every actor: spdlog to stderr, never stdout (stdout carries only the summary).
#pragma once

#include <string>

namespace trawl {

// verbosity: 0 = info (default), >0 more (-v debug, -vv trace), <0 less (-q warn, -qq error).
// SPDLOG_LEVEL in the environment, when set, wins over verbosity.
void setup_logging(const std::string& actor, int verbosity);

} // namespace trawl
