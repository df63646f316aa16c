#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <set>
#include <unistd.h>

#include "broker/ledger.hpp"
#include "broker/names.hpp"
#include "broker/sink.hpp"
#include "broker/stats.hpp"
#include "broker/vent.hpp"
#include "common/exit_codes.hpp"
#include "common/zmq_util.hpp"
#include "tests/support/messages.hpp"

using namespace trawl;
using namespace trawl::broker;

namespace {

proto::Result done_result(std::uint64_t id, std::uint32_t ms, std::uint64_t bytes, std::string node = "n1") {
  proto::Result r;
  r.id = id;
  r.url = "http://x.test/" + std::to_string(id) + ".jpg";
  r.path = "/out/" + std::to_string(id) + ".jpg";
  r.status = proto::Status::done;
  r.http_code = 200;
  r.bytes = bytes;
  r.sha256 = std::string(64, 'b');
  r.ms = ms;
  r.ttfb_ms = ms / 2;
  r.node = std::move(node);
  return r;
}

proto::Result failed_result(std::uint64_t id, proto::Reason why) {
  proto::Result r;
  r.id = id;
  r.url = "http://x.test/missing-" + std::to_string(id) + ".jpg";
  r.status = proto::Status::failed;
  r.http_code = 404;
  r.reason = why;
  r.detail = "HTTP 404";
  r.node = "n2";
  return r;
}

std::map<std::string, std::string> read_ready(const std::string& path) {
  for (int i = 0; i < 500 && !std::filesystem::exists(path); ++i) usleep(10000);
  std::map<std::string, std::string> kv;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    auto eq = line.find('=');
    if (eq != std::string::npos) kv[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return kv;
}

proto::Message recv_message(zmq::socket_t& s) {
  zmq::message_t msg;
  REQUIRE(s.recv(msg));
  auto d = proto::decode(msg.to_string_view());
  REQUIRE(std::holds_alternative<proto::Message>(d));
  return std::get<proto::Message>(d);
}

// The tasks of one frame from the ventilator: a "task" alone or a "tasks" batch.
std::vector<proto::Task> tasks_of(const proto::Message& m) {
  if (const auto* t = std::get_if<proto::Task>(&m)) return {*t};
  return std::get<proto::Tasks>(m).items;
}

std::string temp_path(const std::string& tag) {
  return (std::filesystem::temp_directory_path() /
          ("trawl-test-" + tag + "-" + std::to_string(getpid())))
      .string();
}

// A ventilator to run in this process on loopback: every endpoint on a free port, the sink's
// socket bound here, a fresh state directory and ready file named after `tag`.
struct VentSetup {
  zmq::socket_t sink;
  VentOptions o;
  std::string state, ready;
};

VentSetup vent_setup(zmq::context_t& ctx, const std::string& tag) {
  VentSetup v{make_socket(ctx, zmq::socket_type::pull, {}),
              {},
              temp_path(tag + "-state"),
              temp_path(tag + "-ready")};
  v.o.links_bind = {"tcp://127.0.0.1:*"};
  v.o.tasks_bind = {"tcp://127.0.0.1:*"};
  v.o.acks_bind = {"tcp://127.0.0.1:*"};
  v.o.sink = {bind_all(v.sink, {"tcp://127.0.0.1:*"}).front()};
  std::filesystem::remove_all(v.state);
  std::filesystem::remove(v.ready);
  v.o.state_dir = v.state;
  v.o.ready_file = v.ready;
  return v;
}

} // namespace

TEST_CASE("names: first URL keeps its name, later ones are disambiguated", "[broker]") {
  NameAssigner names;
  CHECK(names.assign("http://a.test/x/cat.jpg") == "cat.jpg");
  const std::string second = names.assign("http://b.test/y/cat.jpg");
  CHECK(second != "cat.jpg");
  CHECK(second.size() == std::string("cat-12345678.jpg").size());
  CHECK(second.ends_with(".jpg"));
  // differs only in case: still a collision (case-insensitive filesystems)
  CHECK(names.assign("http://c.test/CAT.JPG") != "CAT.JPG");
  CHECK(names.assign("http://c.test/../../etc/passwd") == "passwd");
  CHECK(names.assign("http://c.test/") == "file");
  CHECK(names.assign("http://d.test/") != "file");
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) CHECK(seen.insert(names.assign("http://h" + std::to_string(i) + ".test/same.png")).second);
}

