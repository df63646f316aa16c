// `trawl pipeline`; see pipeline.hpp.
#include "app/pipeline.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <curl/curl.h>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iostream>
#include <openssl/evp.h>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include "common/curve.hpp"
#include "common/exit_codes.hpp"
#include "common/host.hpp"
#include "common/log.hpp"
#include "common/signals.hpp"
#include "downloader/curl_handles.hpp"
#include "downloader/temp_pool.hpp"

namespace trawl::app {
namespace fs = std::filesystem;

void add_options(CLI::App& cmd, PipelineOptions& o) {
  cmd.add_option("--source", o.source, "Gallery JSON URL, URL-list file, or - for stdin")
      ->required()
      ->type_name("SRC");
  cmd.add_option("--out", o.out, "Directory the files are written to")
      ->required()
      ->type_name("DIR");
  cmd.add_option("--downloaders", o.downloaders, "Downloader processes to start")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  cmd.add_option("-j,--concurrency", o.concurrency, "Concurrent transfers per downloader")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  cmd.add_option("--ext", o.exts, "Keep only links with this extension, e.g. .jpg (repeatable)")
      ->type_name("EXT");
  cmd.add_option("--progress", o.progress, "Sink progress: auto, bar, lines or none")
      ->check(CLI::IsMember({"auto", "bar", "lines", "none"}))
      ->capture_default_str();
  cmd.add_option(
         "--state", o.state,
         "The job's ledger (default OUT/.trawl); the same --out/--state resumes: done links "
         "are skipped without a request, the rest is finished")
      ->type_name("DIR");
  cmd.add_flag("--fresh", o.fresh, "Forget the ledger and start the job over");
  cmd.add_option("--report", o.report,
                 "The sink writes the job's report (JSON, docs/REPORT.md) here")
      ->type_name("FILE");
  cmd.add_option("--manifest", o.manifest,
                 "One row per link of the job (JSON Lines, or CSV for *.csv), also the links "
                 "skipped because an earlier run did them (read from the ledger)")
      ->type_name("FILE");
  cmd.add_option("--failed", o.failed,
                 "The failed links' URLs, one per line (re-run them with --source FILE)")
      ->type_name("FILE");
  cmd.add_option("--html-report", o.html_report, "A self-contained HTML page with plots of the job")
      ->type_name("FILE");
  cmd.add_option("--metrics-port", o.metrics_port,
                 "The sink serves Prometheus metrics on 127.0.0.1:N (0: a free port, logged)")
      ->check(CLI::Range(0, 65535))
      ->type_name("N");
  cmd.add_flag("--json-progress", o.json_progress,
               "stdout: JSON Lines (progress, then the summary as JSON)");
  cmd.add_flag("--quiet", o.quiet,
               "No progress and no summary (the exit status and files still tell)");
  cmd.add_flag("--monitor", o.monitor,
               "The sink publishes its figures on ipc://RUN_DIR/monitor; the command to attach "
               "(`trawl monitor --connect ...`) is printed on stderr");
  cmd.add_option("--trawl", o.trawl,
                 "Exec every process from this binary (e.g. a wrapper). Default, or when it is "
                 "this binary: the processes are forked from this one, which saves each the "
                 "loading of the binary")
      ->type_name("PATH");
  cmd.add_option("--run-dir", o.run_dir,
                 "Where the ipc sockets and the \"pids\" file (NAME PID per line) go (default: a "
                 "fresh temporary directory, removed at the end)")
      ->type_name("DIR");
  cmd.add_option("--listen", o.listen,
                 "Also bind the task and result sockets on tcp://ADDR (e.g. 10.0.0.5 or "
                 "0.0.0.0) so downloaders on other hosts can join (launch/add-node HOST "
                 "--run-dir RUN_DIR); RUN_DIR/endpoints then names them (tasks=, results=, curve=)")
      ->type_name("ADDR");
  cmd.add_option("--advertise", o.advertise,
                 "The address other hosts reach us at (default: ADDR, or this host's name when "
                 "ADDR is a wildcard)")
      ->type_name("HOST");
  cmd.add_option("--tasks-port", o.tasks_port,
                 "The ventilator's tcp task port (* for any free port)")
      ->capture_default_str()
      ->type_name("P");
  cmd.add_option("--results-port", o.results_port,
                 "The sink's tcp result port (* for any free port)")
      ->capture_default_str()
      ->type_name("P");
  cmd.add_option("--curve", o.curve_dir,
                 "CurveZMQ: keys in DIR (made when missing: DIR/server.key, server.pub and "
                 "DIR/authorized/ for the nodes' public keys); every process authenticates and "
                 "encrypts. Needed with a non-loopback --listen unless --insecure")
      ->type_name("DIR");
  cmd.add_flag("--insecure", o.insecure,
               "Bind a non-loopback --listen address without keys (trusted networks only)");
  cmd.add_option("--rusage-log", o.rusage_log,
                 "Append a line per process when it exits: its subcommand (pipeline for this "
                 "one), peak RSS in KB, user and system CPU seconds (for benchmarks)")
      ->type_name("FILE");
  cmd.add_option("--sink-wait-ms", o.sink_wait_ms,
                 "The sink (summary, progress, reports) starts once a downloader has its first "
                 "transfers under way, so that its start-up does not slow theirs, or once the "
                 "ventilator has nothing to dispatch; at the latest this long after the other "
                 "processes")
      ->capture_default_str()
      ->check(CLI::Range(0, 60000));
  cmd.add_option("DOWNLOAD_FLAGS", o.download_flags,
                 "After --: flags for each `trawl download`, e.g. -- --retries 5 --timeout 60");
  cmd.footer(
      "Exit status: the sink's (0 every link done, 1 some failed), 2 bad flags, 3 when a "
      "process could not run, 130 when interrupted. Ctrl-C stops the job gracefully (transfers "
      "in flight finish and are recorded); a second Ctrl-C aborts at once. -v (before or after "
      "`pipeline`) gives every process verbose logs, and TRAWL_<SUBCOMMAND>_<FLAG> variables "
      "reach each process, e.g. TRAWL_VENT_PER_HOST=32.");
}

namespace {

constexpr const char* kTag = "trawl pipeline: ";

struct Proc {
  std::string name; // vent, fetch, sink, download-N
  std::string role; // its subcommand
  pid_t pid = -1;
  bool alive = true;
  bool seen = false; // its exit was looked at by the main loop
  bool termed = false; // sent SIGTERM (a second one would abort it)
  int code = 0;      // exit status, or 128 + signal
};

std::string seconds(const timeval& tv) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", static_cast<double>(tv.tv_sec) + tv.tv_usec / 1e6);
  return buf;
}

// This process's peak resident set since its exec (VmHWM), in KB; -1 when unknown.
long own_peak_rss_kb() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  return -1;
}

