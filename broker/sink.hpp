// The sink: collects every downloader's results, acknowledges each to the ventilator, shows
// progress while the job runs and prints the summary (stdout) when the ventilator's announced
// total is reached. Exit status 0 when every link is done, 1 when some failed.
#pragma once

#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace trawl::broker {

struct SinkOptions {
  std::vector<std::string> results_bind{"tcp://127.0.0.1:5559"};
  std::vector<std::string> acks{"tcp://127.0.0.1:5560"};
  std::string ready_file;
  std::string progress = "auto"; // auto | bar | lines | none
  double interval_s = 0;         // 0 = 0.5 s for a bar, 5 s for lines
};

void add_options(CLI::App& cmd, SinkOptions& o);

int run(const SinkOptions& o);

} // namespace trawl::broker
