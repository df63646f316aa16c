#include "broker/stats.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace trawl::broker {
namespace {


std::string format(const char* fmt, auto... args) {
  char buf[512];
  std::snprintf(buf, sizeof buf, fmt, args...);
  return buf;
}

std::string format_duration(double s) {
  if (s < 0 || !std::isfinite(s)) return "?";
  if (s < 60) return format("%.0fs", std::ceil(s));
  if (s < 3600) return format("%dm%02ds", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  return format("%dh%02dm", static_cast<int>(s) / 3600, static_cast<int>(s) % 3600 / 60);
}

} // namespace

std::string human_bytes(double bytes) {
  static const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  int u = 0;
  while (bytes >= 1000 && u < 4) {
    bytes /= 1000;
    ++u;
  }
  return u == 0 ? format("%.0f B", bytes) : format("%.1f %s", bytes, units[u]);
}

bool JobStats::add(const proto::Result& r, std::int64_t now_unix_ms, Clock::time_point now) {
  if (!seen_.insert(id_key(r.id))) {
    ++duplicates_;
    return false;
  }
  if (first_result_start_ms_ == 0) first_result_start_ms_ = now_unix_ms - r.ms;
  last_result_unix_ms_ = now_unix_ms;
  auto& node = nodes_[r.node];
  if (r.status == proto::Status::done) {
    ++done_;
    ++node.done;
    bytes_ += r.bytes;
    node.bytes += r.bytes;
    latencies_.push_back(r.ms);
    ttfbs_.push_back(r.ttfb_ms);
  } else {
    ++failed_;
    ++node.failed;
    auto& g = failures_[r.reason];
    if (g.count++ == 0) {
      g.example_url = r.url;
      g.example_detail = r.detail;
    }
  }
  (void)now;
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
}

double JobStats::wall_seconds() const {
  const std::int64_t start = started_unix_ms_ > 0 ? started_unix_ms_ : first_result_start_ms_;
  if (last_result_unix_ms_ == 0 || start == 0) return 0;
  return std::max<std::int64_t>(0, last_result_unix_ms_ - start) / 1000.0;
}

std::uint32_t JobStats::percentile(const std::vector<std::uint32_t>& v, double p) {
  if (v.empty()) return 0;
  std::vector<std::uint32_t> copy(v);
  // Nearest-rank percentile.
  auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(copy.size())));
  rank = std::clamp<std::size_t>(rank, 1, copy.size()) - 1;
  std::nth_element(copy.begin(), copy.begin() + static_cast<std::ptrdiff_t>(rank), copy.end());
  return copy[rank];
}

std::string JobStats::progress_line(Clock::time_point now, bool bar) {
  window_.push_back({now, finished(), bytes_});
  while (window_.size() > 2 && now - window_.front().t > std::chrono::seconds(5))
    window_.erase(window_.begin());
  double files_s = 0, bytes_s = 0;
  const double span = std::chrono::duration<double>(now - window_.front().t).count();
  if (span > 0.2) {
    files_s = static_cast<double>(finished() - window_.front().finished) / span;
    bytes_s = static_cast<double>(bytes_ - window_.front().bytes) / span;
  }
  std::string total = total_ >= 0 ? std::to_string(total_) : "?";
  std::string eta = "?";
  if (total_ >= 0 && files_s > 0)
    eta = format_duration(static_cast<double>(static_cast<std::uint64_t>(total_) -
                                              std::min<std::uint64_t>(done() + failed(), total_)) / files_s);
  std::string line;
  if (bar && total_ > 0) {
    const int width = 24;
    const int filled = static_cast<int>(width * static_cast<double>(done() + failed()) / static_cast<double>(total_));
    line = "[" + std::string(std::clamp(filled, 0, width), '#') + std::string(width - std::clamp(filled, 0, width), '.') + "] ";
  }
  line += format("%llu/%s done", static_cast<unsigned long long>(done()), total.c_str());
  line += format(", %llu failed, %.1f files/s, %s/s, %s, ETA %s",
                 static_cast<unsigned long long>(failed()), files_s, human_bytes(bytes_s).c_str(),
                 human_bytes(static_cast<double>(bytes_)).c_str(), eta.c_str());
  return line;
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
              static_cast<unsigned long long>(total_ >= 0 ? static_cast<std::uint64_t>(total_) : done + failed),
              static_cast<unsigned long long>(done), static_cast<unsigned long long>(failed));
  if (job_skipped_ > 0)
    s += format(" (%llu skipped: done in an earlier run)", static_cast<unsigned long long>(job_skipped_));
  s += "\n";
  s += format("  bytes       %s (%llu)\n", human_bytes(static_cast<double>(bytes_)).c_str(),
              static_cast<unsigned long long>(bytes_));
  s += format("  took        %.2f s (first link to last result)\n", wall);
  s += format("  throughput  %.1f files/s, %s/s\n", static_cast<double>(finished()) * per_s,
              human_bytes(static_cast<double>(bytes_) * per_s).c_str());
  if (!latencies_.empty()) {
    s += format("  latency     p50 %u ms, p95 %u ms, p99 %u ms, max %u ms\n", latency_percentile(50),
                latency_percentile(95), latency_percentile(99), latency_percentile(100));
    s += format("  first byte  p50 %u ms, p99 %u ms\n", ttfb_percentile(50), ttfb_percentile(99));
  }
  if (!failures_.empty()) {
    s += "  failures by reason:\n";
    for (const auto& [reason, g] : failures_)
      s += format("    %-10s %6llu  e.g. %s (%s)\n", std::string(proto::reason_name(reason)).c_str(),
                  static_cast<unsigned long long>(g.count), g.example_url.c_str(),
                  g.example_detail.c_str());
  }
  if (!nodes_.empty()) {
    s += "  nodes:\n";
    for (const auto& [name, n] : nodes_)
      s += format("    %-24s %6llu done %6llu failed  %s\n", name.c_str(),
                  static_cast<unsigned long long>(n.done), static_cast<unsigned long long>(n.failed),
                  human_bytes(static_cast<double>(n.bytes)).c_str());
  }
  return s;
}

} // namespace trawl::broker
