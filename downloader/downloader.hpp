// `trawl download`: takes Tasks from the ventilator(s), downloads each URL with one libcurl multi
// handle driving up to --concurrency transfers, streams every body to a temporary file in --out
// while hashing it, renames it to the task's name when complete, and sends one Result per task to
// the sink. Retryable failures are retried locally with backoff; only the final outcome is sent.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "common/curve.hpp"

namespace CLI {
class App;
}

namespace trawl::downloader {

struct DownloadOptions {
  std::vector<std::string> connect{"tcp://127.0.0.1:5558"}; // ventilator task endpoints
  std::vector<std::string> sink{"tcp://127.0.0.1:5559"};    // sink result endpoints
  std::string out = ".";
  int concurrency = 64;
  int prefetch = 4;
  // The queue grows beyond `prefetch` to about this much work at the rate tasks end on this node
  // (at most 2 x `concurrency` tasks), re-measured every 50 ms: where tasks end by the thousand a
  // second, `prefetch` of them last less than the ventilator's answer to a ready. 0 = the queue
  // stays at `prefetch`.
  std::chrono::milliseconds prefetch_work{16};
  // How long a finished result, or a slot set free, may wait to go out with others: results go to
  // the sink in frames of up to kResultBatch (64), credit to the ventilator once prefetch/2 slots
  // are free; either leaves at once when nothing else is in flight or the node would idle.
  // 0 = every loop turn sends what it has (the behaviour before coalescing).
  std::chrono::milliseconds coalesce{10};
  std::string node; // default hostname-pid
  long connect_timeout_s = 15;
  long timeout_s = 3600; // total per transfer, 0 = none
  long low_speed_time_s = 30;
  long low_speed_limit = 1024; // bytes/s, averaged over low_speed_time_s
  bool deny_private = false;   // refuse loopback, private, link-local, metadata... addresses
  int max_redirects = 10;
  std::uint64_t max_size = 1ULL << 30;
  int retries = 3;
  std::chrono::milliseconds grace{10000};
  int per_host = 0; // 0 = no cap
  std::string user_agent; // default trawl/<version>
  // Benchmarks only (hidden flag --bench-null): every task is reported done at once with an empty
  // body, without network or disk, to measure the pipeline's own per-link cost.
  bool bench_null = false;
  // --no-exit-sweep: at exit, do not remove the temporary files of this host's downloaders that
  // died (a scan of --out: 6-7 ms for 20,000 files on tmpfs, one getdents per ~1,000). trawl
  // pipeline's downloaders leave that to the launcher, which sweeps once when one of them died.
  bool no_exit_sweep = false;
  // trawl pipeline's launcher (--notify-pid): told (notify_parent) once the first
  // transfers are under way, which is when it starts the sink. 0: no one.
  int notify_pid = 0;
  CurveOptions curve;     // --curve-secret, --curve-server, --curve-sink-server
  std::vector<std::string> headers; // -H 'Name: value', checked by check_header()
  std::string expect = "any";       // any | image (downloader/content_check.hpp)
  std::uint64_t min_size = 0;       // bodies shorter than this fail with reason content
  bool dedupe_content = false;      // identical bodies stored once (downloader/output_tree.hpp)
  // sha256 | none (bodies not hashed, results carry no digest) | "" (the default): sha256 with
  // --dedupe-content, none otherwise; see hashes_bodies().
  std::string digest;
  bool respect_robots = false;      // robots.txt per origin (downloader/robots_cache.hpp)
};

// Registers the download flags on `cmd`, writing into `o`.
void add_options(CLI::App& cmd, DownloadOptions& o);

// Whether bodies are hashed (SHA-256 in every done result): --digest sha256, or --dedupe-content
// without an explicit --digest none.
bool hashes_bodies(const DownloadOptions& o);

// What is wrong with `o` beyond what the flags' own checks catch (e.g. --dedupe-content with
// --digest none), or "" when nothing is.
std::string check_options(const DownloadOptions& o);

// RLIMIT_NOFILE's soft limit (ulimit -n), or UINT64_MAX when there is none or it cannot be read.
std::uint64_t descriptor_limit();

// Grows this process's descriptor table to hold what `concurrency` transfers open
// (TempPool::descriptors_for: a socket and a file each, the files kept ready, 64 more). Call it
// while the process has one thread: in a process of several, the kernel waits for an RCU grace
// period at each growth, and the first transfers' sockets and files waited there (see
// downloader.cpp).
void reserve_descriptors(int concurrency);

// Runs until trawl::stop_requested(). Returns kExitOk after a clean stop, kExitInterrupted when
// transfers had to be aborted (grace expired, or retries pending), kExitUsage for unusable
// options or endpoints, kExitFatal when the output directory cannot be created or used or when
// libcurl/ZeroMQ fail outside a transfer. Does not throw.
int run(const DownloadOptions& o);

} // namespace trawl::downloader