class Launcher {
public:
  Launcher(const PipelineOptions& o, std::vector<std::string> global,
           const PrepareRole& prepare_role)
      : o_(o), global_(std::move(global)), prepare_role_(prepare_role) {}

  int run();

private:
  const PipelineOptions& o_;
  std::vector<std::string> global_;
  const PrepareRole& prepare_role_;
  std::string exec_path_; // empty: fork the roles
  std::string run_dir_;
  bool own_run_dir_ = false;
  std::vector<Proc> procs_;
  sigset_t blocked_{}, old_mask_{};
  bool interrupted_ = false;
  bool job_done_ = false; // the sink said every link has its result
  int null_fd_ = -1;
  std::string curve_abs_; // --curve's directory as an absolute path (prepare), or ""
  std::string host_ = host_name();

  Proc* find(pid_t pid) {
    for (auto& p : procs_)
      if (p.pid == pid) return &p;
    return nullptr;
  }
  Proc* by_name(const std::string& name) {
    for (auto& p : procs_)
      if (p.name == name) return &p;
    return nullptr;
  }
  bool alive(const std::string& name) {
    const Proc* p = by_name(name);
    return p != nullptr && p->alive;
  }

  void log_rusage(const std::string& who, const rusage& ru) const {
    if (o_.rusage_log.empty()) return;
    std::ofstream f(o_.rusage_log, std::ios::app);
    f << who << ' ' << ru.ru_maxrss << ' ' << seconds(ru.ru_utime) << ' ' << seconds(ru.ru_stime)
      << '\n';
  }

  // Reaps every child that has exited.
  void reap() {
    for (;;) {
      int st = 0;
      rusage ru{};
      const pid_t pid = ::wait4(-1, &st, WNOHANG, &ru);
      if (pid <= 0) return;
      Proc* p = find(pid);
      if (p == nullptr) continue;
      p->alive = false;
      p->code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      log_rusage(p->role, ru);
    }
  }

