// Temporary files created ahead of need by a background thread. Creating a file is the costliest
// system call the downloader makes: 0.4-1.4 ms of kernel time on the ext4 of our VMs, which has
// no journal and then passes over every inode freed in the last minutes at each allocation (a
// quiet one takes 13-24 us: bench/README.md, Caveats), and the event loop is one thread, so 64
// transfers starting at once, or 500 files a second, used to hold every other transfer up. The
// pool keeps up to `capacity` empty files ready (as many as the owner says it will want: want());
// the event loop takes one without waiting for it (take()), or gets none when the pool is empty
// and then creates its file itself, as it always did, so every error (a full disk, a missing
// directory) is still reported by the transfer that met it.
//
// A failure to create a file (ENOSPC, EACCES, EMFILE...) stops the pool for `backoff`: a broken
// directory costs one attempt per backoff, not a busy loop, and meanwhile the transfers meet the
// error themselves. Files never taken are closed and removed when the pool goes; after a crash,
// their names (from `next_path`, .trawl-PID-N.part) let remove_stale_parts find them.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>

namespace trawl::downloader {

// An open, empty temporary file: closed and removed when it goes, unless release()d. Move-only.
class TempFile {
public:
  TempFile() noexcept = default;
  TempFile(int fd, std::string path) noexcept : fd_(fd), path_(std::move(path)) {}
  ~TempFile() { reset(); }
  TempFile(TempFile&& o) noexcept : fd_(std::exchange(o.fd_, -1)), path_(std::move(o.path_)) {}
  TempFile& operator=(TempFile&& o) noexcept;
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  explicit operator bool() const noexcept { return fd_ >= 0; }
  int fd() const noexcept { return fd_; }
  const std::string& path() const noexcept { return path_; }
  // The caller owns the descriptor and the file from here (closes and removes them).
  std::pair<int, std::string> release() noexcept;
  void reset() noexcept; // closes and removes the file, if any

private:
  int fd_ = -1;
  std::string path_;
};

// A new temporary file name ".trawl-PID-N.part" (remove_stale_parts knows its form) in `dir`
// ("" for the name alone), unique in the process, also across several downloader runs (tests).
std::string temp_part_name(const std::string& dir);

// Removes from `dir` the named temporary files (".trawl-PID-N.part", see temp_part_name) of
// processes that no longer run: not this one's, not a running PID's. Returns how many it removed.
std::size_t remove_stale_parts(const std::string& dir);

// Creates the file `path` for a transfer's body: O_EXCL | O_NOFOLLOW, never an existing file and
// never through a planted link. An empty TempFile with errno set when it cannot.
TempFile create_temp_file(std::string path);

// An unnamed file in the directory `dir` (O_TMPFILE): its path() is empty, and it gets a name
// only when linked (link_unnamed_file). Allocating its inode does not lock the directory, as
// creating a name does: on ext4 without a journal, an inode costs a scan past every inode freed
// in the last minutes (perf, 2,000 files created right after 2,000 were deleted: that scan was
// 61 % of the downloader's samples), and a rename into the same directory (the file thread's)
// spun on that lock meanwhile. A crashed
// downloader leaves no such file behind. An empty TempFile with errno set when it cannot.
TempFile create_unnamed_file(const std::string& dir);
// Gives the unnamed file open as `fd` the name `name` in the directory `dir_fd` (linkat of the
// descriptor where the process may, else through /proc/self/fd, which needs no privilege). Fails
// with EEXIST when the name is taken. false with errno set when it cannot.
bool link_unnamed_file(int fd, int dir_fd, const char* name);
// Whether `dir` takes unnamed files that can then be linked (the file system supports O_TMPFILE,
// /proc is mounted): tried once with a file named `probe_name` (in `dir`, removed again).
bool unnamed_files_work(const std::string& dir, const std::string& probe_name);

class TempPool {
public:
  using Clock = std::chrono::steady_clock;
  // A new path for each file (unique in the process; called on the pool's thread).
  using NameFn = std::function<std::string()>;
  // Creates one file (called on the pool's thread): an empty TempFile with errno set on failure.
  using CreateFn = std::function<TempFile()>;

  // Starts the thread, which keeps `wanted` files ready (at most `capacity`; want() changes it):
  // by default it fills the pool at once. Throws std::system_error when it cannot. Files are
  // created with create_temp_file(next_path()).
  TempPool(std::size_t capacity, NameFn next_path,
           std::chrono::milliseconds backoff = std::chrono::seconds(1),
           std::size_t wanted = SIZE_MAX);
  // The same with files made by `create` (e.g. create_unnamed_file).
  TempPool(std::size_t capacity, CreateFn create,
           std::chrono::milliseconds backoff = std::chrono::seconds(1),
           std::size_t wanted = SIZE_MAX);
  ~TempPool(); // stops and joins the thread, then closes and removes the files never taken
  TempPool(const TempPool&) = delete;
  TempPool& operator=(const TempPool&) = delete;

  // A ready file, or an empty TempFile when none is: never waits for one to be created. With
  // `still_wanted`, want(still_wanted) first, under the same lock (and waking the thread as want()
  // does): the caller's files wanted once it has this one. Without it the thread, woken by the
  // take, would make the file taken again before the caller lowered its count (a classic job, 2 x
  // 64: 122 files made for 94 bodies).
  TempFile take(std::optional<std::size_t> still_wanted = std::nullopt);
  // How many files to keep ready from now on (at most the capacity): the files the caller will
  // ask for soon. Fewer than are ready removes none; the thread only stops creating.
  void want(std::size_t n);

  // How many files to keep ready for a downloader running `concurrency` transfers in a process
  // that may open `fd_limit` descriptors (RLIMIT_NOFILE): enough for all of them to start at
  // once, at most 64, and fewer, down to 0 (no pool), when the ready files' descriptors would
  // crowd out the transfers' own (a socket and a file each, and 64 for everything else).
  static std::size_t capacity_for(int concurrency, std::uint64_t fd_limit) noexcept;
  // All the descriptors such a downloader opens, by that same count: its transfers' own, the 64
  // for everything else and the ready files; at most `fd_limit`.
  static std::uint64_t descriptors_for(int concurrency, std::uint64_t fd_limit) noexcept;

  // Diagnostics and tests: the counts, read together.
  struct Stats {
    std::size_t ready = 0;      // files ready now
    std::uint64_t created = 0;  // files created so far
    std::uint64_t failures = 0; // creations that failed so far
    std::uint64_t taken = 0;    // take() calls that got a file
    std::uint64_t missed = 0;   // take() calls that found the pool empty
  };
  Stats stats() const;
  // Waits until at least `n` files are ready (true) or `timeout` passed (false).
  bool wait_ready(std::size_t n, std::chrono::milliseconds timeout);

private:
  void run();
  bool low() const; // under mutex_
  // Under mutex_: wanted_ = n (at most the capacity); whether the thread must be woken for it
  // (the count grew and the pool is low), the one rule of want() and take(n).
  bool set_wanted(std::size_t n);

  const std::size_t capacity_;
  const CreateFn create_;
  const std::chrono::milliseconds backoff_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;   // the thread: a file was taken, or stop
  std::condition_variable filled_; // wait_ready(): a file was added
  std::deque<TempFile> ready_;
  bool stop_ = false;
  std::size_t wanted_;            // files to keep ready (<= capacity_)
  Clock::time_point resume_at_{}; // after a failure, no attempt before this
  Stats counts_;                  // all but `ready`, which is ready_.size()
  std::thread thread_; // last: started once everything above is set up
};

} // namespace trawl::downloader
