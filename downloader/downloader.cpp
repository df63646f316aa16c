#include "downloader/downloader.hpp"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <openssl/evp.h>
#include <optional>
#include <queue>
#include <random>
#include <set>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <system_error>
#include <unistd.h>
#include <utility>
#include <zmq.hpp>

#include "common/exit_codes.hpp"
#include "common/host.hpp"
#include "common/log.hpp"
#include "common/names.hpp"
#include "common/rate_limit.hpp"
#include "common/signals.hpp"
#include "common/zmq_util.hpp"
#include "downloader/address_policy.hpp"
#include "downloader/curl_handles.hpp"
#include "downloader/file_writer.hpp"
#include "downloader/multi_events.hpp"
#include "downloader/outcome.hpp"
#include "downloader/output_tree.hpp"
#include "downloader/recv_prefault.hpp"
#include "downloader/request_headers.hpp"
#include "downloader/robots_cache.hpp"
#include "downloader/temp_pool.hpp"
#include "downloader/transfer.hpp"
#include "proto/messages.hpp"

#ifndef TRAWL_VERSION
#define TRAWL_VERSION "0"
#endif

namespace trawl::downloader {

std::uint64_t descriptor_limit() {
  rlimit fds{};
  return ::getrlimit(RLIMIT_NOFILE, &fds) == 0 && fds.rlim_cur != RLIM_INFINITY ? fds.rlim_cur
                                                                                : UINT64_MAX;
}

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// How long the event loop sleeps at most: the stop flag is seen within this.
constexpr milliseconds kPollCap{100};
// While results wait for the sink, retry sending this often.
constexpr milliseconds kUnsentRetry{10};
// How long results may take to reach the sink at exit.
constexpr milliseconds kFlushBudget{2000};
// The ventilator hears from us at least this often (credit and heartbeat in one message).
constexpr milliseconds kReadyInterval{1000};
// How often the queue's size (DownloadOptions::prefetch_work) follows the rate tasks end at.
constexpr milliseconds kPrefetchWindow{50};

// The most tasks a downloader queues beyond its running ones (see Worker::adapt_prefetch): twice
// the concurrency, so that where --prefetch-ms of work is more than that (small files by the
// thousand a second), a ready and a task frame carry up to 64 tasks instead of 32. Small-tmpfs, 6
// alternating runs against --concurrency: 2 x 64 1,483 ms against 1,548 (CPU of all processes
// 2,185 ms against 2,235; per downloader, one -v job each: 184 and 196 readies against 288 and
// 311), 1 x 64 1,528 against
// 1,577; latency and classic, where the queue stays small, the same within their spread.
int max_prefetch(const DownloadOptions& o) {
  return o.prefetch_work.count() == 0 ? o.prefetch : std::max(o.prefetch, 2 * o.concurrency);
}

// Results in one frame to the sink, at most, before --coalesce-ms is up: enough that a node whose
// transfers end one by one sends a frame per few dozen links, not one per link. Each frame costs
// the downloader, the sink and the ventilator (its acknowledgement) a wake-up of their own and of
// their ZeroMQ I/O threads: small-tmpfs, 6 alternating runs, 64 with --coalesce-ms 10 against 32
// with 5: CPU of all processes 2,105 ms against 2,190 (2 x 64), 1,925 against 2,005 (1 x 64; the
// sink's 80 ms against 125); latency and classic the same within their spread.
constexpr std::size_t kResultBatch = 64;

// A full output file system (reason disk) pauses new transfers for this long, doubling up to
// kDiskPauseMax while the disk stays full; then one transfer at a time probes it until one
// completes. A disk that fills up does not fail the whole job in a second.
constexpr milliseconds kDiskPauseFirst{2000};
constexpr milliseconds kDiskPauseMax{60000};

// Ready sockets handed to libcurl per loop turn. curl_multi_perform() read every ready socket in
// one call: the 64 responses of a classic round (22 MB) took one 29 ms call before the first
// ending was seen, and the next round's requests left 36 ms after nginx had sent the last byte
// (wget2: 3-7 ms). Classic against nginx, one downloader of 64, 5 interleaved runs: median 503 ms
// with 16 per turn, 519-524 with 1-8, 565 with 64, 564 before (perform); latency (2,000 x 100 KB,
// 3 runs): 3.31 s with 16, 3.32 with 8, 3.35 before; two downloaders, classic, 6 runs: 320 ms
// with 16, 314-330 with the others, 323 before.
constexpr std::size_t kSocketsPerTurn = 16;

// New transfers started per turn until the first `concurrency` have started. Each new transfer
// opens a connection, and libcurl connects every transfer started in a turn before any of them
// sends its request (in a later turn, once epoll says the socket is writable). At the start of a
// job that was 64 connects in a row, ~10 ms in a traced latency job (each connect to a local
// server also woke it on our core), before the first request left. 8 a turn, the first request
// leaves after 16 connects (two turns' batches; syscalls traced in a latency job) and the others
// follow turn by turn. One downloader of 64 against nginx, alternating runs, medians: the first
// request 74.5 ms after launch against 81.5, the classic job 534.5 ms against 538.5 (20 pairs;
// another 10: 519.0 against 514.5), latency 3,372.5 against 3,375.5 (8); two downloaders, classic
// 348.0 against 349.5 (10); small on tmpfs 1.43 s against 1.47 (8): the first request moves, the
// job's end by less than the runs' spread. After the first `concurrency` there is no cap (those
// tasks mostly reuse connections).
constexpr std::size_t kStartsPerTurnAtFirst = 8;

// Bodies up to this size that are still whole in their transfer's chunk are hashed, written and
// renamed on the event loop: handing them to the file thread and taking the result back (two
// thread wake-ups) cost more than that. bench/run million at scale 0.2 (200,000 bodies of 2 bytes,
// tmpfs), trawl-2x64: 11.75 and 12.03 s with them finished on the loop (up to 16 KiB), 15.32 and
// 15.44 s with all of them on the file thread; small-tmpfs (20,000 x 8-64 KB), with up to 64 KiB
// on the loop: 2.24 and 2.37 s, against 2.58 and 3.69 s. Larger bodies (the latency scenario's
// 100 KB) are what the file thread is for. A body announced this small is also written as it
// comes, on the loop, and so are larger ones up to Transfer::kWriteAsItComes (2 MiB), whose
// ending still goes to the file thread.
constexpr std::size_t kInlineFinishMax = 64 * 1024;

const Clock::time_point g_process_start = Clock::now(); // static init: about when the process began

std::string default_node() { return host_name() + "-" + std::to_string(getpid()); }

struct Counters {
  std::uint64_t tasks = 0;
  std::uint64_t done = 0;
  std::uint64_t failed = 0;
  std::uint64_t bytes = 0;
  std::uint64_t retries = 0;
  std::uint64_t resumed = 0; // attempts that continued a partial body with a Range request
  std::uint64_t aborted = 0;
  std::uint64_t bad_frames = 0;
  std::uint64_t undelivered = 0;
  std::uint64_t deduped = 0;
  std::uint64_t robots = 0; // refused by robots.txt
  std::uint64_t task_frames = 0;   // frames read from the task socket
  std::uint64_t readies = 0;       // ready messages sent to the ventilator
  std::uint64_t result_frames = 0; // result/results frames the sink took
};

// A task whose last attempt failed with a retryable reason, waiting for its next attempt.
struct Waiting {
  Clock::time_point due;
  proto::Task task;
  std::uint32_t attempts = 0; // made so far
  proto::Reason last = proto::Reason::other;
  std::string last_detail;
  std::optional<Partial> partial; // what the last attempt kept, for a Range request
};

struct DueLater {
  bool operator()(const Waiting& a, const Waiting& b) const { return a.due > b.due; }
};

int ms_until(Clock::time_point now, Clock::time_point t) {
  if (t <= now) return 0;
  const auto ms = std::chrono::ceil<milliseconds>(t - now).count();
  return static_cast<int>(std::min<std::int64_t>(ms, kPollCap.count()));
}

// The event loop: one curl multi handle and the two sockets, served from one thread.
class Worker {
public:
  // `under_way` is called once, when the first transfers are under way (notify_under_way).
  Worker(const DownloadOptions& o, std::string out_dir, zmq::socket_t& tasks,
         zmq::socket_t& results, std::function<void()> under_way)
      : opt_(o), out_(std::move(out_dir)), tasks_(tasks), results_(results),
        under_way_(std::move(under_way)), node_(o.node.empty() ? default_node() : o.node),
        sha256_(hashes_bodies(o) ? EVP_MD_fetch(nullptr, "SHA256", nullptr) : nullptr,
                &EVP_MD_free),
        rng_(std::random_device{}()), headers_(o.headers),
        events_(multi_.get(), tasks.get(zmq::sockopt::fd), &sockets_), tree_(out_) {
    // nullptr when bodies are not hashed (the default without --dedupe-content).
    if (!sha256_ && hashes_bodies(o)) throw std::runtime_error("OpenSSL has no SHA256");
    settings_.connect_timeout_s = o.connect_timeout_s;
    settings_.timeout_s = o.timeout_s;
    settings_.low_speed_time_s = o.low_speed_time_s;
    settings_.low_speed_limit = o.low_speed_limit;
    if (o.deny_private) settings_.address_filter = &non_public_range;
    settings_.max_redirects = o.max_redirects;
    settings_.max_size = o.max_size;
    settings_.user_agent = o.user_agent.empty() ? "trawl/" TRAWL_VERSION : o.user_agent;
    settings_.content.expect = parse_expect(o.expect).value_or(Expect::any);
    settings_.content.min_size = o.min_size;
    settings_.headers = headers_.get();
    settings_.temp_dir = out_;
    settings_.sockets = &sockets_;
    settings_.no_env_proxy = no_proxy_in_environment();
    if (o.respect_robots)
      robots_.emplace(multi_,
                      RobotsSettings{settings_.user_agent, std::clamp(o.connect_timeout_s, 1L, 10L),
                                     20L, settings_.address_filter});

    multi_.set_long(CURLMOPT_MAX_TOTAL_CONNECTIONS, o.concurrency);
    // Idle connections kept: -j, not libcurl's default of 4 per transfer in progress, which
    // closed warm connections whenever fewer than -j/4 transfers were left (a lull in the tasks,
    // the end of a burst) and made the next ones connect again (a TLS handshake each over the
    // Internet). Small files on nginx, 2 x 64: 163 connections in nginx's log of one job and 196
    // connect() calls in a trace of another before (64 per downloader, then 46 and 22 more
    // within 320 ms), 128 connect() calls after.
    multi_.set_long(CURLMOPT_MAXCONNECTS, o.concurrency);
    if (o.per_host > 0) multi_.set_long(CURLMOPT_MAX_HOST_CONNECTIONS, o.per_host);
    multi_.set_long(CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    // Files are created ahead by the pool's thread, not on this one (see TempPool); with
    // --bench-null there are no files at all.
    if (!o.bench_null) {
      start_temp_pool(o.concurrency);
      start_writer();
    }
  }

  ~Worker() {
    // The file thread first: it runs what is queued (its jobs use the slots and the multi).
    writer_.reset();
    // Normally nothing is in flight here; after an exception this detaches every handle and
    // removes every temporary file before the multi goes (slots_ is destroyed before multi_).
    for (auto& t : slots_) {
      multi_.remove(t->easy());
      t->discard();
    }
    if (const auto s = temp_pool_ ? temp_pool_->stats() : TempPool::Stats{}; s.taken + s.missed > 0)
      spdlog::info("temporary files: {} created ahead, {} on the event loop (none was ready), {} "
                   "failed creations ahead",
                   s.taken, s.missed, s.failures);
  }

  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Runs until stop_requested() and the in-flight transfers are finished or aborted.
  void loop() {
    bool stopping = false;
    Clock::time_point stop_deadline{};
    for (;;) {
      const auto now = Clock::now();
      if (take_status_request()) log_status(now, stopping);
      if (!stopping && stop_requested()) {
        stopping = true;
        // A complete job wants nothing still in flight (a task dispatched again, whose first
        // result the sink already has): no grace for it.
        const milliseconds grace = job_complete_stop() ? milliseconds{0} : opt_.grace;
        stop_deadline = now + grace;
        spdlog::info("stopping: {} transfers in flight, waiting up to {} ms", active_,
                     grace.count());
        abandon_waiting();
      }
      flush_unsent(stopping);
      if (stopping) {
        send_ready(now, stopping);
        if (active_ == 0 && finishing_ == 0) break;
        if (now >= stop_deadline) {
          abort_active();
          break;
        }
      } else {
        if (now >= disk_pause_until_) {
          start_due_retries(now);
          take_tasks();
          want_files();
        }
        flush_unsent(false); // results of tasks that ended at once (refused, --bench-null)
        // After taking: the ventilator learns what finished once it frees prefetch/2 slots (or
        // at once when the node would idle), so new tasks are on their way while this turn's
        // transfers run. (While paused for a full disk it asks for nothing, but still sends its
        // heartbeat.)
        send_ready(now, stopping);
      }

      // ZMQ_FD is edge-triggered and only worth watching while we would take a task: at the cap
      // it would stay readable and the poll would spin. take_tasks() always drains to EAGAIN
      // (or to the cap); but a send on the same socket since (send_ready, report_throttle) may
      // have consumed the edge of a frame that arrived in between: ZMQ_EVENTS says whether one
      // waits, and then the poll does not sleep (it slept up to kPollCap, often with batches).
      // The same for the first ready (the join), sent before the connection was up: the
      // connection that completes after it is taken in by a ZMQ_EVENTS query (the edge is gone),
      // and the poll slept until kPollCap before the next try, so the downloader joined 100 ms
      // late (a classic job under strace: its ready left at the poll's timeout, nothing read in
      // between). A first ready is always tried (send_ready), so this cannot spin.
      const bool watch_tasks = !stopping && now >= disk_pause_until_ && can_take();
      const bool joining = ready_blocked_ && !joined();
      int timeout = poll_timeout(now, stopping, stop_deadline);
      if (watch_tasks && held_back()) timeout = 0;
      if (watch_tasks || joining) {
        const auto ev = tasks_.get(zmq::sockopt::events);
        if ((watch_tasks && (ev & ZMQ_POLLIN) != 0) || (joining && (ev & ZMQ_POLLOUT) != 0))
          timeout = 0;
      }
      events_.watch_tasks(watch_tasks);
      const std::size_t n = events_.wait(timeout, ready_);
      // At most kSocketsPerTurn sockets are read per turn (epoll hands the others over in the
      // next): transfers that end are followed by new ones, and the ventilator hears of the
      // free slots, while the rest of a burst is still unread.
      for (std::size_t i = 0; i < n; ++i)
        if (ready_[i].kind == MultiEvents::Kind::curl_socket)
          events_.socket_action(ready_[i].fd, ready_[i].curl_bits);
      events_.run_due_timers();
      gather_.flush(); // what this turn's reads left in it, before the transfers are looked at
      drain_finished(stopping);
      take_finished(stopping);
      flush_unsent(stopping); // this turn's results join those waiting, sent when worth a frame
      notify_under_way();
    }
    // Transfers aborted at the deadline left nothing queued (abort_active drains the writer);
    // the files finished meanwhile are reported.
    take_finished(true);
  }

  // Sends what is left for up to `budget`; returns how much of it is left.
  milliseconds flush(milliseconds budget) {
    const auto deadline = Clock::now() + budget;
    flush_unsent(true);
    while (!unsent_.empty()) {
      const auto now = Clock::now();
      if (now >= deadline) break;
      zmq::pollitem_t item{results_.handle(), 0, ZMQ_POLLOUT, 0};
      try {
        zmq::poll(&item, 1, std::min(kUnsentRetry * 10, std::chrono::ceil<milliseconds>(deadline - now)));
      } catch (const zmq::error_t& e) {
        if (e.num() != EINTR) throw;
      }
      flush_unsent(true);
    }
    if (!unsent_.empty()) {
      counters_.undelivered += unsent_results_;
      spdlog::warn("{} results could not be delivered to the sink (their leases will expire)",
                   unsent_results_);
      unsent_.clear();
      unsent_results_ = 0;
    }
    return std::max(milliseconds{0}, std::chrono::ceil<milliseconds>(deadline - Clock::now()));
  }

  const Counters& counters() const noexcept { return counters_; }

  // The files kept ready and never taken: closed, and removed when named (the pool's end).
  void drop_ready_files() { temp_pool_.reset(); }

private:
  // --notify-pid hears that the first transfers are under way: at the end of the second turn
  // with transfers running (the first connected them, the second sent their requests), or as
  // soon as a result waits for the sink (transfers that ended at once). trawl pipeline starts
  // the sink then: its start-up no longer takes the cores from ours (the classic gallery's 96
  // links as a list, 1 x 64, 30 alternating runs: the first request 82.4 ms after launch against
  // 89.8 with the sink started with the others, the job 554 ms against 564).
  // under_way_ is called at the first turn that ends with every first transfer started (their
  // receive buffers exist: downloader/recv_prefault.hpp), whether or not --notify-pid was told.
  void notify_under_way() {
    // Turns count once every first transfer has started (kStartsPerTurnAtFirst), up to 2.
    if (turns_under_way_ < 2 && active_ > 0 && !held_back()) ++turns_under_way_;
    if (turns_under_way_ > 0 && under_way_) std::exchange(under_way_, nullptr)();
    if (notified_ || opt_.notify_pid <= 0 || (turns_under_way_ < 2 && unsent_.empty())) return;
    notified_ = true;
    notify_parent(opt_.notify_pid, started_signal());
  }

  void start_temp_pool(int concurrency) {
    const std::uint64_t fd_limit = descriptor_limit();
    const std::size_t ready_files = TempPool::capacity_for(concurrency, fd_limit);
    if (ready_files == 0) {
      spdlog::info("descriptors for {} transfers leave none to keep files ready (ulimit -n {}): "
                   "the event loop creates them",
                   concurrency, fd_limit);
      return;
    }
    // Unnamed files (O_TMPFILE) where the file system has them: see create_unnamed_file.
    const bool unnamed =
        unnamed_files_work(out_, ".trawl-" + std::to_string(getpid()) + "-probe.part");
    spdlog::debug("bodies are written to {} files in {}", unnamed ? "unnamed" : "named temporary",
                  out_);
    try {
      const auto backoff = std::chrono::seconds(1);
      if (unnamed)
        temp_pool_.emplace(ready_files,
                           TempPool::CreateFn([dir = out_] { return create_unnamed_file(dir); }),
                           backoff, 0);
      else
        temp_pool_.emplace(ready_files,
                           TempPool::NameFn([dir = out_] { return temp_part_name(dir); }), backoff,
                           0);
    } catch (const std::system_error& e) {
      spdlog::warn("no thread to create temporary files ahead ({}): the event loop creates them",
                   e.what());
    }
  }

  // Bodies are hashed and written, and files closed and renamed, on the file thread (see
  // FileWriter); without it (no thread to be had), on this one as before.
  void start_writer() {
    try {
      writer_.emplace();
    } catch (const std::system_error& e) {
      spdlog::warn("no thread to write files ({}): the event loop writes them", e.what());
    }
  }

  // One line of state for `kill -USR1` (and the e2e tests' report of a hung pipeline): the slots,
  // what waits to go to the sink, and what the last `ready` told the ventilator.
  void log_status(Clock::time_point now, bool stopping) const {
    const auto ago = [now](Clock::time_point t) {
      return t == Clock::time_point{}
                 ? std::string("-")
                 : std::to_string(std::chrono::duration_cast<milliseconds>(now - t).count());
    };
    spdlog::info(
        "status: node={} stopping={} active={} finishing={} queued={} waiting={} parked={} held={} "
        "finished={} unsent_frames={} unsent_results={} received={} tasks={} done={} "
        "failed={} last_ready_ms={} last_held={} last_capacity={} last_received={} "
        "ready_blocked={} disk_pause_ms={}",
        node_, stopping, active_, finishing_, queued_.size(), waiting_.size(), parked(),
        held_ids_.size(), finished_.size(), unsent_.size(), unsent_results_, received_,
        counters_.tasks, counters_.done, counters_.failed, ago(last_ready_),
        joined() ? std::to_string(last_held_) : std::string("-"), last_capacity_, last_received_,
        ready_blocked_,
        now < disk_pause_until_
            ? std::chrono::duration_cast<milliseconds>(disk_pause_until_ - now).count()
            : 0);
  }

  // Whether a ready has gone out since the start (the ventilator knows this node).
  bool joined() const noexcept { return last_held_ != UINT32_MAX; }

  std::size_t parked() const noexcept { return robots_ ? robots_->parked() : 0; }
  // Slots in use: transfers running, waiting for a retry, or parked until robots.txt is known.
  std::size_t busy() const noexcept { return active_ + waiting_.size() + parked(); }

  // Tasks taken out of queued_ since the start: every task received goes through it
  // (abandon_waiting empties it only when stopping).
  std::uint64_t taken() const noexcept { return counters_.tasks - queued_.size(); }
  // Tasks wait in queued_ with a slot free for them: kStartsPerTurnAtFirst held them back.
  bool held_back() const noexcept { return !queued_.empty() && can_take(); }

  bool can_take() const noexcept {
    // While the disk is suspected full, one transfer at a time finds out whether it has room
    // (its file finished too). Otherwise as many files may wait for the file thread to finish
    // them as transfers run: the slots, and their buffers, stay within twice the concurrency.
    if (disk_probing_) return busy() + finishing_ < 1 && unsent_results_ <= 1;
    const auto cap = static_cast<std::size_t>(opt_.concurrency);
    return busy() < cap && finishing_ < cap && unsent_results_ <= cap;
  }

  int poll_timeout(Clock::time_point now, bool stopping, Clock::time_point stop_deadline) const {
    int ms = static_cast<int>(kPollCap.count());
    if (!unsent_.empty()) ms = std::min(ms, static_cast<int>(kUnsentRetry.count()));
    // Results and freed slots held back to travel together go when --coalesce-ms is up.
    if (!finished_.empty()) ms = std::min(ms, ms_until(now, finished_since_ + opt_.coalesce));
    if (unreported_since_ != Clock::time_point{} && !ready_blocked_)
      ms = std::min(ms, ms_until(now, unreported_since_ + opt_.coalesce));
    if (!waiting_.empty()) ms = std::min(ms, ms_until(now, waiting_.top().due));
    if (stopping) ms = std::min(ms, ms_until(now, stop_deadline));
    if (now < disk_pause_until_) ms = std::min(ms, ms_until(now, disk_pause_until_));
    return ms;
  }

  // Tells the ventilator how many tasks we can take (capacity - held - in transit) and which it
  // holds. Credit is what it waits for, so a `ready` goes out when the slots set free since the
  // last one are worth a frame: prefetch/2 of them (the tasks queued here keep the transfers
  // busy meanwhile), or --coalesce-ms after the first, or at once when a slot is free with no
  // task queued to fill it and none on the way. Also at once on a change of capacity (start, stop,
  // a full disk) and every kReadyInterval as a heartbeat. At stop we ask for nothing more.
  void send_ready(Clock::time_point now, bool stopping) {
    // A file the file thread is finishing holds no slot (its transfer has ended, its connection
    // serves the next one), so it is not counted as held: its slot is credit at once, not once
    // the thread reaches its ending behind every chunk queued before it (a classic round
    // against nginx: the next tasks started at 239 ms instead of 205). Its id is still listed
    // below until its result goes.
    const auto held =
        static_cast<std::uint32_t>(held_ids_.size() - std::min(finishing_, held_ids_.size()));
    adapt_prefetch(now, received_ > held ? received_ - held : 0);
    const std::uint32_t capacity = stopping || now < disk_pause_until_
                                       ? 0
                                       : static_cast<std::uint32_t>(opt_.concurrency + prefetch_);
    const bool first = !joined();
    // Slots set free since the last ready. A received task adds to `held` and `received` alike
    // and changes no credit; one that ends at once (an unusable name, a refused URL, a refused
    // frame) adds to `received` only, so it frees a slot as a finished transfer does.
    const std::int64_t freed = first ? 0
                                     : static_cast<std::int64_t>(last_held_) +
                                           static_cast<std::int64_t>(received_ - last_received_) -
                                           static_cast<std::int64_t>(held);
    if (freed > 0 && unreported_since_ == Clock::time_point{}) unreported_since_ = now;
    bool worth = false;
    if (stopping || opt_.coalesce.count() == 0) {
      worth = held != last_held_ || received_ != last_received_;
    } else if (freed > 0) {
      // The ventilator sends at most the credit our last ready showed (capacity - held then):
      // once that many tasks came, none can be on the way, and a free slot with nothing queued
      // would idle until it hears from us.
      const std::uint64_t promised = last_capacity_ > last_held_ ? last_capacity_ - last_held_ : 0;
      const bool none_on_the_way = received_ - last_received_ >= promised;
      worth = freed >= std::max(1, prefetch_ / 2) || now - unreported_since_ >= opt_.coalesce ||
              (queued_.empty() && can_take() && none_on_the_way);
    }
    if (!worth && !first && capacity == last_capacity_ && now - last_ready_ < kReadyInterval)
      return;
    proto::Ready r{node_, capacity, held, received_, {}};
    for (auto it = held_ids_.begin(); it != held_ids_.end() && r.ids.size() < proto::kMaxReadyIds; ++it)
      r.ids.push_back(*it);
    bool sent = false;
    try {
      sent = try_send(tasks_, proto::encode(r));
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;
    }
    // Not connected (yet): the next turn tries again; the poll does not wait for the timer.
    ready_blocked_ = !sent;
    if (!sent) return;
    ++counters_.readies;
    last_held_ = held;
    last_capacity_ = capacity;
    last_received_ = received_;
    last_ready_ = now;
    unreported_since_ = {};
  }

  // The tasks queued here beyond the running ones: --prefetch, or about --prefetch-ms of work at
  // the rate tasks ended in the last kPrefetchWindow (`ended`: tasks received and no longer
  // held), at most twice --concurrency (max_prefetch). When the cap was --concurrency:
  // small-tmpfs (20,000 x 8-64 KB, 2 downloaders of 64, nginx, --digest none), 12 alternating
  // runs, median 1265 ms with 16 ms of work against 1394 with a fixed 4 (a fixed 64: 1290). Classic
  // (297/297 ms at 2x64) and latency (2x64, 1.74-1.78 s both) did not change: there the rate keeps
  // it at 4.
  void adapt_prefetch(Clock::time_point now, std::uint64_t ended) {
    if (opt_.prefetch_work.count() == 0) return;
    if (rate_since_ == Clock::time_point{} || ended < ended_since_) {
      rate_since_ = now;
      ended_since_ = ended;
      return;
    }
    if (now - rate_since_ < kPrefetchWindow) return;
    const double per_ms = static_cast<double>(ended - ended_since_) /
                          std::chrono::duration<double, std::milli>(now - rate_since_).count();
    const double want = per_ms * static_cast<double>(opt_.prefetch_work.count());
    const int before = prefetch_;
    prefetch_ = static_cast<int>(std::clamp(want, static_cast<double>(opt_.prefetch),
                                            static_cast<double>(max_prefetch(opt_))));
    if (prefetch_ != before)
      spdlog::debug("prefetch {} (tasks ending at {:.2f}/ms)", prefetch_, per_ms);
    rate_since_ = now;
    ended_since_ = ended;
  }

  void release_id(std::uint64_t id) {
    if (auto it = held_ids_.find(id); it != held_ids_.end()) held_ids_.erase(it);
  }

  // Starts tasks while there is room: first those queued from a batch, then from new frames. A
  // frame is read only when at least one of its tasks can start; the others wait in queued_.
  // Until `concurrency` tasks have started, kStartsPerTurnAtFirst a turn (the loop then does not
  // sleep while some wait in queued_).
  void take_tasks() {
    std::size_t started = 0;
    const bool ramp = taken() < static_cast<std::uint64_t>(opt_.concurrency);
    while (can_take() && (!ramp || started < kStartsPerTurnAtFirst)) {
      if (!queued_.empty()) {
        proto::Task task = std::move(queued_.front());
        queued_.pop_front();
        admit(std::move(task));
        ++started;
        continue;
      }
      std::optional<zmq::message_t> msg;
      try {
        msg = try_recv(tasks_);
      } catch (const zmq::error_t& e) {
        if (e.num() == EINTR) return;
        throw;
      }
      if (!msg) return;
      on_frame(*msg);
    }
  }

  void on_frame(const zmq::message_t& msg) {
    ++counters_.task_frames;
    auto decoded = proto::decode(std::string_view(msg.data<char>(), msg.size()));
    if (const auto* err = std::get_if<proto::DecodeError>(&decoded)) {
      // The ventilator counted every task it sent: a refused batch counts as its items.
      received_ += std::max<std::size_t>(err->items, 1);
      ++counters_.bad_frames;
      std::string more;
      // A ventilator of another protocol version repeats itself: a few lines, then fewer.
      if (err->what.starts_with("protocol version")) {
        if (!version_log_.allow()) return;
        if (const auto n = version_log_.take_suppressed(); n > 0)
          more = fmt::format(" ({} more such frames not logged)", n);
        spdlog::error("dropped a frame of {} bytes ({} so far): the ventilator speaks {}: it "
                      "refuses this node, and no task will come from it until both run trawl of "
                      "the same protocol version{}",
                      msg.size(), counters_.bad_frames, err->what, more);
        return;
      }
      spdlog::warn("dropped an undecodable frame of {} bytes ({} so far): {}{}", msg.size(),
                   counters_.bad_frames, err->what, more);
      return;
    }
    auto& m = std::get<proto::Message>(decoded);
    if (auto* task = std::get_if<proto::Task>(&m)) {
      receive(std::move(*task));
    } else if (auto* batch = std::get_if<proto::Tasks>(&m)) {
      for (auto& t : batch->items) receive(std::move(t));
    } else {
      ++received_;
      ++counters_.bad_frames;
      spdlog::warn("dropped a '{}' frame on the task socket ({} so far)", proto::type_name(m),
                   counters_.bad_frames);
    }
  }

  // A task is ours from here (held, listed in `ready`) and waits in queued_ for a free slot.
  void receive(proto::Task task) {
    ++received_;
    ++counters_.tasks;
    if (counters_.tasks == 1) // how long a node takes to get work after it starts (docs, bench)
      spdlog::info("first task after {} ms (id {})",
                   std::chrono::duration_cast<milliseconds>(Clock::now() - g_process_start).count(),
                   task.id);
    held_ids_.insert(task.id);
    queued_.push_back(std::move(task));
  }

  // A new task starts unless --respect-robots refuses it, or waits (parked in robots_) for its
  // origin's robots.txt.
  void admit(proto::Task task) {
    if (!robots_ || opt_.bench_null) {
      start(std::move(task), 1);
      return;
    }
    RobotsVerdict v;
    try {
      v = robots_->check(task, Clock::now());
    } catch (const CurlError& e) {
      report_failure(task, 1, proto::Reason::other,
                     bounded(std::string("robots.txt: ") + e.what(), proto::kMaxDetailBytes));
      return;
    }
    switch (v.state) {
      case RobotsVerdict::State::allowed: start(std::move(task), 1); break;
      case RobotsVerdict::State::refused:
        ++counters_.robots;
        report_failure(task, 1, proto::Reason::robots, std::move(v.detail));
        break;
      case RobotsVerdict::State::wait: break;
    }
  }

  // Starts attempt `attempt` of `task` (continuing `resume` when it is given), or reports it
  // failed when it cannot start.
  void start(proto::Task task, std::uint32_t attempt, std::optional<Partial> resume = {}) {
    if (opt_.bench_null) {
      report_null(task, attempt);
      return;
    }
    if (!is_safe_name(task.name)) {
      report_failure(task, attempt, proto::Reason::bad_url,
                     bounded("unsafe file name: " + task.name, proto::kMaxDetailBytes));
      return;
    }
    if (!task.dir.empty() && !is_safe_name(task.dir)) {
      report_failure(task, attempt, proto::Reason::bad_url,
                     bounded("unsafe directory name: " + task.dir, proto::kMaxDetailBytes));
      return;
    }
    if (task.url.find('\0') != std::string::npos) {
      report_failure(task, attempt, proto::Reason::bad_url, "URL contains a NUL byte");
      return;
    }
    Transfer* t = acquire();
    // A continued body has its file; a new one gets its file at its first body byte (body_file),
    // where a file that cannot be made fails the transfer (a full disk pauses, in complete()). So
    // begin() creates nothing here and fails only when libcurl refuses an option.
    std::string err;
    try {
      err = t->begin(task, attempt, settings_, std::string(), std::move(resume));
      if (err.empty()) {
        if (t->file_pending()) ++awaiting_file_; // release() counts it off, whatever comes
        multi_.add(t->easy());
      }
    } catch (const CurlError& e) {
      err = e.what();
    }
    if (!err.empty()) {
      t->discard();
      release(t);
      report_failure(task, attempt, proto::Reason::other, err);
      return;
    }
    ++active_;
    spdlog::debug("task {} attempt {}: start {}", task.id, attempt, task.url);
  }

  Transfer* acquire() {
    if (!idle_.empty()) {
      Transfer* t = idle_.back();
      idle_.pop_back();
      return t;
    }
    slots_.push_back(std::make_unique<Transfer>(sha256_.get()));
    slots_.back()->set_writer(writer_ ? &*writer_ : nullptr);
    slots_.back()->set_gather(&gather_);
    slots_.back()->set_file_source([this](std::string& tried) { return body_file(tried); });
    return slots_.back().get();
  }

  // A new body's file, asked for at its first byte: a ready one of the pool, else one created
  // here (named: a path the error can show).
  TempFile body_file(std::string& tried) {
    --awaiting_file_;
    if (temp_pool_) {
      files_wanted_ = files_needed(); // this one counted off: not made again (TempPool::take)
      if (TempFile f = temp_pool_->take(files_wanted_)) return f;
    }
    tried = temp_part_name(out_);
    return create_temp_file(tried);
  }

  void release(Transfer* t) {
    if (t->file_pending()) --awaiting_file_; // ended before its first body byte
    idle_.push_back(t);
  }

  // The pool keeps ready the files that the transfers waiting for their first byte and the
  // tasks in hand will ask for: none before the job's first requests leave (the CPU goes to
  // starting the job's processes), and none made at the end of a job for tasks that will not
  // come, while the last bodies are being written.
  std::size_t files_needed() const noexcept { return awaiting_file_ + queued_.size(); }
  void want_files() {
    if (!temp_pool_) return;
    const std::size_t n = files_needed();
    if (n == files_wanted_) return;
    files_wanted_ = n;
    temp_pool_->want(n);
  }

  void drain_finished(bool stopping) {
    int queued = 0;
    while (CURLMsg* m = curl_multi_info_read(multi_.get(), &queued)) {
      if (m->msg != CURLMSG_DONE) continue;
      // Copy what we need: removing the handle invalidates m.
      CURL* easy = m->easy_handle;
      const CURLcode code = m->data.result;
      if (robots_) {
        if (auto ready = robots_->on_done(easy, code, Clock::now())) { // a robots.txt came
          for (auto& task : *ready) admit(std::move(task));
          continue;
        }
      }
      char* priv = nullptr;
      curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
      auto* t = static_cast<Transfer*>(static_cast<void*>(priv));
      multi_.remove(t->easy());
      --active_;
      t->prepare_finish(code); // what libcurl knows, read here, where the handle lives
      // A small body (or none) is finished here: handing it over costs more than its writing
      // (see kInlineFinishMax). All of it is in hand, or was written as it came.
      if (writer_ && !(t->nothing_handed_over() && t->attempt_bytes() <= kInlineFinishMax))
        finish_on_writer(*t, stopping);
      else complete(*t, finish_into_tree(*t, another_attempt(*t, stopping)), stopping);
    }
  }

  // A body cut short is kept for the next attempt only when there will be one.
  bool another_attempt(const Transfer& t, bool stopping) const {
    return !stopping && t.attempt() < 1 + static_cast<std::uint32_t>(std::max(opt_.retries, 0));
  }

  // The file part of the ending goes to the file thread, after the transfer's chunks; the slot
  // comes back, and the result goes out, when take_finished() sees it done. Meanwhile the
  // connection already serves the next transfer.
  void finish_on_writer(Transfer& t, bool stopping) {
    const bool another = another_attempt(t, stopping);
    ++finishing_;
    // Its last chunk, still in the transfer, counts against the writer's budget.
    writer_->submit(
        [this, &t, another] {
          Finished f;
          try {
            f = finish_into_tree(t, another);
          } catch (const std::exception& e) { // std::bad_alloc: the file is removed, the task fails
            t.discard();
            f.reason = proto::Reason::other;
            f.detail =
                bounded(std::string("finishing the file: ") + e.what(), proto::kMaxDetailBytes);
          }
          bool first = false;
          {
            std::lock_guard lock(done_mutex_);
            first = done_.empty();
            done_.emplace_back(&t, std::move(f));
          }
          // One wake-up for a run of endings: the loop takes them all in one turn.
          if (first) events_.wakeup();
        },
        t.unwritten());
  }

  // The endings the file thread has done: each slot comes back and its result goes on.
  // Nothing to take (and no lock) when no file is out; the two vectors swap their room, so a turn
  // allocates nothing.
  void take_finished(bool stopping) {
    if (finishing_ == 0) return;
    {
      std::lock_guard lock(done_mutex_);
      taking_.swap(done_);
    }
    for (auto& [t, f] : taking_) {
      --finishing_;
      complete(*t, std::move(f), stopping);
    }
    taking_.clear();
  }

  // Ends the attempt: the body goes to its final name, in its --shard subdirectory when it has
  // one (created, and entered without following links, here: see OutputTree).
  // Runs on the file thread when there is one (OutputTree is safe to share: it keeps no state but
  // its root descriptor), after prepare_finish() ran on the loop.
  Finished finish_into_tree(Transfer& t, bool another_attempt) const {
    const proto::Task& task = t.task();
    if (task.dir.empty())
      return t.finish_prepared(out_ + "/" + task.name, AT_FDCWD, out_ + "/" + task.name,
                               another_attempt);
    const int dir_fd = tree_.open_subdir(task.dir);
    const int dir_errno = errno;
    Finished f = t.finish_prepared(out_ + "/" + task.dir + "/" + task.name, dir_fd, task.name,
                                   another_attempt);
    if (dir_fd >= 0) {
      ::close(dir_fd);
    } else if (f.reason == proto::Reason::io) {
      f.detail = bounded("cannot create or open directory " + out_ + "/" + task.dir + ": " +
                             std::strerror(dir_errno),
                         proto::kMaxDetailBytes);
    }
    return f;
  }

  // --dedupe-content: a body seen before becomes a hard link to its first copy; says so in the
  // result's detail (the ledger and manifest keep it).
  void dedupe(const proto::Task& task, proto::Result& r) {
    const int dir_fd = task.dir.empty() ? tree_.root() : tree_.open_subdir(task.dir);
    if (dir_fd < 0) return;
    const std::string rel = task.dir.empty() ? task.name : task.dir + "/" + task.name;
    const std::string temp = temp_part_name("");
    const auto d = tree_.dedupe(dir_fd, task.name, rel, r.bytes, r.sha256, temp);
    if (dir_fd != tree_.root()) ::close(dir_fd);
    if (!d.error.empty()) {
      spdlog::warn("task {}: --dedupe-content: {} (the file is kept as it is)", task.id, d.error);
    } else if (d.linked) {
      r.detail = bounded("same content as " + d.first + " (hard link)", proto::kMaxDetailBytes);
      ++counters_.deduped;
    }
  }

  // The host asked for a pause (429/503 with Retry-After): tell the ventilator, which slows the
  // host down for every node. Best effort: a lost message only costs politeness.
  void report_throttle(std::uint64_t id, long retry_after_s) {
    const auto ms = std::min<long>(retry_after_s, 3600) * 1000;
    try {
      try_send(tasks_, proto::encode(proto::Throttle{id, static_cast<std::uint32_t>(ms)}));
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;
    }
  }

  void complete(Transfer& t, Finished f, bool stopping) {
    const std::uint32_t max_attempts = 1 + static_cast<std::uint32_t>(std::max(opt_.retries, 0));
    proto::Task task = t.task();
    const std::uint32_t attempt = t.attempt();
    release(&t);
    if (f.reason == proto::Reason::disk) {
      pause_for_disk(f.detail);
    } else if (f.reason == proto::Reason::none && disk_probing_) {
      disk_probing_ = false;
      disk_pause_ = kDiskPauseFirst;
      spdlog::warn("the output directory {} takes files again: full speed", out_);
    }

    if (f.restart && !stopping) {
      // The server would not continue the kept bytes (416, another range): the same attempt
      // again from the first byte. Bounded: a fresh request has nothing to refuse.
      spdlog::debug("task {} attempt {}: {}; starting over", task.id, attempt, f.detail);
      start(std::move(task), attempt);
      return;
    }

    if (f.reason != proto::Reason::none && !stopping && !f.permanent &&
        proto::is_retryable(f.reason) &&
        attempt < max_attempts) {
      // Retry-After only means something on "come back later" answers.
      const long retry_after =
          (f.http_status == 429 || f.http_status == 503) ? f.retry_after_s : 0;
      if (retry_after > 0) report_throttle(task.id, retry_after);
      const auto delay = retry_delay(attempt, jitter_(rng_), retry_after);
      spdlog::debug("task {} attempt {}: {} ({}), retry in {} ms{}", task.id, attempt,
                    proto::reason_name(f.reason), f.detail, delay.count(),
                    f.partial ? " from byte " + std::to_string(f.partial->bytes) : std::string());
      ++counters_.retries;
      waiting_.push(Waiting{Clock::now() + delay, std::move(task), attempt, f.reason, f.detail,
                            std::move(f.partial)});
      return;
    }

    proto::Result r = result_of(task.id, std::move(task.url), std::move(task.meta), attempt);
    r.http_code = f.http_status > 0 ? static_cast<std::uint32_t>(f.http_status) : 0;
    r.ms = f.ms;
    r.ttfb_ms = f.ttfb_ms;
    r.reason = f.reason;
    if (f.reason == proto::Reason::none) {
      r.status = proto::Status::done;
      r.path = f.path;
      r.bytes = f.bytes;
      r.sha256 = f.sha256;
      if (opt_.dedupe_content) dedupe(task, r);
      ++counters_.done;
      counters_.bytes += f.bytes;
      if (f.resumed_from > 0) ++counters_.resumed;
      spdlog::debug("task {} attempt {}: done, {} bytes in {} ms -> {}", r.id, attempt, r.bytes,
                    r.ms, r.path);
    } else {
      r.status = proto::Status::failed;
      r.detail = f.detail;
      ++counters_.failed;
      spdlog::debug("task {} attempt {}: failed, {} ({})", r.id, attempt,
                    proto::reason_name(r.reason), r.detail);
    }
    deliver(std::move(r));
  }

  // The fields every result carries.
  proto::Result result_of(std::uint64_t id, std::string url, std::string meta, std::uint32_t attempt) const {
    proto::Result r;
    r.id = id;
    r.url = std::move(url);
    r.meta = std::move(meta); // the link's columns, carried through to the sink's manifest
    r.node = node_;
    r.attempt = attempt;
    return r;
  }

  // The task is no longer held; its result goes to the sink (or waits for it, in order).
  // Results go out together (flush_unsent), as one "results" frame.
  void deliver(proto::Result r) {
    release_id(r.id);
    if (finished_.empty()) finished_since_ = Clock::now();
    finished_.push_back(std::move(r));
  }

  // --bench-null: done at once, nothing fetched or written (the SHA-256 of an empty body when
  // bodies are hashed, else none).
  void report_null(const proto::Task& task, std::uint32_t attempt) {
    proto::Result r = result_of(task.id, task.url, task.meta, attempt);
    r.status = proto::Status::done;
    r.path = out_ + "/" + task.name;
    if (sha256_) r.sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    r.http_code = 200;
    ++counters_.done;
    deliver(std::move(r));
  }

  // A failure decided before or without a transfer (unsafe name, temp file, stop).
  void report_failure(const proto::Task& task, std::uint32_t attempt, proto::Reason reason,
                      std::string detail) {
    proto::Result r = result_of(task.id, task.url, task.meta, attempt);
    r.status = proto::Status::failed;
    r.reason = reason;
    r.detail = std::move(detail);
    ++counters_.failed;
    if (reason == proto::Reason::aborted) ++counters_.aborted;
    spdlog::debug("task {} attempt {}: failed, {} ({}) {}", task.id, attempt,
                  proto::reason_name(reason), r.detail, task.url);
    deliver(std::move(r));
  }

  // The link that hit the full disk has failed with reason disk (the ledger keeps it, and a new
  // run of the job retries it). Nothing new starts for a while, then one transfer at a time.
  void pause_for_disk(const std::string& detail) {
    const auto now = Clock::now();
    if (now < disk_pause_until_) return; // already paused: the transfers in flight end here too
    disk_pause_until_ = now + disk_pause_;
    disk_probing_ = true;
    spdlog::error("the output directory {} is full ({}): the link fails with reason disk; no new "
                  "transfer for {} s, then one at a time until one completes; free space, or "
                  "stop and run the job again to retry the failed links",
                  out_, detail, std::chrono::ceil<std::chrono::seconds>(disk_pause_).count());
    disk_pause_ = std::min(disk_pause_ * 2, kDiskPauseMax);
  }

  void start_due_retries(Clock::time_point now) {
    while (!waiting_.empty() && waiting_.top().due <= now) {
      Waiting w = waiting_.top();
      waiting_.pop();
      start(std::move(w.task), w.attempts + 1, std::move(w.partial));
    }
  }

  // At stop, tasks waiting for a retry will not get it: they are reported aborted at once. Tasks
  // received in a batch and not started yet are not reported (no attempt was made): they are no
  // longer held, so the ventilator dispatches them again, like tasks that were still in the
  // socket's queue.
  void abandon_waiting() {
    if (!queued_.empty()) {
      spdlog::info("stopping: {} tasks received and not started are left to the ventilator",
                   queued_.size());
      for (const auto& task : queued_) release_id(task.id);
      queued_.clear();
    }
    if (robots_)
      for (const auto& task : robots_->take_parked())
        report_failure(task, 1, proto::Reason::aborted, "stopped while its robots.txt was read");
    while (!waiting_.empty()) {
      Waiting w = waiting_.top();
      waiting_.pop();
      report_failure(w.task, w.attempts, proto::Reason::aborted,
                     bounded("stopped before retry; last attempt: " +
                                 std::string(proto::reason_name(w.last)) + ": " + w.last_detail,
                             proto::kMaxDetailBytes));
    }
  }

  // Grace is over: every transfer still running is aborted and its temporary file removed.
  void abort_active() {
    // Their chunks must be written (or dropped) before their files are removed.
    if (writer_) writer_->drain();
    for (auto& t : slots_) {
      if (!t->easy().attached()) continue;
      multi_.remove(t->easy());
      t->discard();
      --active_;
      report_failure(t->task(), t->attempt(), proto::Reason::aborted,
                     "stopped: still running after --grace-ms " +
                         std::to_string(opt_.grace.count()));
      release(t.get());
    }
  }

  bool try_send_frame(const std::string& frame) {
    try {
      return try_send(results_, frame);
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) return false;
      throw;
    }
  }

