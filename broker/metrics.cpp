#include "broker/metrics.hpp"

#include <cerrno>
#include <cstring>
#include <httplib.h>
#include <stdexcept>

namespace trawl::broker {
namespace {

// Label values: backslash, double quote and line feed escaped.
std::string label(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

void head(std::string& s, const char* name, const char* type, const char* help) {
  s += "# HELP ";
  s += name;
  s += ' ';
  s += help;
  s += "\n# TYPE ";
  s += name;
  s += ' ';
  s += type;
  s += '\n';
}

void line(std::string& s, const std::string& name, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, " %.17g\n", v);
  s += name;
  s += buf;
}

void line(std::string& s, const std::string& name, std::uint64_t v) {
  s += name;
  s += ' ';
  s += std::to_string(v);
  s += '\n';
}

// A metric with a single sample: its HELP and TYPE lines, then the sample.
template <class V>
void metric(std::string& s, const char* name, const char* type, const char* help, V value) {
  head(s, name, type, help);
  line(s, name, value);
}

std::string seconds(std::uint32_t ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", ms / 1000.0);
  return buf;
}

} // namespace

std::string prometheus_text(const JobStats& st) {
  std::string s;
  metric(s, "trawl_links_total", "gauge", "Links of the job (-1 until the fetcher is done).", static_cast<double>(st.total()));
  metric(s, "trawl_links_done", "gauge", "Links done, per the ventilator's ledger (includes skipped).", st.done());
  metric(s, "trawl_links_failed", "gauge", "Links failed, per the ventilator's ledger.", st.failed());
  metric(s, "trawl_links_skipped", "gauge", "Links done in an earlier run of the job.", st.skipped());
  metric(s, "trawl_results_done_total", "counter", "Downloads completed, as received by this sink.", st.received_done());
  head(s, "trawl_results_failed_total", "counter", "Failed links received by this sink, by reason.");
  for (const auto& [reason, g] : st.failures())
    line(s, "trawl_results_failed_total{reason=\"" + std::string(proto::reason_name(reason)) + "\"}", g.count);
  metric(s, "trawl_bytes_total", "counter", "Bytes downloaded (completed files).", st.bytes());
  metric(s, "trawl_duplicate_results_total", "counter", "Duplicate results ignored.", st.duplicates());
  metric(s, "trawl_tasks_requeued_total", "counter", "Tasks the ventilator dispatched again.", st.requeued());
  metric(s, "trawl_transfers_active", "gauge", "Tasks leased to downloaders now.", st.active());
  metric(s, "trawl_nodes", "gauge", "Downloaders connected to the ventilator.", st.nodes_connected());
  metric(s, "trawl_job_complete", "gauge", "1 once every link is done or failed.", std::uint64_t{st.complete() ? 1u : 0u});
  head(s, "trawl_node_results_total", "counter", "Results received by node and status.");
  for (const auto& [name, n] : st.nodes()) {
    line(s, "trawl_node_results_total{node=\"" + label(name) + "\",status=\"done\"}", n.done);
    line(s, "trawl_node_results_total{node=\"" + label(name) + "\",status=\"failed\"}", n.failed);
  }
  head(s, "trawl_node_bytes_total", "counter", "Bytes downloaded by node.");
  for (const auto& [name, n] : st.nodes()) line(s, "trawl_node_bytes_total{node=\"" + label(name) + "\"}", n.bytes);
  head(s, "trawl_transfer_duration_seconds", "histogram", "Request start to last byte of completed downloads.");
  const auto& b = st.latency_buckets();
  for (std::size_t i = 0; i < FixedBuckets::kBoundsMs.size(); ++i)
    line(s, "trawl_transfer_duration_seconds_bucket{le=\"" + seconds(FixedBuckets::kBoundsMs[i]) + "\"}",
         b.at_most(i));
  line(s, "trawl_transfer_duration_seconds_bucket{le=\"+Inf\"}", st.latency().count());
  line(s, "trawl_transfer_duration_seconds_sum", static_cast<double>(st.latency().sum()) / 1000.0);
  line(s, "trawl_transfer_duration_seconds_count", st.latency().count());
  return s;
}

MetricsServer::MetricsServer(int port) : server_(std::make_unique<httplib::Server>()) {
  server_->set_read_timeout(2, 0);
  server_->set_write_timeout(2, 0);
  server_->set_payload_max_length(8192);
  server_->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(text(), "text/plain; version=0.0.4; charset=utf-8");
  });
  server_->Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("trawl sink: metrics at /metrics\n", "text/plain");
  });
  // Loopback only, by design.
  port_ = port == 0 ? server_->bind_to_any_port("127.0.0.1")
                    : (server_->bind_to_port("127.0.0.1", port) ? port : -1);
  if (port_ <= 0)
    throw std::runtime_error("metrics: cannot listen on 127.0.0.1:" + std::to_string(port) + ": " +
                             std::strerror(errno));
  thread_ = std::thread([this] { server_->listen_after_bind(); });
}

MetricsServer::~MetricsServer() {
  server_->stop();
  if (thread_.joinable()) thread_.join();
}

void MetricsServer::publish(std::string text) {
  std::lock_guard lock(mutex_);
  text_.swap(text);
}

std::string MetricsServer::text() const {
  std::lock_guard lock(mutex_);
  return text_;
}

} // namespace trawl::broker
