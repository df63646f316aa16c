// The downloader's file thread. Hashing a body, writing it to the page cache, closing and renaming
// its file are most of the CPU a downloader spends per file (on tmpfs: write 19 %, SHA-256 15 %,
// rename 3 % of the event loop's samples in a 2,000-file run); on the event loop they held every
// other transfer up, so that 64 responses arriving together were read one after the other. The
// event loop hands them here instead, as jobs that run on one background thread in the order they
// were submitted: a transfer's chunks, then its finish, are never reordered.
//
// Submitting never loses a job: when more than `max_queued_bytes` of chunks wait (a disk slower
// than the network), submit() waits for the thread to catch up, which is what writing on the event
// loop did all the time. Buffers come back through recycle() so that chunks do not cost a fresh
// allocation (and its page faults) each.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace trawl::downloader {

class FileWriter {
public:
  using Job = std::function<void()>;
  // The capacity of the chunks transfers fill before handing them over (a whole small body of
  // unknown length is one chunk: one write(2) instead of one per 16 KiB that libcurl delivers;
  // one announced up to 2 MiB is written as it comes, Transfer::kWriteAsItComes). Each buffer's
  // pages are touched once, then reused: a page first touched costs 11-15 us of kernel time on the
  // VMs we measure on (a page fault: 11.7-12.9 us for a fresh page, 11.0-12.3 for a copied one, in
  // a probe of 1,000-2,000 pages), so a downloader's first round of large bodies paid that for
  // every 4 KiB of every buffer. 64 KiB rather than 256: classic 1 x 64 (91
  // bodies of 30 KB-1.5 MB), three sets of 6 alternating runs, median wall time 555-572 ms
  // against 582-599, and the downloader's page faults 3,270-3,313 against 5,275-5,542 (two runs
  // each); latency (100 KB bodies) unchanged.
  static constexpr std::size_t kChunk = 64 * 1024;

  // Starts the thread. Throws std::system_error when it cannot.
  // The default budget: 256 chunks (64 of 256 KiB when chunks were that size). bench/run big (10 x
  // 100 MB, where hashing is what limits the thread) with 64 MiB gave each downloader a peak RSS of
  // 83-86 MB for no gain in time.
  explicit FileWriter(std::size_t max_queued_bytes = 16 * 1024 * 1024);
  ~FileWriter(); // runs every job still queued, then joins the thread
  FileWriter(const FileWriter&) = delete;
  FileWriter& operator=(const FileWriter&) = delete;

  // Queues `job`, which carries `bytes` of data (0 for a job without). A job must not throw: one
  // that does is a bug, and ends the process (std::terminate) rather than lose a file silently.
  void submit(Job job, std::size_t bytes = 0);
  // Waits until every job submitted so far has run.
  void drain();

  // An empty buffer with room for kChunk bytes: a recycled one when there is.
  std::vector<char> buffer();
  // Gives a buffer back once its bytes are written (any thread).
  void recycle(std::vector<char> b);

  struct Stats {
    std::uint64_t jobs = 0;     // run so far
    std::uint64_t waits = 0;    // submit() calls that waited for room
    std::size_t max_queued = 0; // the most bytes ever waiting
  };
  Stats stats() const;

private:
  void run();

  const std::size_t max_queued_bytes_;
  mutable std::mutex mutex_;
  std::condition_variable work_; // the thread: a job came, or stop
  std::condition_variable room_; // submit() and drain(): a job ran
  std::deque<std::pair<Job, std::size_t>> queue_;
  std::size_t queued_bytes_ = 0;
  std::uint64_t submitted_ = 0, done_ = 0;
  bool stop_ = false;
  Stats stats_;
  std::mutex buffers_mutex_;
  std::vector<std::vector<char>> buffers_; // recycled, at most kMaxSpare
  std::thread thread_;                     // last: started once everything above is set up
};

} // namespace trawl::downloader
