#include "downloader/temp_pool.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <dirent.h>
#include <fcntl.h>
#include <new>
#include <string>
#include <string_view>
#include <system_error>
#include <unistd.h>

#include "common/sched.hpp"
#include "common/signals.hpp"

namespace trawl::downloader {

TempFile& TempFile::operator=(TempFile&& o) noexcept {
  if (this != &o) {
    reset();
    fd_ = std::exchange(o.fd_, -1);
    path_ = std::move(o.path_);
  }
  return *this;
}

std::pair<int, std::string> TempFile::release() noexcept {
  return {std::exchange(fd_, -1), std::exchange(path_, {})};
}

void TempFile::reset() noexcept {
  if (fd_ >= 0) {
    ::close(fd_);
    if (!path_.empty()) ::unlink(path_.c_str()); // an unnamed file goes with its descriptor
  }
  fd_ = -1;
  path_.clear();
}

namespace {
// A named temporary file is kPartPrefix + PID + "-" + N + kPartSuffix: made by temp_part_name,
// read back by remove_stale_parts.
constexpr std::string_view kPartPrefix = ".trawl-";
constexpr std::string_view kPartSuffix = ".part";
} // namespace

std::string temp_part_name(const std::string& dir) {
  static std::atomic<std::uint64_t> counter{0};
  std::string name = std::string(kPartPrefix) + std::to_string(::getpid()) + "-" +
                     std::to_string(counter.fetch_add(1)) + std::string(kPartSuffix);
  return dir.empty() ? name : dir + "/" + name;
}

std::size_t remove_stale_parts(const std::string& dir) {
  // readdir and the bare name: std::filesystem::directory_iterator built a path for each entry,
  // 12 ms for 20,000 files on tmpfs against 5.7 ms (and the scan runs again at every exit).
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return 0;
  std::size_t removed = 0;
  const long self = static_cast<long>(::getpid());
  while (const dirent* e = ::readdir(d)) {
    const std::string_view name(e->d_name);
    if (!name.starts_with(kPartPrefix) || !name.ends_with(kPartSuffix)) continue;
    const std::string_view rest = name.substr(kPartPrefix.size());
    const auto dash = rest.find('-');
    if (dash == std::string_view::npos || dash == 0 || dash > 10) continue;
    long pid = 0;
    if (std::from_chars(rest.data(), rest.data() + dash, pid).ptr != rest.data() + dash) continue;
    if (pid <= 0 || pid == self) continue;
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
    if (::unlinkat(::dirfd(d), e->d_name, 0) == 0) ++removed;
  }
  ::closedir(d);
  return removed;
}

TempFile create_temp_file(std::string path) {
  // O_EXCL already fails on any existing name, a symbolic link included; O_NOFOLLOW says so
  // explicitly. The final name is only ever reached by rename(), which replaces a link planted
  // there instead of following it.
  const int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_NOFOLLOW | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) return {};
  return TempFile(fd, std::move(path));
}

TempFile create_unnamed_file(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) return {};
  return TempFile(fd, std::string());
}

bool link_unnamed_file(int fd, int dir_fd, const char* name) {
  // Linked by its descriptor (AT_EMPTY_PATH) where the kernel allows it (CAP_DAC_READ_SEARCH, or
  // on recent kernels, 6.18 here, the credentials that opened the file), else through
  // /proc/self/fd, whose path walk was half of linkat's kernel time (perf, 20,000 files to tmpfs:
  // linkat 4.2 % of all samples, the lookup of the /proc path 49 % of that). Refused once (EPERM or
  // ENOENT while the /proc path works), it is not tried again.
  static std::atomic<bool> by_descriptor{true};
  if (by_descriptor.load(std::memory_order_relaxed)) {
    if (::linkat(fd, "", dir_fd, name, AT_EMPTY_PATH) == 0) return true;
    if (errno != EPERM && errno != ENOENT) return false; // EEXIST, ENOSPC...: the same either way
  }
  char proc[32];
  std::snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
  if (::linkat(AT_FDCWD, proc, dir_fd, name, AT_SYMLINK_FOLLOW) != 0) return false;
  by_descriptor.store(false, std::memory_order_relaxed);
  return true;
}

bool unnamed_files_work(const std::string& dir, const std::string& probe_name) {
  TempFile f = create_unnamed_file(dir);
  if (!f) return false;
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) return false;
  const bool linked = link_unnamed_file(f.fd(), dir_fd, probe_name.c_str());
  if (linked) ::unlinkat(dir_fd, probe_name.c_str(), 0);
  ::close(dir_fd);
  return linked;
}

TempPool::TempPool(std::size_t capacity, NameFn next_path, std::chrono::milliseconds backoff,
                   std::size_t wanted)
    : TempPool(capacity,
               CreateFn([next = std::move(next_path)] { return create_temp_file(next()); }),
               backoff, wanted) {}