  // Results keep their order: nothing overtakes a result that is waiting for the sink.
  void send(std::string frame, std::size_t results) {
    if (unsent_.empty() && try_send_frame(frame)) {
      ++counters_.result_frames;
      return;
    }
    unsent_.push_back(Unsent{std::move(frame), results});
    unsent_results_ += results;
  }

  // The finished results become frames (a "results" batch within the count and size bounds; one
  // result alone as a "result") once they are worth one: kResultBatch of them, the oldest waited
  // --coalesce-ms, nothing else is in flight or queued (the job's last results), half the slots
  // or more are free with no task queued, or `force` (stop, exit). Then what waits for the sink
  // is sent, in order. Results waiting here are no longer held: the ventilator's credit does not
  // wait for them, but its per-host limits do (a host's next task waits for its last result): a
  // node left half empty may be waiting for exactly that, so it does not hold them. (A few free
  // slots are usual while a burst of transfers ends and the ventilator's answer is on its way.)
  void flush_unsent(bool force) {
    const bool half_empty =
        queued_.empty() && 2 * busy() <= static_cast<std::size_t>(opt_.concurrency);
    const bool hold = !force && opt_.coalesce.count() > 0 && finished_.size() < kResultBatch &&
                      (active_ > 0 || parked() > 0 || !queued_.empty()) && !half_empty &&
                      Clock::now() - finished_since_ < opt_.coalesce;
    for (std::size_t i = 0; !hold && i < finished_.size();) {
      proto::BatchSize size;
      std::size_t end = i;
      while (end < finished_.size() && size.add(proto::batch_item_bound(finished_[end]))) ++end;
      if (end - i == 1) {
        send(proto::encode(finished_[i]), 1);
      } else {
        proto::Results batch;
        batch.items.assign(
            std::make_move_iterator(finished_.begin() + static_cast<std::ptrdiff_t>(i)),
            std::make_move_iterator(finished_.begin() + static_cast<std::ptrdiff_t>(end)));
        send(proto::encode(batch), end - i);
      }
      i = end;
    }
    if (!hold) finished_.clear();
    while (!unsent_.empty() && try_send_frame(unsent_.front().frame)) {
      ++counters_.result_frames;
      unsent_results_ -= unsent_.front().results;
      unsent_.pop_front();
    }
  }

