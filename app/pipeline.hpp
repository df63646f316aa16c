// `trawl pipeline`: a whole job on this machine. Starts the ventilator, the fetcher, the sink and
// N downloaders joined by ipc:// endpoints in a run directory, waits for the job, and stops every
// process it started (by PID); exits with the sink's status. launch/pipeline runs it.
//
// The roles are forked from this process, which has already loaded its ~50 shared libraries and
// parsed the command line: a role starts in well under a millisecond instead of the ~7 ms of CPU
// that exec'ing trawl costs (dynamic loading), and the launcher needs no shell, coreutils or
// setsid(1) of its own. With --trawl naming another binary (a wrapper, another build), each role
// is exec'd from it instead.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace trawl::app {

struct PipelineOptions {
  std::string source;
  std::string out;
  int downloaders = 2;
  int concurrency = 64;
  std::vector<std::string> exts;
  std::string progress = "auto";
  std::string state; // default OUT/.trawl
  bool fresh = false;
  std::string report, manifest, failed, html_report;
  int metrics_port = -1; // -1: none
  bool json_progress = false;
  bool quiet = false; // the sink's --quiet: no progress, no summary
  bool monitor = false;
  std::string trawl; // roles exec'd from this binary; empty or this binary: forked
  std::string run_dir;
  std::string listen, advertise;
  std::string tasks_port = "5558", results_port = "5559";
  std::string curve_dir;
  bool insecure = false;
  std::string rusage_log;
  // The sink starts once a downloader has its first transfers under way (or the ventilator
  // has nothing to dispatch), and at the latest this long after the others (app/pipeline.cpp).
  int sink_wait_ms = 250;
  std::vector<std::string> download_flags; // after --
  // Not a flag: set by main from the download flags (with config and environment): the
  // downloaders hash bodies, so OpenSSL's SHA-256 is fetched once before the forks.
  bool downloaders_hash = false;
};

void add_options(CLI::App& cmd, PipelineOptions& o);

// One role, ready to run in a forked child: returns its exit status (main's dispatch).
using RoleRunner = std::function<int()>;

// Prepares one role in the launcher, before its first fork: `args` is a whole trawl command line
// without the program name ("-v", "vent", "--links", ...), `role` its subcommand ("vent"). The
// line is parsed here, where the parser's code and memory are warm, and not in the child, which
// would touch all of it for the first time (in each role, ~3.6 ms of CPU while the others start
// on the same 2 cores). A line refused here gives a runner that returns the refusal's status.
using PrepareRole =
    std::function<RoleRunner(const std::vector<std::string>& args, const std::string& role)>;

// The job. `global` holds the flags that go before every role's subcommand (-v, -q, --config F).
// Returns the exit status: the sink's (0 or 1), 2 bad flags, 3 when a process could not run,
// 130 when interrupted.
int run_pipeline(const PipelineOptions& o, const std::vector<std::string>& global,
                 const PrepareRole& prepare_role);

// What every forked role would otherwise set up for itself (libcurl, the name service; OpenSSL's
// SHA-256 when the downloaders hash bodies), done once by the launcher before it forks. Started on
// a thread of its own at the start of `trawl pipeline`, it runs while the command line is parsed
// (about 1.8 ms of set-up against 1.1-1.7 ms of parsing, one after the other before); run_pipeline
// waits for it before the first fork, or does it then when it was not started. The object waits for
// the thread when it goes (every way out of main that does not fork).
class ForkWarmUp {
public:
  ForkWarmUp() = default;
  ~ForkWarmUp();
  ForkWarmUp(const ForkWarmUp&) = delete;
  ForkWarmUp& operator=(const ForkWarmUp&) = delete;
  void start(); // at most once per process
};

} // namespace trawl::app
