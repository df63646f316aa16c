#include "broker/vent.hpp"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <ctime>
#include <deque>
#include <map>
#include <optional>
#include <spdlog/spdlog.h>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "broker/ledger.hpp"
#include "broker/names.hpp"
#include "broker/scheduler.hpp"
#include "common/clock.hpp"
#include "common/exit_codes.hpp"
#include "common/log.hpp"
#include "common/rate_limit.hpp"
#include "common/signals.hpp"
#include "common/zap.hpp"
#include "common/zmq_util.hpp"
#include "proto/messages.hpp"

namespace trawl::broker {

void add_options(CLI::App& cmd, VentOptions& o) {
  cmd.add_option("--links", o.links_bind,
                 "Endpoint(s) to bind for links from the fetcher (ROUTER: the end of the list is "
                 "answered with a receipt)")
      ->capture_default_str();
  cmd.add_option("--bind,--tasks", o.tasks_bind,
                 "Endpoint(s) to bind for downloaders to take tasks from (ROUTER)")
      ->capture_default_str();
  cmd.add_option("--acks", o.acks_bind,
                 "Endpoint(s) to bind for the results the sink forwards as acknowledgements (PULL)")
      ->capture_default_str();
  cmd.add_option("--sink", o.sink, "The sink's results endpoint(s) to connect to (PUSH)")
      ->capture_default_str();
  cmd.add_option("--ready-file", o.ready_file,
                 "Write the bound endpoints (links=, tasks=, acks=) to this file once listening");
  cmd.add_option("--state", o.state_dir,
                 "Directory of the job's ledger (ledger.sqlite); the same --state resumes the job")
      ->capture_default_str();
  cmd.add_flag("--fresh", o.fresh, "Forget the ledger in --state and start the job over");
  cmd.add_option("--notify-pid", o.notify_pid,
                 "Signal this process (our parent; SIGRTMIN) once the fetcher is done and there "
                 "is nothing to dispatch (trawl pipeline then starts the sink)");
  cmd.add_option("--run-id", o.run_id,
                 "Names this run of the job: a ventilator restarted with the same id continues the "
                 "run; a new id starts a new run (failed links are retried, done ones skipped). "
                 "Without it, a new run starts when the ledger's job is complete");
  auto ms_option = [&cmd](const char* name, std::chrono::milliseconds& target, const char* help) {
    cmd.add_option_function<int>(
           name, [&target](const int& ms) { target = std::chrono::milliseconds(ms); }, help)
        ->default_str(std::to_string(target.count()))
        ->check(CLI::Range(100, 3600000));
  };
  ms_option("--peer-timeout-ms", o.peer_timeout,
            "A downloader silent for this long is gone: its tasks are dispatched again");
  ms_option("--ack-timeout-ms", o.ack_timeout,
            "A task its downloader no longer holds, without a result after this long, is "
            "dispatched again (the result was lost)");
  cmd.add_option("--max-dispatch", o.max_dispatch,
                 "A task dispatched this many times without a result fails (reason aborted)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  cmd.add_option("--expect-downloaders", o.expect_downloaders,
                 "Downloaders started with the job (launch/pipeline passes --downloaders): while "
                 "fewer have joined, for at most 250 ms after the first, a job with fewer tasks "
                 "than the downloaders' credit keeps the absent ones' share for them, so the "
                 "first to join does not take every task of a short job. 0: no wait")
      ->capture_default_str();
  add_curve_options(cmd, o.curve, CurveRole::server);
  cmd.add_option("--per-host", o.per_host,
                 "Tasks of one host (host[:port] of the URL) out at once across every downloader "
                 "node, retries included; 0 = no cap. The default (8) is polite to a real host "
                 "(a browser opens about 6 connections per host); benchmarks and tests against "
                 "one local server set 0 (TRAWL_VENT_PER_HOST=0 with launch/pipeline)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000000));
  cmd.add_option("--rate-per-host", o.rate_per_host,
                 "New tasks of one host per second at most, across every node (e.g. 0.5, 5); "
                 "0 = no limit. A host that answers 429/503 with Retry-After gets no new task "
                 "until then (at most 60 s), whatever this says")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e6));
  cmd.add_option("--host-rate", o.host_rates,
                 "HOST=R: new tasks of this host per second at most, instead of --rate-per-host "
                 "(repeatable; HOST as in the URL, with :port when it has one; 0 = no limit)")
      ->type_name("HOST=R")
      ->check(CLI::Validator(
          [](std::string& v) {
            return parse_host_rate(v) ? std::string() : "expected HOST=R with R >= 0, got '" + v + "'";
          },
          "HOST=R"));
  cmd.add_option("--name", o.name_layout,
                 "File names of new links: basename (the URL's, sanitised; a clash gets 8 hex "
                 "digits of the URL hash), hash (SHA-256 of the URL, hex, plus its extension: the "
                 "URL's hash, since names are chosen before the download) or index (the link's "
                 "position in the job, zero-padded: 000000042.jpg). Links already in the ledger "
                 "keep their names")
      ->capture_default_str()
      ->check(CLI::IsMember({"basename", "hash", "index"}));
  cmd.add_option("--shard", o.shard,
                 "At most this many files per subdirectory of the output (0000/, 0001/, ..., by "
                 "job order); 0 = all in the output directory")
      ->capture_default_str()
      ->check(CLI::Range(std::uint64_t{0}, std::uint64_t{1} << 40));
}

