#include "broker/vent.hpp"

#include <CLI/CLI.hpp>
#include <chrono>
#include <deque>
#include <map>
#include <optional>
#include <thread>
#include <spdlog/spdlog.h>

#include "broker/names.hpp"
#include "common/exit_codes.hpp"
#include "common/hash_set.hpp"
#include "common/signals.hpp"
#include "common/zmq_util.hpp"
#include "proto/messages.hpp"

namespace trawl::broker {

void add_options(CLI::App& cmd, VentOptions& o) {
  cmd.add_option("--links", o.links_bind,
                 "Endpoint(s) to bind for links from the fetcher (PULL)")
      ->capture_default_str();
  cmd.add_option("--bind,--tasks", o.tasks_bind,
                 "Endpoint(s) to bind for downloaders to take tasks from (PUSH)")
      ->capture_default_str();
  cmd.add_option("--acks", o.acks_bind,
                 "Endpoint(s) to bind for the sink's acknowledgements (PULL)")
      ->capture_default_str();
  cmd.add_option("--sink", o.sink, "The sink's results endpoint(s) to connect to (PUSH)")
      ->capture_default_str();
  cmd.add_option("--ready-file", o.ready_file,
                 "Write the bound endpoints (links=, tasks=, acks=) to this file once listening");
  cmd.add_option_function<int>(
         "--peer-timeout-ms", [&o](const int& ms) { o.peer_timeout = std::chrono::milliseconds(ms); },
         "A downloader that sends no ready/heartbeat for this long is considered gone")
      ->default_str(std::to_string(o.peer_timeout.count()))
      ->check(CLI::Range(100, 3600000));
}

namespace {

std::int64_t unix_ms_now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}


// A downloader connected to the task socket, known by its ROUTER routing id.
struct Peer {
  std::string node;
  std::uint32_t capacity = 0;
  std::uint32_t held = 0;
  std::uint64_t received = 0; // as last reported
  std::uint64_t sent = 0;     // by us, counted on the same basis as `received`
  std::chrono::steady_clock::time_point last_seen;

  // Tasks this peer may still be sent: its capacity less what it holds and what is on the way.
  std::uint64_t credit() const {
    const std::uint64_t in_transit = sent > received ? sent - received : 0;
    const std::uint64_t used = held + in_transit;
    return used >= capacity ? 0 : capacity - used;
  }
};

class Vent {
public:
  explicit Vent(const VentOptions& o)
      : links_(make_socket(ctx_, zmq::socket_type::pull, {.sndhwm = 1000, .rcvhwm = 1000})),
        tasks_(make_socket(ctx_, zmq::socket_type::router, {})),
        acks_(make_socket(ctx_, zmq::socket_type::pull, {})),
        sink_(make_socket(ctx_, zmq::socket_type::push, {})),
        peer_timeout_(o.peer_timeout) {
    // A task for a peer that has gone is an error we see, not a message silently dropped.
    tasks_.set(zmq::sockopt::router_mandatory, 1);
    auto links = bind_all(links_, o.links_bind);
    auto tasks = bind_all(tasks_, o.tasks_bind);
    auto acks = bind_all(acks_, o.acks_bind);
    connect_all(sink_, o.sink);
    for (const auto& e : tasks) spdlog::info("tasks on {}", e);
    for (const auto& e : links) spdlog::info("links on {}", e);
    if (!o.ready_file.empty()) {
      std::vector<std::pair<std::string, std::string>> entries;
      for (const auto& e : links) entries.emplace_back("links", e);
      for (const auto& e : tasks) entries.emplace_back("tasks", e);
      for (const auto& e : acks) entries.emplace_back("acks", e);
      write_ready_file(o.ready_file, entries);
    }
  }

