#include "common/zap.hpp"

#include <array>
#include <cstring>
#include <filesystem>
#include <spdlog/spdlog.h>
#include <stdexcept>
#include <zmq.h>

#include "common/rate_limit.hpp"
#include "common/sched.hpp"

namespace trawl {
namespace {

constexpr const char* kZapEndpoint = "inproc://zeromq.zap.01";
constexpr auto kReloadEvery = std::chrono::seconds(1);

std::string z85(const std::string& binary32) {
  char out[41] = {};
  if (binary32.size() != 32 ||
      zmq_z85_encode(out, reinterpret_cast<const std::uint8_t*>(binary32.data()), 32) == nullptr)
    return "";
  return out;
}

std::string protocol_error_name(std::uint32_t code) {
  switch (code) {
  case ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
    return "security mechanism mismatch (a client without CurveZMQ keys?)";
  case ZMQ_PROTOCOL_ERROR_ZMTP_UNEXPECTED_COMMAND:
  case ZMQ_PROTOCOL_ERROR_ZMTP_INVALID_SEQUENCE:
  case ZMQ_PROTOCOL_ERROR_ZMTP_MALFORMED_COMMAND_UNSPECIFIED:
  case ZMQ_PROTOCOL_ERROR_ZMTP_MALFORMED_COMMAND_HELLO:
  case ZMQ_PROTOCOL_ERROR_ZMTP_MALFORMED_COMMAND_INITIATE:
    return "malformed CURVE handshake (a wrong server key on the client?)";
  case ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
    return "cryptographic error (the client has a wrong server key?)";
  default:
    return "protocol error 0x" + fmt::format("{:x}", code);
  }
}

} // namespace

ZapHandler::ZapHandler(zmq::context_t& ctx, const CurveSetup& setup,
                       const std::vector<std::pair<zmq::socket_t*, std::string>>& watched)
    : own_public_(setup.own().public_z85), source_(setup.authorized_source()),
      rep_(batch_io_threads(ctx), zmq::socket_type::rep) { // may be the context's first socket
  std::error_code ec;
  source_mtime_ = std::filesystem::last_write_time(source_, ec);
  for (auto& k : read_authorized(source_)) keys_.insert(std::move(k));
  last_reload_ = std::chrono::steady_clock::now();
  rep_.set(zmq::sockopt::linger, 0);
  try {
    rep_.bind(kZapEndpoint);
  } catch (const zmq::error_t& e) {
    throw std::runtime_error(std::string("cannot bind the ZAP handler: ") + e.what());
  }
  static std::atomic<int> serial{0};
  for (const auto& [sock, name] : watched) {
    const std::string ep = "inproc://trawl-monitor-" + std::to_string(serial++);
    if (zmq_socket_monitor(sock->handle(), ep.c_str(),
                           ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) != 0)
      throw std::runtime_error("cannot monitor the " + name + " socket: " +
                               zmq_strerror(zmq_errno()));
    zmq::socket_t pair(ctx, zmq::socket_type::pair);
    pair.set(zmq::sockopt::linger, 0);
    pair.connect(ep);
    monitors_.push_back({name, std::move(pair)});
  }
  spdlog::info("CurveZMQ on: {} authorised key(s) from {}, our public key {}", keys_.size(),
               source_, own_public_);
  thread_ = std::thread([this] { loop(); });
}

ZapHandler::~ZapHandler() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  for (auto& m : monitors_) m.pair.close();
  rep_.close();
}

void ZapHandler::loop() {
  while (!stop_) {
    std::vector<zmq::pollitem_t> items;
    items.push_back({rep_.handle(), 0, ZMQ_POLLIN, 0});
    for (auto& m : monitors_) items.push_back({m.pair.handle(), 0, ZMQ_POLLIN, 0});
    try {
      zmq::poll(items, std::chrono::milliseconds(100));
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      if (e.num() == ETERM) return;
      spdlog::error("ZAP handler: {}", e.what());
      return;
    }
    try {
      if (items[0].revents & ZMQ_POLLIN) answer();
      for (std::size_t i = 0; i < monitors_.size(); ++i)
        if (items[i + 1].revents & ZMQ_POLLIN) on_monitor_event(monitors_[i]);
    } catch (const zmq::error_t& e) {
      if (e.num() == ETERM) return;
      spdlog::error("ZAP handler: {}", e.what());
    }
  }
}

