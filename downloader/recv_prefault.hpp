// libcurl's receive buffers made present, and primed, while the first requests wait for their
// responses.
//
// Each transfer's receive buffer (CURLOPT_BUFFERSIZE, libcurl 7.x asks the allocator for one byte
// more) is first written by the recv() of its first response. A classic job's responses all arrive
// together, so unless their pages are present each downloader faults in its 46-64 buffers, ~16
// pages each at 11-18 us a page on the VMs we measure on (common/heap_prefault.hpp), inside the
// burst that decides when the job ends. libcurl is initialised with allocation functions of ours
// (the C library's, called through): while noting is on they note the blocks of the receive
// buffer's size, and once the downloader's first transfers are under way a thread makes those
// blocks' pages present, off the event loop and, in a job whose server takes its time, before the
// responses come.
//
// Since session 41 the thread also primes them (prime_block, common/heap_prefault.hpp): the kernel
// reads each page once (a pwrite of the block to a memfd) and the thread reads a byte of each, so
// that neither the event loop's recv() into a buffer nor the body gather's copy out of it
// (downloader/transfer.hpp) is the first access of its mode to a page, which on PVM guests costs
// ~6 us each. In the burst of a classic job (2 x 64, perf at 5 kHz, 150-450 ms after launch, 6-7
// jobs each) the downloaders' samples fell from 254 a job to 189; over all those jobs, the
// recv() copy's from 481 to 135 and the gather's from 238 to 30. A block libcurl has freed is never
// touched: each free of a noted block waits for a prime under way on it, and one freed first is
// skipped.
//
// This replaced a thread that populated 8 MiB of heap as each downloader started, for the
// allocator to hand out again (jemalloc reuses freed pages first): ~2.8 ms of CPU per downloader
// while the processes of a job start together on two cores. Alternating jobs against nginx,
// medians: classic 2 x 64 296.6 ms against 307.2 (30 rounds; 301.9 against 307.0 in 40 with the
// first version of this), its first file request 51.7 ms after launch against 58.6; latency 1 x 64
// 3,330.4 against 3,338.8 (12, the first version); small on tmpfs 1,472.3 against 1,483.6 (20). The
// first version never started the populate in a small job (whose results wait at once, so
// --notify-pid was told before the transfers were all started), and small was 1.3-1.7 % slower with
// it (1,472.2 against 1,447.6 in 20 rounds, 1,417.3 against 1,398.8 in 24). docs/ARCHITECTURE.md
// (Downloader, The allocator) has the rest.
#pragma once

#include <curl/curl.h>

#include <cstddef>
#include <thread>

namespace trawl::downloader {

// curl_global_init(CURL_GLOBAL_DEFAULT) with the allocation functions that note receive buffers
// (RecvPrefault). They take effect only if this is libcurl's first initialisation in the process;
// later calls only count, as curl_global_init's do.
CURLcode curl_global_init_noting();

// Notes, from construction until start(), every block of `buffer_bytes` or `buffer_bytes + 1`
// bytes that libcurl allocates in this process (at most kMaxNoted), then primes those it has not
// freed on a thread. One at a time per process.
class RecvPrefault {
public:
  static constexpr std::size_t kMaxNoted = 4096;

  explicit RecvPrefault(std::size_t buffer_bytes);
  ~RecvPrefault(); // stops noting; waits for the thread
  RecvPrefault(const RecvPrefault&) = delete;
  RecvPrefault& operator=(const RecvPrefault&) = delete;

  // The blocks noted so far.
  std::size_t noted() const noexcept;
  // Stops noting and primes the blocks noted, but not freed, on a thread of its own (in place when
  // no thread can start). Only the first call does anything.
  void start();
  // Waits for the thread; returns the bytes it made present (0 before start()).
  std::size_t wait();

private:
  bool started_ = false;
  std::thread thread_;
  std::size_t populated_ = 0;
};

} // namespace trawl::downloader
