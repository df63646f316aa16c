// What the sink knows about a job: counts, bytes, latency histograms, failures by reason, per-node
// figures, a throughput timeline, and the text it prints (live progress and the final summary).
// No sockets and no files here, so the arithmetic and the wording are unit-tested directly.
// Memory is bounded whatever the number of links: histograms instead of lists of latencies, a
// timeline that coarsens as the job grows, at most kMaxNodes node rows.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/hash_set.hpp"
#include "proto/messages.hpp"

namespace trawl::broker {

// A histogram of non-negative integers (milliseconds) with log-linear buckets: exact below 64,
// then 32 buckets per power of two, so a percentile is within 1/32 (3.2 %) of the true value.
// 7 KB whatever the count.
class Histogram {
public:
  static constexpr int kSub = 32;
  static constexpr std::size_t kBuckets = 2 * kSub + 26 * kSub; // up to 2^32 - 1

  void add(std::uint32_t v) noexcept;
  std::uint64_t count() const noexcept { return count_; }
  std::uint64_t sum() const noexcept { return sum_; }
  std::uint32_t max() const noexcept { return max_; }
  std::uint32_t min() const noexcept { return count_ ? min_ : 0; }
  double mean() const noexcept { return count_ ? static_cast<double>(sum_) / static_cast<double>(count_) : 0; }

  // Nearest-rank percentile (p in 0..100): the upper edge of the bucket holding the rank, never
  // above the largest value seen; 0 when empty. percentile(100) is the exact maximum.
  std::uint32_t percentile(double p) const noexcept;

  // The non-empty buckets in order: [lower, upper] value range and count.
  struct Bucket {
    std::uint32_t lower, upper;
    std::uint64_t count;
  };
  std::vector<Bucket> buckets() const;

  static std::size_t index(std::uint32_t v) noexcept;
  static std::uint32_t lower_edge(std::size_t i) noexcept;
  static std::uint32_t upper_edge(std::size_t i) noexcept;

private:
  std::array<std::uint64_t, kBuckets> counts_{};
  std::uint64_t count_ = 0, sum_ = 0;
  std::uint32_t max_ = 0, min_ = 0;
};

// Cumulative counts at fixed bounds (Prometheus "le" buckets), exact.
class FixedBuckets {
public:
  // Bounds in ms: 5 ms .. 60 s.
  static constexpr std::array<std::uint32_t, 13> kBoundsMs{5,    10,   25,   50,    100,   250,  500,
                                                           1000, 2500, 5000, 10000, 30000, 60000};
  void add(std::uint32_t v) noexcept;
  // Values <= kBoundsMs[i].
  std::uint64_t at_most(std::size_t i) const noexcept { return cumulative_[i]; }

private:
  std::array<std::uint64_t, kBoundsMs.size()> cumulative_{};
};

// Files and bytes finished per time slot since an origin. Slots start at 100 ms (a short job still
// draws a curve); when more than kMaxSlots would be needed, neighbours merge and slots double, so
// memory stays bounded (a day-long job has slots of about 3 minutes).
class Timeline {
public:
  static constexpr std::size_t kMaxSlots = 512;
  void add(std::int64_t ms_since_origin, bool done, std::uint64_t bytes);
  std::int64_t slot_ms() const noexcept { return slot_ms_; }
  struct Slot {
    std::uint64_t done = 0, failed = 0, bytes = 0;
  };
  const std::vector<Slot>& slots() const noexcept { return slots_; }

private:
  std::int64_t slot_ms_ = 100;
  std::vector<Slot> slots_;
};

struct NodeFigures {
  std::uint64_t done = 0, failed = 0, bytes = 0;
  std::uint64_t requeued = 0;            // tasks the ventilator took away from it and sent again
  std::int64_t first_start_unix_ms = 0;  // start of its earliest transfer
  std::int64_t last_end_unix_ms = 0;     // arrival of its latest result
  // Finished links per second over the node's active span (0 when unknown).
  double files_per_s() const;
};

struct FailureGroup {
  std::uint64_t count = 0;
  std::string example_url;
  std::string example_detail;
};

// The figures of the live view, the same for the sink's terminal, its --json-progress lines and
// `trawl monitor` (which receives them as JSON).
struct LiveFigures {
  std::int64_t unix_ms = 0;
  std::int64_t total = -1; // -1 until the fetcher is done
  std::uint64_t done = 0, failed = 0, skipped = 0, bytes = 0;
  double files_per_s = 0, bytes_per_s = 0; // over the last few seconds
  double eta_s = -1;                       // -1 unknown
  double elapsed_s = 0;
  std::uint64_t active = 0, nodes = 0;
  bool complete = false;
};

class JobStats {
public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::size_t kMaxNodes = 4096; // more node names than this share one row

