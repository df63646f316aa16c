// Socket set-up shared by every actor: the options every socket gets (linger, maximum message
// size, high-water marks), binding/connecting lists of endpoints, and the ready file through which
// a process announces the endpoints it actually bound (tests bind tcp://127.0.0.1:* and read it).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "proto/messages.hpp"

namespace trawl {

struct SocketOptions {
  int sndhwm = 1000;
  int rcvhwm = 1000;
  std::chrono::milliseconds linger{2000};
  bool immediate = false; // PUSH that connects: queue nothing to a peer that is not connected yet
};

// Creates a socket with the project's defaults: ZMQ_MAXMSGSIZE bounded by the largest frame the
// protocol allows, so a hostile peer cannot make libzmq allocate more.
zmq::socket_t make_socket(zmq::context_t& ctx, zmq::socket_type type, const SocketOptions& opt);

// Binds each endpoint; returns the resolved endpoints (tcp://127.0.0.1:* becomes a real port).
// Throws zmq::error_t with the endpoint named in the message.
std::vector<std::string> bind_all(zmq::socket_t& s, const std::vector<std::string>& endpoints);
void connect_all(zmq::socket_t& s, const std::vector<std::string>& endpoints);

// Writes "key=value" lines atomically (temp file + rename) so a reader never sees half a file.
void write_ready_file(const std::string& path,
                      const std::vector<std::pair<std::string, std::string>>& entries);

// Non-blocking send of one encoded message. Returns false when the socket would block.
bool try_send(zmq::socket_t& s, const std::string& frame);
// The same for a message already in hand (e.g. one received, sent on): no copy. On success the
// message is handed to ZeroMQ and left empty; otherwise it is unchanged.
bool try_send(zmq::socket_t& s, zmq::message_t& msg);

// Non-blocking receive; nullopt when nothing is queued.
std::optional<zmq::message_t> try_recv(zmq::socket_t& s);

// True while ZMQ_EVENTS says the socket has a message to read (ZMQ_FD is edge-triggered).
bool readable(zmq::socket_t& s);

} // namespace trawl