namespace {

using Clock = std::chrono::steady_clock;


// A downloader connected to the task socket, known by its ROUTER routing id.
struct Peer {
  std::string node;
  std::uint32_t capacity = 0;
  std::uint32_t held = 0;
  std::uint64_t received = 0; // as last reported
  std::uint64_t sent = 0;     // by us, counted on the same basis as `received`
  Clock::time_point last_seen;
  // The tasks leased to it (the keys of their leases_ entries): a `ready` costs its own leases,
  // not a walk of every lease of every node.
  std::unordered_set<std::uint64_t> leases;

  // Tasks this peer may still be sent: its capacity less what it holds and what is on the way.
  std::uint64_t credit() const {
    const std::uint64_t in_transit = sent > received ? sent - received : 0;
    const std::uint64_t used = held + in_transit;
    return used >= capacity ? 0 : capacity - used;
  }
};

// A dispatched task waiting for its result.
struct Lease {
  std::string host;              // host_key of its URL: its place in the per-host limits
  std::string peer;              // routing id; empty for a lease found in the ledger at start
  std::uint64_t seq = 0;         // the peer's `sent` count when it was sent
  Clock::time_point deadline{};  // set once the node no longer holds it (or at start)
};

// The ledger's transaction is committed this often (and before a receipt, and at exit): what a
// crash of the ventilator can lose is this much work, done again on resume. Each commit writes
// every page it changed to the WAL, and a lease still out at a commit costs its own UPDATE (see
// Ledger::lease_later): small-tmpfs (20,000 x 8-64 KB, 2 x 64), 6 alternating runs: the
// ventilator's CPU median 345 ms against 400 with 50 ms (with wal_autocheckpoint 4000, see
// Ledger); `perf trace -e pwrite64,fdatasync`, one job against two: 4,203 pwrite calls against
// 7,295 and 7,367, fdatasync 0 against 7 and 7.
constexpr std::chrono::milliseconds kCommitEvery{200};
// Tasks in one frame to a downloader at most (its credit, and the frame size, permitting).
constexpr std::uint64_t kTasksPerFrame = 64;
constexpr std::chrono::milliseconds kJobEvery{1000};
constexpr std::chrono::milliseconds kExpireEvery{20};
// Pending links, nothing out, nothing ready or waiting for this long: re-read every host's queue
// from the ledger (a safety net; see HostScheduler::rescan).
constexpr std::chrono::milliseconds kRescanAfter{2000};
// --expect-downloaders: how long after the first downloader joined the others' share waits.
constexpr std::chrono::milliseconds kJoinWindow{250};
// How long a complete job's ventilator waits for the launcher's word (await_job_complete_stop).
constexpr std::chrono::milliseconds kAwaitEnd{2000};

// The scheduler reads a host's pending links from the ledger.
class LedgerSource : public PendingSource {
public:
  explicit LedgerSource(Ledger& l) : ledger_(l) {}
  std::vector<TaskRow> pending_of_host(const std::string& host, std::uint64_t after,
                                       std::size_t n) override {
    return ledger_.pending_of_host(host, after, n);
  }
  std::optional<TaskRow> pending_task(std::uint64_t id) override { return ledger_.pending_task(id); }

private:
  Ledger& ledger_;
};

NamingOptions naming(const VentOptions& o) {
  NamingOptions n;
  n.layout = parse_layout(o.name_layout).value_or(NameLayout::basename);
  n.shard = o.shard;
  return n;
}

SchedulerLimits limits(const VentOptions& o) {
  SchedulerLimits l;
  l.per_host = o.per_host;
  l.rate_per_host = o.rate_per_host;
  for (const auto& h : o.host_rates)
    if (auto hr = parse_host_rate(h)) l.host_rates[hr->first] = hr->second;
  return l;
}

constexpr int kLinksPerTurn = 256;

class Vent {
public:
  explicit Vent(const VentOptions& o)
      : opt_(o), curve_(o.curve, CurveRole::server),
        links_(make_socket(ctx_, zmq::socket_type::router, {.sndhwm = 1000, .rcvhwm = 1000})),
        tasks_(make_socket(ctx_, zmq::socket_type::router, {})),
        acks_(make_socket(ctx_, zmq::socket_type::pull, {.sndhwm = 1000, .rcvhwm = 10000})),
        sink_(make_socket(ctx_, zmq::socket_type::push, {})), bound_(bind_sockets()),
        ledger_(o.state_dir, o.fresh), source_(ledger_), sched_(limits(o), source_),
        names_(naming(o)) {
    open_run();
    for (const auto& e : bound_.tasks) spdlog::info("tasks on {}", e);
    for (const auto& e : bound_.links) spdlog::info("links on {}", e);
    if (!o.ready_file.empty()) {
      std::vector<std::pair<std::string, std::string>> entries;
      for (const auto& e : bound_.links) entries.emplace_back("links", e);
      for (const auto& e : bound_.tasks) entries.emplace_back("tasks", e);
      for (const auto& e : bound_.acks) entries.emplace_back("acks", e);
      write_ready_file(o.ready_file, entries);
    }
  }