TEST_CASE("stats: counts, duplicates, percentiles and completion", "[broker]") {
  JobStats s;
  const auto now = JobStats::Clock::now();
  CHECK_FALSE(s.complete());
  s.set_job(trawl::testsupport::job_of(1000, -1, 0, 0, 0, false));
  for (std::uint64_t id = 1; id <= 100; ++id) CHECK(s.add(done_result(id, static_cast<std::uint32_t>(id), 10), 2000));
  CHECK_FALSE(s.add(done_result(5, 5, 10), 2000));
  CHECK(s.duplicates() == 1);
  CHECK(s.add(failed_result(101, proto::Reason::http_client), 3500));
  CHECK_FALSE(s.complete()); // the ventilator did not say so
  s.set_job(trawl::testsupport::job_of(1000, 101, 100, 1, 0, false));
  CHECK_FALSE(s.complete());
  s.set_job(trawl::testsupport::job_of(1000, 101, 100, 1, 0, true));
  CHECK(s.complete());
  CHECK(s.done() == 100);
  CHECK(s.failed() == 1);
  CHECK(s.bytes() == 1000);
  CHECK(s.latency_percentile(50) == 50);
  CHECK(s.latency_percentile(95) == 95);
  CHECK(s.latency_percentile(90) == 91); // buckets of 2 ms from 64 to 127: [90, 91] reports 91
  CHECK(s.latency_percentile(99) == 99);
  CHECK(s.latency_percentile(100) == 100);
  CHECK(s.wall_seconds() == Approx(2.5));
  const std::string text = s.summary();
  CHECK_THAT(text, Catch::Contains("101 links: 100 done, 1 failed"));
  CHECK_THAT(text, Catch::Contains("http-4xx"));
  CHECK_THAT(text, Catch::Contains("missing-101.jpg"));
  CHECK_THAT(text, Catch::Contains("p50 50 ms, p90 91 ms, p99 99 ms, max 100 ms"));
  CHECK(s.nodes().at("n1").done == 100);
  CHECK(s.nodes().at("n2").failed == 1);
  CHECK_THAT(s.progress_line(now, true), Catch::Contains("100/101 done"));
}