  // Waits up to `ms` (negative: for ever) for a child to exit or a signal; reaps; handles
  // INT/TERM. Returns when anything happened or the time is up.
  void wait_event(int ms) {
    reap();
    timespec ts{};
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = static_cast<long>(ms % 1000) * 1000000L;
    siginfo_t info{};
    const int sig =
        ms < 0 ? ::sigwaitinfo(&blocked_, &info) : ::sigtimedwait(&blocked_, &info, &ts);
    on_event(sig, info);
    reap();
    // What a child said before it ended is heard before the caller sees it gone. The sink sends
    // its "job complete" (SIGUSR2) and exits; a reap that found it gone while that signal still
    // waited (the launcher woken by another one, e.g. the ventilator's started word at the
    // job's end, then kept off a core) ended the job with ordinary SIGTERMs to the downloaders
    // and the ventilator, and each took its orderly teardown (seen once in some 170 classic jobs:
    // last response to exit 32 ms, against 21-27 in the six after it; every time with a 30 ms
    // sleep added after that wake-up). Every signal that waits is taken here, after the reap.
    const timespec now{};
    while (true) {
      siginfo_t more{};
      const int next = ::sigtimedwait(&blocked_, &more, &now);
      if (next <= 0) break;
      on_event(next, more);
    }
  }

  void on_event(int sig, const siginfo_t& info) {
    if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) on_signal();
    if (sig == SIGUSR2) on_job_done(info.si_pid);
    if (sig == started_signal()) on_started(info.si_pid);
  }

  // The sink has every result: the downloaders have nothing left to do and stop now, while the
  // sink writes its files (not after the sink has exited: ~3 ms sooner at the end of every job).
  // Their SIGTERM, and the ventilator's (complete: its ledger is committed and its figures
  // reached the sink), says the job is complete, so they end without the orderly teardown
  // (common/signals.hpp, job_complete_stop); a binary that does not know it takes an ordinary
  // SIGTERM.
  void on_job_done(pid_t from) {
    const Proc* sink = by_name("sink");
    if (job_done_ || interrupted_ || sink == nullptr || sink->pid != from) return;
    job_done_ = true;
    signal_all(names_of({"download", "vent"}), SIGTERM, true);
  }

  // A downloader's first transfers are under way (or a result of its waits), or the ventilator
  // has nothing to dispatch: the sink starts now. The first downloader's word is enough: one
  // that gets no task (a job of fewer links than downloaders) never speaks.
  void on_started(pid_t from) {
    const Proc* p = find(from);
    if (p != nullptr && (p->role == "vent" || p->role == "download")) start_later_sink();
  }

  // True once none of `names` is alive; false after `limit`.
  bool wait_gone(std::chrono::milliseconds limit, const std::vector<std::string>& names) {
    const auto until = std::chrono::steady_clock::now() + limit;
    for (;;) {
      bool any = false;
      for (const auto& n : names) any = any || alive(n);
      if (!any) return true;
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          until - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      wait_event(static_cast<int>(std::min<long long>(left.count(), 1000)));
    }
  }

  // `job_complete`: a SIGTERM that says so (send_job_complete_stop), a plain one should that fail.
  void signal_all(const std::vector<std::string>& names, int sig, bool job_complete = false) {
    for (const auto& n : names)
      if (Proc* p = by_name(n); p != nullptr && p->alive && !(sig == SIGTERM && p->termed)) {
        if (!(sig == SIGTERM && job_complete && send_job_complete_stop(p->pid)))
          ::kill(p->pid, sig);
        if (sig == SIGTERM) p->termed = true;
      }
  }

  // The processes of these roles (subcommands).
  std::vector<std::string> names_of(std::initializer_list<std::string_view> roles) const {
    std::vector<std::string> v;
    for (const auto& p : procs_)
      if (std::find(roles.begin(), roles.end(), p.role) != roles.end()) v.push_back(p.name);
    return v;
  }
  std::vector<std::string> others() const { // the fetcher and the downloaders: stopped first
    return names_of({"fetch", "download"});
  }
  std::vector<std::string> all_names() const {
    std::vector<std::string> v;
    for (const auto& p : procs_) v.push_back(p.name);
    return v;
  }

  void cleanup() {
    if (null_fd_ >= 0) ::close(null_fd_);
    null_fd_ = -1;
    if (own_run_dir_) {
      std::error_code ec;
      fs::remove_all(run_dir_, ec);
    }
  }

  [[noreturn]] void abort_now() {
    std::cerr << kTag << "aborting" << std::endl;
    signal_all(all_names(), SIGKILL);
    for (auto& p : procs_)
      if (p.alive) ::waitpid(p.pid, nullptr, 0);
    cleanup();
    std::exit(kExitInterrupted);
  }

  void on_signal() {
    if (interrupted_) abort_now();
    interrupted_ = true;
    std::cerr << kTag
              << "stopping: transfers in flight finish and are recorded (Ctrl-C again to abort)"
              << std::endl;
    // The sink and the ventilator stay to record what the downloaders finish (stop_in_order).
    signal_all(others(), SIGTERM);
  }

  void stop_in_order() {
    using namespace std::chrono_literals;
    if (!wait_gone(15s, others())) signal_all(others(), SIGKILL);
    signal_all({"sink"}, SIGTERM);
    if (!wait_gone(10s, {"sink"})) signal_all({"sink"}, SIGKILL);
    signal_all({"vent"}, SIGTERM);
    if (!wait_gone(10s, {"vent"})) signal_all({"vent"}, SIGKILL);
  }

  // TERM every child still running (once: a second one aborts it), up to 15 s for transfers in
  // flight to finish, then KILL what is left.
  void stop_all() {
    using namespace std::chrono_literals;
    if (!interrupted_) signal_all(all_names(), SIGTERM);
    if (!wait_gone(15s, all_names())) signal_all(all_names(), SIGKILL);
    for (auto& p : procs_)
      if (p.alive) {
        int st = 0;
        rusage ru{};
        if (::wait4(p.pid, &st, 0, &ru) == p.pid) {
          p.alive = false;
          log_rusage(p.role, ru);
        }
      }
  }

  // A role's command line and, when it is forked, its runner, made before any fork (see run).
  struct Planned {
    std::string name;
    std::vector<std::string> full; // global flags, then the role's
    std::string subcommand;
    int stdin_fd = -1;
    RoleRunner runner; // empty: exec'd (--trawl)
  };
  Planned plan(const std::string& name, std::vector<std::string> args, int stdin_fd);
  void start(Planned& p);
  // The sink, planned and not started yet (see run), and when it starts without the
  // ventilator's word.
  std::optional<Planned> later_sink_;
  std::chrono::steady_clock::time_point sink_due_{};
  bool sink_failed_ = false; // its fork failed
  void start_later_sink();
  bool prepare(std::vector<std::string>& server_curve, std::vector<std::string>& client_curve);
  std::optional<int> wait_for_listen();
  void sweep_after_downloaders();
  int wait_job();
};