  int run() {
    auto next_commit = Clock::now() + kCommitEvery;
    auto next_job = Clock::now();
    auto next_expire = Clock::now();
    while (!stop_requested()) {
      const auto now = Clock::now();
      if (take_status_request()) log_status(now);
      if (complete()) return finish_complete();
      const bool busy = can_dispatch(now);
      auto wait = std::chrono::milliseconds(50);
      if (now < held_until_)
        wait = std::min(wait, std::chrono::ceil<std::chrono::milliseconds>(held_until_ - now));
      if (const auto wake = sched_.next_wakeup(); wake && !busy)
        wait = std::clamp(std::chrono::ceil<std::chrono::milliseconds>(*wake - now),
                          std::chrono::milliseconds(0), wait);
      zmq::pollitem_t items[] = {
          {links_.handle(), 0, ZMQ_POLLIN, 0},
          {tasks_.handle(), 0, ZMQ_POLLIN, 0},
          {acks_.handle(), 0, ZMQ_POLLIN, 0},
          {sink_.handle(), 0, static_cast<short>(to_sink_.empty() ? 0 : ZMQ_POLLOUT), 0},
      };
      try {
        zmq::poll(items, 4, busy ? std::chrono::milliseconds(0) : wait);
      } catch (const zmq::error_t& e) {
        if (e.num() == EINTR) continue;
        throw;
      }
      if (items[1].revents & ZMQ_POLLIN) drain_ready(now);
      if (items[2].revents & ZMQ_POLLIN) drain_acks();
      if (items[0].revents & ZMQ_POLLIN) drain_links();
      dispatch(Clock::now());
      if (!parent_notified_ && links_ended_ && counts_.pending == 0 && leases_.empty()) {
        parent_notified_ = true;
        notify_parent(opt_.notify_pid, started_signal());
      }
      // Deadlines are seconds long: a scan of every lease per turn would cost more than it finds.
      if (now >= next_expire) {
        expire(now);
        watch_stall(now);
        next_expire = now + kExpireEvery;
      }
      if (now >= next_commit) {
        ledger_.commit();
        next_commit = now + kCommitEvery;
      }
      if (now >= next_job || job_changed_) {
        send_job();
        next_job = now + kJobEvery;
      }
      while (!to_sink_.empty() && try_send(sink_, to_sink_.front())) to_sink_.pop_front();
    }
    drain_acks(); // results the sink forwarded before it stopped are kept
    // The launcher's job-complete stop can come before a turn saw the job complete: the sink
    // ends on the figures a turn sends (send_job), before the check at the top of the next.
    if (complete()) return finish_complete();
    ledger_.commit();
    spdlog::warn("stopped: {} done, {} failed, {} pending, {} leased; ledger {} (run again to resume)",
                 counts_.done, counts_.failed, counts_.pending, counts_.leased, ledger_.path());
    return kExitInterrupted;
  }

  // After a complete job, under `trawl pipeline` (--notify-pid): waits, up to kAwaitEnd, for the
  // launcher's stop, which says whether the job-complete figures reached the sink (the sink's
  // word to the launcher: common/signals.hpp). True when they did: nothing is left to deliver
  // and the ledger is committed, so the process may end without its teardown, where closing
  // ZeroMQ took 5-8 ms while the other processes ended on the same cores.
  bool await_job_complete_stop() const {
    if (opt_.notify_pid <= 0) return false;
    const auto until = Clock::now() + kAwaitEnd;
    // nanosleep returns early on the signal (std::this_thread::sleep_for would sleep on); the
    // 1 ms bound covers a signal that came between the test and the sleep.
    const timespec step{0, 1'000'000};
    while (!stop_requested() && Clock::now() < until) ::nanosleep(&step, nullptr);
    return job_complete_stop();
  }

private:
  // One line of state for `kill -USR1` (and the e2e tests' report of a hung pipeline): what the
  // job waits for, and per downloader (the first kStatusPeers) the credit the ventilator sees.
  void log_status(Clock::time_point now) {
    constexpr std::size_t kStatusPeers = 8;
    const auto ms = [now](Clock::time_point t) {
      return std::chrono::duration_cast<std::chrono::milliseconds>(now - t).count();
    };
    std::string peers;
    std::size_t shown = 0;
    for (const auto& [id, p] : peers_) {
      if (shown++ == kStatusPeers) {
        peers += fmt::format(" (+{} more)", peers_.size() - kStatusPeers);
        break;
      }
      peers += fmt::format(" [{} credit={} capacity={} held={} sent={} received={} leases={} "
                           "seen_ms={}]",
                           p.node, p.credit(), p.capacity, p.held, p.sent, p.received,
                           p.leases.size(), ms(p.last_seen));
    }
    const auto wake = sched_.next_wakeup();
    spdlog::info(
        "status: links_ended={} pending={} leased={} done={} failed={} leases={} "
        "to_sink={} dispatched={} requeued={} dropped={} hosts={} ready={} wakeup_ms={} "
        "stalled_ms={} peers={}{}",
        links_ended_, counts_.pending, counts_.leased, counts_.done, counts_.failed, leases_.size(),
        to_sink_.size(), dispatched_, requeued_count_, dropped_, sched_.hosts(), sched_.ready(now),
        wake ? std::to_string(-ms(*wake)) : std::string("-"),
        stall_since_ == Clock::time_point{} ? std::string("-") : std::to_string(ms(stall_since_)),
        peers_.size(), peers);
  }

