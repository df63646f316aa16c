#include "common/log.hpp"

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <spdlog/cfg/env.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

namespace trawl {

void setup_logging(const std::string& actor, int verbosity) {
  auto logger = spdlog::stderr_color_mt(actor);
  logger->set_pattern("%H:%M:%S.%e %^%-5l%$ [%n %P] %v");
  spdlog::level::level_enum level = spdlog::level::info;
  if (verbosity >= 2) level = spdlog::level::trace;
  else if (verbosity == 1) level = spdlog::level::debug;
  else if (verbosity == -1) level = spdlog::level::warn;
  else if (verbosity <= -2) level = spdlog::level::err;
  logger->set_level(level);
  spdlog::set_default_logger(logger);
  if (std::getenv("SPDLOG_LEVEL")) spdlog::cfg::load_env_levels();
}

void exit_process(int code) {
  std::cout.flush();
  std::cerr.flush();
  spdlog::shutdown(); // flushes every logger
  std::fflush(nullptr);
  if constexpr (kEndAtOnce) ::_exit(code);
  std::exit(code);
}

} // namespace trawl
