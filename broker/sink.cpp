#include "broker/sink.hpp"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <memory>
#include <optional>
#include <spdlog/spdlog.h>
#include <thread>
#include <unistd.h>

#include "broker/metrics.hpp"
#include "broker/monitor.hpp"
#include "broker/report.hpp"
#include "broker/stats.hpp"
#include "common/clock.hpp"
#include "common/exit_codes.hpp"
#include "common/log.hpp"
#include "common/rate_limit.hpp"
#include "common/signals.hpp"
#include "common/zap.hpp"
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
                 "Write the bound endpoints (results=, monitor=, metrics=) to this file once "
                 "listening");
  cmd.add_option("--progress", o.progress,
                 "Live progress on stderr: auto (a self-updating block on a terminal, plain "
                 "timestamped lines otherwise), bar, lines or none")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "bar", "lines", "none"}));
  cmd.add_option("--interval", o.interval_s,
                 "Seconds between progress updates (default 0.5 for a bar, 5 for lines, 1 for "
                 "--json-progress)")
      ->check(CLI::Range(0.0, 3600.0));
  cmd.add_flag("--quiet", o.quiet,
               "No live progress and no summary on stdout (the exit status, --report and the "
               "other files still tell); -q before the subcommand lowers the log level instead");
  cmd.add_flag("--json-progress", o.json_progress,
               "stdout carries JSON Lines: a {\"event\":\"progress\",...} object every --interval, "
               "then {\"event\":\"summary\",...} with the whole report instead of the text summary");
  cmd.add_option("--report", o.report,
                 "Write the job's report as JSON to this file at the end (schema in docs/REPORT.md)");
  cmd.add_option("--manifest", o.manifest,
                 "Write one row per link to this file while the job runs (url, path, node, status, "
                 "HTTP code, bytes, sha256, attempts, ms, reason, error, and the link's meta: the other "
                 "columns of its CSV/TSV/JSON Lines source, a JSON object): CSV when the name ends in "
                 ".csv (meta as one column of JSON text), JSON Lines otherwise. With --ledger, links without a result here (done in an "
                 "earlier run) are added at the end");
  cmd.add_option("--failed", o.failed,
                 "Write the URLs of the failed links to this file, one per line: a list that "
                 "`trawl fetch --source FILE` takes back to retry only the failures");
  cmd.add_option("--html-report", o.html_report,
                 "Write a self-contained HTML page (no network) with plots of throughput, latency, "
                 "nodes and failures to this file at the end");
  cmd.add_option("--ledger", o.ledger,
                 "The ventilator's ledger (STATE/ledger.sqlite), read at the end so that --manifest "
                 "and --failed cover every link of the job, also those with no result in this run "
                 "(done earlier, or failed without a result)");
  cmd.add_option("--monitor", o.monitor,
                 "Endpoint(s) to bind a stats publisher (PUB) on for `trawl monitor`, e.g. "
                 "tcp://127.0.0.1:5561 or ipc://PATH; off by default")
      ->type_name("EP");
  cmd.add_option("--metrics-port", o.metrics_port,
                 "Serve Prometheus metrics at http://127.0.0.1:PORT/metrics (loopback only; 0 picks "
                 "a free port, announced in --ready-file); off by default")
      ->check(CLI::Range(0, 65535));
  // Set by `trawl pipeline` for the sink it starts; not for people (hidden from --help).
  cmd.add_option("--notify-pid", o.notify_pid,
                 "Send SIGUSR2 to this process (our parent) once the job is complete")
      ->group("");
  add_curve_options(cmd, o.curve, CurveRole::server);
}