  const DownloadOptions& opt_;
  const std::string out_;
  zmq::socket_t& tasks_;
  zmq::socket_t& results_;
  std::function<void()> under_way_; // called once (notify_under_way)
  const std::string node_;
  TransferSettings settings_;
  std::unique_ptr<EVP_MD, decltype(&EVP_MD_free)> sha256_;
  std::mt19937_64 rng_;
  std::uniform_real_distribution<double> jitter_{0.0, 1.0};
  std::uint64_t received_ = 0; // tasks received on the task socket (a batch counts its items)
  int prefetch_ = opt_.prefetch; // see adapt_prefetch
  Clock::time_point rate_since_{};
  std::uint64_t ended_since_ = 0;
  std::multiset<std::uint64_t> held_ids_; // tasks received and not yet reported, for the vent
  std::uint32_t last_held_ = UINT32_MAX, last_capacity_ = 0;
  std::uint64_t last_received_ = 0;
  Clock::time_point last_ready_{};
  Clock::time_point unreported_since_{}; // the first slot set free since the last ready, or {}
  bool ready_blocked_ = false;           // the last ready could not be sent (not connected)

  HeaderList headers_; // -H lines; settings_.headers points at it, so it outlives the handles
  SocketBook sockets_; // before multi_: libcurl closes connections into it until the multi goes
  BodyGather gather_;  // before the slots, which forget() their bytes in it as they go
  CurlMulti multi_; // declared before the slots: it must be freed after every easy handle
  MultiEvents events_; // its sockets; after multi_, before the slots (removals call back into it)
  std::vector<std::unique_ptr<Transfer>> slots_; // running, or finishing on the file thread: at
                                                 // most twice the concurrency; reused
  std::vector<Transfer*> idle_;
  std::size_t active_ = 0; // transfers added to the multi
  int turns_under_way_ = 0;   // loop turns that ended with transfers running (notify_under_way)
  bool notified_ = false;     // notify_under_way() told --notify-pid
  std::size_t finishing_ = 0; // transfers whose file the file thread is finishing
  std::mutex done_mutex_;
  std::vector<std::pair<Transfer*, Finished>> done_; // finished by the file thread, to take
  std::vector<std::pair<Transfer*, Finished>> taking_; // take_finished()'s, kept for its room
  std::priority_queue<Waiting, std::vector<Waiting>, DueLater> waiting_;
  std::deque<proto::Task> queued_;      // received (in a batch) and held, waiting for a free slot
  std::vector<proto::Result> finished_; // results not encoded yet (see flush_unsent)
  Clock::time_point finished_since_{};  // when the oldest of them was added
  struct Unsent {
    std::string frame;
    std::size_t results = 0;
  };
  std::deque<Unsent> unsent_;            // encoded results the sink did not take yet
  std::size_t unsent_results_ = 0;       // the results in unsent_
  Clock::time_point disk_pause_until_{}; // no new transfer before this (the disk was full)
  milliseconds disk_pause_ = kDiskPauseFirst; // the next pause
  bool disk_probing_ = false; // since a disk failure, until a transfer completes
  Counters counters_;
  LogRateLimit version_log_;
  OutputTree tree_;
  std::optional<RobotsCache> robots_; // --respect-robots; after multi_: freed before it
  std::optional<TempPool> temp_pool_; // empty files ready for new bodies; none with --bench-null
  std::size_t awaiting_file_ = 0;     // transfers started that have no file yet (Transfer::begin)
  std::size_t files_wanted_ = 0;      // what the pool was last asked to keep ready
  // Hashes, writes and renames the bodies (see FileWriter); none with --bench-null. After the
  // slots, so that it goes (and runs what it has queued) before them.
  std::optional<FileWriter> writer_;
  std::array<MultiEvents::Ready, kSocketsPerTurn> ready_{}; // one wait()'s ready descriptors
};

} // namespace