// What each forked process would otherwise do again for itself, done once before the forks:
// libcurl's global set-up (the fetcher and every downloader; with the allocation functions that
// let a downloader note its receive buffers, downloader/recv_prefault.hpp) and the name-service
// set-up behind libzmq's getprotobyname("pgm") in zmq_ctx_new (nsswitch.conf, then a library
// looked for in some 40 places). Uprobes on a classic job (2 runs each): zmq_ctx_new took 8.2-9.4
// ms in the 5 processes, 2.0-3.2 ms after; curl_global_init 0.4-0.6 ms, 0.3 after.
void warm_up_for_forks() {
  try {
    trawl::downloader::curl_global_once();        // the roles' own calls only count
  } catch (const trawl::downloader::CurlError&) { // a role that needs libcurl reports it
  }
  ::getprotobyname("pgm");
}

// OpenSSL's first fetch of SHA-256, which every downloader that hashes bodies makes (2.4 ms in
// each, 1.0 ms in the launcher alone): only when they hash (not by default), after the join, so
// that a job without it does not wait for it before its first fork (0.4-0.7 ms under uprobes).
void warm_up_sha256() { EVP_MD_free(EVP_MD_fetch(nullptr, "SHA256", nullptr)); }

// ForkWarmUp::start's thread, joined by wait_warm_up or ~ForkWarmUp. Never destroyed: a process
// that ends through std::exit before either (a refused command line, in a sanitizer build) must
// not meet a joinable std::thread's destructor, which would abort it.
std::thread* g_warm_up = nullptr;

void join_warm_up() {
  if (g_warm_up != nullptr && g_warm_up->joinable()) g_warm_up->join();
}

// Before the first fork: the set-up is done, by the thread (joined) or here.
void wait_warm_up() {
  if (g_warm_up != nullptr) join_warm_up();
  else warm_up_for_forks();
}

Launcher::Planned Launcher::plan(const std::string& name, std::vector<std::string> args,
                                 int stdin_fd) {
  Planned p{name, global_, args.front(), stdin_fd, {}};
  p.full.insert(p.full.end(), args.begin(), args.end());
  // Parsed here (see PrepareRole); a role exec'd from another binary parses its own.
  if (exec_path_.empty()) p.runner = prepare_role_(p.full, p.subcommand);
  return p;
}

