#include "tests/support/process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <httplib.h>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>

extern char** environ;

namespace trawl::testsupport {
namespace {

// posix_spawn's C objects, destroyed whatever happens.
class SpawnActions {
public:
  SpawnActions() { check(posix_spawn_file_actions_init(&actions_), "file_actions_init"); }
  ~SpawnActions() { posix_spawn_file_actions_destroy(&actions_); }
  SpawnActions(const SpawnActions&) = delete;
  SpawnActions& operator=(const SpawnActions&) = delete;

  void open(int fd, const std::string& path, int flags) {
    check(posix_spawn_file_actions_addopen(&actions_, fd, path.c_str(), flags, 0644),
          "file_actions_addopen " + path);
  }
  posix_spawn_file_actions_t* get() noexcept { return &actions_; }

  static void check(int rc, const std::string& what) {
    if (rc != 0) {
      throw std::system_error(rc, std::generic_category(), "posix_spawn: " + what);
    }
  }

private:
  posix_spawn_file_actions_t actions_{};
};

class SpawnAttr {
public:
  SpawnAttr() { SpawnActions::check(posix_spawnattr_init(&attr_), "attr_init"); }
  ~SpawnAttr() { posix_spawnattr_destroy(&attr_); }
  SpawnAttr(const SpawnAttr&) = delete;
  SpawnAttr& operator=(const SpawnAttr&) = delete;
  posix_spawnattr_t* get() noexcept { return &attr_; }

private:
  posix_spawnattr_t attr_{};
};

std::string env_key(const std::string& entry) { return entry.substr(0, entry.find('=')); }

int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

} // namespace

Child Child::spawn(std::vector<std::string> argv, std::vector<std::string> extra_env,
                   std::string stdout_path, std::string stderr_path, std::string stdin_path) {
  if (argv.empty()) {
    throw std::invalid_argument("Child::spawn: empty argv");
  }

  // Environment: the inherited one minus the keys extra_env replaces, then extra_env.
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string entry(*e);
    bool replaced = false;
    for (const auto& x : extra_env) {
      replaced = replaced || env_key(x) == env_key(entry);
    }
    if (!replaced) env.push_back(entry);
  }
  env.insert(env.end(), extra_env.begin(), extra_env.end());

  std::vector<char*> c_argv;
  for (auto& a : argv) c_argv.push_back(a.data());
  c_argv.push_back(nullptr);
  std::vector<char*> c_env;
  for (auto& e : env) c_env.push_back(e.data());
  c_env.push_back(nullptr);

  SpawnActions actions;
  actions.open(STDIN_FILENO, stdin_path.empty() ? "/dev/null" : stdin_path, O_RDONLY);
  if (!stdout_path.empty()) {
    actions.open(STDOUT_FILENO, stdout_path, O_WRONLY | O_CREAT | O_TRUNC);
  }
  if (!stderr_path.empty()) {
    actions.open(STDERR_FILENO, stderr_path, O_WRONLY | O_CREAT | O_TRUNC);
  }

  // The test runner may block or ignore signals; the child starts with the defaults.
  SpawnAttr attr;
  sigset_t none;
  sigemptyset(&none);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGTERM);
  sigaddset(&defaults, SIGPIPE);
  SpawnActions::check(posix_spawnattr_setsigmask(attr.get(), &none), "setsigmask");
  SpawnActions::check(posix_spawnattr_setsigdefault(attr.get(), &defaults), "setsigdefault");
  SpawnActions::check(
      posix_spawnattr_setflags(attr.get(), POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF),
      "setflags");

  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, c_argv[0], actions.get(), attr.get(), c_argv.data(),
                              c_env.data());
  if (rc != 0) {
    throw std::system_error(rc, std::generic_category(), "cannot start " + argv[0]);
  }
  return Child(pid);
}

Child::Child(Child&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)), status_(std::exchange(other.status_, std::nullopt)) {}

Child& Child::operator=(Child&& other) noexcept {
  if (this != &other) {
    kill_and_reap();
    pid_ = std::exchange(other.pid_, -1);
    status_ = std::exchange(other.status_, std::nullopt);
  }
  return *this;
}

Child::~Child() { kill_and_reap(); }

bool Child::try_reap(bool block) noexcept {
  if (pid_ <= 0 || status_) return true;
  int status = 0;
  for (;;) {
    const pid_t r = ::waitpid(pid_, &status, block ? 0 : WNOHANG);
    if (r == pid_) {
      status_ = decode_status(status);
      return true;
    }
    if (r == 0) return false;
    if (errno == EINTR) continue;
    // ECHILD: someone else reaped it; there is nothing left to wait for.
    status_ = -1;
    return true;
  }
}

std::optional<int> Child::wait_for(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto pause = std::chrono::microseconds(200);
  while (!try_reap(false)) {
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(10000));
  }
  return status_;
}

void Child::signal(int sig) {
  if (pid_ > 0 && !status_) {
    ::kill(pid_, sig);
  }
}

bool Child::running() { return pid_ > 0 && !try_reap(false); }

