#include "broker/metrics.hpp"

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <stdexcept>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

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

std::string seconds(std::uint32_t ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", ms / 1000.0);
  return buf;
}

void send_all(int fd, const std::string& data) {
  std::size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      return; // the scraper went away or is too slow (SO_SNDTIMEO): its problem
    }
    off += static_cast<std::size_t>(n);
  }
}

} // namespace

std::string prometheus_text(const JobStats& st) {
  std::string s;
  head(s, "trawl_links_total", "gauge", "Links of the job (-1 until the fetcher is done).");
  line(s, "trawl_links_total", static_cast<double>(st.total()));
  head(s, "trawl_links_done", "gauge", "Links done, per the ventilator's ledger (includes skipped).");
  line(s, "trawl_links_done", st.done());
  head(s, "trawl_links_failed", "gauge", "Links failed, per the ventilator's ledger.");
  line(s, "trawl_links_failed", st.failed());
  head(s, "trawl_links_skipped", "gauge", "Links done in an earlier run of the job.");
  line(s, "trawl_links_skipped", st.skipped());
  head(s, "trawl_results_done_total", "counter", "Downloads completed, as received by this sink.");
  line(s, "trawl_results_done_total", st.received_done());
  head(s, "trawl_results_failed_total", "counter", "Failed links received by this sink, by reason.");
  for (const auto& [reason, g] : st.failures())
    line(s, "trawl_results_failed_total{reason=\"" + std::string(proto::reason_name(reason)) + "\"}", g.count);
  head(s, "trawl_bytes_total", "counter", "Bytes downloaded (completed files).");
  line(s, "trawl_bytes_total", st.bytes());
  head(s, "trawl_duplicate_results_total", "counter", "Duplicate results ignored.");
  line(s, "trawl_duplicate_results_total", st.duplicates());
  head(s, "trawl_tasks_requeued_total", "counter", "Tasks the ventilator dispatched again.");
  line(s, "trawl_tasks_requeued_total", st.requeued());
  head(s, "trawl_transfers_active", "gauge", "Tasks leased to downloaders now.");
  line(s, "trawl_transfers_active", st.active());
  head(s, "trawl_nodes", "gauge", "Downloaders connected to the ventilator.");
  line(s, "trawl_nodes", st.nodes_connected());
  head(s, "trawl_job_complete", "gauge", "1 once every link is done or failed.");
  line(s, "trawl_job_complete", std::uint64_t{st.complete() ? 1u : 0u});
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

MetricsServer::MetricsServer(int port) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) throw std::runtime_error(std::string("metrics: socket: ") + std::strerror(errno));
  const int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK); // loopback only, by design
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listen_fd_, 16) != 0) {
    const std::string err = std::strerror(errno);
    ::close(listen_fd_);
    throw std::runtime_error("metrics: cannot listen on 127.0.0.1:" + std::to_string(port) + ": " + err);
  }
  socklen_t len = sizeof addr;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  if (::pipe2(wake_fd_, O_CLOEXEC) != 0) {
    ::close(listen_fd_);
    throw std::runtime_error(std::string("metrics: pipe: ") + std::strerror(errno));
  }
  thread_ = std::thread([this] { serve(); });
}

MetricsServer::~MetricsServer() {
  const char c = 'x';
  [[maybe_unused]] auto n = ::write(wake_fd_[1], &c, 1);
  if (thread_.joinable()) thread_.join();
  ::close(listen_fd_);
  ::close(wake_fd_[0]);
  ::close(wake_fd_[1]);
}

void MetricsServer::publish(std::string text) {
  std::lock_guard lock(mutex_);
  text_.swap(text);
}

void MetricsServer::serve() {
  for (;;) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_[0], POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::warn("metrics: poll: {}", std::strerror(errno));
      return;
    }
    if (fds[1].revents) return;
    if (!(fds[0].revents & POLLIN)) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    answer(fd);
    ::close(fd);
  }
}

void MetricsServer::answer(int fd) {
  timeval tv{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  // The request head only, bounded: 8 KiB or 2 s, whichever comes first.
  std::string req;
  char buf[2048];
  while (req.size() < 8192 && req.find("\r\n\r\n") == std::string::npos && req.find("\n\n") == std::string::npos) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    req.append(buf, static_cast<std::size_t>(n));
  }
  const auto eol = req.find_first_of("\r\n");
  const std::string first = req.substr(0, eol == std::string::npos ? req.size() : eol);
  auto reply = [fd](const char* status, const char* type, const std::string& body, bool head_only) {
    std::string out = std::string("HTTP/1.1 ") + status + "\r\nContent-Type: " + type +
                      "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
    if (!head_only) out += body;
    send_all(fd, out);
  };
  const bool get = first.rfind("GET ", 0) == 0, head = first.rfind("HEAD ", 0) == 0;
  if (!get && !head) {
    reply("405 Method Not Allowed", "text/plain", "only GET\n", false);
    return;
  }
  std::string target = first.substr(get ? 4 : 5);
  target = target.substr(0, target.find(' '));
  if (target == "/metrics" || target.rfind("/metrics?", 0) == 0) {
    std::string body;
    {
      std::lock_guard lock(mutex_);
      body = text_;
    }
    reply("200 OK", "text/plain; version=0.0.4; charset=utf-8", body, head);
  } else if (target == "/") {
    reply("200 OK", "text/plain", "trawl sink: metrics at /metrics\n", head);
  } else {
    reply("404 Not Found", "text/plain", "not found\n", head);
  }
}

} // namespace trawl::broker