void Launcher::start(Planned& p) {
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) throw std::system_error(errno, std::generic_category(), "fork");
  if (pid == 0) {
    // A terminal's Ctrl-C reaches the launcher alone, which stops the processes in order.
    ::setsid();
    if (p.stdin_fd != STDIN_FILENO) ::dup2(p.stdin_fd, STDIN_FILENO);
    if (null_fd_ >= 0 && null_fd_ != STDIN_FILENO) ::close(null_fd_);
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) std::signal(sig, SIG_DFL);
    ::sigprocmask(SIG_SETMASK, &old_mask_, nullptr);
    if (!exec_path_.empty()) {
      std::vector<char*> argv;
      argv.push_back(exec_path_.data());
      for (auto& a : p.full) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(exec_path_.c_str(), argv.data());
      std::fprintf(stderr, "trawl pipeline: cannot run %s: %s\n", exec_path_.c_str(),
                   std::strerror(errno));
      ::_exit(127);
    }
    exit_process(p.runner());
  }
  procs_.push_back(Proc{p.name, p.subcommand, pid});
  std::ofstream(run_dir_ + "/pids", std::ios::app) << p.name << ' ' << pid << '\n';
}

void Launcher::start_later_sink() {
  if (!later_sink_) return;
  Planned p = std::move(*later_sink_);
  later_sink_.reset();
  try {
    start(p);
  } catch (const std::exception& e) {
    std::cerr << kTag << e.what() << std::endl;
    sink_failed_ = true;
  }
}

// The curve keys (made when missing) and the flags that name them.
bool Launcher::prepare(std::vector<std::string>& server_curve,
                       std::vector<std::string>& client_curve) {
  if (o_.curve_dir.empty()) return true;
  try {
    const fs::path dir(o_.curve_dir);
    if (!fs::exists(dir / "server.key")) {
      fs::create_directories(dir);
      fs::permissions(dir, fs::perms::owner_all);
      write_keypair(generate_keypair(), (dir / "server").string(), false);
    }
    fs::create_directories(dir / "authorized");
    curve_abs_ = fs::absolute(dir).lexically_normal().string();
    server_curve = {"--curve-secret", curve_abs_ + "/server.key", "--curve-authorized",
                    curve_abs_ + "/authorized"};
    // Our own processes share the server's pair: a server always admits its own key.
    client_curve = {"--curve-secret", curve_abs_ + "/server.key", "--curve-server",
                    curve_abs_ + "/server.pub"};
    return true;
  } catch (const std::exception& e) {
    std::cerr << kTag << "cannot make keys in " << o_.curve_dir << ": " << e.what() << std::endl;
    return false;
  }
}

std::string first_line_with(const std::string& path, const std::string& prefix) {
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(prefix, 0) == 0) return line.substr(prefix.size());
  return "";
}

// With --listen: waits for the tcp endpoints the ventilator and the sink bound (a port may be *)
// and writes RUN_DIR/endpoints, as other hosts must name them. Returns an exit status on failure.
std::optional<int> Launcher::wait_for_listen() {
  const std::string vent_ready = run_dir_ + "/vent.ready", sink_ready = run_dir_ + "/sink.ready";
  const auto nonempty = [](const std::string& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 && st.st_size > 0;
  };
  for (int i = 0; i < 200 && !interrupted_; ++i) {
    if (nonempty(vent_ready) && nonempty(sink_ready)) break;
    if (!alive("vent") || !alive("sink")) break;
    wait_event(50);
  }
  const std::string tasks = first_line_with(vent_ready, "tasks=tcp:");
  const std::string results = first_line_with(sink_ready, "results=tcp:");
  if (tasks.empty() || results.empty()) {
    std::cerr << kTag << "the ventilator or the sink could not listen on " << o_.listen
              << " (see above)" << std::endl;
    return kExitFatal;
  }
  std::string advertise = o_.advertise;
  if (advertise.empty()) {
    const bool wildcard =
        o_.listen == "*" || o_.listen == "0.0.0.0" || o_.listen == "::" || o_.listen == "[::]";
    advertise = wildcard ? host_ : o_.listen;
  }
  const auto port = [](const std::string& ep) { return ep.substr(ep.rfind(':') + 1); };
  {
    std::ofstream f(run_dir_ + "/endpoints.tmp");
    f << "tasks=tcp://" << advertise << ':' << port(tasks) << "\n"
      << "results=tcp://" << advertise << ':' << port(results) << "\n";
    if (!curve_abs_.empty()) f << "curve=" << curve_abs_ << "\n";
  }
  fs::rename(run_dir_ + "/endpoints.tmp", run_dir_ + "/endpoints");
  std::cerr << kTag << "nodes on other hosts can join: launch/add-node HOST --run-dir " << run_dir_
            << std::endl;
  return std::nullopt;
}