  explicit JobStats(std::int64_t origin_unix_ms = 0);

  // Records a result; returns false (and changes nothing) for a duplicate of a task already seen.
  bool add(const proto::Result& r, std::int64_t now_unix_ms);
  void set_job(const proto::Job& j);

  // Complete when the ventilator says so (it knows from its ledger), or, without a ventilator's
  // word, when a result arrived for every link of the announced total.
  bool complete() const {
    return job_complete_ || (total_ >= 0 && !job_counts_ && finished() >= static_cast<std::uint64_t>(total_));
  }
  // Results received by this sink (not duplicates).
  std::uint64_t finished() const { return done_ + failed_; }
  std::uint64_t received_done() const { return done_; }
  std::uint64_t received_failed() const { return failed_; }
  // Done and failed links of the job: the ventilator's figures once it sent them, else ours.
  std::uint64_t done() const { return job_counts_ ? job_done_ : done_; }
  std::uint64_t failed() const { return job_counts_ ? job_failed_ : failed_; }
  std::uint64_t skipped() const { return job_skipped_; }
  std::uint64_t bytes() const { return bytes_; }
  std::int64_t total() const { return total_; }
  std::uint64_t duplicates() const { return duplicates_; }
  std::uint64_t requeued() const { return requeued_; }
  std::uint64_t active() const { return active_; }
  std::uint64_t nodes_connected() const { return nodes_connected_; }
  bool seen(std::uint64_t id) const { return seen_.contains(id_key(id)); }
  const std::map<proto::Reason, FailureGroup>& failures() const { return failures_; }
  const std::map<std::string, NodeFigures>& nodes() const { return nodes_; }
  const Histogram& latency() const { return latency_; }
  const Histogram& ttfb() const { return ttfb_; }
  const FixedBuckets& latency_buckets() const { return latency_buckets_; }
  const Timeline& timeline() const { return timeline_; }
  std::int64_t origin_unix_ms() const { return origin_unix_ms_; }
  std::int64_t started_unix_ms() const;
  std::int64_t last_result_unix_ms() const { return last_result_unix_ms_; }

  // Wall time from the job's first link (as the ventilator saw it) to the last result; when the
  // ventilator's start is unknown, from the start of the first result.
  double wall_seconds() const;

  // Percentile (0..100) of the per-transfer latency or time to first byte, in ms.
  std::uint32_t latency_percentile(double p) const { return latency_.percentile(p); }
  std::uint32_t ttfb_percentile(double p) const { return ttfb_.percentile(p); }

  // The live figures now; rates over the last few seconds (each call adds a sample).
  LiveFigures live(Clock::time_point now, std::int64_t now_unix_ms);

  // One progress line (kept for callers of the old interface); `bar` draws a progress bar.
  std::string progress_line(Clock::time_point now, bool bar);

  // The final summary, several lines, for stdout.
  std::string summary() const;

private:
  NodeFigures& node(const std::string& name);

  HashSet64 seen_;
  std::int64_t origin_unix_ms_ = 0;
  std::int64_t total_ = -1;
  bool job_complete_ = false;
  bool job_counts_ = false; // the ventilator sent its figures (done/failed/skipped)
  std::uint64_t job_done_ = 0, job_failed_ = 0, job_skipped_ = 0;
  std::uint64_t active_ = 0, nodes_connected_ = 0, requeued_ = 0;
  std::int64_t started_unix_ms_ = 0;
  std::int64_t first_result_start_ms_ = 0;
  std::int64_t last_result_unix_ms_ = 0;
  std::uint64_t done_ = 0, failed_ = 0, bytes_ = 0, duplicates_ = 0;
  Histogram latency_, ttfb_;
  FixedBuckets latency_buckets_;
  Timeline timeline_;
  std::map<proto::Reason, FailureGroup> failures_;
  std::map<std::string, NodeFigures> nodes_;

  struct Sample {
    Clock::time_point t;
    std::uint64_t finished, bytes;
  };
  std::vector<Sample> window_; // recent samples for the rate over the last few seconds
};

std::string human_bytes(double bytes);
// "9s", "3m07s", "2h05m"; "?" for a negative or infinite value.
std::string human_duration(double seconds);
// 12345678 -> "12,345,678".
std::string grouped(std::uint64_t n);

// The live view: a block of a few lines for a terminal (progress bar, done/total, failed, rates,
// ETA, active transfers, nodes), or one timestamped line for logs and pipes.
std::string render_block(const LiveFigures& f, int width = 28);
std::string render_line(const LiveFigures& f);

} // namespace trawl::broker