TEST_CASE("vent: numbers tasks, names them uniquely, announces the total, ends on acks",
          "[broker]") {
  zmq::context_t ctx;
  auto [sink, o, state, ready] = vent_setup(ctx, "vent");
  auto vent = std::async(std::launch::async, [&] { return run(o); });
  auto ep = read_ready(ready);
  REQUIRE(ep.count("tasks"));

  auto links = make_socket(ctx, zmq::socket_type::dealer, {});
  links.connect(ep["links"]);
  const std::vector<std::string> urls = {"http://a.test/1.jpg", "http://a.test/2.jpg",
                                         "http://b.test/1.jpg"};
  links.send(zmq::buffer(std::string("\xc1garbage")), zmq::send_flags::none); // dropped, counted
  for (const auto& u : urls) links.send(zmq::buffer(proto::encode(proto::Link{u})), zmq::send_flags::none);
  links.send(zmq::buffer(proto::encode(proto::LinksEnd{3})), zmq::send_flags::none);

  // A downloader with room for two tasks gets two, and the third only once it says it has room.
  auto tasks = make_socket(ctx, zmq::socket_type::dealer, {});
  tasks.connect(ep["tasks"]);
  auto say_ready = [&](std::uint32_t held, std::uint64_t received) {
    tasks.send(zmq::buffer(proto::encode(proto::Ready{"test-node", 2, held, received, {}})),
               zmq::send_flags::none);
  };
  say_ready(0, 0);
  // Round-robin over hosts (a.test, b.test): which two come first depends on how many links the
  // vent had read when the credit came; each task is its link, in id order within a host.
  std::set<std::string> names;
  std::set<std::uint64_t> ids;
  std::vector<proto::Task> first;
  while (first.size() < 2)
    for (auto& t : tasks_of(recv_message(tasks))) first.push_back(t);
  REQUIRE(first.size() == 2);
  for (const auto& t : first) {
    REQUIRE((t.id >= 1 && t.id <= 3));
    CHECK(t.url == urls[t.id - 1]);
    CHECK(names.insert(t.name).second);
    CHECK(ids.insert(t.id).second);
  }
  CHECK(ids.count(1));
  tasks.set(zmq::sockopt::rcvtimeo, 300);
  zmq::message_t none;
  CHECK_FALSE(tasks.recv(none)); // no credit left: nothing more comes
  tasks.set(zmq::sockopt::rcvtimeo, -1);
  tasks.send(zmq::buffer(std::string("garbage")), zmq::send_flags::none); // dropped, counted
  say_ready(1, 2);
  const auto more = tasks_of(recv_message(tasks));
  REQUIRE(more.size() == 1); // the credit was one task
  const auto& third = more.front();
  REQUIRE((third.id >= 1 && third.id <= 3));
  CHECK(ids.insert(third.id).second);
  CHECK(third.url == urls[third.id - 1]);
  CHECK(names.insert(third.name).second);
  CHECK(names.count("1.jpg"));
  CHECK(names.count("2.jpg"));

  // Job figures: the start first, then the total once the fetcher is done.
  proto::Job job;
  for (int i = 0; i < 20 && job.total < 0; ++i) job = std::get<proto::Job>(recv_message(sink));
  CHECK(job.total == 3);
  CHECK(job.started_unix_ms > 0);
  CHECK(std::get<proto::LinksEnd>(recv_message(links)).count == 3); // the fetcher's receipt
  CHECK_FALSE(job.complete);

  // The sink forwards results as acknowledgements; duplicates and unknown ids change nothing.
  auto acks = make_socket(ctx, zmq::socket_type::push, {});
  acks.connect(ep["acks"]);
  for (std::uint64_t id : {1, 2, 2, 99})
    acks.send(zmq::buffer(proto::encode(done_result(id, 5, 10))), zmq::send_flags::none);
  CHECK(vent.wait_for(std::chrono::milliseconds(500)) == std::future_status::timeout);
  acks.send(zmq::buffer(proto::encode(failed_result(3, proto::Reason::http_client))), zmq::send_flags::none);
  REQUIRE(vent.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
  CHECK(vent.get() == kExitOk);
  for (int i = 0; i < 20 && !job.complete; ++i) job = std::get<proto::Job>(recv_message(sink));
  CHECK(job.complete);
  CHECK(job.done == 2);
  CHECK(job.failed == 1);

  // The ledger kept every outcome.
  Ledger ledger(state, false);
  CHECK(ledger.record(1)->state == LinkState::done);
  CHECK(ledger.record(1)->sha256 == std::string(64, 'b'));
  CHECK(ledger.record(3)->state == LinkState::failed);
  CHECK(ledger.record(3)->reason == static_cast<int>(proto::Reason::http_client));
  std::filesystem::remove_all(state);
  std::filesystem::remove(ready);
}

TEST_CASE("sink: completes on the announced total, acks every result, exit 1 on failures", "[broker]") {
  const std::string ready = temp_path("sink-ready");
  std::filesystem::remove(ready);
  zmq::context_t ctx;
  auto acks = make_socket(ctx, zmq::socket_type::pull, {});
  const auto acks_ep = bind_all(acks, {"tcp://127.0.0.1:*"}).front();

  SinkOptions o;
  o.results_bind = {"tcp://127.0.0.1:*"};
  o.acks = {acks_ep};
  o.ready_file = ready;
  o.progress = "none";
  auto sink = std::async(std::launch::async, [&] { return run(o); });
  auto ep = read_ready(ready);
  REQUIRE(ep.count("results"));
  auto results = make_socket(ctx, zmq::socket_type::push, {});
  results.connect(ep["results"]);
  auto send = [&](const proto::Message& m) { results.send(zmq::buffer(proto::encode(m)), zmq::send_flags::none); };
  send(trawl::testsupport::job_of(1, 3, 0, 0, 0, false));
  send(done_result(1, 10, 100));
  results.send(zmq::buffer(std::string("\x81\xa1v\x05")), zmq::send_flags::none); // malformed
  send(done_result(1, 10, 100)); // duplicate
  send(done_result(2, 10, 100));
  CHECK(sink.wait_for(std::chrono::milliseconds(300)) == std::future_status::timeout);
  send(failed_result(3, proto::Reason::http_client));
  // All three are in, but the ventilator's word decides.
  CHECK(sink.wait_for(std::chrono::milliseconds(300)) == std::future_status::timeout);
  send(trawl::testsupport::job_of(1, 3, 2, 1, 0, true));
  REQUIRE(sink.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
  CHECK(sink.get() == kExitSomeFailed);
  std::multiset<std::uint64_t> acked;
  for (int i = 0; i < 4; ++i) acked.insert(std::get<proto::Result>(recv_message(acks)).id);
  CHECK(acked == std::multiset<std::uint64_t>{1, 1, 2, 3});
  std::filesystem::remove(ready);
}

TEST_CASE("ledger: stable ids, names kept across reopen, batched states, new runs", "[broker]") {
  const std::string dir = temp_path("ledger");
  std::filesystem::remove_all(dir);
  {
    Ledger l(dir, false);
    NameAssigner names;
    auto a = l.add_link("http://a.test/x.jpg", names);
    auto b = l.add_link("http://b.test/x.jpg", names);
    auto again = l.add_link("http://a.test/x.jpg", names);
    CHECK(a.is_new);
    CHECK(b.is_new);
    CHECK_FALSE(again.is_new);
    CHECK(again.id == a.id);
    CHECK(l.task(a.id)->name == "x.jpg");
    CHECK(l.task(b.id)->name != "x.jpg");
    l.lease(a.id, "n1", 123);
    CHECK(l.counts().leased == 1);
    CHECK(l.finish(done_result(a.id, 5, 42)));
    CHECK_FALSE(l.finish(done_result(a.id, 5, 42))); // late duplicate
    CHECK_FALSE(l.finish(done_result(999, 5, 42)));  // unknown
    l.lease(b.id, "n1", 123);
    CHECK_FALSE(l.pending_task(b.id)); // leased: not a task to hand out again
    CHECK_FALSE(l.pending_task(a.id)); // done
    l.release(b.id);
    CHECK(l.pending_after(0, 10).size() == 1);
    REQUIRE(l.pending_task(b.id));
    CHECK(l.pending_task(b.id)->url == "http://b.test/x.jpg");
    CHECK(l.pending_task(b.id)->attempts == 1);
    l.lease(b.id, "n1", 123);
    CHECK(l.finish(failed_result(b.id, proto::Reason::http_client)));
    CHECK(l.record(b.id)->state == LinkState::failed);
  } // destructor commits
  {
    Ledger l(dir, false);
    auto c = l.counts();
    CHECK(c.done == 1);
    CHECK(c.failed == 1);
    CHECK(l.record(1)->bytes == 42);
    CHECK(l.record(1)->attempts == 1);
    CHECK(l.record(2)->attempts == 2);
    NameAssigner names;
    l.load_names(names);
    CHECK(l.add_link("http://c.test/x.jpg", names).id == 3);
    CHECK(l.task(3)->name != "x.jpg"); // taken in the earlier session
    l.reset_for_new_run();
    c = l.counts();
    CHECK(c.done == 1);
    CHECK(c.failed == 0);
    CHECK(c.pending == 2);
  }
  {
    Ledger l(dir, true); // --fresh
    CHECK(l.counts().total() == 0);
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("ledger: a lease kept in memory reads and commits as a written one", "[broker]") {
  const std::string dir = temp_path("ledger-kept");
  std::filesystem::remove_all(dir);
  {
    Ledger l(dir, false);
    NameAssigner names;
    for (int i = 1; i <= 6; ++i) l.add_link("http://a.test/" + std::to_string(i) + ".jpg", names);
    l.commit();
    l.lease_later(1, "n1", 100);
    CHECK_FALSE(l.pending_task(1));                       // leased: not a task to hand out again
    const auto rows = l.pending_of_host("a.test", 0, 10); // read from before it: not among them
    REQUIRE(rows.size() == 5);
    CHECK(rows.front().id == 2);
    CHECK(l.counts().leased == 1);
    CHECK(l.record(1)->attempts == 1);
    // Finished before a commit: done, its dispatch counted.
    l.lease_later(2, "n1", 100);
    CHECK(l.finish(done_result(2, 5, 42)));
    CHECK_FALSE(l.finish(done_result(2, 5, 42))); // late duplicate
    CHECK(l.record(2)->state == LinkState::done);
    CHECK(l.record(2)->attempts == 1);
    // Given back: pending again, the dispatch counted.
    l.lease_later(3, "n1", 100);
    l.release(3);
    REQUIRE(l.pending_task(3));
    CHECK(l.pending_task(3)->attempts == 1);
    // Failed without a result.
    l.lease_later(4, "n1", 100);
    l.fail(4, proto::Reason::aborted, "lost");
    CHECK(l.record(4)->state == LinkState::failed);
    CHECK(l.record(4)->attempts == 1);
    // A lease of a link that is no longer pending is not written.
    l.lease_later(2, "n2", 200);
    // Kept at the commit: written then.
    l.lease_later(5, "n2", 300);
    l.commit();
  }
  {
    Ledger l(dir, false);
    const auto c = l.counts();
    CHECK(c.leased == 2); // 1 and 5
    CHECK(c.done == 1);
    CHECK(c.failed == 1);
    CHECK(c.pending == 2); // 3 and 6
    CHECK(l.leased_hosts() ==
          std::vector<std::pair<std::uint64_t, std::string>>{{1, "a.test"}, {5, "a.test"}});
    CHECK(l.record(2)->node == "n1");
    CHECK(l.record(2)->attempts == 1);
    CHECK(l.record(5)->node == "n2");
    CHECK(l.record(5)->attempts == 1);
    CHECK(l.record(6)->attempts == 0);
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("ledger: kept leases of several nodes are written with their own node", "[broker]") {
  const std::string dir = temp_path("ledger-kept-nodes");
  std::filesystem::remove_all(dir);
  {
    Ledger l(dir, false);
    NameAssigner names;
    for (int i = 1; i <= 4; ++i) l.add_link("http://a.test/" + std::to_string(i) + ".jpg", names);
    l.lease_later(1, "node-one", 10);
    l.lease_later(2, "node-two", 20);
    l.lease_later(3, "node-one", 30);
    l.lease_later(4, "node-three", 40);
    l.commit();
  }
  Ledger l(dir, false);
  CHECK(l.record(1)->node == "node-one");
  CHECK(l.record(2)->node == "node-two");
  CHECK(l.record(3)->node == "node-one");
  CHECK(l.record(4)->node == "node-three");
  CHECK(l.counts().leased == 4);
  std::filesystem::remove_all(dir);
}

TEST_CASE("vent: --expect-downloaders keeps a short job's share for a downloader still to join",
          "[broker]") {
  using Clock = std::chrono::steady_clock;
  zmq::context_t ctx;
  auto [sink, o, state, ready] = vent_setup(ctx, "vent-expect");
  o.expect_downloaders = 2;
  auto vent = std::async(std::launch::async, [&] { return run(o); });
  auto ep = read_ready(ready);
  REQUIRE(ep.count("tasks"));

  // Ten links of ten hosts, all known before any downloader joins (the fetcher's receipt).
  auto links = make_socket(ctx, zmq::socket_type::dealer, {});
  links.connect(ep["links"]);
  for (int i = 0; i < 10; ++i)
    links.send(
        zmq::buffer(proto::encode(proto::Link{"http://h" + std::to_string(i) + ".test/f.bin"})),
        zmq::send_flags::none);
  links.send(zmq::buffer(proto::encode(proto::LinksEnd{10})), zmq::send_flags::none);
  REQUIRE(std::get<proto::LinksEnd>(recv_message(links)).count == 10);

  auto join = [&](const std::string& node) {
    auto s = make_socket(ctx, zmq::socket_type::dealer, {});
    s.connect(ep["tasks"]);
    s.send(zmq::buffer(proto::encode(proto::Ready{node, 68, 0, 0, {}})), zmq::send_flags::none);
    return s;
  };
  // Tasks that arrive within `wait`.
  auto receive = [&](zmq::socket_t& s, std::chrono::milliseconds wait) {
    std::vector<proto::Task> got;
    s.set(zmq::sockopt::rcvtimeo, static_cast<int>(wait.count()));
    zmq::message_t msg;
    while (s.recv(msg)) {
      for (auto& t : tasks_of(std::get<proto::Message>(proto::decode(msg.to_string_view()))))
        got.push_back(t);
      if (got.size() >= 10) break;
    }
    return got;
  };

  // The first downloader with room for all ten gets its half; the other half waits for the
  // second (within 250 ms of the first joining; after that the first would get it).
  const auto joined = Clock::now();
  auto a = join("node-a");
  auto first = receive(a, std::chrono::milliseconds(100));
  const bool in_window = Clock::now() - joined < std::chrono::milliseconds(250);
  INFO("first downloader got " << first.size() << " tasks");
  if (in_window) CHECK(first.size() == 5);
  auto b = join("node-b");
  auto second = receive(b, std::chrono::milliseconds(2000));
  if (in_window) CHECK(second.size() == 5);
  std::set<std::uint64_t> ids;
  for (const auto& t : first) ids.insert(t.id);
  for (const auto& t : second) ids.insert(t.id);
  if (ids.size() < 10) // what a late second downloader did not get went to the first meanwhile
    for (const auto& t : receive(a, std::chrono::milliseconds(1000))) ids.insert(t.id);
  CHECK(ids.size() == 10); // every task once, none lost while kept back

  // Every result comes back: the job completes.
  auto acks = make_socket(ctx, zmq::socket_type::push, {});
  acks.connect(ep["acks"]);
  for (const auto id : ids)
    acks.send(zmq::buffer(proto::encode(done_result(id, 5, 10))), zmq::send_flags::none);
  REQUIRE(vent.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
  CHECK(vent.get() == kExitOk);
  std::filesystem::remove_all(state);
  std::filesystem::remove(ready);
}
