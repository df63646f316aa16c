// Prometheus metrics of the sink: the text exposition format rendered from JobStats, and an HTTP
// server (GNU libmicrohttpd) on 127.0.0.1 that serves the latest rendering from its own thread.
// The sink's loop only swaps a string under a mutex (publish), so a slow or hostile scraper can
// never block it; the server's connection timeout is short and its connections few and small.
//
// libmicrohttpd is loaded (dlopen) only when a server is made: linked into the binary, an HTTP
// server library is loaded and initialized at the start of every trawl process, metrics or not
// (cpp-httplib, which served here before, cost 1.3 ms of each job's start: its shared library
// and the OpenSSL set-up its constructor runs; `perf stat -r 150 trawl --version`, 3 alternating
// blocks, 10.4 ms with it against 9.1).
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "broker/stats.hpp"

namespace trawl::broker {

// The metrics in Prometheus text format (version 0.0.4).
std::string prometheus_text(const JobStats& s);

class MetricsServer {
public:
  // Listens on 127.0.0.1:port (0 picks a free port). Throws std::runtime_error when it cannot
  // (the port is taken, libmicrohttpd is not installed).
  explicit MetricsServer(int port);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  int port() const noexcept { return port_; }
  // Replaces the text served at /metrics.
  void publish(std::string text);
  // The text served at /metrics now (any thread).
  std::string text() const;

  struct Library; // the functions of libmicrohttpd, once loaded

private:
  const Library* lib_ = nullptr;
  void* daemon_ = nullptr; // struct MHD_Daemon*
  int port_ = 0;
  mutable std::mutex mutex_;
  std::string text_;
};

} // namespace trawl::broker