// The downloaders forked here do not look for their dead siblings' temporary files at exit
// (--no-exit-sweep): each read all of --out (6-7 ms for 20,000 files on tmpfs), and the job ended
// when the slower had (last file to the launcher's exit, 6 alternating runs: median 24.6 ms, 13.7
// without). With every downloader gone, one sweep here, only when one of them did not end
// normally (a killed downloader leaves its named parts behind).
void Launcher::sweep_after_downloaders() {
  if (!exec_path_.empty()) return; // they swept themselves
  const bool all_fine = std::all_of(procs_.begin(), procs_.end(), [](const Proc& p) {
    return p.role != "download" || (!p.alive && p.code == 0);
  });
  if (all_fine) return;
  if (const std::size_t removed = downloader::remove_stale_parts(o_.out); removed > 0)
    std::cerr << kTag << "removed " << removed << " temporary files of stopped downloaders in "
              << o_.out << std::endl;
}

// Waits for the sink; a fetcher, ventilator or every downloader failing ends the job early.
// Returns the status so far (-1: none).
int Launcher::wait_job() {
  int live_downloaders = o_.downloaders;
  for (;;) {
    if (interrupted_) return -1;
    if (later_sink_ && std::chrono::steady_clock::now() >= sink_due_) start_later_sink();
    if (sink_failed_) return kExitFatal;
    for (auto& p : procs_) {
      if (p.alive || p.seen) continue;
      p.seen = true;
      if (p.role == "sink") {
        if (p.code > 1 && !interrupted_)
          std::cerr << kTag << "the sink failed (exit " << p.code << "); stopping the job"
                    << std::endl;
        return p.code;
      }
      if (p.role == "fetch") {
        if (p.code != 0 && !interrupted_) {
          std::cerr << kTag << "the fetcher failed (exit " << p.code << "); stopping the job"
                    << std::endl;
          return p.code;
        }
        continue;
      }
      if (p.role == "vent") {
        if (p.code != 0 && !interrupted_) {
          std::cerr << kTag << "the ventilator failed (exit " << p.code << "); stopping the job"
                    << std::endl;
          return kExitFatal;
        }
        continue;
      }
      --live_downloaders;
      if (!interrupted_ && !job_done_) {
        std::cerr << kTag << "a downloader exited (status " << p.code << ")" << std::endl;
        if (live_downloaders <= 0) {
          std::cerr << kTag << "no downloader left; stopping the job" << std::endl;
          return kExitFatal;
        }
      }
    }
    bool any = false;
    for (const auto& p : procs_) any = any || p.alive;
    if (!any) return -1;
    int wait_ms = 1000;
    if (later_sink_)
      wait_ms = static_cast<int>(std::clamp<long long>(
          std::chrono::ceil<std::chrono::milliseconds>(sink_due_ - std::chrono::steady_clock::now())
              .count(),
          0, wait_ms));
    wait_event(wait_ms);
  }
}

