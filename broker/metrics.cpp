#include "broker/metrics.hpp"

#include <arpa/inet.h>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <dlfcn.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdexcept>
#include <string_view>
#include <type_traits>

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

struct MetricsServer::Library {
  decltype(&MHD_start_daemon) start_daemon;
  decltype(&MHD_stop_daemon) stop_daemon;
  decltype(&MHD_get_daemon_info) daemon_info;
  decltype(&MHD_create_response_from_buffer) create_response;
  decltype(&MHD_add_response_header) add_header;
  decltype(&MHD_queue_response) queue_response;
  decltype(&MHD_destroy_response) destroy_response;
  std::string error; // why it could not be loaded ("" when it was)
};

namespace {

// libmicrohttpd's functions, loaded at the first server and kept for the process.
const MetricsServer::Library& library() {
  static const MetricsServer::Library lib = [] {
    MetricsServer::Library l{};
    void* h = ::dlopen("libmicrohttpd.so.12", RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) {
      const char* why = ::dlerror();
      l.error = std::string("cannot load libmicrohttpd (Debian package libmicrohttpd12): ") +
                (why != nullptr ? why : "dlopen failed");
      return l;
    }
    bool ok = true;
    const auto get = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(::dlsym(h, name));
      if (fn == nullptr) {
        ok = false;
        l.error = std::string("libmicrohttpd has no ") + name;
      }
    };
    get(l.start_daemon, "MHD_start_daemon");
    get(l.stop_daemon, "MHD_stop_daemon");
    get(l.daemon_info, "MHD_get_daemon_info");
    get(l.create_response, "MHD_create_response_from_buffer");
    get(l.add_header, "MHD_add_response_header");
    get(l.queue_response, "MHD_queue_response");
    get(l.destroy_response, "MHD_destroy_response");
    if (!ok) ::dlclose(h);
    return l;
  }();
  return lib;
}

// One request: GET (or HEAD) /metrics, / for a pointer there, 404 elsewhere, 405 for any other
// method. Answered at its headers: a request body is never read.
MHD_Result on_request(void* cls, MHD_Connection* connection, const char* url, const char* method,
                      const char* /*version*/, const char* /*upload_data*/,
                      size_t* /*upload_data_size*/, void** /*con_cls*/) {
  const auto& self = *static_cast<const MetricsServer*>(cls);
  const MetricsServer::Library& lib = library();
  std::string body;
  const char* type = "text/plain";
  unsigned status = MHD_HTTP_OK;
  const std::string_view path(url != nullptr ? url : "");
  if (std::strcmp(method, "GET") != 0 && std::strcmp(method, "HEAD") != 0) {
    status = MHD_HTTP_METHOD_NOT_ALLOWED;
    body = "only GET\n";
  } else if (path == "/metrics") {
    body = self.text();
    type = "text/plain; version=0.0.4; charset=utf-8";
  } else if (path == "/") {
    body = "trawl sink: metrics at /metrics\n";
  } else {
    status = MHD_HTTP_NOT_FOUND;
    body = "not found: the metrics are at /metrics\n";
  }
  MHD_Response* r = lib.create_response(body.size(), body.data(), MHD_RESPMEM_MUST_COPY);
  if (r == nullptr) return MHD_NO; // no memory: the connection is closed
  lib.add_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  if (status == MHD_HTTP_METHOD_NOT_ALLOWED) lib.add_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
  const MHD_Result queued = lib.queue_response(connection, status, r);
  lib.destroy_response(r);
  return queued;
}

} // namespace

MetricsServer::MetricsServer(int port) : lib_(&library()) {
  if (!lib_->error.empty()) throw std::runtime_error("metrics: " + lib_->error);
  if (port < 0 || port > 65535)
    throw std::runtime_error("metrics: no such port " + std::to_string(port));
  // Loopback only, by design.
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  // Its thread takes no signal (they are the sink's loop's), as the thread inherits this mask.
  sigset_t all, old;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  errno = 0;
  MHD_Daemon* d = lib_->start_daemon(
      MHD_USE_AUTO | MHD_USE_INTERNAL_POLLING_THREAD, static_cast<std::uint16_t>(port), nullptr,
      nullptr, &on_request, this, MHD_OPTION_SOCK_ADDR, reinterpret_cast<sockaddr*>(&addr),
      MHD_OPTION_CONNECTION_TIMEOUT, 2U, MHD_OPTION_CONNECTION_LIMIT, 16U,
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, static_cast<size_t>(32 * 1024), MHD_OPTION_END);
  const int err = errno;
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (d == nullptr)
    throw std::runtime_error("metrics: cannot listen on 127.0.0.1:" + std::to_string(port) +
                             (err != 0 ? std::string(": ") + std::strerror(err) : std::string()));
  daemon_ = d;
  const MHD_DaemonInfo* info = lib_->daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
  port_ = info != nullptr && info->port != 0 ? info->port : port;
}

MetricsServer::~MetricsServer() { lib_->stop_daemon(static_cast<MHD_Daemon*>(daemon_)); }

void MetricsServer::publish(std::string text) {
  std::lock_guard lock(mutex_);
  text_.swap(text);
}

std::string MetricsServer::text() const {
  std::lock_guard lock(mutex_);
  return text_;
}

} // namespace trawl::broker
