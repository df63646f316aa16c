// The ventilator's per-host scheduler (broker/scheduler.hpp) against an in-memory source, with a
// clock the test moves by hand; and host_key().
#include <catch2/catch.hpp>
#include <map>
#include <set>

#include "broker/scheduler.hpp"

using namespace trawl::broker;
using namespace std::chrono_literals;
using Clock = HostScheduler::Clock;

namespace {

// Pending links by host, as the ledger would answer; counts the queries.
class FakeSource : public PendingSource {
public:
  std::uint64_t add(const std::string& host) {
    const auto id = next_++;
    rows_[id] = {host, true};
    return id;
  }
  void set_pending(std::uint64_t id, bool p) { rows_[id].second = p; }
  std::vector<TaskRow> pending_of_host(const std::string& host, std::uint64_t after,
                                       std::size_t n) override {
    ++queries;
    std::vector<TaskRow> out;
    for (auto it = rows_.upper_bound(after); it != rows_.end() && out.size() < n; ++it)
      if (it->second.first == host && it->second.second) out.push_back(row(it->first));
    return out;
  }
  std::optional<TaskRow> pending_task(std::uint64_t id) override {
    const auto it = rows_.find(id);
    if (it == rows_.end() || !it->second.second) return std::nullopt;
    return row(id);
  }
  int queries = 0;

private:
  TaskRow row(std::uint64_t id) { return {id, "http://" + rows_[id].first + "/" + std::to_string(id), std::to_string(id), 0}; }
  std::uint64_t next_ = 1;
  std::map<std::uint64_t, std::pair<std::string, bool>> rows_;
};

// Picks everything the scheduler gives at `now` and marks it dispatched (not pending).
std::vector<HostScheduler::Pick> drain(HostScheduler& s, FakeSource& src, Clock::time_point now) {
  std::vector<HostScheduler::Pick> out;
  for (int guard = 0; guard < 100000; ++guard) {
    auto p = s.next(now);
    if (!p) break;
    src.set_pending(p->task.id, false);
    out.push_back(std::move(*p));
  }
  return out;
}

} // namespace

TEST_CASE("host_key: host and non-default port, lower-cased, nothing else", "[broker][scheduler]") {
  CHECK(host_key("http://Example.COM/a.jpg") == "example.com");
  CHECK(host_key("https://example.com:443/a") == "example.com");
  CHECK(host_key("http://example.com:80/a") == "example.com");
  CHECK(host_key("http://example.com:8080/a") == "example.com:8080");
  CHECK(host_key("https://example.com:80/a") == "example.com:80");
  CHECK(host_key("http://127.0.0.2:41234/i/x.jpg") == "127.0.0.2:41234");
  CHECK(host_key("http://user:pw@example.com:81?x=1") == "example.com:81");
  CHECK(host_key("http://example.com./a") == "example.com");
  CHECK(host_key("http://[::1]:8080/a") == "[::1]:8080");
  CHECK(host_key("http://[::1]/a") == "[::1]");
  CHECK(host_key("HTTP://EXAMPLE.com#frag") == "example.com");
  CHECK(host_key("no scheme/a") == "");
  CHECK(host_key("http:///path") == "");
  CHECK(host_key("http://[::1/a") == "");
}

TEST_CASE("scheduler: never more than per-host tasks of one host out", "[broker][scheduler]") {
  FakeSource src;
  for (int i = 0; i < 50; ++i) src.add("a.test");
  for (int i = 0; i < 50; ++i) src.add("b.test");
  SchedulerLimits lim;
  lim.per_host = 3;
  HostScheduler s(lim, src);
  s.add_pending("a.test");
  s.add_pending("b.test");
  const auto t0 = Clock::now();
  auto picks = drain(s, src, t0);
  REQUIRE(picks.size() == 6);
  std::map<std::string, int> per;
  for (const auto& p : picks) ++per[p.host];
  CHECK(per["a.test"] == 3);
  CHECK(per["b.test"] == 3);
  CHECK(s.out("a.test") == 3);
  CHECK_FALSE(s.ready(t0));
  // One result of a.test: exactly one more task of a.test, none of b.test.
  s.finished("a.test", t0);
  picks = drain(s, src, t0);
  REQUIRE(picks.size() == 1);
  CHECK(picks[0].host == "a.test");
  // Everything, finishing as we go: every link once, the cap never passed.
  std::set<std::uint64_t> seen;
  std::size_t total = 7;
  for (int round = 0; round < 1000 && total < 100; ++round) {
    s.finished("a.test", t0);
    s.finished("b.test", t0);
    for (const auto& p : drain(s, src, t0)) {
      CHECK(seen.insert(p.task.id).second);
      ++total;
    }
    CHECK(s.out("a.test") <= 3);
    CHECK(s.out("b.test") <= 3);
  }
  CHECK(total == 100);
  CHECK(s.max_out() == 3);
}

