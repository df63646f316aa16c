#include "common/zmq_util.hpp"

#include <cstdio>
#include <fstream>
#include <stdexcept>

#include "common/sched.hpp"

namespace trawl {

zmq::socket_t make_socket(zmq::context_t& ctx, zmq::socket_type type, const SocketOptions& opt) {
  zmq::socket_t s(batch_io_threads(ctx), type); // the context's first socket starts its threads
  s.set(zmq::sockopt::linger, static_cast<int>(opt.linger.count()));
  s.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(proto::kMaxFrameBytes));
  s.set(zmq::sockopt::sndhwm, opt.sndhwm);
  s.set(zmq::sockopt::rcvhwm, opt.rcvhwm);
  if (opt.immediate) s.set(zmq::sockopt::immediate, 1);
  // Processes of a pipeline start together and connect before their peer binds: retry after
  // 2 ms rather than libzmq's 100 ms default (a downloader that tried before the ventilator
  // had bound joined 9-10 ms late with 10 ms), backing off to 1 s for a peer that stays away.
  s.set(zmq::sockopt::reconnect_ivl, 2);
  s.set(zmq::sockopt::reconnect_ivl_max, 1000);
  return s;
}

namespace {

// trawl's transports: tcp between hosts, ipc on one host, inproc inside a process. ZeroMQ's
// multicast ones (pgm, epgm, norm) and the rest are refused here with a clear message: they
// carry nothing trawl sends (PUSH/PULL), and the trawl binary links stand-ins for libnorm and
// libgssapi_krb5 (cmake/stand-ins.cmake).
void check_transport(const std::string& ep, const char* what) {
  for (const char* scheme : {"tcp://", "ipc://", "inproc://"})
    if (ep.starts_with(scheme)) return;
  throw std::runtime_error(std::string("cannot ") + what + " " + ep +
                           ": trawl's endpoints are tcp://HOST:PORT, ipc://PATH or inproc://NAME");
}

} // namespace

std::vector<std::string> bind_all(zmq::socket_t& s, const std::vector<std::string>& endpoints) {
  std::vector<std::string> bound;
  for (const auto& ep : endpoints) {
    check_transport(ep, "bind");
    try {
      s.bind(ep);
    } catch (const zmq::error_t& e) {
      throw std::runtime_error("cannot bind " + ep + ": " + e.what());
    }
    bound.push_back(s.get(zmq::sockopt::last_endpoint));
  }
  return bound;
}

void connect_all(zmq::socket_t& s, const std::vector<std::string>& endpoints) {
  for (const auto& ep : endpoints) {
    check_transport(ep, "connect to");
    try {
      // A local peer (ipc) is tried again every 20 ms at most: trawl pipeline starts its sink
      // after the others (app/pipeline.cpp). With the backoff growing to 1 s, a one-link job
      // with 2 downloaders whose sink started at 250 ms took 599-659 ms against 120-169, the
      // rest waiting for the downloader's next try. A refused ipc connect is one cheap system
      // call; tcp keeps 1 s.
      s.set(zmq::sockopt::reconnect_ivl_max, ep.starts_with("ipc://") ? 20 : 1000);
      s.connect(ep);
    } catch (const zmq::error_t& e) {
      throw std::runtime_error("cannot connect to " + ep + ": " + e.what());
    }
  }
}

void write_ready_file(const std::string& path,
                      const std::vector<std::pair<std::string, std::string>>& entries) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) throw std::runtime_error("cannot write ready file " + tmp);
    for (const auto& [k, v] : entries) out << k << '=' << v << '\n';
    if (!out.flush()) throw std::runtime_error("cannot write ready file " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    throw std::runtime_error("cannot rename ready file to " + path);
}

bool try_send(zmq::socket_t& s, const std::string& frame) {
  auto sent = s.send(zmq::buffer(frame), zmq::send_flags::dontwait);
  return sent.has_value();
}

bool try_send(zmq::socket_t& s, zmq::message_t& msg) {
  return s.send(msg, zmq::send_flags::dontwait).has_value();
}

std::optional<zmq::message_t> try_recv(zmq::socket_t& s) {
  zmq::message_t msg;
  auto got = s.recv(msg, zmq::recv_flags::dontwait);
  if (!got) return std::nullopt;
  return msg;
}

bool readable(zmq::socket_t& s) {
  return (s.get(zmq::sockopt::events) & ZMQ_POLLIN) != 0;
}

} // namespace trawl