  int run() {
    while (!stop_requested()) {
      if (complete()) {
        spdlog::info("job complete: {} tasks dispatched and acknowledged", dispatched_);
        flush_sink(std::chrono::seconds(2));
        return kExitOk;
      }
      Peer* target = pending_ ? best_peer() : nullptr;
      zmq::pollitem_t items[] = {
          {links_.handle(), 0, static_cast<short>(want_link() ? ZMQ_POLLIN : 0), 0},
          {tasks_.handle(), 0, ZMQ_POLLIN, 0},
          {acks_.handle(), 0, ZMQ_POLLIN, 0},
          {sink_.handle(), 0, static_cast<short>(to_sink_.empty() ? 0 : ZMQ_POLLOUT), 0},
      };
      try {
        // With a task ready and a peer to take it, do not sleep.
        zmq::poll(items, 4, std::chrono::milliseconds(target ? 0 : 200));
      } catch (const zmq::error_t& e) {
        if (e.num() == EINTR) continue;
        throw;
      }
      if (items[1].revents & ZMQ_POLLIN) drain_ready();
      if (items[2].revents & ZMQ_POLLIN) drain_acks();
      if (items[0].revents & ZMQ_POLLIN) take_link();
      dispatch();
      expire_peers();
      while (!to_sink_.empty() && try_send(sink_, to_sink_.front())) to_sink_.pop_front();
    }
    spdlog::warn("stopped: {} links received, {} tasks dispatched, {} acknowledged", received_,
                 dispatched_, acked_);
    return kExitInterrupted;
  }

private:
  // A link is read only when a downloader has room for it: the backlog stays upstream.
  bool want_link() const { return !pending_ && !links_ended_ && has_credit(); }

  bool has_credit() const {
    for (const auto& [id, p] : peers_)
      if (p.credit() > 0) return true;
    return false;
  }

  // The peer with the most room: a node that just joined gets work first.
  Peer* best_peer() {
    Peer* best = nullptr;
    std::string_view best_id;
    for (auto& [id, p] : peers_)
      if (p.credit() > 0 && (!best || p.credit() > best->credit())) {
        best = &p;
        best_id = id;
      }
    best_id_ = best_id;
    return best;
  }

  bool complete() const {
    return links_ended_ && !pending_ && acked_ >= received_ && to_sink_.empty();
  }

