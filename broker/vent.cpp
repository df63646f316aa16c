#include "broker/vent.hpp"

#include <CLI/CLI.hpp>
#include <chrono>
#include <deque>
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
  cmd.add_option("--task-hwm", o.task_hwm,
                 "Tasks queued per connected downloader before the ventilator waits")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000));
}

namespace {

std::int64_t unix_ms_now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}


class Vent {
public:
  explicit Vent(const VentOptions& o)
      : links_(make_socket(ctx_, zmq::socket_type::pull, {.sndhwm = 1000, .rcvhwm = 1000})),
        tasks_(make_socket(ctx_, zmq::socket_type::push,
                           {.sndhwm = o.task_hwm, .rcvhwm = o.task_hwm, .kernel_buffer = 16384})),
        acks_(make_socket(ctx_, zmq::socket_type::pull, {})),
        sink_(make_socket(ctx_, zmq::socket_type::push, {})) {
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
      zmq::pollitem_t items[] = {
          {links_.handle(), 0, static_cast<short>(want_link() ? ZMQ_POLLIN : 0), 0},
          {tasks_.handle(), 0, static_cast<short>(pending_ ? ZMQ_POLLOUT : 0), 0},
          {acks_.handle(), 0, ZMQ_POLLIN, 0},
          {sink_.handle(), 0, static_cast<short>(to_sink_.empty() ? 0 : ZMQ_POLLOUT), 0},
      };
      try {
        zmq::poll(items, 4, std::chrono::milliseconds(200));
      } catch (const zmq::error_t& e) {
        if (e.num() == EINTR) continue;
        throw;
      }
      if (items[2].revents & ZMQ_POLLIN) drain_acks();
      if (items[0].revents & ZMQ_POLLIN) take_link();
      if (pending_ && try_send(tasks_, *pending_)) {
        pending_.reset();
        ++dispatched_;
      }
      while (!to_sink_.empty() && try_send(sink_, to_sink_.front())) to_sink_.pop_front();
    }
    spdlog::warn("stopped: {} links received, {} tasks dispatched, {} acknowledged", received_,
                 dispatched_, acked_);
    return kExitInterrupted;
  }

private:
  bool want_link() const { return !pending_ && !links_ended_; }

  bool complete() const {
    return links_ended_ && !pending_ && acked_ >= received_ && to_sink_.empty();
  }

  void take_link() {
    // Read frames until one link becomes the pending task: the task socket was not asked yet.
    while (want_link()) {
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