bool ZapHandler::authorised(const std::string& key) {
  if (key == own_public_ || keys_.contains(key)) return true;
  // A key added to the authorised file or directory is accepted without a restart. It is re-read
  // when its modification time changed (adding a file to a directory changes the directory's),
  // or at most once a second otherwise, so a knocking stranger cannot make us read it in a loop.
  const auto now = std::chrono::steady_clock::now();
  std::error_code ec;
  const auto mtime = std::filesystem::last_write_time(source_, ec);
  if (mtime == source_mtime_ && now - last_reload_ < kReloadEvery) return false;
  last_reload_ = now;
  source_mtime_ = mtime;
  try {
    std::unordered_set<std::string> fresh;
    for (auto& k : read_authorized(source_)) fresh.insert(std::move(k));
    if (fresh.size() != keys_.size())
      spdlog::info("authorised keys re-read from {}: {} key(s)", source_, fresh.size());
    keys_ = std::move(fresh);
  } catch (const std::exception& e) {
    spdlog::warn("authorised keys not re-read (the old set stays): {}", e.what());
  }
  return keys_.contains(key);
}

void ZapHandler::answer() {
  std::vector<zmq::message_t> frames;
  while (true) {
    zmq::message_t msg;
    if (!rep_.recv(msg, zmq::recv_flags::dontwait)) break;
    const bool more = msg.more();
    if (frames.size() < 16) frames.push_back(std::move(msg));
    if (!more) break;
  }
  if (frames.empty()) return;
  // version, request id, domain, address, routing id, mechanism, credentials...
  const auto frame = [&frames](std::size_t i) {
    return i < frames.size() ? frames[i].to_string() : std::string();
  };
  const std::string version = frame(0);
  const std::string request_id = frame(1);
  const std::string address = frame(3);
  const std::string mechanism = frame(5);
  std::string status = "400";
  std::string text = "not authorised";
  std::string user_id;
  std::string key;
  if (version != "1.0") {
    text = "unknown ZAP version";
  } else if (mechanism != "CURVE") {
    text = "only CURVE clients are accepted";
  } else if (key = z85(frame(6)); key.empty()) {
    text = "malformed CURVE credentials";
  } else if (authorised(key)) {
    status = "200";
    text = "OK";
    user_id = key;
  }
  if (status == "200") {
    ++accepted_;
    spdlog::debug("accepted CurveZMQ client {} key {}", address, key.substr(0, 8));
  } else {
    ++refused_;
    if (refusal_log_.allow()) {
      const auto skipped = refusal_log_.take_suppressed();
      spdlog::warn("refused a connection from {} (mechanism {}, key {}...): {}{}", address,
                   mechanism.empty() ? "?" : mechanism, key.empty() ? "-" : key.substr(0, 8),
                   text,
                   skipped > 0 ? fmt::format(" ({} more refusals not logged)", skipped) : "");
    }
  }
  const std::array<std::string, 6> reply{"1.0", request_id, status, text, user_id, ""};
  for (std::size_t i = 0; i < reply.size(); ++i)
    rep_.send(zmq::buffer(reply[i]),
              i + 1 < reply.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
}

void ZapHandler::on_monitor_event(Monitor& m) {
  zmq::message_t head, endpoint;
  if (!m.pair.recv(head, zmq::recv_flags::dontwait)) return;
  if (head.more()) (void)m.pair.recv(endpoint, zmq::recv_flags::dontwait);
  if (head.size() < 6) return;
  std::uint16_t event = 0;
  std::uint32_t value = 0;
  std::memcpy(&event, head.data(), 2);
  std::memcpy(&value, static_cast<const char*>(head.data()) + 2, 4);
  ++refused_;
  if (!handshake_log_.allow()) return;
  const auto skipped = handshake_log_.take_suppressed();
  const std::string why = event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
                              ? protocol_error_name(value)
                              : std::string("handshake failed (") + zmq_strerror(int(value)) +
                                    "): a client without CurveZMQ keys, or not a trawl node?";
  spdlog::warn("refused a connection on the {} socket ({}): {}{}", m.name, endpoint.to_string(),
               why, skipped > 0 ? fmt::format(" ({} more not logged)", skipped) : "");
}

} // namespace trawl