namespace {

constexpr std::chrono::milliseconds kPublishEvery{250};

class Sink {
public:
  explicit Sink(const SinkOptions& o)
      : opt_(o), stats_(unix_ms_now()), curve_(o.curve, CurveRole::server),
        results_(make_socket(ctx_, zmq::socket_type::pull, {.sndhwm = 1000, .rcvhwm = 10000})),
        acks_(make_socket(ctx_, zmq::socket_type::push, {.sndhwm = 10000, .rcvhwm = 1000})) {
    curve_.check_bind(o.results_bind);
    // Output files first: a bad path is an error before the job, not after it.
    if (!o.manifest.empty()) manifest_ = std::make_unique<ManifestWriter>(o.manifest);
    if (!o.failed.empty()) failed_ = std::make_unique<UrlListWriter>(o.failed);
    if (curve_.enabled()) {
      curve_.make_server(results_);
      curve_.make_client(acks_);
      // Before the bind: libzmq lets every CURVE client in while no handler is bound.
      zap_.emplace(ctx_, curve_,
                   std::vector<std::pair<zmq::socket_t*, std::string>>{{&results_, "results"}});
    }
    auto bound = bind_all(results_, o.results_bind);
    std::vector<std::string> ack_eps;
    for (const auto& e : o.acks)
      if (!e.empty()) ack_eps.push_back(e);
    connect_all(acks_, ack_eps);
    send_acks_ = !ack_eps.empty();
    for (const auto& e : bound) spdlog::info("results on {}", e);
    std::vector<std::pair<std::string, std::string>> entries;
    for (const auto& e : bound) entries.emplace_back("results", e);
    if (!o.monitor.empty()) {
      // A slow monitor must never hold the sink: PUB drops when a subscriber's queue is full.
      pub_.emplace(make_socket(ctx_, zmq::socket_type::pub, {.sndhwm = 64, .rcvhwm = 64, .linger = std::chrono::milliseconds(500)}));
      for (const auto& e : bind_all(*pub_, o.monitor)) {
        spdlog::info("stats for trawl monitor on {}", e);
        entries.emplace_back("monitor", e);
      }
    }
    if (o.metrics_port >= 0) {
      metrics_ = std::make_unique<MetricsServer>(o.metrics_port);
      spdlog::info("metrics on http://127.0.0.1:{}/metrics", metrics_->port());
      entries.emplace_back("metrics", "http://127.0.0.1:" + std::to_string(metrics_->port()));
    }
    if (!o.ready_file.empty()) write_ready_file(o.ready_file, entries);
    mode_ = o.quiet ? "none" : o.progress;
    if (mode_ == "auto") mode_ = isatty(STDERR_FILENO) ? "bar" : "lines";
    if (o.json_progress) mode_ = "json";
    interval_ = std::chrono::duration<double>(o.interval_s > 0 ? o.interval_s
                                              : mode_ == "bar"  ? 0.5
                                              : mode_ == "json" ? 1.0
                                                                : 5.0);
  }

  int run() {
    auto next_progress = JobStats::Clock::now() + interval_;
    auto next_publish = JobStats::Clock::now();
    while (!stop_requested() && !stats_.complete()) {
      if (take_status_request()) log_status();
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
      if (now >= next_publish) {
        publish(now, false);
        next_publish = now + kPublishEvery;
      }
      if (mode_ != "none" && now >= next_progress) {
        show_progress(now);
        next_progress = now + interval_;
      }
    }
    // The launcher stops the downloaders while the files below are written.
    if (stats_.complete()) notify_parent(opt_.notify_pid, SIGUSR2);
    // Stopped or complete: what has arrived is still recorded and acknowledged.
    drain_results();
    if (mode_ != "none") show_progress(JobStats::Clock::now()); // the last figures
    // Acks for the last results, so the ventilator can finish too.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (!pending_acks_.empty() && std::chrono::steady_clock::now() < deadline) {
      flush_acks();
      if (!pending_acks_.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    const bool complete = stats_.complete();
    const int status = !complete ? kExitInterrupted : stats_.failed() == 0 ? kExitOk : kExitSomeFailed;
    if (!complete)
      spdlog::warn("stopped before the job completed: {} of {} results", stats_.finished(),
                   stats_.total() >= 0 ? std::to_string(stats_.total()) : std::string("?"));
    const auto report = finish_files(complete, status);
    if (mode_ == "json") {
      nlohmann::json line = report;
      line["event"] = "summary";
      std::fputs((dump_json(line) + "\n").c_str(), stdout);
    } else if (!opt_.quiet) {
      std::fputs(stats_.summary().c_str(), stdout);
    }
    std::fflush(stdout);
    publish(JobStats::Clock::now(), true, status);
    return status;
  }

  // A complete job under `trawl pipeline`, without a monitor or metrics to serve: the ventilator
  // said complete, so it has every acknowledgement, and the files and summary are written. The
  // process may end without its teardown (ZeroMQ's took 2-5 ms while the other processes ended
  // on the same cores).
  bool may_end_at_once() const {
    return opt_.notify_pid > 0 && stats_.complete() && !pub_ && !metrics_;
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
        on_result(*r);
        last_result_ = std::chrono::steady_clock::now();
        // The result itself is the acknowledgement: the ventilator records it in its ledger.
        // (Sent on as received, without a copy: `r` owns its fields, nothing points into msg.)
        if (send_acks_) pending_acks_.push_back(std::move(*msg));
      } else if (auto* rs = std::get_if<proto::Results>(&m)) {
        // A batch is taken whole or not at all, like a frame with a bad item.
        if (std::any_of(rs->items.begin(), rs->items.end(),
                        [](const auto& x) { return x.id == 0; })) {
          drop("a results batch with a result for task 0");
          continue;
        }
        for (const auto& x : rs->items) on_result(x);
        last_result_ = std::chrono::steady_clock::now();
        // The batch frame as it came is the acknowledgement of every result in it.
        if (send_acks_) pending_acks_.push_back(std::move(*msg));
      } else if (auto* j = std::get_if<proto::Job>(&m)) {
        stats_.set_job(*j);
        last_job_ = std::chrono::steady_clock::now();
      } else {
        drop("unexpected " + std::string(proto::type_name(m)) + " message");
      }
    }
  }