bool hashes_bodies(const DownloadOptions& o) {
  return o.digest == "sha256" || (o.digest.empty() && o.dedupe_content);
}

std::string check_options(const DownloadOptions& o) {
  if (o.connect.empty()) return "--connect: at least one ventilator endpoint is needed";
  if (o.sink.empty()) return "--sink: at least one sink endpoint is needed";
  if (o.concurrency < 1) return "--concurrency must be at least 1";
  if (o.prefetch < 1) return "--prefetch must be at least 1";
  if (o.retries < 0) return "--retries must not be negative";
  if (o.max_redirects < 0) return "--max-redirects must not be negative";
  if (o.max_size == 0) return "--max-size must be positive";
  if (o.connect_timeout_s < 0 || o.timeout_s < 0 || o.low_speed_time_s < 0 ||
      o.low_speed_limit < 0)
    return "timeouts must not be negative";
  if (o.grace.count() < 0) return "--grace-ms must not be negative";
  if (o.per_host < 0) return "--per-host must not be negative";
  for (const auto& h : o.headers)
    if (const std::string why = check_header(h); !why.empty())
      return "-H '" + bounded(h, 80) + "': " + why;
  if (!parse_expect(o.expect)) return "--expect must be any or image";
  if (!o.digest.empty() && o.digest != "sha256" && o.digest != "none")
    return "--digest must be sha256 or none";
  if (o.digest == "none" && o.dedupe_content)
    return "--dedupe-content finds identical bodies by their SHA-256: it cannot run with --digest "
           "none (without --digest it hashes every body)";
  if (o.node.size() > proto::kMaxNodeBytes)
    return "--node is longer than " + std::to_string(proto::kMaxNodeBytes) + " bytes";
  return {};
}