TEST_CASE("scheduler: round-robin over hosts, in id order within a host", "[broker][scheduler]") {
  FakeSource src;
  for (int i = 0; i < 4; ++i) src.add("a.test"); // ids 1-4
  for (int i = 0; i < 4; ++i) src.add("b.test"); // ids 5-8
  SchedulerLimits lim;
  lim.per_host = 0;
  HostScheduler s(lim, src);
  s.add_pending("a.test");
  s.add_pending("b.test");
  const auto picks = drain(s, src, Clock::now());
  std::vector<std::uint64_t> ids;
  for (const auto& p : picks) ids.push_back(p.task.id);
  CHECK(ids == std::vector<std::uint64_t>{1, 5, 2, 6, 3, 7, 4, 8});
}

TEST_CASE("scheduler: a rate-limited host does not hold back the others", "[broker][scheduler]") {
  FakeSource src;
  for (int i = 0; i < 20; ++i) src.add("slow.test");
  for (int i = 0; i < 20; ++i) src.add("fast.test");
  SchedulerLimits lim;
  lim.per_host = 0;
  lim.rate_per_host = 5; // one every 200 ms
  HostScheduler s(lim, src);
  s.add_pending("slow.test");
  s.add_pending("fast.test");
  const auto t0 = Clock::now();
  // With a rate on every host, each gets one now; then one per 200 ms.
  auto picks = drain(s, src, t0);
  CHECK(picks.size() == 2);
  CHECK_FALSE(s.ready(t0 + 199ms));
  REQUIRE(s.next_wakeup());
  CHECK(*s.next_wakeup() == t0 + 200ms);
  picks = drain(s, src, t0 + 200ms);
  CHECK(picks.size() == 2);
  // Over one simulated second, in 10 ms steps: 5 per host (plus the one at t0).
  std::map<std::string, int> per;
  for (auto t = t0 + 210ms; t <= t0 + 1200ms; t += 10ms)
    for (const auto& p : drain(s, src, t)) ++per[p.host];
  CHECK(per["slow.test"] == 5);
  CHECK(per["fast.test"] == 5);
}

TEST_CASE("scheduler: a paused host waits, the others go on", "[broker][scheduler]") {
  FakeSource src;
  for (int i = 0; i < 10; ++i) src.add("busy.test");
  for (int i = 0; i < 10; ++i) src.add("calm.test");
  SchedulerLimits lim;
  lim.per_host = 2;
  HostScheduler s(lim, src);
  s.add_pending("busy.test");
  s.add_pending("calm.test");
  const auto t0 = Clock::now();
  REQUIRE(drain(s, src, t0).size() == 4);
  s.pause("busy.test", 2000ms, t0);
  s.finished("busy.test", t0);
  s.finished("calm.test", t0);
  auto picks = drain(s, src, t0 + 10ms);
  REQUIRE(picks.size() == 1);
  CHECK(picks[0].host == "calm.test");
  CHECK(drain(s, src, t0 + 1999ms).empty());
  REQUIRE(s.next_wakeup());
  CHECK(*s.next_wakeup() == t0 + 2000ms);
  picks = drain(s, src, t0 + 2000ms);
  REQUIRE(picks.size() == 1);
  CHECK(picks[0].host == "busy.test");
  // A pause never exceeds max_pause, and a shorter one does not shorten a longer one.
  s.pause("calm.test", std::chrono::hours(5), t0 + 2000ms);
  s.pause("calm.test", 1ms, t0 + 2000ms);
  s.finished("calm.test", t0 + 2000ms);
  CHECK(drain(s, src, t0 + 61999ms).empty()); // busy.test at its cap, calm.test paused
  const auto after = drain(s, src, t0 + 62000ms);
  REQUIRE(after.size() == 1);
  CHECK(after[0].host == "calm.test");
}

TEST_CASE("scheduler: returned tasks go first, stale ones are skipped", "[broker][scheduler]") {
  FakeSource src;
  for (int i = 0; i < 5; ++i) src.add("a.test");
  SchedulerLimits lim;
  lim.per_host = 2;
  HostScheduler s(lim, src);
  s.add_pending("a.test");
  const auto t0 = Clock::now();
  auto picks = drain(s, src, t0);
  REQUIRE(picks.size() == 2); // ids 1, 2
  // Task 1's lease is lost: it goes back and is picked before 3.
  src.set_pending(1, true);
  s.requeue(1, "a.test");
  s.finished("a.test", t0);
  picks = drain(s, src, t0);
  REQUIRE(picks.size() == 1);
  CHECK(picks[0].task.id == 1);
  // Task 2 comes back, but its result arrives before it is picked: skipped.
  s.requeue(2, "a.test");
  s.finished("a.test", t0);
  picks = drain(s, src, t0);
  REQUIRE(picks.size() == 1);
  CHECK(picks[0].task.id == 3);
  // A pick that could not be sent goes back to the front.
  s.finished("a.test", t0);
  auto p = s.next(t0);
  REQUIRE(p);
  CHECK(p->task.id == 4);
  s.unpick(*p);
  p = s.next(t0);
  REQUIRE(p);
  CHECK(p->task.id == 4);
}

