// Helpers for end-to-end tests: child processes owned by RAII handles (spawned with posix_spawn,
// killed by PID and reaped, never by name), ready files that announce a child's endpoints, a
// minimal HTTP GET, temporary directories, and a handle on the trawl-fixture server.
// Tests never sleep to wait for a child: they wait for its ready file or its exit, with a timeout.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace trawl::testsupport {

class Child {
public:
  // Starts argv[0] (searched in PATH when it has no '/') with the current environment plus
  // extra_env ("KEY=VALUE" entries, replacing any inherited KEY). stdout and stderr go to the
  // given files (created or truncated) or are inherited when the path is empty; stdin reads
  // stdin_path, or /dev/null when it is empty. Signal mask and SIGINT/SIGTERM/SIGPIPE
  // dispositions are reset to the defaults in the child.
  // Throws std::system_error when the process cannot be started (e.g. no such program).
  static Child spawn(std::vector<std::string> argv, std::vector<std::string> extra_env = {},
                     std::string stdout_path = "", std::string stderr_path = "",
                     std::string stdin_path = "");

  Child() = default;
  Child(Child&& other) noexcept;
  Child& operator=(Child&& other) noexcept;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  // Sends SIGKILL when the child still runs, then reaps it.
  ~Child();

  pid_t pid() const noexcept { return pid_; }

  // Waits up to `timeout` for the child to exit. Returns its exit code, or 128 + the signal
  // number when a signal ended it; std::nullopt when it still runs after the timeout. Once the
  // child has exited, every later call returns the same status at once.
  std::optional<int> wait_for(std::chrono::milliseconds timeout);

  // Sends `sig` to the child; does nothing once the child has been reaped (its PID may be reused).
  void signal(int sig);

  // True while the child has not exited (reaps it, and records its status, when it has).
  bool running();

  // SIGKILL and reap, if still running. Safe to call more than once.
  void kill_and_reap() noexcept;

private:
  explicit Child(pid_t pid) : pid_(pid) {}
  bool try_reap(bool block) noexcept;

  pid_t pid_ = -1;
  std::optional<int> status_;
};

// Polls every 10 ms until `path` exists, then returns its "key=value" lines as a map. Throws
// std::runtime_error on timeout, or as soon as `watch` (when given) has exited without writing it.
// The writer must create the file atomically (write PATH.tmp, then rename).
std::map<std::string, std::string> wait_ready_file(const std::string& path,
                                                   std::chrono::milliseconds timeout,
                                                   Child* watch = nullptr);

struct HttpResponse {
  int status = 0;
  std::string body;
  std::multimap<std::string, std::string> headers;
};

// GET `url` ("http://host:port/path?query") with extra request headers. Throws
// std::runtime_error when there is no HTTP answer (connection refused, timeout, bad URL).
HttpResponse http_request(const std::string& url,
                          const std::vector<std::pair<std::string, std::string>>& headers = {});

// The body of GET `url`; throws std::runtime_error unless the answer is 200.
std::string http_get(const std::string& url);

// A fresh directory under /tmp, removed with its contents by the destructor (kept when the
// environment has TRAWL_KEEP_TMP set, for debugging). Throws std::system_error when mkdtemp fails.
// A sink and a ventilator (`trawl`, the binary under test) on ipc endpoints in `dir`, each
// started and ready: the sink's stdout in dir/sink.out, their stderr in dir/sink.err and
// dir/vent.err, the ledger in dir/state.
struct Broker {
  std::string links, tasks, acks, results;
  Child sink, vent;
};
Broker start_broker(const std::string& trawl, const std::string& dir);

class TempDir {
public:
  explicit TempDir(const std::string& prefix = "trawl-test");
  TempDir(TempDir&& other) noexcept;
  TempDir& operator=(TempDir&& other) noexcept;
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir();

  const std::string& path() const noexcept { return path_; }
  // path() + "/" + name
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

private:
  void remove() noexcept;
  std::string path_;
};

// The whole content of a file; throws std::runtime_error when it cannot be read.
std::string read_file(const std::string& path);

// How many times `what` occurs in `text` (overlapping occurrences count: a log's marker lines).
std::size_t count_of(std::string_view text, std::string_view what);

// True when a process with this PID exists (a zombie not yet reaped counts as alive).
bool pid_alive(pid_t pid);

// A process as /proc shows it: "S do_epoll_wait" (state, then the kernel function it sleeps in;
// "R" alone while it runs), or "gone" when there is no such process.
std::string proc_state(pid_t pid);

// For a launch/pipeline run that did not finish in time: finds out what it was doing, then stops
// it. Reads RUN_DIR/pids ("NAME PID" per line) and keeps the processes that are still children of
// `pipeline` (a PID reused since is left alone); asks each for its status line (SIGUSR1: the
// ventilator, the sink and the downloaders log one), waits `settle`, then SIGKILLs them and the
// pipeline, by PID, and reaps the pipeline. Returns the failure message, its first lines first:
//   "<what>; still running: pipeline PID S do_wait, vent PID S ..., ...; not running: fetch PID
//   (gone)"
//   the latest status line of each (from `stderr_path`), in the order of RUN_DIR/pids
//   "--- last N lines of <stderr_path> ---" and those lines.
std::string stop_hung_pipeline(Child& pipeline, const std::string& what, const std::string& run_dir,
                               const std::string& stderr_path,
                               std::chrono::milliseconds settle = std::chrono::milliseconds(500),
                               std::size_t tail_lines = 60);

// The trawl-fixture executable built with the project (TRAWL_FIXTURE_BIN).
std::string fixture_bin();

// A running trawl-fixture on 127.0.0.1 with a free port: started with `args` (e.g.
// {"--delay-ms", "50"}), its ready file and logs in its own TempDir. Stopped with SIGTERM by
// stop() or by the destructor (SIGKILL if it does not stop within 5 s).
// start() throws std::runtime_error when it is not ready within `timeout`.
class FixtureServer {
public:
  static FixtureServer start(const std::vector<std::string>& args = {},
                             std::chrono::milliseconds timeout = std::chrono::seconds(10));
  FixtureServer(FixtureServer&&) noexcept = default;
  FixtureServer& operator=(FixtureServer&&) noexcept = default;
  ~FixtureServer();

  const std::string& url() const noexcept { return url_; }  // "http://127.0.0.1:PORT"
  int port() const noexcept { return port_; }
  Child& child() noexcept { return child_; }
  std::string log_path() const { return dir_ / "fixture.log"; }

  // SIGTERM, then wait; returns the exit status (nullopt if it did not exit within timeout).
  std::optional<int> stop(std::chrono::milliseconds timeout = std::chrono::seconds(5));

private:
  FixtureServer() = default;
  TempDir dir_;
  Child child_;
  std::string url_;
  int port_ = 0;
};

} // namespace trawl::testsupport
