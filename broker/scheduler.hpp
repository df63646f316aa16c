// Politeness, scheduled by the ventilator for the whole job: at most --per-host tasks of one host
// are out at once (across every downloader node, since a task is counted from its dispatch until
// its result comes back or its lease is given up), new tasks of a host start at most
// --rate-per-host per second, and a host that answered 429/503 with Retry-After gets no new task
// until that time has passed. Throttling one host never stalls the others: each host has its own
// queue and the dispatcher goes round-robin over the hosts that may take a task now.
//
// Memory: one small record per host that has pending or running links (not per link). The links
// themselves stay in the ledger: a host's queue is a cursor into the ledger's (state, host, id)
// index plus a few rows read ahead, so picking the next task of a host is one indexed query per
// batch, never a scan of the backlog. Tasks that came back (a lost lease) wait in a per-host list
// of ids and go first.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "broker/ledger.hpp"

namespace trawl::broker {

// The key politeness is counted by: the URL's host, lower-cased, with ":port" when the URL names
// a port other than the scheme's default (so 127.0.0.1:8080 and 127.0.0.1:8081 are two hosts).
// User info, path, query and fragment are ignored. "" when the URL has no host.
std::string host_key(std::string_view url);

struct SchedulerLimits {
  std::uint32_t per_host = 8;       // tasks of one host out at once; 0 = no cap
  double rate_per_host = 0;         // new tasks of one host per second; 0 = no limit
  std::chrono::milliseconds max_pause{60000}; // longest Retry-After pause honoured
  // Per-host rates that replace rate_per_host for those hosts (host_key -> tasks/s; 0 = none).
  std::unordered_map<std::string, double> host_rates;
};

// "HOST=R" (R tasks per second, R >= 0) -> the host's key and R; nullopt when malformed.
std::optional<std::pair<std::string, double>> parse_host_rate(std::string_view s);

// How `tasks` pending tasks are shared among downloaders with these credits (free slots) when
// they do not fill them all: in proportion to each credit, the remainders to the largest
// fractions (the earlier peer on a tie). Each share is at most its credit, and the shares add up
// to min(tasks, the sum of the credits).
std::vector<std::uint64_t> share_out(std::uint64_t tasks,
                                     const std::vector<std::uint64_t>& credits);

// Where a host's pending links come from: the ledger, or a double in tests.
class PendingSource {
public:
  virtual ~PendingSource() = default;
  // Up to `n` pending links of `host` with id > `after`, in id order.
  virtual std::vector<TaskRow> pending_of_host(const std::string& host, std::uint64_t after,
                                               std::size_t n) = 0;
  // The link `id` when it is still pending, else nullopt.
  virtual std::optional<TaskRow> pending_task(std::uint64_t id) = 0;
};

class HostScheduler {
public:
  using Clock = std::chrono::steady_clock;

  HostScheduler(const SchedulerLimits& limits, PendingSource& source);

  // A pending link of `host` was added to the ledger (or exists there at start).
  void add_pending(const std::string& host);
  // A task of `host` dispatched earlier came back to pending (lost lease): it goes first.
  // Call finished() for its lease as well.
  void requeue(std::uint64_t id, const std::string& host);
  // A task of `host` is out without having been picked here (a lease found in the ledger at start).
  void adopt(const std::string& host);

  // The next task to dispatch at `now`, round-robin over the hosts that may take one; nullopt
  // when none may. The pick counts as out for its host until finished() or unpick().
  struct Pick {
    TaskRow task;
    std::string host;
  };
  std::optional<Pick> next(Clock::time_point now);
  // The pick could not be sent: it goes back to the front of its host's queue.
  void unpick(const Pick& p);
  // The pick is not dispatched and not pending any more (failed without dispatch, or no longer
  // pending in the ledger): only its place is given back.
  void drop(const std::string& host);
  // A task of `host` is no longer out (its result came, or its lease was given up).
  void finished(const std::string& host, Clock::time_point now);

  // The host asked us to wait (Retry-After): no new task of it before now + wait.
  void pause(const std::string& host, std::chrono::milliseconds wait, Clock::time_point now);

  // True when next() may return a task at `now` (a host is ready).
  bool ready(Clock::time_point now);
  // When a waiting host (rate or pause) becomes ready; nullopt when none waits for time.
  std::optional<Clock::time_point> next_wakeup() const;

  // Forgets every cursor, so the next picks re-read each host's pending links from the start.
  // A safety net for pending links that nothing points at (should not happen); cheap to call.
  void rescan();

  std::size_t hosts() const noexcept { return hosts_.size(); }
  std::uint32_t out(const std::string& host) const;
  // Most tasks of any one host that were out at once, since start.
  std::uint32_t max_out() const noexcept { return max_out_; }

private:
  struct Host {
    std::string name;
    std::uint32_t out = 0;
    std::deque<std::uint64_t> returned; // ids sent back, dispatched first
    std::deque<TaskRow> ahead;          // rows read from the source, in id order
    std::uint64_t cursor = 0;           // highest id read from the source
    bool more = true;                   // the source may have rows beyond `cursor`
    Clock::time_point not_before{};     // rate limit and Retry-After pause
    bool queued = false;                // in ready_
    Clock::time_point timer{};          // in timers_ at this time (or {} when not)
    std::chrono::nanoseconds spacing{0}; // between two starts (the rate); 0 = none
  };

  Host& host(const std::string& name);
  bool has_work(const Host& h) const { return !h.returned.empty() || !h.ahead.empty() || h.more; }
  bool under_cap(const Host& h) const { return limits_.per_host == 0 || h.out < limits_.per_host; }
  // Puts a host where it belongs: the ready ring, the timer heap, or nowhere (waits for a
  // finished() or add_pending()); forgets a host that has nothing left to remember.
  void place(Host& h, Clock::time_point now);
  void release_timers(Clock::time_point now);
  std::optional<TaskRow> take(Host& h);

  SchedulerLimits limits_;
  PendingSource& source_;
  std::unordered_map<std::string, Host> hosts_;
  std::deque<std::string> ready_;
  using Timer = std::pair<Clock::time_point, std::string>;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers_;
  std::uint32_t max_out_ = 0;
};

} // namespace trawl::broker
