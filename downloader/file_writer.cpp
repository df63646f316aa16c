#include "downloader/file_writer.hpp"

#include <utility>

#include "common/sched.hpp"
#include "common/signals.hpp"

namespace trawl::downloader {
namespace {
// Buffers kept for reuse: enough for every transfer of a downloader at the default concurrency to
// hold one while a few more wait in the queue (64 KiB each: 6 MiB at most, in pages touched).
constexpr std::size_t kMaxSpare = 96;
} // namespace

FileWriter::FileWriter(std::size_t max_queued_bytes) : max_queued_bytes_(max_queued_bytes) {
  thread_ = start_quiet_thread([this] { run(); }, "trawl-files");
}

FileWriter::~FileWriter() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  work_.notify_one();
  thread_.join();
}

void FileWriter::submit(Job job, std::size_t bytes) {
  std::unique_lock lock(mutex_);
  // One job larger than the whole budget still goes, alone.
  if (queued_bytes_ > 0 && queued_bytes_ + bytes > max_queued_bytes_) {
    ++stats_.waits;
    room_.wait(lock,
               [&] { return queued_bytes_ == 0 || queued_bytes_ + bytes <= max_queued_bytes_; });
  }
  queue_.emplace_back(std::move(job), bytes);
  queued_bytes_ += bytes;
  ++submitted_;
  if (queued_bytes_ > stats_.max_queued) stats_.max_queued = queued_bytes_;
  lock.unlock();
  work_.notify_one();
}

void FileWriter::drain() {
  std::unique_lock lock(mutex_);
  const auto target = submitted_;
  room_.wait(lock, [&] { return done_ >= target; });
}

std::vector<char> FileWriter::buffer() {
  {
    std::lock_guard lock(buffers_mutex_);
    if (!buffers_.empty()) {
      std::vector<char> b = std::move(buffers_.back());
      buffers_.pop_back();
      return b;
    }
  }
  std::vector<char> b;
  b.reserve(kChunk);
  return b;
}

void FileWriter::recycle(std::vector<char> b) {
  if (b.capacity() < kChunk) return;
  b.clear();
  std::lock_guard lock(buffers_mutex_);
  if (buffers_.size() < kMaxSpare) buffers_.push_back(std::move(b));
}

FileWriter::Stats FileWriter::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

void FileWriter::run() {
  // SCHED_BATCH: a job submitted does not preempt the event loop that submitted it. With the
  // default policy a chunk woke this thread on the event loop's core, and it took the core over
  // for one write(2) and gave it back: in bench's big scenario (10 x 100 MB, 2 x 64, 15,260
  // chunks) the event loops were preempted 3,644 and 7,858 times in two traced jobs, 656 times
  // in one with SCHED_BATCH. The thread still runs at once on an idle core, and otherwise when
  // the event loop waits or its time slice ends (common/sched.hpp). Should the policy be refused,
  // jobs run as before.
  (void)run_as_batch();
  std::unique_lock lock(mutex_);
  for (;;) {
    work_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return; // stop_, and nothing left to run
    auto [job, bytes] = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    job();         // noexcept by contract: an exception here terminates (see submit())
    job = nullptr; // what it captured goes before the next job, outside the lock
    lock.lock();
    queued_bytes_ -= bytes;
    ++done_;
    ++stats_.jobs;
    room_.notify_all();
  }
}

} // namespace trawl::downloader
