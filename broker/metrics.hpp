// Prometheus metrics of the sink: the text exposition format rendered from JobStats, and a tiny
// HTTP responder on 127.0.0.1 that serves the latest rendering from its own thread. The sink's loop
// only swaps a string under a mutex (publish), so a slow or hostile scraper can never block it;
// the responder serves one connection at a time with short socket timeouts and a bounded request.
#pragma once

#include <atomic>
#include <mutex>
#include <string>
#include <thread>

#include "broker/stats.hpp"

namespace trawl::broker {

// The metrics in Prometheus text format (version 0.0.4).
std::string prometheus_text(const JobStats& s);

class MetricsServer {
public:
  // Listens on 127.0.0.1:port (0 picks a free port). Throws std::runtime_error when it cannot.
  explicit MetricsServer(int port);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  int port() const noexcept { return port_; }
  // Replaces the text served at /metrics.
  void publish(std::string text);

private:
  void serve();
  void answer(int fd);

  int listen_fd_ = -1;
  int wake_fd_[2] = {-1, -1}; // a pipe: writing to it ends serve()
  int port_ = 0;
  std::mutex mutex_;
  std::string text_;
  std::thread thread_;
};

} // namespace trawl::broker