namespace {

// Removes temporary files left in `out` by downloaders of this host that died (SIGKILL, crash),
// see remove_stale_parts, and says how many. Run at start and at exit, so a job that outlives a
// killed downloader ends without stray temporary files. (On a directory shared between hosts, a
// PID says nothing about another host's processes: use one output directory per host.)
void sweep_stale_parts(const std::string& out) {
  if (const std::size_t removed = remove_stale_parts(out); removed > 0)
    spdlog::info("removed {} temporary files of stopped downloaders in {}", removed, out);
}

// Creates the output directory when missing; returns its absolute path, or nullopt after
// logging why it cannot be used.
std::optional<std::string> prepare_out_dir(const std::string& out) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) {
    spdlog::error("cannot create output directory {}: {}", out, ec.message());
    return std::nullopt;
  }
  fs::path abs = fs::absolute(out, ec);
  if (ec) {
    spdlog::error("cannot resolve output directory {}: {}", out, ec.message());
    return std::nullopt;
  }
  abs = abs.lexically_normal();
  std::string s = abs.string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  if (!fs::is_directory(s, ec)) {
    spdlog::error("output path {} is not a directory", s);
    return std::nullopt;
  }
  if (::access(s.c_str(), W_OK | X_OK) != 0) {
    spdlog::error("output directory {} is not writable: {}", s, std::strerror(errno));
    return std::nullopt;
  }
  return s;
}

} // namespace

