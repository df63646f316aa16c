// What the sink knows about a job: counts, bytes, latencies, failures by reason, per-node
// figures, and the text it prints (live progress and the final summary). No sockets here, so the
// arithmetic and the wording are unit-tested directly.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/hash_set.hpp"
#include "proto/messages.hpp"

namespace trawl::broker {

struct NodeFigures {
  std::uint64_t done = 0, failed = 0, bytes = 0;
};

struct FailureGroup {
  std::uint64_t count = 0;
  std::string example_url;
  std::string example_detail;
};

class JobStats {
public:
  using Clock = std::chrono::steady_clock;

  // Records a result; returns false (and changes nothing) for a duplicate of a task already seen.
  bool add(const proto::Result& r, std::int64_t now_unix_ms, Clock::time_point now);
  void set_job(const proto::Job& j);

  // Complete when the ventilator says so (it knows from its ledger), or, without a ventilator's
  // word, when a result arrived for every link of the announced total.
  bool complete() const {
    return job_complete_ || (total_ >= 0 && !job_counts_ && finished() >= static_cast<std::uint64_t>(total_));
  }
  std::uint64_t finished() const { return done_ + failed_; }
  // Done and failed links of the job: the ventilator's figures once it sent them, else ours.
  std::uint64_t done() const { return job_counts_ ? job_done_ : done_; }
  std::uint64_t failed() const { return job_counts_ ? job_failed_ : failed_; }
  std::uint64_t bytes() const { return bytes_; }
  std::int64_t total() const { return total_; }
  std::uint64_t duplicates() const { return duplicates_; }
  const std::map<proto::Reason, FailureGroup>& failures() const { return failures_; }
  const std::map<std::string, NodeFigures>& nodes() const { return nodes_; }

  // Wall time from the job's first link (as the ventilator saw it) to the last result; when the
  // ventilator's start is unknown, from the start of the first result.
  double wall_seconds() const;

  // Percentile (0..100) of the per-transfer latency or time to first byte, in ms.
  std::uint32_t latency_percentile(double p) const { return percentile(latencies_, p); }
  std::uint32_t ttfb_percentile(double p) const { return percentile(ttfbs_, p); }

  // One progress line; `bar` draws a progress bar for terminals.
  std::string progress_line(Clock::time_point now, bool bar);

  // The final summary, several lines, for stdout.
  std::string summary() const;

private:
  static std::uint32_t percentile(const std::vector<std::uint32_t>& v, double p);

  HashSet64 seen_;
  std::int64_t total_ = -1;
  bool job_complete_ = false;
  bool job_counts_ = false; // the ventilator sent its figures (done/failed/skipped)
  std::uint64_t job_done_ = 0, job_failed_ = 0, job_skipped_ = 0;
  std::int64_t started_unix_ms_ = 0;
  std::int64_t first_result_start_ms_ = 0;
  std::int64_t last_result_unix_ms_ = 0;
  std::uint64_t done_ = 0, failed_ = 0, bytes_ = 0, duplicates_ = 0;
  std::vector<std::uint32_t> latencies_, ttfbs_;
  std::map<proto::Reason, FailureGroup> failures_;
  std::map<std::string, NodeFigures> nodes_;

  struct Sample {
    Clock::time_point t;
    std::uint64_t finished, bytes;
  };
  std::vector<Sample> window_; // recent samples for the rate over the last few seconds
};

std::string human_bytes(double bytes);

} // namespace trawl::broker
