// The ventilator: takes links from the fetcher into the durable ledger (broker/ledger.hpp), gives
// each a stable task id and a unique file name, and hands tasks to downloaders; retires each task
// when the sink forwards its result (the acknowledgement), and exits when every link of the job is
// done or failed. It tells the sink the job's figures every second.
//
// Flow control: downloaders connect to a ROUTER and announce their credit and the ids they hold
// (proto::Ready); a task goes only to a downloader with room for it, the one with the most room
// first. So no node holds more than its concurrency plus prefetch and a node that joins gets work
// at once. The backlog lives in the ledger, not in memory.
//
// Nothing is lost: a task is leased to the node it was sent to. When that node goes silent
// (--peer-timeout-ms), or stops holding the task and no result arrives within --ack-timeout-ms
// (the result was lost with a sink that died), the task is dispatched again. Leases found in the
// ledger at start (the ventilator itself was restarted) get --ack-timeout-ms for their results to
// arrive. A late duplicate result is recognised by its task id and ignored.
//
// Politeness: which task goes next is the scheduler's choice (broker/scheduler.hpp): round-robin
// over hosts, at most --per-host tasks of a host out at once across all nodes, --rate-per-host,
// and a pause after a downloader reports a Retry-After (proto::Throttle).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "common/curve.hpp"

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
  std::string state_dir = "trawl-state";
  bool fresh = false;
  std::string run_id;
  std::chrono::milliseconds peer_timeout{5000};
  std::chrono::milliseconds ack_timeout{10000};
  int max_dispatch = 5;
  // Downloaders the launcher starts with the job: until that many have joined (at most
  // kJoinWindow after the first), a short job is shared as if they had. 0: no wait.
  std::uint32_t expect_downloaders = 0;
  CurveOptions curve; // --curve-secret, --curve-authorized, --curve-server, --insecure
  // Politeness for the whole job (broker/scheduler.hpp).
  std::uint32_t per_host = 8;
  double rate_per_host = 0;
  std::vector<std::string> host_rates; // "HOST=R": this host's rate instead of rate_per_host
  // Output layout of new links (broker/names.hpp).
  std::string name_layout = "basename";
  std::uint64_t shard = 0;
  // trawl pipeline's launcher: told (notify_parent) when the fetcher is done and there
  // is nothing to dispatch, which is when it starts the sink without a downloader's word. 0: no
  // one.
  int notify_pid = 0;
};

void add_options(CLI::App& cmd, VentOptions& o);

// Runs until the job is complete (exit 0) or a stop is requested (130). Throws std::runtime_error
// when an endpoint cannot be bound or the ledger cannot be opened.
int run(const VentOptions& o);

} // namespace trawl::broker
