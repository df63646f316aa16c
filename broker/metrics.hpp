// Prometheus metrics of the sink: the text exposition format rendered from JobStats, and an HTTP
// server (cpp-httplib) on 127.0.0.1 that serves the latest rendering from its own threads. The
// sink's loop only swaps a string under a mutex (publish), so a slow or hostile scraper can never
// block it; the server's read and write timeouts are short.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "broker/stats.hpp"

namespace httplib {
class Server;
}

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
  std::string text() const;

  std::unique_ptr<httplib::Server> server_;
  int port_ = 0;
  mutable std::mutex mutex_;
  std::string text_;
  std::thread thread_;
};

} // namespace trawl::broker