  void on_result(const proto::Result& r) {
    if (!stats_.add(r, unix_ms_now())) {
      spdlog::debug("duplicate result for task {} ignored", r.id);
      return;
    }
    // Per-link failures are in the summary, the report and --failed; at the default level they
    // would scroll over the live view.
    if (r.status == proto::Status::failed)
      spdlog::debug("failed: {} ({}: {})", r.url, proto::reason_name(r.reason), r.detail);
    record_files(r);
  }

  void record_files(const proto::Result& r) {
    try {
      if (manifest_) manifest_->write(manifest_row(r));
      if (failed_ && r.status == proto::Status::failed) failed_->write(r.url);
    } catch (const std::exception& e) {
      // A full disk must not stop the job: the ledger still has every link.
      spdlog::error("{}; the manifest and failed list stop here", e.what());
      manifest_.reset();
      failed_.reset();
      files_broken_ = true;
    }
  }

  // Completes the manifest and failed list from the ledger, closes them, writes the reports.
  nlohmann::json finish_files(bool complete, int status) {
    ReportContext ctx;
    ctx.complete = complete;
    ctx.exit_status = status;
    ctx.finished_unix_ms = unix_ms_now();
    if (!opt_.ledger.empty() && (manifest_ || failed_)) {
      if (!std::filesystem::exists(opt_.ledger)) {
        spdlog::warn("no ledger at {}: the manifest covers this sink's results only", opt_.ledger);
      } else {
        try {
          ctx.manifest_ledger_rows = for_each_ledger_row(
              opt_.ledger, [this](std::uint64_t id) { return stats_.seen(id); },
              [this](const ManifestRow& row) {
                if (manifest_) manifest_->write(row);
                if (failed_ && row.status == "failed") failed_->write(row.url);
              });
        } catch (const std::exception& e) {
          spdlog::error("{}: the manifest covers this sink's results only", e.what());
        }
      }
    }
    try {
      if (manifest_) {
        manifest_->close();
        ctx.manifest_path = opt_.manifest;
        ctx.manifest_rows = manifest_->rows();
      }
      if (failed_) {
        failed_->close();
        ctx.failed_path = opt_.failed;
        ctx.failed_rows = failed_->rows();
      }
    } catch (const std::exception& e) {
      spdlog::error("{}", e.what());
    }
    auto report = report_json(stats_, ctx);
    if (!opt_.report.empty()) {
      try {
        write_file_atomic(opt_.report, dump_json(report, 2) + "\n");
      } catch (const std::exception& e) {
        spdlog::error("report: {}", e.what());
      }
    }
    if (!opt_.html_report.empty()) {
      try {
        write_file_atomic(opt_.html_report, render_html(report));
      } catch (const std::exception& e) {
        spdlog::error("HTML report: {}", e.what());
      }
    }
    return report;
  }

