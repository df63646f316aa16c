#include "broker/stats.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <ctime>

namespace trawl::broker {
namespace {

std::string format(const char* fmt, auto... args) {
  char buf[1024];
  std::snprintf(buf, sizeof buf, fmt, args...);
  return buf;
}

unsigned long long ull(std::uint64_t v) { return static_cast<unsigned long long>(v); }

} // namespace

// ---- Histogram ---------------------------------------------------------------------------------

std::size_t Histogram::index(std::uint32_t v) noexcept {
  if (v < 2 * kSub) return v;
  const int e = std::bit_width(v) - 1; // 6..31
  const int shift = e - 5;             // v >> shift is in [32, 64)
  return 2 * kSub + static_cast<std::size_t>(e - 6) * kSub + ((v >> shift) - kSub);
}

std::uint32_t Histogram::lower_edge(std::size_t i) noexcept {
  if (i < 2 * kSub) return static_cast<std::uint32_t>(i);
  const std::size_t e = (i - 2 * kSub) / kSub + 6;
  const std::size_t m = (i - 2 * kSub) % kSub + kSub;
  return static_cast<std::uint32_t>(m << (e - 5));
}

std::uint32_t Histogram::upper_edge(std::size_t i) noexcept {
  if (i < 2 * kSub) return static_cast<std::uint32_t>(i);
  const std::size_t e = (i - 2 * kSub) / kSub + 6;
  const std::uint64_t width = std::uint64_t{1} << (e - 5);
  return static_cast<std::uint32_t>(lower_edge(i) + width - 1);
}

void Histogram::add(std::uint32_t v) noexcept {
  ++counts_[index(v)];
  if (count_ == 0 || v < min_) min_ = v;
  max_ = std::max(max_, v);
  ++count_;
  sum_ += v;
}

std::uint32_t Histogram::percentile(double p) const noexcept {
  if (count_ == 0) return 0;
  if (p >= 100) return max_;
  auto rank = static_cast<std::uint64_t>(std::ceil(std::max(0.0, p) / 100.0 * static_cast<double>(count_)));
  rank = std::clamp<std::uint64_t>(rank, 1, count_);
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < kBuckets; ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::clamp(upper_edge(i), min_, max_);
  }
  return max_;
}

std::vector<Histogram::Bucket> Histogram::buckets() const {
  std::vector<Bucket> out;
  for (std::size_t i = 0; i < kBuckets; ++i)
    if (counts_[i]) out.push_back({lower_edge(i), upper_edge(i), counts_[i]});
  return out;
}

void FixedBuckets::add(std::uint32_t v) noexcept {
  for (std::size_t i = 0; i < kBoundsMs.size(); ++i)
    if (v <= kBoundsMs[i]) ++cumulative_[i];
}

// ---- Timeline ----------------------------------------------------------------------------------

void Timeline::add(std::int64_t ms, bool done, std::uint64_t bytes) {
  ms = std::max<std::int64_t>(0, ms);
  auto slot = static_cast<std::size_t>(ms / slot_ms_);
  while (slot >= kMaxSlots) {
    // Twice as wide: neighbours merge, the vector halves.
    std::vector<Slot> merged((slots_.size() + 1) / 2);
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      merged[i / 2].done += slots_[i].done;
      merged[i / 2].failed += slots_[i].failed;
      merged[i / 2].bytes += slots_[i].bytes;
    }
    slots_ = std::move(merged);
    slot_ms_ *= 2;
    slot = static_cast<std::size_t>(ms / slot_ms_);
  }
  if (slots_.size() <= slot) slots_.resize(slot + 1);
  if (done) ++slots_[slot].done;
  else ++slots_[slot].failed;
  slots_[slot].bytes += bytes;
}

// ---- JobStats ----------------------------------------------------------------------------------

double NodeFigures::files_per_s() const {
  const std::int64_t span = last_end_unix_ms - first_start_unix_ms;
  if (span <= 0 || first_start_unix_ms == 0) return 0;
  return static_cast<double>(done + failed) * 1000.0 / static_cast<double>(span);
}

std::string human_bytes(double bytes) {
  static const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  int u = 0;
  while (bytes >= 1000 && u < 4) {
    bytes /= 1000;
    ++u;
  }
  return u == 0 ? format("%.0f B", bytes) : format("%.1f %s", bytes, units[u]);
}

