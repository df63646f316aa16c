// The sink: collects every downloader's results, acknowledges each to the ventilator, shows
// progress while the job runs and prints the summary (stdout) when the ventilator's announced
// total is reached. Exit status 0 when every link is done, 1 when some failed.
//
// Besides the summary it can write a JSON report, a manifest (one row per link), the list of
// failed URLs and an HTML report (broker/report.hpp), publish its live figures on a PUB socket
// for `trawl monitor` (broker/monitor.hpp), and serve Prometheus metrics on loopback
// (broker/metrics.hpp). None of these can slow the job: files are streamed, PUB drops what a slow
// monitor cannot take, the metrics server runs in its own threads.
#pragma once

#include <string>
#include <vector>

#include "common/curve.hpp"

namespace CLI {
class App;
}

namespace trawl::broker {

struct SinkOptions {
  std::vector<std::string> results_bind{"tcp://127.0.0.1:5559"};
  std::vector<std::string> acks{"tcp://127.0.0.1:5560"};
  std::string ready_file;
  std::string progress = "auto"; // auto | bar | lines | none
  double interval_s = 0;         // 0 = 0.5 s for a bar, 5 s for lines, 1 s for JSON
  bool quiet = false;            // no live progress, no summary on stdout
  bool json_progress = false;    // stdout: one JSON object per line (progress, then the summary)
  std::string report;            // --report FILE.json
  std::string manifest;          // --manifest FILE (.csv: CSV, else JSON Lines)
  std::string failed;            // --failed FILE: failed URLs, one per line
  std::string html_report;       // --html-report FILE.html
  std::string ledger;            // the ventilator's ledger.sqlite, for links without a result here
  std::vector<std::string> monitor; // PUB endpoints for `trawl monitor`
  int metrics_port = -1;            // -1 off, 0 any free port
  int notify_pid = 0; // trawl pipeline's launcher: SIGUSR2 once every link has its result
  CurveOptions curve; // --curve-secret, --curve-authorized, --curve-server, --insecure
};

void add_options(CLI::App& cmd, SinkOptions& o);

int run(const SinkOptions& o);

} // namespace trawl::broker