void Child::kill_and_reap() noexcept {
  if (pid_ > 0 && !status_) {
    ::kill(pid_, SIGKILL);
    try_reap(true);
  }
}

std::map<std::string, std::string> wait_ready_file(const std::string& path,
                                                   std::chrono::milliseconds timeout,
                                                   Child* watch) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    std::ifstream in(path);
    if (in) {
      std::map<std::string, std::string> kv;
      std::string line;
      while (std::getline(in, line)) {
        const auto eq = line.find('=');
        if (eq != std::string::npos) {
          kv[line.substr(0, eq)] = line.substr(eq + 1);
        }
      }
      return kv;
    }
    if (watch != nullptr && !watch->running()) {
      throw std::runtime_error("process " + std::to_string(watch->pid()) +
                               " exited with status " +
                               std::to_string(watch->wait_for(std::chrono::milliseconds(0))
                                                  .value_or(-1)) +
                               " before writing " + path);
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      throw std::runtime_error("timed out waiting for ready file " + path);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

HttpResponse http_request(const std::string& url,
                          const std::vector<std::pair<std::string, std::string>>& headers) {
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string::npos) {
    throw std::runtime_error("http_request: not an absolute URL: " + url);
  }
  const auto path_start = url.find('/', scheme_end + 3);
  const std::string origin = url.substr(0, path_start);
  const std::string path = path_start == std::string::npos ? "/" : url.substr(path_start);

  httplib::Client client(origin);
  client.set_connection_timeout(std::chrono::seconds(5));
  client.set_read_timeout(std::chrono::seconds(30));
  httplib::Headers h;
  for (const auto& [k, v] : headers) h.emplace(k, v);
  auto res = client.Get(path, h);
  if (!res) {
    throw std::runtime_error("GET " + url + " failed: " + httplib::to_string(res.error()));
  }
  HttpResponse out;
  out.status = res->status;
  out.body = std::move(res->body);
  for (const auto& [k, v] : res->headers) out.headers.emplace(k, v);
  return out;
}

std::string http_get(const std::string& url) {
  auto res = http_request(url);
  if (res.status != 200) {
    throw std::runtime_error("GET " + url + " answered " + std::to_string(res.status));
  }
  return std::move(res.body);
}

TempDir::TempDir(const std::string& prefix) {
  std::string templ = "/tmp/" + prefix + "-XXXXXX";
  if (::mkdtemp(templ.data()) == nullptr) {
    throw std::system_error(errno, std::generic_category(), "mkdtemp " + templ);
  }
  path_ = std::move(templ);
}

TempDir::TempDir(TempDir&& other) noexcept : path_(std::exchange(other.path_, std::string())) {}

TempDir& TempDir::operator=(TempDir&& other) noexcept {
  if (this != &other) {
    remove();
    path_ = std::exchange(other.path_, std::string());
  }
  return *this;
}

TempDir::~TempDir() { remove(); }

void TempDir::remove() noexcept {
  if (path_.empty() || std::getenv("TRAWL_KEEP_TMP") != nullptr) return;
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
  path_.clear();
}

std::size_t count_of(std::string_view text, std::string_view what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string_view::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw std::runtime_error("cannot read " + path);
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool pid_alive(pid_t pid) {
  if (pid <= 0) return false;
  return ::kill(pid, 0) == 0 || errno == EPERM;
}

namespace {

struct ProcStat {
  char state = '?';
  pid_t ppid = -1;
};

std::optional<ProcStat> read_stat(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!in || !std::getline(in, line)) return std::nullopt;
  // "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses, the last ')' ends it.
  const auto close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(line.substr(close + 1));
  ProcStat st;
  rest >> st.state >> st.ppid;
  if (!rest) return std::nullopt;
  return st;
}

std::vector<std::string> last_lines(const std::string& text, std::size_t n) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(std::move(line));
  if (lines.size() > n) lines.erase(lines.begin(), lines.end() - static_cast<std::ptrdiff_t>(n));
  return lines;
}

} // namespace

std::string proc_state(pid_t pid) {
  const auto st = read_stat(pid);
  if (!st) return "gone";
  std::string out(1, st->state);
  std::ifstream wchan("/proc/" + std::to_string(pid) + "/wchan");
  std::string fn;
  if (wchan && std::getline(wchan, fn) && !fn.empty() && fn != "0") {
    // "poll_schedule_timeout.constprop.0": the suffix names a compiler's clone, not a place.
    if (const auto dot = fn.find('.'); dot != std::string::npos) fn.resize(dot);
    out += " " + fn;
  }
  return out;
}