std::string human_duration(double s) {
  if (s < 0 || !std::isfinite(s)) return "?";
  if (s < 60) return format("%.0fs", std::ceil(s));
  if (s < 3600) return format("%dm%02ds", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  if (s < 360000) return format("%dh%02dm", static_cast<int>(s) / 3600, static_cast<int>(s) % 3600 / 60);
  return format("%.0fh", s / 3600);
}

std::string grouped(std::uint64_t n) {
  std::string digits = std::to_string(n), out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

JobStats::JobStats(std::int64_t origin_unix_ms) : origin_unix_ms_(origin_unix_ms) {}

NodeFigures& JobStats::node(const std::string& name) {
  auto it = nodes_.find(name);
  if (it != nodes_.end()) return it->second;
  // A node name comes from the network: a flood of new names shares one row.
  if (nodes_.size() >= kMaxNodes) return nodes_["(other nodes)"];
  return nodes_[name];
}

bool JobStats::add(const proto::Result& r, std::int64_t now_unix_ms) {
  if (!seen_.insert(id_key(r.id))) {
    ++duplicates_;
    return false;
  }
  if (origin_unix_ms_ == 0) origin_unix_ms_ = now_unix_ms - r.ms;
  const std::int64_t start_ms = now_unix_ms - r.ms;
  if (first_result_start_ms_ == 0 || start_ms < first_result_start_ms_) first_result_start_ms_ = start_ms;
  last_result_unix_ms_ = now_unix_ms;
  auto& n = node(r.node);
  if (n.first_start_unix_ms == 0 || start_ms < n.first_start_unix_ms) n.first_start_unix_ms = start_ms;
  n.last_end_unix_ms = std::max(n.last_end_unix_ms, now_unix_ms);
  const bool ok = r.status == proto::Status::done;
  timeline_.add(now_unix_ms - origin_unix_ms_, ok, ok ? r.bytes : 0);
  if (ok) {
    ++done_;
    ++n.done;
    bytes_ += r.bytes;
    n.bytes += r.bytes;
    latency_.add(r.ms);
    latency_buckets_.add(r.ms);
    ttfb_.add(r.ttfb_ms);
  } else {
    ++failed_;
    ++n.failed;
    auto& g = failures_[r.reason];
    if (g.count++ == 0) {
      g.example_url = r.url;
      g.example_detail = r.detail;
    }
  }
  return true;
}

void JobStats::set_job(const proto::Job& j) {
  if (j.started_unix_ms > 0) started_unix_ms_ = j.started_unix_ms;
  if (j.total >= 0) total_ = j.total;
  job_counts_ = true;
  job_done_ = j.done;
  job_failed_ = j.failed;
  job_skipped_ = j.skipped;
  job_complete_ = j.complete;
  active_ = j.active;
  nodes_connected_ = j.nodes;
  requeued_ = j.requeued;
  const std::size_t n = std::min(j.requeued_nodes.size(), j.requeued_counts.size());
  for (std::size_t i = 0; i < n; ++i) node(j.requeued_nodes[i]).requeued = j.requeued_counts[i];
}

std::int64_t JobStats::started_unix_ms() const {
  return started_unix_ms_ > 0 ? started_unix_ms_ : first_result_start_ms_;
}

double JobStats::wall_seconds() const {
  const std::int64_t start = started_unix_ms();
  if (last_result_unix_ms_ == 0 || start == 0) return 0;
  return static_cast<double>(std::max<std::int64_t>(0, last_result_unix_ms_ - start)) / 1000.0;
}

LiveFigures JobStats::live(Clock::time_point now, std::int64_t now_unix_ms) {
  window_.push_back({now, finished(), bytes_});
  while (window_.size() > 2 && now - window_.front().t > std::chrono::seconds(5))
    window_.erase(window_.begin());
  LiveFigures f;
  f.unix_ms = now_unix_ms;
  f.total = total_;
  f.done = done();
  f.failed = failed();
  f.skipped = job_skipped_;
  f.bytes = bytes_;
  const double span = std::chrono::duration<double>(now - window_.front().t).count();
  if (span > 0.2) {
    f.files_per_s = static_cast<double>(finished() - window_.front().finished) / span;
    f.bytes_per_s = static_cast<double>(bytes_ - window_.front().bytes) / span;
  }
  if (total_ >= 0) {
    const auto left = static_cast<double>(static_cast<std::uint64_t>(total_) -
                                          std::min<std::uint64_t>(f.done + f.failed, total_));
    if (left == 0) f.eta_s = 0;
    else if (f.files_per_s > 0) f.eta_s = left / f.files_per_s;
  }
  const std::int64_t start = started_unix_ms();
  f.elapsed_s = start > 0 ? static_cast<double>(std::max<std::int64_t>(0, now_unix_ms - start)) / 1000.0 : 0;
  f.active = active_;
  f.nodes = nodes_connected_;
  f.complete = complete();
  return f;
}

std::string JobStats::progress_line(Clock::time_point now, bool bar) {
  const auto f = live(now, 0);
  return bar ? render_block(f) : render_line(f);
}

namespace {

std::string bar_of(const LiveFigures& f, int width) {
  if (f.total <= 0) return "[" + std::string(static_cast<std::size_t>(width), '?') + "]";
  const double frac = std::min(1.0, static_cast<double>(f.done + f.failed) / static_cast<double>(f.total));
  const int filled = std::clamp(static_cast<int>(width * frac), 0, width);
  return "[" + std::string(static_cast<std::size_t>(filled), '#') +
         std::string(static_cast<std::size_t>(width - filled), '.') + "]";
}

} // namespace

std::string render_block(const LiveFigures& f, int width) {
  const std::string total = f.total >= 0 ? grouped(static_cast<std::uint64_t>(f.total)) : "?";
  const double pct = f.total > 0 ? 100.0 * static_cast<double>(f.done + f.failed) / static_cast<double>(f.total) : 0;
  std::string s = bar_of(f, width);
  s += format(" %5.1f%%  %s/%s done", pct, grouped(f.done).c_str(), total.c_str());
  if (f.skipped) s += format(" (%s skipped)", grouped(f.skipped).c_str());
  s += format(", %s failed\n", grouped(f.failed).c_str());
  s += format("  %.1f files/s  %s/s (last 5 s)   %s received   elapsed %s   ETA %s\n", f.files_per_s,
              human_bytes(f.bytes_per_s).c_str(), human_bytes(static_cast<double>(f.bytes)).c_str(),
              human_duration(f.elapsed_s).c_str(), human_duration(f.eta_s).c_str());
  s += format("  %s active transfers on %s node%s%s\n", grouped(f.active).c_str(), grouped(f.nodes).c_str(),
              f.nodes == 1 ? "" : "s", f.complete ? "   complete" : "");
  return s;
}

std::string render_line(const LiveFigures& f) {
  char stamp[32] = "";
  if (f.unix_ms > 0) {
    const std::time_t t = static_cast<std::time_t>(f.unix_ms / 1000);
    std::tm tm{};
    gmtime_r(&t, &tm);
    std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ ", &tm);
  }
  const std::string total = f.total >= 0 ? std::to_string(f.total) : "?";
  return format("%s%llu/%s done, %llu failed, %.1f files/s, %s/s, %s, ETA %s, %llu active, %llu nodes",
                stamp, ull(f.done), total.c_str(), ull(f.failed), f.files_per_s,
                human_bytes(f.bytes_per_s).c_str(), human_bytes(static_cast<double>(f.bytes)).c_str(),
                human_duration(f.eta_s).c_str(), ull(f.active), ull(f.nodes));
}

std::string JobStats::summary() const {
  const double wall = wall_seconds();
  const double per_s = wall > 0 ? 1.0 / wall : 0;
  std::string s;
  // The ventilator's ledger is the authority on counts (it survives restarts of the sink); the
  // bytes, rates and latencies are those of the results this sink received.
  const std::uint64_t done = this->done();
  const std::uint64_t failed = this->failed();
  s += format("trawl: %llu links: %llu done, %llu failed",
              ull(total_ >= 0 ? static_cast<std::uint64_t>(total_) : done + failed), ull(done), ull(failed));
  if (job_skipped_ > 0) s += format(" (%llu skipped: done in an earlier run)", ull(job_skipped_));
  s += "\n";
  s += format("  bytes       %s (%llu)\n", human_bytes(static_cast<double>(bytes_)).c_str(), ull(bytes_));
  s += format("  took        %.2f s (first link to last result)\n", wall);
  s += format("  throughput  %.1f files/s, %s/s\n", static_cast<double>(finished()) * per_s,
              human_bytes(static_cast<double>(bytes_) * per_s).c_str());
  if (latency_.count() > 0) {
    s += format("  latency     p50 %u ms, p90 %u ms, p99 %u ms, max %u ms\n", latency_.percentile(50),
                latency_.percentile(90), latency_.percentile(99), latency_.max());
    s += format("  first byte  p50 %u ms, p99 %u ms\n", ttfb_.percentile(50), ttfb_.percentile(99));
  }
  if (duplicates_ > 0 || requeued_ > 0)
    s += format("  re-sent     %llu tasks dispatched again, %llu duplicate results ignored\n", ull(requeued_),
                ull(duplicates_));
  if (!failures_.empty()) {
    s += "  failures by reason:\n";
    for (const auto& [reason, g] : failures_)
      s += format("    %-10s %6llu  e.g. %s (%s)\n", std::string(proto::reason_name(reason)).c_str(),
                  ull(g.count), g.example_url.c_str(), g.example_detail.c_str());
  }
  if (!nodes_.empty()) {
    s += format("  %-26s %8s %10s %9s %7s %8s\n", "node", "done", "bytes", "files/s", "failed", "re-sent");
    for (const auto& [name, n] : nodes_)
      s += format("  %-26s %8llu %10s %9.1f %7llu %8llu\n", name.c_str(), ull(n.done),
                  human_bytes(static_cast<double>(n.bytes)).c_str(), n.files_per_s(), ull(n.failed),
                  ull(n.requeued));
  }
  return s;
}

} // namespace trawl::broker
