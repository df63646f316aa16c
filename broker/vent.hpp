// The ventilator: takes links from the fetcher, gives each a task id and a unique file name, and
// fans tasks out to every connected downloader; tells the sink when the job started and, once the
// fetcher is done, how many links it has; retires tasks as the sink acknowledges them and exits
// when every task of the job is acknowledged.
//
// Flow control: downloaders connect to a ROUTER and announce their credit (proto::Ready); a task
// goes only to a downloader with room for it, the one with the most room first, and a link is
// read from the fetcher only when some downloader has room. So no node holds more than its
// concurrency plus prefetch, a node that joins gets work at once, and the backlog stays in the
// fetcher's bounded queue (and the fetcher's source), never in this process.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace trawl::broker {

struct VentOptions {
  std::vector<std::string> links_bind{"tcp://127.0.0.1:5557"};
  std::vector<std::string> tasks_bind{"tcp://127.0.0.1:5558"};
  std::vector<std::string> acks_bind{"tcp://127.0.0.1:5560"};
  std::vector<std::string> sink{"tcp://127.0.0.1:5559"};
  std::string ready_file;
  std::chrono::milliseconds peer_timeout{5000};
};

void add_options(CLI::App& cmd, VentOptions& o);

// Runs until the job is complete (exit 0) or a stop is requested (130). Throws std::runtime_error
// when an endpoint cannot be bound.
int run(const VentOptions& o);

} // namespace trawl::broker