  void flush_acks() {
    while (!pending_acks_.empty() && try_send(acks_, pending_acks_.front())) pending_acks_.pop_front();
  }

  // The live figures to the monitors and the metrics endpoint; `final` once, at the end.
  void publish(JobStats::Clock::time_point now, bool final, int status = 0) {
    if (!pub_ && !metrics_) return;
    if (metrics_) metrics_->publish(prometheus_text(stats_));
    if (!pub_) return;
    const auto figures = stats_.live(now, unix_ms_now());
    const std::string frame = final ? final_message(figures, status, stats_.summary())
                                    : progress_message(figures);
    if (!final) {
      try_send(*pub_, frame); // dropped when no monitor listens or one is too slow
      return;
    }
    // The last word goes out a few times: a monitor that subscribed a moment ago gets it too.
    for (int i = 0; i < 5; ++i) {
      try_send(*pub_, frame);
      std::this_thread::sleep_for(std::chrono::milliseconds(60));
    }
  }

  void show_progress(JobStats::Clock::time_point now) {
    const auto f = stats_.live(now, unix_ms_now());
    if (mode_ == "json") {
      nlohmann::json j = live_to_json(f);
      j["event"] = "progress";
      std::fputs((dump_json(j) + "\n").c_str(), stdout);
      std::fflush(stdout);
      return;
    }
    if (mode_ == "bar") {
      block_.draw(render_block(f), stderr);
    } else {
      std::fprintf(stderr, "%s\n", render_line(f).c_str());
    }
    std::fflush(stderr);
  }

  // One line of state for `kill -USR1` (and the e2e tests' report of a hung pipeline): what this
  // sink has, what the ventilator last said, and how long ago each was heard from.
  void log_status() {
    const auto now = std::chrono::steady_clock::now();
    const auto ago = [now](std::chrono::steady_clock::time_point t) {
      return t == std::chrono::steady_clock::time_point{}
                 ? std::string("-")
                 : std::to_string(
                       std::chrono::duration_cast<std::chrono::milliseconds>(now - t).count());
    };
    spdlog::info("status: results={} total={} complete={} job_done={} job_failed={} job_active={} "
                 "nodes={} pending_acks={} duplicates={} dropped={} last_result_ms={} "
                 "last_job_ms={}",
                 stats_.finished(), stats_.total(), stats_.complete(), stats_.done(),
                 stats_.failed(), stats_.active(), stats_.nodes_connected(), pending_acks_.size(),
                 stats_.duplicates(), dropped_, ago(last_result_), ago(last_job_));
  }

  void drop(const std::string& why) {
    ++dropped_;
    std::string more;
    // A node of another protocol version repeats itself: a few lines, then fewer.
    if (why.starts_with("protocol version")) {
      if (!version_log_.allow()) return;
      if (const auto n = version_log_.take_suppressed(); n > 0)
        more = fmt::format(" ({} more such frames not logged)", n);
    }
    spdlog::warn("dropped a frame ({} so far): {}{}", dropped_, why, more);
  }

  const SinkOptions& opt_;
  JobStats stats_;
  CurveSetup curve_;
  zmq::context_t ctx_{1};
  std::optional<ZapHandler> zap_; // after the context, before (so destroyed after) the sockets
  zmq::socket_t results_, acks_;
  std::optional<zmq::socket_t> pub_;
  std::unique_ptr<MetricsServer> metrics_;
  std::unique_ptr<ManifestWriter> manifest_;
  std::unique_ptr<UrlListWriter> failed_;
  bool files_broken_ = false;
  bool send_acks_ = false;
  std::deque<zmq::message_t> pending_acks_;
  std::string mode_;
  LiveBlock block_;
  std::chrono::duration<double> interval_{1.0};
  std::uint64_t dropped_ = 0;
  LogRateLimit version_log_;
  std::chrono::steady_clock::time_point last_result_{}, last_job_{}; // {}: none yet
};

} // namespace

int run(const SinkOptions& o) {
  Sink sink(o);
  const int code = sink.run();
  if (kEndAtOnce && sink.may_end_at_once()) exit_process(code);
  return code;
}

} // namespace trawl::broker