TEST_CASE("scheduler: links added later are found, idle hosts are forgotten", "[broker][scheduler]") {
  FakeSource src;
  src.add("a.test");
  HostScheduler s(SchedulerLimits{}, src);
  s.add_pending("a.test");
  const auto t0 = Clock::now();
  REQUIRE(drain(s, src, t0).size() == 1);
  CHECK(drain(s, src, t0).empty());
  s.finished("a.test", t0);
  CHECK(s.hosts() == 0); // nothing left to remember
  src.add("a.test");
  src.add("b.test");
  s.add_pending("a.test");
  s.add_pending("b.test");
  CHECK(drain(s, src, t0).size() == 2);
  // rescan() finds pending links nothing pointed at.
  const auto lost = src.add("a.test");
  CHECK(drain(s, src, t0).empty()); // a.test's queue was read to its end before `lost` was added
  s.rescan();
  auto picks = drain(s, src, t0);
  REQUIRE(picks.size() == 1);
  CHECK(picks[0].task.id == lost);
}

TEST_CASE("scheduler: a host's links are read in batches, not one query per task", "[broker][scheduler]") {
  FakeSource src;
  for (int i = 0; i < 1000; ++i) src.add("a.test");
  SchedulerLimits lim;
  lim.per_host = 0;
  HostScheduler s(lim, src);
  s.add_pending("a.test");
  CHECK(drain(s, src, Clock::now()).size() == 1000);
  CHECK(src.queries <= 1000 / 16 + 2);
}

TEST_CASE("scheduler: --host-rate limits one host, the others keep the default", "[broker][scheduler]") {
  CHECK(parse_host_rate("Example.com=2.5") == std::make_pair(std::string("example.com"), 2.5));
  CHECK(parse_host_rate("127.0.0.1:8080=5") == std::make_pair(std::string("127.0.0.1:8080"), 5.0));
  CHECK(parse_host_rate("https://x.test:443/=1") == std::make_pair(std::string("x.test"), 1.0));
  CHECK_FALSE(parse_host_rate("x.test"));
  CHECK_FALSE(parse_host_rate("=5"));
  CHECK_FALSE(parse_host_rate("x.test=-1"));
  CHECK_FALSE(parse_host_rate("x.test=5x"));
  CHECK_FALSE(parse_host_rate("x.test=nan"));

  FakeSource src;
  for (int i = 0; i < 30; ++i) src.add("strict.test");
  for (int i = 0; i < 30; ++i) src.add("free.test");
  SchedulerLimits lim;
  lim.per_host = 0;
  lim.host_rates["strict.test"] = 5;
  HostScheduler s(lim, src);
  s.add_pending("strict.test");
  s.add_pending("free.test");
  const auto t0 = Clock::now();
  std::map<std::string, int> per;
  for (auto t = t0; t < t0 + 1000ms; t += 10ms)
    for (const auto& p : drain(s, src, t)) ++per[p.host];
  CHECK(per["strict.test"] == 5);
  CHECK(per["free.test"] == 30); // all of them at once
}

TEST_CASE("share_out: pending tasks that fill no one are shared in proportion to the credits",
          "[scheduler]") {
  using V = std::vector<std::uint64_t>;
  // The demo's case: 91 tasks, two idle downloaders of 68 (not 64 + 27).
  CHECK(share_out(91, V{68, 68}) == V{46, 45});
  CHECK(share_out(1, V{68, 68}) == V{1, 0});
  CHECK(share_out(0, V{68, 68}) == V{0, 0});
  // Enough for everybody: each gets its credit.
  CHECK(share_out(136, V{68, 68}) == V{68, 68});
  CHECK(share_out(1000, V{3, 0, 5}) == V{3, 0, 5});
  // In proportion: 30 over credits 10, 20, 30 (of 60) is 5, 10, 15.
  CHECK(share_out(30, V{10, 20, 30}) == V{5, 10, 15});
  // Remainders to the largest fractions: 5 * {1, 2, 4} / 7 = 0.71, 1.43, 2.86 -> 1, 1, 3.
  CHECK(share_out(5, V{1, 2, 4}) == V{1, 1, 3});
  // No credit, no share; no peers, nothing.
  CHECK(share_out(5, V{0, 10}) == V{0, 5});
  CHECK(share_out(5, V{}).empty());
  // Every share within its credit and the sum exact, over a sweep.
  for (std::uint64_t tasks = 0; tasks < 200; tasks += 7) {
    const V credits{68, 1, 33, 0, 130};
    const auto s = share_out(tasks, credits);
    std::uint64_t sum = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
      CHECK(s[i] <= credits[i]);
      sum += s[i];
    }
    CHECK(sum == std::min<std::uint64_t>(tasks, 232));
  }
}
