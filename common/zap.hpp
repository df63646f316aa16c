// The ZAP handler of a CurveZMQ server (ZeroMQ RFC 27, ZAP 1.0). libzmq authenticates a CURVE
// client only by asking the handler bound at inproc://zeromq.zap.01 in the socket's context:
// without one, any client that knows the server's public key gets in. This handler runs in its own
// thread, answers 200 for a client whose public key is authorised (our own key, or one listed in
// --curve-authorized) and 400 otherwise, and logs every refusal (peer address and key prefix) at
// warning level, rate-limited.
//
// It also watches the server sockets it is given (a socket monitor) and logs handshakes that fail
// before ZAP is asked: a client without keys (NULL mechanism) or a peer that does not speak ZMTP.
//
// Lifetime: construct it after the context and before binding any server socket; destroy it after
// the server sockets are closed (declare it between the context and the sockets), so that no
// connection is ever accepted without the handler.
#pragma once

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>
#include <zmq.hpp>

#include "common/curve.hpp"
#include "common/rate_limit.hpp"

namespace trawl {

class ZapHandler {
public:
  // Binds the handler's REP socket and starts its thread; `watched` are (socket, name) pairs of
  // server sockets whose failed handshakes are logged. Throws std::runtime_error when the
  // authorised keys cannot be read or the ZAP endpoint is taken.
  ZapHandler(zmq::context_t& ctx, const CurveSetup& setup,
             const std::vector<std::pair<zmq::socket_t*, std::string>>& watched);
  ~ZapHandler();
  ZapHandler(const ZapHandler&) = delete;
  ZapHandler& operator=(const ZapHandler&) = delete;

  std::uint64_t accepted() const { return accepted_.load(); }
  std::uint64_t refused() const { return refused_.load(); }

private:
  struct Monitor {
    std::string name;
    zmq::socket_t pair;
  };
  void loop();
  void answer();
  void on_monitor_event(Monitor& m);
  bool authorised(const std::string& key_z85);

  std::string own_public_;
  std::string source_;
  std::unordered_set<std::string> keys_;
  std::chrono::steady_clock::time_point last_reload_{};
  std::filesystem::file_time_type source_mtime_{};
  zmq::socket_t rep_;
  std::vector<Monitor> monitors_;
  LogRateLimit refusal_log_, handshake_log_;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> accepted_{0}, refused_{0};
  std::thread thread_;
};

} // namespace trawl