TempPool::TempPool(std::size_t capacity, CreateFn create, std::chrono::milliseconds backoff,
                   std::size_t wanted)
    : capacity_(std::max<std::size_t>(capacity, 1)), create_(std::move(create)), backoff_(backoff),
      wanted_(std::min(wanted, capacity_)) {
  // The thread takes no signal: SIGINT/SIGTERM go to a thread that polls the stop flag (a
  // handler run here would only delay a file), and SIGPIPE and the like never concern it.
  thread_ = start_quiet_thread([this] { run(); }, "trawl-tmpfiles");
}

TempPool::~TempPool() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
  ready_.clear(); // closes and removes every file never taken
}

namespace {
constexpr std::uint64_t kMaxReady = 64, kOtherDescriptors = 64;

// A socket and a file per transfer, and kOtherDescriptors for everything else.
std::uint64_t transfer_descriptors(int concurrency) {
  return 2 * static_cast<std::uint64_t>(std::max(concurrency, 1)) + kOtherDescriptors;
}
} // namespace

std::size_t TempPool::capacity_for(int concurrency, std::uint64_t fd_limit) noexcept {
  const auto transfers = static_cast<std::uint64_t>(std::max(concurrency, 1));
  const std::uint64_t used = transfer_descriptors(concurrency);
  const std::uint64_t room = fd_limit > used ? fd_limit - used : 0;
  return static_cast<std::size_t>(std::min({kMaxReady, transfers, room}));
}

std::uint64_t TempPool::descriptors_for(int concurrency, std::uint64_t fd_limit) noexcept {
  return std::min(fd_limit,
                  transfer_descriptors(concurrency) + capacity_for(concurrency, fd_limit));
}

void TempPool::want(std::size_t n) {
  {
    std::lock_guard lock(mutex_);
    if (!set_wanted(n)) return;
  }
  wake_.notify_one();
}

bool TempPool::set_wanted(std::size_t n) {
  n = std::min(n, capacity_);
  const bool grew = n > wanted_;
  wanted_ = n;
  return grew && low();
}

// Files are wanted and three quarters of them or fewer are ready: the thread is woken then, to
// make a batch, not for each file taken or each file more wanted (a job of 300,000 tiny bodies
// woke it twice a file).
bool TempPool::low() const { return wanted_ > 0 && ready_.size() * 4 <= wanted_ * 3; }

TempFile TempPool::take(std::optional<std::size_t> still_wanted) {
  TempFile f;
  {
    std::lock_guard lock(mutex_);
    bool wake = still_wanted && set_wanted(*still_wanted);
    if (ready_.empty()) {
      ++counts_.missed;
    } else {
      f = std::move(ready_.front());
      ready_.pop_front();
      ++counts_.taken;
      wake = wake || low();
    }
    if (!wake) return f;
  }
  wake_.notify_one(); // no system call while the thread is busy creating
  return f;
}

TempPool::Stats TempPool::stats() const {
  std::lock_guard lock(mutex_);
  Stats s = counts_;
  s.ready = ready_.size();
  return s;
}

bool TempPool::wait_ready(std::size_t n, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return filled_.wait_for(lock, timeout, [&] { return ready_.size() >= n; });
}

void TempPool::run() {
  // SCHED_BATCH (common/sched.hpp), as the file thread: a file taken wakes this thread, which
  // would otherwise preempt the event loop that took it to create the next. small-tmpfs (20,000
  // files, 2 x 64), with the ZeroMQ I/O threads also SCHED_BATCH: the downloaders' CPU 1.59 s
  // against 1.70 (8 alternating jobs); context switches, system-wide, 15,900 against 19,650 (10).
  (void)run_as_batch();
  std::unique_lock lock(mutex_);
  while (!stop_) {
    if (ready_.size() >= wanted_) {
      wake_.wait(lock);
      continue;
    }
    if (Clock::now() < resume_at_) {
      wake_.wait_until(lock, resume_at_);
      continue;
    }
    lock.unlock(); // take() never waits for a creation
    TempFile f;
    try {
      f = create_();
    } catch (...) { // a name could not be built (no memory): a failure like any other
    }
    lock.lock();
    if (f) {
      try {
        ready_.push_back(std::move(f));
        ++counts_.created;
        filled_.notify_all();
        continue;
      } catch (const std::bad_alloc&) { // f still holds the file, and removes it
      }
    }
    // The transfers meet the same error when they create their files themselves, and report
    // it; here it only pauses the pool.
    ++counts_.failures;
    resume_at_ = Clock::now() + backoff_;
  }
}

} // namespace trawl::downloader