void add_options(CLI::App& cmd, DownloadOptions& o) {
  cmd.add_option("--connect", o.connect,
                 "ventilator endpoint to take tasks from (repeatable; e.g. tcp://host:5558)")
      ->capture_default_str();
  cmd.add_option("--sink", o.sink,
                 "sink endpoint to send results to (repeatable; e.g. tcp://host:5559)")
      ->capture_default_str();
  cmd.add_option("--out", o.out, "directory the files are written to (created when missing)")
      ->capture_default_str();
  cmd.add_option("-j,--concurrency", o.concurrency,
                 "transfers at once, including tasks waiting for a retry; also the total "
                 "connection cap")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  cmd.add_option("--prefetch", o.prefetch,
                 "tasks queued on this node beyond those running (small, so nodes do not hoard); "
                 "more where tasks end fast, see --prefetch-ms")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  cmd.add_option_function<std::int64_t>(
         "--prefetch-ms", [&o](const std::int64_t& ms) { o.prefetch_work = milliseconds(ms); },
         "the queue grows beyond --prefetch to hold about this many ms of work at the rate tasks "
         "end on this node (at most twice --concurrency tasks), so that thousands of small files a "
         "second do not wait for the ventilator's answers; 0 = always --prefetch")
      ->default_str(std::to_string(o.prefetch_work.count()))
      ->check(CLI::Range(0, 1000));
  cmd.add_option_function<std::int64_t>(
         "--coalesce-ms", [&o](const std::int64_t& ms) { o.coalesce = milliseconds(ms); },
         "how long a finished result, or a slot set free, may wait to share a message with "
         "others: results go to the sink 64 to a frame, credit to the ventilator once "
         "prefetch/2 slots are free; both go at once when nothing else is in flight or a slot "
         "would idle. Fewer messages when transfers end one by one; 0 = send every change at "
         "once")
      ->default_str(std::to_string(o.coalesce.count()))
      ->check(CLI::Range(0, 1000));
  cmd.add_option("--node", o.node, "name of this node in results (default hostname-pid)");
  cmd.add_option("--connect-timeout", o.connect_timeout_s,
                 "seconds allowed to connect (DNS, TCP and TLS)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd.add_option("--timeout", o.timeout_s, "seconds allowed for a whole transfer, 0 = no limit")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd.add_option("--low-speed-time", o.low_speed_time_s,
                 "abort a transfer slower than --low-speed-limit for this many seconds (also "
                 "while waiting for the answer), 0 = never")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd.add_option("--low-speed-limit", o.low_speed_limit,
                 "bytes per second below which --low-speed-time counts, 0 = no check")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd.add_flag("--deny-private", o.deny_private,
               "refuse to connect to loopback, private (RFC 1918), link-local, CGNAT, unique-local "
               "IPv6, multicast, reserved and cloud metadata addresses, checked after DNS "
               "resolution on every connection, redirects included; such links fail with reason "
               "connect (with a proxy, the proxy's address is what is checked)");
  cmd.add_option("--max-redirects", o.max_redirects, "redirects followed per transfer")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd.add_option("--max-size", o.max_size,
                 "largest body accepted, in bytes or with a unit (500k, 2G); larger fails as "
                 "too-large")
      ->capture_default_str()
      ->transform(CLI::AsSizeValue(false));
  cmd.add_option("--retries", o.retries,
                 "further attempts after a retryable failure (timeout, connect, dns, truncated, "
                 "429, 5xx), with exponential backoff")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd.add_option_function<std::int64_t>(
         "--grace-ms", [&o](const std::int64_t& ms) { o.grace = milliseconds(ms); },
         "on SIGINT/SIGTERM, milliseconds running transfers may take to finish before they are "
         "aborted")
      ->default_str(std::to_string(o.grace.count()))
      ->check(CLI::NonNegativeNumber);
  cmd.add_option("--per-host", o.per_host, "connections per host at most, 0 = no cap")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd.add_flag("--bench-null", o.bench_null,
               "benchmarks only: report every task done at once, fetching and writing nothing")
      ->group(""); // hidden: it would mark links done that were never downloaded
  cmd.add_flag("--no-exit-sweep", o.no_exit_sweep,
               "at exit, leave alone the temporary files that other downloaders of this host "
               "left in --out when they died (by default they are removed; trawl pipeline passes "
               "this and removes them itself once, after the job, when one of its downloaders "
               "died)");
  cmd.add_option("--notify-pid", o.notify_pid,
                 "Signal this process (our parent; SIGRTMIN) once the first transfers are under "
                 "way (trawl pipeline then starts the sink)");
  cmd.add_option("--user-agent", o.user_agent,
                 "User-Agent header (default trawl/" TRAWL_VERSION ")");
  add_curve_options(cmd, o.curve, CurveRole::downloader);
  cmd.add_option("-H,--header", o.headers,
                 "extra request header 'Name: value' (repeatable; e.g. an API token); sent with "
                 "every request; a value with CR, LF or other control bytes is refused; "
                 "'Name:' with no value leaves that header out")
      ->type_name("'NAME: VALUE'");
  cmd.add_option("--expect", o.expect,
                 "image: a body must start like a JPEG, PNG, GIF, WebP or AVIF/HEIF image; "
                 "anything else (an HTML error page served with 200, JSON, a video) fails with "
                 "reason content after its first bytes and is not stored; any: no check")
      ->capture_default_str()
      ->check(CLI::IsMember({"any", "image"}));
  cmd.add_option("--min-size", o.min_size,
                 "bodies smaller than this (bytes, or with a unit: 2k) fail with reason content "
                 "and are not stored (placeholder images); 0 = no check")
      ->capture_default_str()
      ->transform(CLI::AsSizeValue(false));
  cmd.add_flag("--respect-robots", o.respect_robots,
               "read each origin's /robots.txt first (once per downloader process, kept 24 h) and "
               "fail the links it disallows for the product token of --user-agent (trawl) with "
               "reason robots (RFC 9309: the longest matching Allow/Disallow wins, Allow on a "
               "tie, '*' and '$' patterns); a 4xx robots.txt allows everything, a 5xx or "
               "unreachable one disallows everything of that origin");
  cmd.add_option("--digest", o.digest,
                 "sha256: every body is hashed as it arrives and its SHA-256 goes to the sink "
                 "(manifest, ledger, report); none: bodies are not hashed, results carry no "
                 "digest. Default: none, sha256 with --dedupe-content. Hashing costs about 0.7 "
                 "CPU s per GB (SHA-NI): on 2 cores, 10 x 100 MB took 1.16 s instead of 0.97 "
                 "(bench/run big)")
      ->check(CLI::IsMember({"sha256", "none"}));
  cmd.add_flag("--dedupe-content", o.dedupe_content,
               "store identical bodies once: a file whose SHA-256 equals an earlier file's in "
               "--out becomes a hard link to it (the result's detail names the first copy); the "
               "index is OUT/.trawl/objects, shared by the downloaders writing to OUT. Hashes "
               "every body (--digest sha256 unless --digest none, which it refuses)");
}