  // Decides whether this process continues a run or starts a new one, and loads the ledger.
  void open_run() {
    const std::string prev_run = ledger_.meta("run_id");
    counts_ = ledger_.counts();
    links_ended_ = ledger_.meta("links_ended") == "1";
    const bool job_complete = links_ended_ && counts_.pending == 0 && counts_.leased == 0;
    const bool new_run = opt_.run_id.empty() ? (job_complete || counts_.total() == 0)
                                             : opt_.run_id != prev_run;
    if (new_run) {
      ledger_.reset_for_new_run();
      ledger_.set_meta("run_id", opt_.run_id);
      ledger_.set_meta("links_ended", "0");
      ledger_.set_meta("started_ms", "0");
      ledger_.commit();
      links_ended_ = false;
      counts_ = ledger_.counts();
      skip_known_done_ = true;
    }
    started_ms_ = std::stoll(ledger_.meta("started_ms", "0"));
    ledger_.load_names(names_);
    for (const auto& host : ledger_.pending_hosts()) sched_.add_pending(host);
    // Leases of an earlier ventilator: their results may still arrive; give them time. They
    // count against their hosts' limits meanwhile.
    const auto deadline = Clock::now() + opt_.ack_timeout;
    for (auto& [id, host] : ledger_.leased_hosts()) {
      sched_.adopt(host);
      leases_[id] = Lease{std::move(host), "", 0, deadline};
    }
    spdlog::info("ledger {}: {} links ({} done, {} failed, {} pending, {} leased); {} run{}",
                 ledger_.path(), counts_.total(), counts_.done, counts_.failed, counts_.pending,
                 counts_.leased, new_run ? "new" : "continuing the",
                 links_ended_ ? ", all links known" : "");
  }

  bool complete() const {
    return links_ended_ && counts_.pending == 0 && counts_.leased == 0 && to_sink_.empty();
  }

  bool can_dispatch(Clock::time_point now) {
    if (counts_.pending == 0) return false;
    if (now < held_until_) return false; // the rest is kept for downloaders still to join
    bool credit = false;
    for (const auto& [id, p] : peers_)
      if (p.credit() > 0) credit = true;
    return credit && sched_.ready(now);
  }

  // Pending links, but nothing out, nothing ready and nothing waiting for a timer, while a
  // downloader has room: the scheduler lost track of some links (should not happen). Re-read.
  void watch_stall(Clock::time_point now) {
    const bool stalled = counts_.pending > 0 && leases_.empty() && !sched_.ready(now) &&
                         !sched_.next_wakeup() && best_peer() != peers_.end();
    if (!stalled) {
      stall_since_ = {};
      return;
    }
    if (stall_since_ == Clock::time_point{}) stall_since_ = now;
    if (now - stall_since_ < kRescanAfter) return;
    spdlog::warn("{} pending links but none ready to dispatch: re-reading the ledger",
                 counts_.pending);
    for (const auto& host : ledger_.pending_hosts()) sched_.add_pending(host);
    sched_.rescan();
    stall_since_ = {};
  }

  // The peer with the most room: a node that just joined gets work first. With a `quota` (see
  // dispatch()), only among the peers whose share is not used up.
  std::map<std::string, Peer>::iterator
  best_peer(const std::map<std::string, std::uint64_t>* quota = nullptr) {
    auto best = peers_.end();
    for (auto it = peers_.begin(); it != peers_.end(); ++it) {
      if (it->second.credit() == 0) continue;
      if (quota != nullptr) {
        const auto q = quota->find(it->first);
        if (q == quota->end() || q->second == 0) continue;
      }
      if (best == peers_.end() || it->second.credit() > best->second.credit()) best = it;
    }
    return best;
  }

