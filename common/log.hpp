// Logging for every actor: spdlog to stderr, never stdout (stdout carries only the summary).
#pragma once

#include <string>

namespace trawl {

// verbosity: 0 = info (default), >0 more (-v debug, -vv trace), <0 less (-q warn, -qq error).
// SPDLOG_LEVEL in the environment, when set, wins over verbosity.
void setup_logging(const std::string& actor, int verbosity);

// Ends the process with `code` once stdout, stderr and the logs are flushed, without the exit
// handlers and static destructors of the libraries (OpenSSL's, libcurl's, the allocator's): they
// only free memory the kernel takes back anyway, and took 1.0-1.5 ms of each process's exit at
// the end of every job (uprobes, classic job), which the launcher and so the user wait for.
// Everything a process writes is written and closed by its actor before it returns. A
// sanitizer build exits normally, so that LeakSanitizer still checks at exit.
[[noreturn]] void exit_process(int code);

// Whether exit_process ends the process at once (_exit), so that a role with nothing left to
// deliver may call it in the middle of its work, its threads still running, instead of tearing
// down: not in a sanitizer build, whose exit_process runs the static destructors (std::exit).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool kEndAtOnce = false;
#else
inline constexpr bool kEndAtOnce = true;
#endif

} // namespace trawl