// Grows this process's descriptor table, while it still has one thread, to hold what its
// transfers will open (TempPool::descriptors_for, capped by ulimit -n). The
// kernel grows the table when a descriptor beyond it is opened (64, then 128 or 256, ...), and
// in a process of several threads each growth first waits for an RCU grace period (the
// expand_files() in the traced stacks): at the first 64 transfers' sockets and files, the
// event loop and the file-making thread sat 11 ms in uninterruptible sleep before the first
// request left (one classic job, perf sched_switch with prev_state D). With one thread the
// kernel grows it without waiting. The table never shrinks; the descriptor used is closed.
void reserve_descriptors(int concurrency) {
  const std::uint64_t want = TempPool::descriptors_for(concurrency, descriptor_limit());
  if (want <= 64 || want > INT_MAX) return; // 64: the table a process starts with
  const int base = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (base < 0) return;
  const int high = ::fcntl(base, F_DUPFD_CLOEXEC, static_cast<int>(want - 1));
  if (high >= 0) ::close(high);
  ::close(base);
}

int run(const DownloadOptions& o) {
  if (const std::string err = check_options(o); !err.empty()) {
    spdlog::error("{}", err);
    return kExitUsage;
  }
  const auto out = prepare_out_dir(o.out);
  if (!out) return kExitFatal;
  sweep_stale_parts(*out);

  // From here libcurl's receive buffers are noted; once the first transfers are under way, a
  // thread makes their pages present (downloader/recv_prefault.hpp).
  RecvPrefault prefault(Transfer::kRecvBuffer);
  try {
    curl_global_once();
    zmq::context_t ctx(1);

    SocketOptions task_opt;
    // The ventilator sends only what our credit allows, so the queue never holds more.
    task_opt.rcvhwm = o.concurrency + max_prefetch(o);
    task_opt.immediate = true; // a ready message goes to a connected ventilator or waits
    task_opt.linger = milliseconds{0};
    zmq::socket_t tasks = make_socket(ctx, zmq::socket_type::dealer, task_opt);

    SocketOptions result_opt;
    result_opt.immediate = true;
    zmq::socket_t results = make_socket(ctx, zmq::socket_type::push, result_opt);

    try {
      const CurveSetup curve(o.curve, CurveRole::downloader);
      curve.make_client(tasks);
      curve.make_sink_client(results);
      connect_all(tasks, o.connect);
      connect_all(results, o.sink);
    } catch (const std::exception& e) {
      spdlog::error("{}", e.what());
      return kExitUsage;
    }

    const auto summary = [&o, &prefault](const Counters& c) {
      spdlog::info(
          "downloader summary: {} tasks, {} done, {} failed ({} aborted), {} bytes, {} "
          "retries, {} resumed, {} bad frames{}{}; messages: {} task frames in, {} "
          "ready and {} result frames out; receive buffers populated ahead: {} KiB",
          c.tasks, c.done, c.failed, c.aborted, c.bytes, c.retries, c.resumed, c.bad_frames,
          c.deduped > 0 ? ", " + std::to_string(c.deduped) + " stored as hard links" : "",
          o.respect_robots ? ", " + std::to_string(c.robots) + " refused by robots.txt" : "",
          c.task_frames, c.readies, c.result_frames, prefault.wait() / 1024);
      return c.aborted > 0 ? kExitInterrupted : kExitOk;
    };
    Counters c;
    {
      Worker w(o, *out, tasks, results, [&prefault] { prefault.start(); });
      spdlog::info("downloading into {} with {} transfers from {}", *out, o.concurrency,
                   fmt::join(o.connect, ", "));
      w.loop();
      // The job is complete (the launcher's word, common/signals.hpp): every result is with
      // the sink, so nothing here is wanted and the process ends now, once the files kept
      // ready are gone (named ones would stay in the output). Its connections and threads go
      // with it: the orderly way closed 64 connections, joined 5 threads and waited on
      // ZeroMQ's linger while the sink, the ventilator and the launcher waited for a core.
      if (kEndAtOnce && o.no_exit_sweep && job_complete_stop()) {
        w.drop_ready_files();
        exit_process(summary(w.counters()));
      }
      const auto left = w.flush(kFlushBudget);
      results.set(zmq::sockopt::linger, static_cast<int>(left.count()));
      c = w.counters();
    }
    results.close();
    tasks.close();
    ctx.close();
    if (!o.no_exit_sweep) sweep_stale_parts(*out);
    return summary(c);
  } catch (const std::exception& e) {
    spdlog::error("downloader: {}", e.what());
    return kExitFatal;
  }
}

} // namespace trawl::downloader