  void dispatch() {
    while (pending_) {
      Peer* p = best_peer();
      if (!p) return;
      const std::string id(best_id_);
      try {
        tasks_.send(zmq::buffer(id), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
        auto sent = tasks_.send(zmq::buffer(*pending_), zmq::send_flags::dontwait);
        if (!sent) return; // its queue is full: try again next turn
      } catch (const zmq::error_t& e) {
        if (e.num() != EHOSTUNREACH) throw;
        spdlog::info("downloader {} is gone", p->node);
        peers_.erase(id);
        continue;
      }
      ++p->sent;
      ++dispatched_;
      pending_.reset();
      take_link(); // the next one, if the fetcher has it queued
    }
  }

  void drain_ready() {
    for (;;) {
      zmq::message_t routing, body;
      if (!tasks_.recv(routing, zmq::recv_flags::dontwait)) return;
      if (!routing.more() || !tasks_.recv(body, zmq::recv_flags::dontwait)) {
        drop("tasks", "a frame without a body");
        continue;
      }
      while (body.more()) { // a DEALER speaks one frame at a time: anything more is noise
        zmq::message_t extra;
        if (!tasks_.recv(extra, zmq::recv_flags::dontwait)) break;
        body.swap(extra);
        drop("tasks", "a multi-part message");
      }
      auto decoded = proto::decode(body.to_string_view());
      if (auto* err = std::get_if<proto::DecodeError>(&decoded)) {
        drop("tasks", err->what);
        continue;
      }
      auto* ready = std::get_if<proto::Ready>(&std::get<proto::Message>(decoded));
      if (!ready) {
        drop("tasks", "not a ready message");
        continue;
      }
      const std::string id(routing.to_string_view());
      auto [it, fresh] = peers_.try_emplace(id);
      Peer& p = it->second;
      if (fresh) {
        // What it received before we knew it (from an earlier ventilator) is not ours.
        p.sent = ready->received;
        spdlog::info("downloader {} joined (capacity {})", ready->node, ready->capacity);
      }
      p.node = ready->node;
      p.capacity = ready->capacity;
      p.held = ready->held;
      p.received = ready->received;
      p.last_seen = std::chrono::steady_clock::now();
    }
  }

  void expire_peers() {
    const auto now = std::chrono::steady_clock::now();
    for (auto it = peers_.begin(); it != peers_.end();) {
      if (now - it->second.last_seen > peer_timeout_) {
        spdlog::warn("downloader {} silent for {} ms: dropped", it->second.node,
                     peer_timeout_.count());
        it = peers_.erase(it);
      } else {
        ++it;
      }
    }
  }

  void take_link() {
    // Read frames until one link becomes the pending task.
    while (!pending_ && !links_ended_) {
      auto msg = try_recv(links_);
      if (!msg) return;
      auto decoded = proto::decode(msg->to_string_view());
      if (auto* err = std::get_if<proto::DecodeError>(&decoded)) {
        drop("links", err->what);
        continue;
      }
      auto& m = std::get<proto::Message>(decoded);
      if (auto* link = std::get_if<proto::Link>(&m)) {
        if (received_ == 0) {
          started_ms_ = unix_ms_now();
          to_sink_.push_back(proto::encode(proto::Job{started_ms_, -1}));
        }
        ++received_;
        proto::Task t{received_, link->url, names_.assign(link->url), 1};
        pending_ = proto::encode(t);
      } else if (auto* end = std::get_if<proto::LinksEnd>(&m)) {
        if (end->count != received_)
          spdlog::warn("fetcher says it sent {} links, {} arrived", end->count, received_);
        links_ended_ = true;
        if (received_ == 0) started_ms_ = unix_ms_now();
        spdlog::info("fetcher done: the job has {} links", received_);
        to_sink_.push_back(
            proto::encode(proto::Job{started_ms_, static_cast<std::int64_t>(received_)}));
      } else {
        drop("links", "unexpected " + std::string(proto::type_name(m)) + " message");
      }
    }
  }

  void drain_acks() {
    while (auto msg = try_recv(acks_)) {
      auto decoded = proto::decode(msg->to_string_view());
      if (auto* err = std::get_if<proto::DecodeError>(&decoded)) {
        drop("acks", err->what);
        continue;
      }
      auto* ack = std::get_if<proto::Ack>(&std::get<proto::Message>(decoded));
      if (!ack) {
        drop("acks", "not an ack");
        continue;
      }
      if (ack->id == 0 || ack->id > received_) {
        drop("acks", "ack for unknown task " + std::to_string(ack->id));
        continue;
      }
      if (acked_ids_.insert(id_key(ack->id))) ++acked_;
    }
  }

  void drop(std::string_view socket, const std::string& why) {
    ++dropped_;
    spdlog::warn("dropped a frame on {} ({} so far): {}", socket, dropped_, why);
  }

  void flush_sink(std::chrono::milliseconds budget) {
    const auto deadline = std::chrono::steady_clock::now() + budget;
    while (!to_sink_.empty() && std::chrono::steady_clock::now() < deadline) {
      if (try_send(sink_, to_sink_.front())) to_sink_.pop_front();
      else std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  zmq::context_t ctx_{1};
  zmq::socket_t links_, tasks_, acks_, sink_;
  std::chrono::milliseconds peer_timeout_;
  std::map<std::string, Peer> peers_;
  std::string_view best_id_;
  NameAssigner names_;
  HashSet64 acked_ids_;
  std::optional<std::string> pending_;
  std::deque<std::string> to_sink_;
  std::uint64_t received_ = 0, dispatched_ = 0, acked_ = 0, dropped_ = 0;
  std::int64_t started_ms_ = 0;
  bool links_ended_ = false;
};

} // namespace

int run(const VentOptions& o) {
  Vent vent(o);
  return vent.run();
}

} // namespace trawl::broker
