#include "broker/sink.hpp"

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <deque>
#include <spdlog/spdlog.h>
#include <thread>
#include <unistd.h>

#include "broker/stats.hpp"
#include "common/clock.hpp"
#include "common/exit_codes.hpp"
#include "common/signals.hpp"
#include "common/zmq_util.hpp"
#include "proto/messages.hpp"

namespace trawl::broker {

void add_options(CLI::App& cmd, SinkOptions& o) {
  cmd.add_option("--bind,--results", o.results_bind,
                 "Endpoint(s) to bind for results from downloaders and job facts from the "
                 "ventilator (PULL)")
      ->capture_default_str();
  cmd.add_option("--acks", o.acks,
                 "The ventilator's acknowledgement endpoint(s) to connect to (PUSH): every result "
                 "is forwarded there; \"\" for none")
      ->capture_default_str();
  cmd.add_option("--ready-file", o.ready_file,
                 "Write the bound endpoints (results=...) to this file once listening");
  cmd.add_option("--progress", o.progress,
                 "Live progress on stderr: auto (a bar on a terminal, plain lines otherwise), bar, "
                 "lines or none")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "bar", "lines", "none"}));
  cmd.add_option("--interval", o.interval_s,
                 "Seconds between progress updates (default 0.5 for a bar, 5 for lines)")
      ->check(CLI::Range(0.0, 3600.0));
}

namespace {


class Sink {
public:
  explicit Sink(const SinkOptions& o)
      : results_(make_socket(ctx_, zmq::socket_type::pull, {.sndhwm = 1000, .rcvhwm = 10000})),
        acks_(make_socket(ctx_, zmq::socket_type::push, {.sndhwm = 10000, .rcvhwm = 1000})) {
    auto bound = bind_all(results_, o.results_bind);
    std::vector<std::string> ack_eps;
    for (const auto& e : o.acks)
      if (!e.empty()) ack_eps.push_back(e);
    connect_all(acks_, ack_eps);
    send_acks_ = !ack_eps.empty();
    for (const auto& e : bound) spdlog::info("results on {}", e);
    if (!o.ready_file.empty()) {
      std::vector<std::pair<std::string, std::string>> entries;
      for (const auto& e : bound) entries.emplace_back("results", e);
      write_ready_file(o.ready_file, entries);
    }
    mode_ = o.progress;
    if (mode_ == "auto") mode_ = isatty(STDERR_FILENO) ? "bar" : "lines";
    interval_ = std::chrono::duration<double>(o.interval_s > 0 ? o.interval_s
                                              : mode_ == "bar"  ? 0.5
                                                                : 5.0);
  }

  int run() {
    auto next_progress = JobStats::Clock::now() + interval_;
    while (!stop_requested() && !stats_.complete()) {
      zmq::pollitem_t items[] = {
          {results_.handle(), 0, ZMQ_POLLIN, 0},
          {acks_.handle(), 0, static_cast<short>(pending_acks_.empty() ? 0 : ZMQ_POLLOUT), 0}};
      try {
        zmq::poll(items, 2, std::chrono::milliseconds(100));
      } catch (const zmq::error_t& e) {
        if (e.num() != EINTR) throw;
      }
      if (items[0].revents & ZMQ_POLLIN) drain_results();
      flush_acks();
      const auto now = JobStats::Clock::now();
      if (mode_ != "none" && now >= next_progress) {
        show_progress(now);
        next_progress = now + interval_;
      }
    }
    // Stopped or complete: what has arrived is still recorded and acknowledged.
    drain_results();
    if (mode_ == "bar") {
      show_progress(JobStats::Clock::now());
      std::fputc('\n', stderr);
    }
    // Acks for the last results, so the ventilator can finish too.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (!pending_acks_.empty() && std::chrono::steady_clock::now() < deadline) {
      flush_acks();
      if (!pending_acks_.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::fputs(stats_.summary().c_str(), stdout);
    std::fflush(stdout);
    if (!stats_.complete()) {
      spdlog::warn("stopped before the job completed: {} of {} results", stats_.finished(),
                   stats_.total() >= 0 ? std::to_string(stats_.total()) : std::string("?"));
      return kExitInterrupted;
    }
    return stats_.failed() == 0 ? kExitOk : kExitSomeFailed;
  }

private:
  void drain_results() {
    while (auto msg = try_recv(results_)) {
      auto decoded = proto::decode(msg->to_string_view());
      if (auto* err = std::get_if<proto::DecodeError>(&decoded)) {
        drop(err->what);
        continue;
      }
      auto& m = std::get<proto::Message>(decoded);
      if (auto* r = std::get_if<proto::Result>(&m)) {
        if (r->id == 0) {
          drop("result for task 0");
          continue;
        }
        if (!stats_.add(*r, unix_ms_now(), JobStats::Clock::now()))
          spdlog::debug("duplicate result for task {} ignored", r->id);
        else if (r->status == proto::Status::failed)
          spdlog::warn("failed: {} ({}: {})", r->url, proto::reason_name(r->reason), r->detail);
        // The result itself is the acknowledgement: the ventilator records it in its ledger.
        if (send_acks_) pending_acks_.emplace_back(msg->to_string_view());
      } else if (auto* j = std::get_if<proto::Job>(&m)) {
        stats_.set_job(*j);
      } else {
        drop("unexpected " + std::string(proto::type_name(m)) + " message");
      }
    }
  }

  void flush_acks() {
    while (!pending_acks_.empty() && try_send(acks_, pending_acks_.front())) pending_acks_.pop_front();
  }

  void show_progress(JobStats::Clock::time_point now) {
    if (mode_ == "bar") {
      std::fprintf(stderr, "\r\033[K%s", stats_.progress_line(now, true).c_str());
    } else {
      std::fprintf(stderr, "%s\n", stats_.progress_line(now, false).c_str());
    }
    std::fflush(stderr);
  }

  void drop(const std::string& why) {
    ++dropped_;
    spdlog::warn("dropped a frame ({} so far): {}", dropped_, why);
  }

  zmq::context_t ctx_{1};
  zmq::socket_t results_, acks_;
  bool send_acks_ = false;
  std::deque<std::string> pending_acks_;
  JobStats stats_;
  std::string mode_;
  std::chrono::duration<double> interval_{1.0};
  std::uint64_t dropped_ = 0;
};

} // namespace

int run(const SinkOptions& o) {
  Sink sink(o);
  return sink.run();
}

} // namespace trawl::broker