int Launcher::run() {
  // The binary: forked from this one unless --trawl names another.
  if (!o_.trawl.empty()) {
    std::error_code ec;
    if (!fs::equivalent(o_.trawl, "/proc/self/exe", ec)) {
      if (::access(o_.trawl.c_str(), X_OK) != 0) {
        std::cerr << kTag << "--trawl " << o_.trawl << ": not an executable file" << std::endl;
        return kExitFatal;
      }
      exec_path_ = o_.trawl;
    }
  }
  const std::string state = o_.state.empty() ? o_.out + "/.trawl" : o_.state;
  if (o_.run_dir.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    std::string templ =
        std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/trawl-run.XXXXXX";
    if (::mkdtemp(templ.data()) == nullptr) {
      std::cerr << kTag << "cannot make a run directory " << templ << ": " << std::strerror(errno)
                << std::endl;
      return kExitFatal;
    }
    run_dir_ = templ;
    own_run_dir_ = true;
  } else {
    run_dir_ = o_.run_dir;
  }
  try {
    fs::create_directories(run_dir_);
    fs::create_directories(o_.out);
    std::ofstream pids(run_dir_ + "/pids", std::ios::trunc);
    if (!pids) throw std::runtime_error("cannot write " + run_dir_ + "/pids");
  } catch (const std::exception& e) {
    std::cerr << kTag << e.what() << std::endl;
    cleanup();
    return kExitFatal;
  }
  std::vector<std::string> server_curve, client_curve;
  if (!prepare(server_curve, client_curve)) {
    cleanup();
    return kExitFatal;
  }
  null_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);

  const std::string links = "ipc://" + run_dir_ + "/links", tasks = "ipc://" + run_dir_ + "/tasks",
                    results = "ipc://" + run_dir_ + "/results",
                    acks = "ipc://" + run_dir_ + "/acks";
  std::vector<std::string> tasks_binds{"--bind", tasks}, results_binds{"--bind", results};
  if (!o_.listen.empty()) {
    const std::string host =
        o_.listen.find(':') != std::string::npos ? "[" + o_.listen + "]" : o_.listen;
    tasks_binds.insert(tasks_binds.end(), {"--bind", "tcp://" + host + ":" + o_.tasks_port,
                                           "--ready-file", run_dir_ + "/vent.ready"});
    results_binds.insert(results_binds.end(), {"--bind", "tcp://" + host + ":" + o_.results_port,
                                               "--ready-file", run_dir_ + "/sink.ready"});
  }
  std::vector<std::string> sink_extra;
  for (const auto& [flag, value] : {std::pair{"--report", &o_.report},
                                    {"--manifest", &o_.manifest},
                                    {"--failed", &o_.failed},
                                    {"--html-report", &o_.html_report}})
    if (!value->empty()) sink_extra.insert(sink_extra.end(), {flag, *value});
  if (o_.metrics_port >= 0)
    sink_extra.insert(sink_extra.end(), {"--metrics-port", std::to_string(o_.metrics_port)});
  if (o_.json_progress) sink_extra.emplace_back("--json-progress");
  if (o_.quiet) sink_extra.emplace_back("--quiet");
  if (o_.monitor) {
    sink_extra.insert(sink_extra.end(), {"--monitor", "ipc://" + run_dir_ + "/monitor"});
    std::cerr << kTag << "watch the job with: trawl monitor --connect ipc://" << run_dir_
              << "/monitor" << std::endl;
  }
  const auto with = [](std::vector<std::string> v, const std::vector<std::string>& more) {
    v.insert(v.end(), more.begin(), more.end());
    return v;
  };
  std::vector<std::string> insecure;
  if (o_.insecure) insecure.emplace_back("--insecure");

  // Signals come to this thread through sigtimedwait; the children restore the old mask.
  std::signal(SIGCHLD, SIG_DFL); // inherited SIG_IGN would reap the children before us
  sigemptyset(&blocked_);
  for (int sig : {SIGCHLD, SIGINT, SIGTERM, SIGHUP, SIGUSR2, started_signal()})
    sigaddset(&blocked_, sig);
  ::sigprocmask(SIG_BLOCK, &blocked_, &old_mask_);

  if (exec_path_.empty()) {
    wait_warm_up();
    if (o_.downloaders_hash) warm_up_sha256();
  }

  // Start-up order is the job's critical path: the ventilator binds, the fetcher's first request
  // leaves while the downloaders, then the sink, start (ZeroMQ queues what a process sends before
  // its peer is up). A run id of our own: a ventilator restarted with these flags continues it.
  const std::string run_id = std::to_string(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                std::chrono::system_clock::now().time_since_epoch())
                                                .count()) +
                             "-" + std::to_string(::getpid());
  try {
    // Every command line is made, and parsed, before the first fork: after a fork each page the
    // launcher writes costs it a copy (its pages are shared with the child until then).
    std::vector<std::string> vent{"vent", "--links", links};
    vent = with(vent, tasks_binds);
    vent = with(vent, {"--acks", acks, "--sink", results, "--state", state, "--run-id", run_id,
                       "--expect-downloaders", std::to_string(o_.downloaders)});
    if (o_.fresh) vent.emplace_back("--fresh");
    // Its word, or the downloaders', starts the sink (below); another binary (--trawl) may not
    // know the flag.
    const std::string self = std::to_string(::getpid());
    if (exec_path_.empty()) vent.insert(vent.end(), {"--notify-pid", self});
    Planned vent_role = plan("vent", with(with(vent, server_curve), insecure), null_fd_);
    // Only the fetcher reads our stdin (for --source -).
    std::vector<std::string> fetch{"fetch", "--source", o_.source, "--connect", links};
    for (const auto& e : o_.exts) fetch.insert(fetch.end(), {"--ext", e});
    Planned fetch_role =
        plan("fetch", with(fetch, client_curve), o_.source == "-" ? STDIN_FILENO : null_fd_);
    std::vector<std::string> sink{"sink"};
    sink = with(sink, results_binds);
    sink = with(sink, {"--acks", acks, "--progress", o_.progress, "--ledger",
                       state + "/ledger.sqlite", "--notify-pid", std::to_string(::getpid())});
    Planned sink_role =
        plan("sink", with(with(with(sink, sink_extra), server_curve), insecure), null_fd_);
    std::vector<Planned> downloader_roles;
    for (int n = 1; n <= o_.downloaders; ++n) {
      std::vector<std::string> dl{"download",
                                  "--connect",
                                  tasks,
                                  "--sink",
                                  results,
                                  "--out",
                                  o_.out,
                                  "-j",
                                  std::to_string(o_.concurrency),
                                  "--node",
                                  host_ + "-d" + std::to_string(n)};
      // Their temporary files left by a dead one are swept here, once, after the job (below);
      // another binary (--trawl) may not know the flag.
      if (exec_path_.empty()) dl.insert(dl.end(), {"--no-exit-sweep", "--notify-pid", self});
      downloader_roles.push_back(plan("download-" + std::to_string(n),
                                      with(with(dl, client_curve), o_.download_flags), null_fd_));
    }
    start(vent_role);
    start(fetch_role);
    // The sink last (unless --listen, which writes its endpoint for other hosts before our
    // downloaders start): it has nothing to do before the first transfers end, while the
    // fetcher, the ventilator and the downloaders are the first request's path. The processes
    // starting together share the cores and the kernel picks who waits (in one traced job the
    // fetcher, forked second, set up its log last, 32 ms after its fork with 6.7 ms of CPU: it
    // had waited ~25 ms for a core). Forked after them, the sink still took ~10 ms of CPU while
    // they set up (uprobes: its log set up 46-63 ms after launch, the first transfer added at
    // 63-79), and forked at the ventilator's first dispatch it took them from the downloader's
    // first transfers (no gain). So it starts once a downloader has its first transfers under
    // way or the ventilator has nothing to dispatch (on_started), or after --sink-wait-ms. What
    // is sent to it meanwhile waits in the senders, whose connections are tried again every
    // 2-20 ms (common/zmq_util.cpp).
    if (o_.listen.empty()) {
      for (auto& d : downloader_roles) start(d);
      if (exec_path_.empty()) {
        later_sink_ = std::move(sink_role);
        sink_due_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(o_.sink_wait_ms);
      } else {
        start(sink_role);
      }
    } else {
      start(sink_role);
      if (const auto failed = wait_for_listen()) {
        signal_all(all_names(), SIGTERM);
        stop_all();
        cleanup();
        return *failed;
      }
      for (auto& d : downloader_roles) start(d);
    }
  } catch (const std::exception& e) {
    std::cerr << kTag << e.what() << std::endl;
    stop_all();
    cleanup();
    return kExitFatal;
  }

  int status = wait_job();
  if (interrupted_) {
    stop_in_order();
    const Proc* sink = by_name("sink");
    status = sink != nullptr && !sink->alive && (sink->code == 0 || sink->code == 1)
                 ? sink->code
                 : kExitInterrupted;
  }
  stop_all();
  sweep_after_downloaders();
  cleanup();
  rusage self{};
  ::getrusage(RUSAGE_SELF, &self);
  // Not ru_maxrss: it keeps the peak of the process image before exec, and the shell or
  // benchmark that forked us may have been large (a bench/run parent gave 332 MB). VmHWM is
  // this image's own.
  if (const long kb = own_peak_rss_kb(); kb >= 0) self.ru_maxrss = kb;
  log_rusage("pipeline", self);
  return status < 0 ? kExitFatal : status;
}

} // namespace

void ForkWarmUp::start() {
  if (g_warm_up != nullptr) return;
  try {
    g_warm_up = new std::thread(warm_up_for_forks);
  } catch (const std::exception&) { // no thread: run_pipeline does it itself
  }
}

ForkWarmUp::~ForkWarmUp() { join_warm_up(); }

int run_pipeline(const PipelineOptions& o, const std::vector<std::string>& global,
                 const PrepareRole& prepare_role) {
  Launcher launcher(o, global, prepare_role);
  return launcher.run();
}

} // namespace trawl::app
