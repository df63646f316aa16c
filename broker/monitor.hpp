// `trawl monitor`: attaches to a running sink's stats publisher (sink --monitor EP) from any host
// and shows the same live view as the sink; exits when the job completes, printing the final
// summary on stdout and returning the job's exit status. The sink publishes on PUB and the
// monitor subscribes with ZMQ_CONFLATE (only the latest figures are kept), so any number of
// monitors may attach or go away, and a slow one only misses updates: the sink never waits.
//
// Messages (one frame, JSON text, at most proto::kMaxFrameBytes):
//   {"event":"progress","figures":{...}}   every 250 ms (figures: see live_to_json)
//   {"event":"final","status":N,"figures":{...},"summary":"..."}   a few times at the end
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "broker/stats.hpp"

namespace CLI {
class App;
}

namespace trawl::broker {

struct MonitorOptions {
  std::vector<std::string> connect;
  std::string progress = "auto"; // auto | bar | lines | none
  double interval_s = 0;          // 0 = 0.5 s for a bar, 5 s for lines
  double timeout_s = 0;           // give up after this long without a message; 0 = never
};

void add_options(CLI::App& cmd, MonitorOptions& o);

// Runs until the sink's final message (returns its status: 0, 1 or 130), a stop request (130)
// or the timeout (3).
int run(const MonitorOptions& o);

std::string progress_message(const LiveFigures& f);
std::string final_message(const LiveFigures& f, int status, const std::string& summary);

// Redraws a block of lines in place on a terminal (cursor up, clear to the end of the screen).
class LiveBlock {
public:
  void draw(const std::string& text, std::FILE* out);

private:
  int lines_ = 0;
};

} // namespace trawl::broker