  // Sends each downloader with credit what the scheduler has ready, several tasks per frame (a
  // "tasks" batch: one message, one wake-up of each side, for up to kTasksPerFrame tasks). The
  // credit counts tasks, not frames.
  // A short job is shared out first (see `quota` below).
  void dispatch(Clock::time_point now) {
    std::vector<HostScheduler::Pick> picks;
    std::vector<proto::Task> batch;
    // Each peer's share: empty unless the pending tasks would not fill every peer or expected
    // downloaders have not joined yet; the usual turn, with a backlog, allocates nothing for it.
    std::map<std::string, std::uint64_t> quota;
    std::uint64_t total_credit = 0, largest = 0;
    for (const auto& [id, p] : peers_) {
      total_credit += p.credit();
      largest = std::max<std::uint64_t>(largest, p.capacity);
    }
    // When the pending tasks would not fill every peer (a job's start or end, a slow source), or
    // downloaders the launcher started have not joined yet (early in the job, at most
    // kJoinWindow after the first joined), the tasks in play (pending, and those the peers hold
    // or have on the way) are shared by capacity, the absent peers counted with the largest;
    // a peer gets what its share exceeds its load by. 91 tasks for two idle downloaders go
    // 46 + 45, not 64 + 27; ten big files for two downloaders go 5 + 5 even when one joins a
    // few milliseconds before the other; and the absent ones' share waits for them.
    held_until_ = {};
    std::size_t absent = 0;
    if (opt_.expect_downloaders > peers_.size() && first_join_ != Clock::time_point{} &&
        now < first_join_ + kJoinWindow)
      absent = opt_.expect_downloaders - peers_.size();
    if (counts_.pending > 0 && (absent > 0 || counts_.pending < total_credit)) {
      std::vector<std::uint64_t> capacities;
      capacities.reserve(peers_.size() + absent);
      std::uint64_t in_play = counts_.pending;
      for (const auto& [id, p] : peers_) {
        capacities.push_back(p.capacity);
        in_play += p.capacity - p.credit();
      }
      capacities.insert(capacities.end(), absent, largest);
      const auto shares = share_out(in_play, capacities);
      std::size_t i = 0;
      std::uint64_t given = 0;
      for (const auto& [id, p] : peers_) {
        const std::uint64_t load = p.capacity - p.credit();
        const std::uint64_t share = shares[i++];
        given += (quota[id] = share > load ? std::min(share - load, p.credit()) : 0);
      }
      if (absent > 0 && given < counts_.pending) held_until_ = first_join_ + kJoinWindow;
    }
    while (counts_.pending > 0) {
      auto peer = best_peer(quota.empty() ? nullptr : &quota);
      if (peer == peers_.end()) return;
      std::uint64_t room = std::min<std::uint64_t>(peer->second.credit(), kTasksPerFrame);
      if (!quota.empty()) room = std::min(room, quota[peer->first]);
      picks.clear();
      batch.clear();
      proto::BatchSize size;
      while (picks.size() < room && counts_.pending > picks.size()) {
        auto pick = sched_.next(now);
        if (!pick) break;
        const TaskRow& task = pick->task;
        const auto in_batch = [&](std::uint64_t id) {
          return std::any_of(batch.begin(), batch.end(),
                             [id](const proto::Task& t) { return t.id == id; });
        };
        if (leases_.count(task.id) ||
            in_batch(task.id)) { // already out (read twice after a rescan)
          sched_.drop(pick->host);
          continue;
        }
        if (task.attempts >= static_cast<std::uint32_t>(opt_.max_dispatch)) {
          sched_.drop(pick->host);
          give_up(task.id, task.attempts);
          continue;
        }
        // Copied, not moved: the pick goes back to its host's queue if the send fails.
        const auto [dir, name] = split_name(task.name);
        proto::Task t{task.id,           task.url,         std::string(name),
                      task.attempts + 1, std::string(dir), task.meta};
        if (!size.add(proto::batch_item_bound(t))) { // the frame is full: the next one takes it
          sched_.unpick(*pick);
          break;
        }
        batch.push_back(std::move(t));
        picks.push_back(std::move(*pick));
      }
      if (picks.empty()) return;
      auto unpick_all = [&] { // in reverse: each goes back to the front of its host's queue
        for (auto it = picks.rbegin(); it != picks.rend(); ++it) sched_.unpick(*it);
      };
      // One task alone goes as a single "task" message: the same bytes as before batches.
      const std::string frame = batch.size() == 1 ? proto::encode(batch.front())
                                                  : proto::encode(proto::Tasks{std::move(batch)});
      try {
        tasks_.send(zmq::buffer(peer->first), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
        if (!tasks_.send(zmq::buffer(frame), zmq::send_flags::dontwait)) {
          unpick_all();
          return; // its queue is full: next turn
        }
      } catch (const zmq::error_t& e) {
        if (e.num() != EHOSTUNREACH) throw;
        spdlog::info("downloader {} is gone", peer->second.node);
        unpick_all();
        drop_peer(peer, now);
        continue;
      }
      if (!quota.empty()) quota[peer->first] -= picks.size();
      const std::int64_t sent_ms = unix_ms_now();
      for (const auto& pick : picks) {
        ++peer->second.sent;
        if (finished_pending_.erase(pick.task.id) > 0) {
          // No longer pending (a late result finished it while it waited in memory): the node
          // gets a task whose result the ledger will ignore; nothing is counted twice.
          sched_.drop(pick.host);
          continue;
        }
        // Pending in the ledger: it came from there, is not out (leases_) and not finished since.
        ledger_.lease_later(pick.task.id, peer->second.node, sent_ms);
        leases_[pick.task.id] = Lease{pick.host, peer->first, peer->second.sent, {}};
        peer->second.leases.insert(pick.task.id);
        --counts_.pending;
        ++counts_.leased;
        ++dispatched_;
      }
    }
  }

  void give_up(std::uint64_t id, std::uint32_t attempts) {
    const std::string why = "dispatched " + std::to_string(attempts) + " times without a result";
    spdlog::warn("task {}: {}; failing it", id, why);
    ledger_.fail(id, proto::Reason::aborted, why);
    --counts_.pending;
    ++counts_.failed;
    job_changed_ = true;
  }

  // Sends a leased task back to pending (its node died or its result was lost).
  void requeue(std::uint64_t id, const char* why) {
    const auto lease = leases_.find(id);
    if (lease == leases_.end()) return;
    // Counted against the node it was taken away from, for the sink's per-node table.
    std::string node = "(unknown)";
    if (auto p = peers_.find(lease->second.peer); p != peers_.end()) {
      node = p->second.node;
      p->second.leases.erase(id);
    }
    if (requeued_by_node_.size() < 4096 || requeued_by_node_.count(node)) ++requeued_by_node_[node];
    const std::string host = std::move(lease->second.host);
    leases_.erase(lease);
    ledger_.release(id);
    --counts_.leased;
    ++counts_.pending;
    sched_.requeue(id, host);
    sched_.finished(host, Clock::now());
    ++requeued_count_;
    spdlog::info("task {}: dispatched again ({})", id, why);
  }

  void drop_peer(std::map<std::string, Peer>::iterator peer, Clock::time_point) {
    // A copy: requeue() takes each task out of the peer's set.
    const std::vector<std::uint64_t> lost(peer->second.leases.begin(), peer->second.leases.end());
    for (auto task : lost) requeue(task, "its downloader is gone");
    peers_.erase(peer);
  }

  void drain_ready(Clock::time_point now) {
    for (int budget = 0; budget < 10000; ++budget) {
      zmq::message_t routing, body;
      if (!tasks_.recv(routing, zmq::recv_flags::dontwait)) return;
      if (!routing.more() || !tasks_.recv(body, zmq::recv_flags::dontwait)) {
        drop("tasks", "a frame without a body");
        continue;
      }
      bool extra = false;
      while (body.more()) { // a DEALER speaks one frame at a time: anything more is noise
        zmq::message_t rest;
        if (!tasks_.recv(rest, zmq::recv_flags::dontwait)) break;
        body.swap(rest);
        extra = true;
      }
      if (extra) {
        drop("tasks", "a multi-part message");
        continue;
      }
      auto decoded = proto::decode(body.to_string_view());
      if (auto* err = std::get_if<proto::DecodeError>(&decoded)) {
        if (drop("tasks", err->what)) answer_version(tasks_, routing, err->what);
        continue;
      }
      auto& m = std::get<proto::Message>(decoded);
      if (auto* t = std::get_if<proto::Throttle>(&m)) {
        on_throttle(*t, now);
        continue;
      }
      auto* ready = std::get_if<proto::Ready>(&m);
      if (!ready) {
        drop("tasks", "not a ready message");
        continue;
      }
      on_ready(routing.to_string(), *ready, now);
    }
  }

  void on_ready(const std::string& id, const proto::Ready& ready, Clock::time_point now) {
    auto [it, fresh] = peers_.try_emplace(id);
    Peer& p = it->second;
    if (fresh) {
      if (first_join_ == Clock::time_point{}) first_join_ = now;
      // What it received before we knew it (from an earlier ventilator) is not ours to count.
      p.sent = ready.received;
      spdlog::info("downloader {} joined (capacity {})", ready.node, ready.capacity);
    }
    p.node = ready.node;
    p.capacity = ready.capacity;
    p.held = ready.held;
    p.received = ready.received;
    p.last_seen = now;
    // Tasks it received and no longer holds: their results are on the way to the sink. If they
    // do not come back as acknowledgements in time, they were lost.
    // The downloader lists its ids in ascending order (a std::multiset): a binary search per
    // lease, no set built per message on this per-link path.
    const bool sorted = std::is_sorted(ready.ids.begin(), ready.ids.end());
    auto holds = [&](std::uint64_t task) {
      return sorted ? std::binary_search(ready.ids.begin(), ready.ids.end(), task)
                    : std::find(ready.ids.begin(), ready.ids.end(), task) != ready.ids.end();
    };
    for (const auto task : p.leases) {
      const auto l = leases_.find(task);
      if (l == leases_.end()) continue; // cannot happen: a lease leaves both together
      Lease& lease = l->second;
      if (holds(task)) {
        lease.deadline = {};
      } else if (lease.seq <= p.received && lease.deadline == Clock::time_point{}) {
        lease.deadline = now + opt_.ack_timeout;
      }
    }
    // Tasks it holds that we do not know as leased to it (sent by an earlier ventilator):
    // adopt them, so that its death sends them back at once.
    for (auto task : ready.ids) {
      auto l = leases_.find(task);
      if (l == leases_.end() || !l->second.peer.empty()) continue;
      // Its host and place in the per-host limits stay; it now belongs to this node, which
      // holds it (no deadline until the node no longer lists it).
      l->second.peer = id;
      l->second.seq = 0;
      l->second.deadline = {};
      p.leases.insert(task);
    }
  }

  // A downloader's task got 429/503 with Retry-After: its host waits, for every node.
  void on_throttle(const proto::Throttle& t, Clock::time_point now) {
    const auto lease = leases_.find(t.id);
    if (lease == leases_.end()) return; // not ours, or finished already: nothing to slow
    spdlog::info("host {} asked to wait {} ms (task {}): no new task for it until then",
                 lease->second.host, t.wait_ms, t.id);
    sched_.pause(lease->second.host, std::chrono::milliseconds(t.wait_ms), now);
  }

  void expire(Clock::time_point now) {
    for (auto it = peers_.begin(); it != peers_.end();) {
      if (now - it->second.last_seen > opt_.peer_timeout) {
        spdlog::warn("downloader {} silent for {} ms: its tasks go to others", it->second.node,
                     opt_.peer_timeout.count());
        auto dead = it++;
        drop_peer(dead, now);
      } else {
        ++it;
      }
    }
    std::vector<std::uint64_t> lost;
    for (const auto& [task, lease] : leases_)
      if (lease.deadline != Clock::time_point{} && now >= lease.deadline) lost.push_back(task);
    for (auto task : lost) requeue(task, "no result in time");
  }

  // The fetcher's DEALER: [routing id, frame]. The end marker is answered with a receipt.
  // At most kLinksPerTurn links per loop turn, so that dispatch() starts the downloaders while the
  // rest of a long list is still being added to the ledger (2,000 links at once held the first
  // task back ~9 ms when the budget was 5,000).
  void drain_links() {
    // The first turn that finds a downloader joined and nothing dispatched yet takes no more
    // links than the downloaders can take at once: their first requests then leave after that
    // many inserts, not kLinksPerTurn (a latency job, 2,000 links, one downloader of 64: the first
    // lease came 1.5 ms after the first link instead of 6.4, medians of 5 runs). Once only, so a
    // dispatch held back (--expect-downloaders, politeness) never makes the loop spin on links it
    // leaves unread.
    std::uint64_t first_batch = 0;
    if (!first_turn_done_ && dispatched_ == 0) {
      for (const auto& [id, p] : peers_) first_batch += p.credit();
      first_turn_done_ = first_batch > 0;
    }
    for (int budget = 0; budget < kLinksPerTurn; ++budget) {
      if (first_batch > 0 && counts_.pending >= first_batch) return;
      zmq::message_t routing, body;
      if (!links_.recv(routing, zmq::recv_flags::dontwait)) return;
      if (!routing.more() || !links_.recv(body, zmq::recv_flags::dontwait) || body.more()) {
        while (body.more() && links_.recv(body, zmq::recv_flags::dontwait)) {
        }
        drop("links", "not a single-frame message");
        continue;
      }
      const auto* msg = &body;
      auto decoded = proto::decode(msg->to_string_view());
      if (auto* err = std::get_if<proto::DecodeError>(&decoded)) {
        if (drop("links", err->what)) answer_version(links_, routing, err->what);
        continue;
      }
      auto& m = std::get<proto::Message>(decoded);
      if (auto* link = std::get_if<proto::Link>(&m)) {
        on_link(link->url, link->meta);
      } else if (auto* end = std::get_if<proto::LinksEnd>(&m)) {
        if (end->count > links_this_run_)
          spdlog::warn("the fetcher sent {} links and {} arrived: some were lost in transit (a "
                       "ventilator restart?); run the job again to pick them up",
                       end->count, links_this_run_);
        links_ended_ = true;
        ledger_.set_meta("links_ended", "1");
        ledger_.commit(); // the receipt promises the links are in the ledger
        try {
          links_.send(routing, zmq::send_flags::sndmore | zmq::send_flags::dontwait);
          links_.send(zmq::buffer(proto::encode(proto::LinksEnd{links_this_run_})), zmq::send_flags::dontwait);
        } catch (const zmq::error_t& e) {
          spdlog::warn("could not send the fetcher its receipt: {}", e.what());
        }
        if (started_ms_ == 0) start_clock();
        spdlog::info("fetcher done: the job has {} links ({} new in this run, {} already done)",
                     counts_.total(), new_links_, skipped_);
        job_changed_ = true;
      } else {
        drop("links", "unexpected " + std::string(proto::type_name(m)) + " message");
      }
    }
  }

  void on_link(const std::string& url, const std::string& meta) {
    if (started_ms_ == 0) start_clock();
    ++links_this_run_;
    const auto added = ledger_.add_link(url, names_, meta);
    if (added.is_new) {
      sched_.add_pending(added.host);
      ++counts_.pending;
      ++new_links_;
    } else if (added.state == LinkState::done && skip_known_done_) {
      ++skipped_;
    }
  }

  void start_clock() {
    started_ms_ = unix_ms_now();
    ledger_.set_meta("started_ms", std::to_string(started_ms_));
    job_changed_ = true;
  }

  void drain_acks() {
    for (int budget = 0; budget < 10000; ++budget) {
      auto msg = try_recv(acks_);
      if (!msg) return;
      auto decoded = proto::decode(msg->to_string_view());
      if (auto* err = std::get_if<proto::DecodeError>(&decoded)) {
        drop("acks", err->what);
        continue;
      }
      auto& m = std::get<proto::Message>(decoded);
      if (auto* r = std::get_if<proto::Result>(&m)) {
        on_ack(*r);
      } else if (auto* rs = std::get_if<proto::Results>(&m)) {
        for (const auto& item : rs->items) on_ack(item);
      } else {
        drop("acks", "not a result");
      }
    }
  }

  // A result the sink recorded (forwarded alone or in a "results" batch): the ledger keeps it.
  void on_ack(const proto::Result& r) {
    if (!ledger_.finish(r)) return; // unknown, or a late duplicate of a final result
    // Leased in the ledger exactly when it is in leases_ (dispatch, requeue, open_run).
    if (auto lease = leases_.find(r.id); lease != leases_.end()) {
      if (auto p = peers_.find(lease->second.peer); p != peers_.end()) p->second.leases.erase(r.id);
      sched_.finished(lease->second.host, Clock::now());
      leases_.erase(lease);
      --counts_.leased;
    } else {
      --counts_.pending; // sent back already, and then its result came after all
      // Should its id still be queued in memory for another dispatch, that dispatch is dropped
      // (see finished_pending_).
      finished_pending_.insert(r.id);
    }
    if (r.status == proto::Status::done) ++counts_.done;
    else ++counts_.failed;
    job_changed_ = true;
  }

  void send_job() {
    proto::Job j;
    j.started_unix_ms = started_ms_;
    j.total = links_ended_ ? static_cast<std::int64_t>(counts_.total()) : -1;
    j.done = counts_.done;
    j.failed = counts_.failed;
    j.skipped = skipped_;
    j.complete = links_ended_ && counts_.pending == 0 && counts_.leased == 0;
    complete_sent_ = j.complete;
    j.active = counts_.leased;
    j.nodes = peers_.size();
    j.requeued = requeued_count_;
    std::vector<std::pair<std::uint64_t, std::string>> by_count;
    for (const auto& [node, n] : requeued_by_node_) by_count.emplace_back(n, node);
    std::sort(by_count.rbegin(), by_count.rend());
    for (std::size_t i = 0; i < by_count.size() && i < proto::kMaxJobNodes; ++i) {
      j.requeued_nodes.push_back(by_count[i].second);
      j.requeued_counts.push_back(by_count[i].first);
    }
    // Only the latest figures matter: replace what has not gone out yet.
    if (!to_sink_.empty()) to_sink_.pop_back();
    to_sink_.push_back(proto::encode(j));
    job_changed_ = false;
  }

  // Counts and logs a dropped frame; false when the line was not logged (rate limit).
  bool drop(std::string_view socket, const std::string& why) {
    ++dropped_;
    std::string more;
    // A node of another protocol version repeats itself every second: a few lines, then fewer.
    if (why.starts_with("protocol version")) {
      auto& limit = version_log_[std::string(socket)];
      if (!limit.allow()) return false;
      if (const auto n = limit.take_suppressed(); n > 0)
        more = fmt::format(" ({} more such frames not logged)", n);
    }
    spdlog::warn("dropped a frame on {} ({} so far): {}{}", socket, dropped_, why, more);
    return true;
  }

  // A peer of another protocol version is told ours (as often as it is logged), so that its own
  // log names both versions: a fetcher then stops at once, a downloader says why no task comes.
  void answer_version(zmq::socket_t& sock, const zmq::message_t& routing, const std::string& why) {
    if (!why.starts_with("protocol version")) return;
    try {
      zmq::message_t to(routing.data(), routing.size());
      if (sock.send(to, zmq::send_flags::sndmore | zmq::send_flags::dontwait))
        sock.send(zmq::buffer(proto::encode_version_notice()), zmq::send_flags::dontwait);
    } catch (const zmq::error_t& e) {
      spdlog::debug("could not answer a peer of another protocol version: {}", e.what());
    }
  }

  int finish_complete() {
    ledger_.commit();
    spdlog::info("job complete: {} done ({} skipped, done before), {} failed; ledger {}",
                 counts_.done, skipped_, counts_.failed, ledger_.path());
    // The sink ends on the first figures that say complete. The turn that took the last
    // acknowledgement normally sent them already; a second copy would go to a sink that may
    // be exiting, with nothing new in it.
    if (!complete_sent_) send_job();
    flush_sink(std::chrono::seconds(2));
    return kExitOk;
  }

  void flush_sink(std::chrono::milliseconds budget) {
    const auto deadline = Clock::now() + budget;
    while (!to_sink_.empty() && Clock::now() < deadline) {
      if (try_send(sink_, to_sink_.front())) to_sink_.pop_front();
      else std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  struct Bound {
    std::vector<std::string> links, tasks, acks; // the endpoints bound
  };

  // Sets the sockets up and binds them. Before the ledger opens: the fetcher and the downloaders
  // connect, and their first messages wait in the sockets, while SQLite creates or reads the
  // ledger (on this job's start-up path: the fetcher's first connect was refused until then).
  Bound bind_sockets() {
    // A task for a peer that has gone is an error we see, not a message silently dropped.
    tasks_.set(zmq::sockopt::router_mandatory, 1);
    for (const auto* eps : {&opt_.links_bind, &opt_.tasks_bind, &opt_.acks_bind})
      curve_.check_bind(*eps);
    if (curve_.enabled()) {
      for (auto* s : {&links_, &tasks_, &acks_}) curve_.make_server(*s);
      curve_.make_client(sink_);
      // Before any bind: libzmq lets every CURVE client in while no handler is bound.
      zap_.emplace(ctx_, curve_,
                   std::vector<std::pair<zmq::socket_t*, std::string>>{
                       {&links_, "links"}, {&tasks_, "tasks"}, {&acks_, "acks"}});
    }
    Bound b;
    b.links = bind_all(links_, opt_.links_bind);
    b.tasks = bind_all(tasks_, opt_.tasks_bind);
    b.acks = bind_all(acks_, opt_.acks_bind);
    connect_all(sink_, opt_.sink);
    return b;
  }

  const VentOptions& opt_;
  CurveSetup curve_;
  zmq::context_t ctx_{1};
  std::optional<ZapHandler> zap_; // after the context, before (so destroyed after) the sockets
  zmq::socket_t links_, tasks_, acks_, sink_;
  Bound bound_; // after the sockets, before the ledger: see bind_sockets()
  Ledger ledger_;
  std::map<std::string, Peer> peers_;
  std::unordered_map<std::uint64_t, Lease> leases_;
  // Links sent back to pending whose result came after all (rare: a lease given up too early).
  // The scheduler may still hold such an id in memory (read ahead before the result); its
  // dispatch is dropped here, as the ledger would refuse a lease of a link that is not pending.
  // One entry per such late result.
  std::unordered_set<std::uint64_t> finished_pending_;
  LedgerSource source_;
  HostScheduler sched_;
  Clock::time_point stall_since_{};
  Clock::time_point first_join_{}; // when the first downloader joined (--expect-downloaders)
  Clock::time_point held_until_{}; // dispatch keeps absent downloaders' share until then
  NameAssigner names_;
  LedgerCounts counts_;
  std::deque<std::string> to_sink_;
  std::uint64_t links_this_run_ = 0, new_links_ = 0, skipped_ = 0;
  std::uint64_t dispatched_ = 0, requeued_count_ = 0, dropped_ = 0;
  std::map<std::string, std::uint64_t> requeued_by_node_;
  std::map<std::string, LogRateLimit> version_log_; // per socket
  std::int64_t started_ms_ = 0;
  bool links_ended_ = false;
  bool skip_known_done_ = false;
  bool job_changed_ = true;
  bool complete_sent_ = false; // the last figures queued for the sink said complete
  bool first_turn_done_ = false; // drain_links' first turn with a downloader joined ran
  // --notify-pid was told there is nothing to dispatch (trawl pipeline starts the sink on the
  // downloaders' word otherwise).
  bool parent_notified_ = false;
};

} // namespace

int run(const VentOptions& o) {
  Vent vent(o);
  const int code = vent.run();
  if (code == kExitOk && kEndAtOnce && vent.await_job_complete_stop()) exit_process(code);
  return code;
}

} // namespace trawl::broker