std::string stop_hung_pipeline(Child& pipeline, const std::string& what, const std::string& run_dir,
                               const std::string& stderr_path, std::chrono::milliseconds settle,
                               std::size_t tail_lines) {
  const pid_t parent = pipeline.pid();
  const std::string parent_state = proc_state(parent); // before SIGSTOP makes it "T"
  // Stopped, the script neither reaps (so no PID of its children can be reused meanwhile) nor
  // starts or stops anything while we look.
  pipeline.signal(SIGSTOP);
  struct Proc {
    std::string name;
    pid_t pid;
  };
  std::vector<Proc> live;
  std::string gone; // " NAME PID (why)" each
  {
    std::ifstream pids(run_dir + "/pids");
    std::string name;
    pid_t pid = -1;
    while (pids >> name >> pid) {
      const auto st = read_stat(pid);
      if (st && st->ppid == parent && st->state != 'Z') live.push_back({name, pid});
      else
        gone += " " + name + " " + std::to_string(pid) +
                (!st                  ? " (gone)"
                 : st->ppid != parent ? " (not the pipeline's child: left alone)"
                                      : " (exited)");
    }
  }
  for (const auto& p : live) ::kill(p.pid, SIGUSR1);
  std::this_thread::sleep_for(settle);

  std::ostringstream msg;
  msg << what << "; still running: pipeline " << parent << " " << parent_state;
  for (const auto& p : live) msg << ", " << p.name << " " << p.pid << " " << proc_state(p.pid);
  if (live.empty()) msg << " (no process of " << run_dir << "/pids)";
  if (!gone.empty()) msg << "; not running:" << gone;
  msg << "\n";
  std::string err;
  try {
    err = read_file(stderr_path);
  } catch (const std::exception& e) {
    err = e.what();
  }
  // Then each live process's latest status line, in the order of RUN_DIR/pids. The log's
  // pattern is "HH:MM:SS.mmm info  [ROLE PID] status: ...".
  std::map<pid_t, std::string> status;
  {
    std::istringstream lines(err);
    for (std::string line; std::getline(lines, line);) {
      const auto at = line.find("] status: ");
      const auto space = line.rfind(' ', at);
      if (at == std::string::npos || space == std::string::npos) continue;
      try {
        status[static_cast<pid_t>(std::stol(line.substr(space + 1, at - space - 1)))] = line;
      } catch (const std::exception&) {
      }
    }
  }
  for (const auto& p : live)
    if (const auto it = status.find(p.pid); it != status.end()) msg << it->second << "\n";
  if (status.empty()) msg << "(no status line in " << stderr_path << ")\n";
  const auto tail = last_lines(err, tail_lines);
  msg << "--- last " << tail.size() << " lines of " << stderr_path << " ---\n";
  for (const auto& line : tail) msg << line << "\n";

  for (const auto& p : live) ::kill(p.pid, SIGKILL);
  pipeline.kill_and_reap();
  // Orphaned by the script, they are reaped by init; wait (bounded) until they are.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (const auto& p : live)
    while (pid_alive(p.pid) && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return msg.str();
}

std::string fixture_bin() { return TRAWL_FIXTURE_BIN; }

FixtureServer FixtureServer::start(const std::vector<std::string>& args,
                                   std::chrono::milliseconds timeout) {
  FixtureServer s;
  const std::string ready = s.dir_ / "ready";
  std::vector<std::string> argv = {fixture_bin(), "--ready-file", ready};
  argv.insert(argv.end(), args.begin(), args.end());
  s.child_ = Child::spawn(argv, {}, s.dir_ / "fixture.out", s.log_path());
  std::map<std::string, std::string> kv;
  try {
    kv = wait_ready_file(ready, timeout, &s.child_);
  } catch (const std::runtime_error& e) {
    std::string log;
    try {
      log = read_file(s.log_path());
    } catch (const std::exception&) {
    }
    throw std::runtime_error(std::string("trawl-fixture did not start: ") + e.what() +
                             "\n" + log);
  }
  s.url_ = kv["url"];
  s.port_ = std::stoi(kv["port"]);
  return s;
}

std::optional<int> FixtureServer::stop(std::chrono::milliseconds timeout) {
  child_.signal(SIGTERM);
  return child_.wait_for(timeout);
}

FixtureServer::~FixtureServer() {
  if (child_.pid() > 0 && child_.running()) {
    stop();
  }
}

} // namespace trawl::testsupport

namespace trawl::testsupport {

Broker start_broker(const std::string& trawl, const std::string& dir) {
  using namespace std::chrono_literals;
  Broker b;
  b.links = "ipc://" + dir + "/links";
  b.tasks = "ipc://" + dir + "/tasks";
  b.acks = "ipc://" + dir + "/acks";
  b.results = "ipc://" + dir + "/results";
  b.sink = Child::spawn({trawl, "sink", "--bind", b.results, "--acks", b.acks, "--progress", "none",
                         "--ready-file", dir + "/sink.ready"},
                        {}, dir + "/sink.out", dir + "/sink.err");
  wait_ready_file(dir + "/sink.ready", 10s, &b.sink);
  b.vent = Child::spawn({trawl, "vent", "--links", b.links, "--bind", b.tasks, "--acks", b.acks,
                         "--sink", b.results, "--state", dir + "/state", "--ready-file",
                         dir + "/vent.ready"},
                        {}, "", dir + "/vent.err");
  wait_ready_file(dir + "/vent.ready", 10s, &b.vent);
  return b;
}

} // namespace trawl::testsupport
