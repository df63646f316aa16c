#include "broker/monitor.hpp"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include "broker/report.hpp"
#include "common/exit_codes.hpp"
#include "common/signals.hpp"
#include "common/zmq_util.hpp"

namespace trawl::broker {

void add_options(CLI::App& cmd, MonitorOptions& o) {
  cmd.add_option("--connect", o.connect,
                 "The sink's stats endpoint(s) (its --monitor), e.g. tcp://SINK:5561 or ipc://PATH")
      ->required()
      ->type_name("EP");
  cmd.add_option("--progress", o.progress,
                 "Live view on stderr: auto (a self-updating block on a terminal, plain lines "
                 "otherwise), bar, lines or none")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "bar", "lines", "none"}));
  cmd.add_option("--interval", o.interval_s,
                 "Seconds between updates of the view (default 0.5 for a bar, 5 for lines)")
      ->check(CLI::Range(0.0, 3600.0));
  cmd.add_option("--timeout", o.timeout_s,
                 "Give up (exit 3) after this many seconds without a message from the sink; 0 waits "
                 "for ever")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 86400.0));
}

std::string progress_message(const LiveFigures& f) {
  return dump_json({{"event", "progress"}, {"figures", live_to_json(f)}});
}

std::string final_message(const LiveFigures& f, int status, const std::string& summary) {
  nlohmann::json j{{"event", "final"}, {"status", status}, {"figures", live_to_json(f)}, {"summary", summary}};
  std::string frame = dump_json(j);
  if (frame.size() > proto::kMaxFrameBytes - 1024) { // a huge summary: the figures still fit
    j.erase("summary");
    frame = dump_json(j);
  }
  return frame;
}

void LiveBlock::draw(const std::string& text, std::FILE* out) {
  if (lines_ > 0) std::fprintf(out, "\033[%dF\033[J", lines_);
  std::fputs(text.c_str(), out);
  lines_ = static_cast<int>(std::count(text.begin(), text.end(), '\n'));
}

int run(const MonitorOptions& o) {
  zmq::context_t ctx{1};
  auto sub = make_socket(ctx, zmq::socket_type::sub, {.linger = std::chrono::milliseconds(0)});
  sub.set(zmq::sockopt::conflate, 1); // keep only the latest figures
  sub.set(zmq::sockopt::subscribe, "");
  connect_all(sub, o.connect);
  std::string mode = o.progress;
  if (mode == "auto") mode = isatty(STDERR_FILENO) ? "bar" : "lines";
  const std::chrono::duration<double> interval(o.interval_s > 0 ? o.interval_s : mode == "bar" ? 0.5 : 5.0);
  using Clock = std::chrono::steady_clock;
  auto last_message = Clock::now();
  auto next_view = Clock::now();
  std::optional<LiveFigures> latest;
  LiveBlock block;
  std::uint64_t bad = 0;
  auto show = [&](const LiveFigures& f) {
    if (mode == "bar") block.draw(render_block(f), stderr);
    else if (mode == "lines") std::fprintf(stderr, "%s\n", render_line(f).c_str());
    std::fflush(stderr);
  };
  for (const auto& e : o.connect) spdlog::info("waiting for the sink's figures on {}", e);
  while (!stop_requested()) {
    zmq::pollitem_t items[] = {{sub.handle(), 0, ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items, 1, std::chrono::milliseconds(100));
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;
    }
    const auto now = Clock::now();
    while (auto msg = try_recv(sub)) {
      auto j = nlohmann::json::parse(msg->to_string_view(), nullptr, false);
      std::optional<LiveFigures> f;
      if (j.is_object() && j.contains("figures")) f = live_from_json(j["figures"]);
      std::string ev;
      if (j.is_object() && j.contains("event") && j["event"].is_string()) ev = j["event"].get<std::string>();
      if (!f || (ev != "progress" && ev != "final")) {
        if (bad++ == 0) spdlog::warn("ignoring a message that is not the sink's figures");
        continue;
      }
      if (!latest) spdlog::info("attached: the sink's figures arrive");
      last_message = now;
      latest = f;
      if (ev == "final") {
        show(*f);
        const auto summary = j.find("summary");
        if (summary != j.end() && summary->is_string()) std::fputs(summary->get<std::string>().c_str(), stdout);
        else std::printf("%s\n", render_line(*f).c_str());
        std::fflush(stdout);
        const auto st = j.find("status");
        const int status = st != j.end() && st->is_number_integer() ? st->get<int>() : kExitFatal;
        return status == kExitOk || status == kExitSomeFailed || status == kExitInterrupted ? status : kExitFatal;
      }
    }
    if (latest && now >= next_view) {
      show(*latest);
      next_view = now + std::chrono::duration_cast<Clock::duration>(interval);
    }
    if (o.timeout_s > 0 && now - last_message > std::chrono::duration<double>(o.timeout_s)) {
      spdlog::error("no figures from the sink for {} s; giving up", o.timeout_s);
      return kExitFatal;
    }
  }
  return kExitInterrupted;
}

} // namespace trawl::broker
