// Unit tests of what the sink shows and writes: histograms and percentiles, the timeline, the
// wording of the live view, the JSON of the live figures, the report, the manifest (JSON Lines and
// CSV), the failed list, the ledger pass, the Prometheus text and its HTTP responder, and the
// job message's optional per-node fields.
#include <algorithm>
#include <arpa/inet.h>
#include <catch2/catch.hpp>
#include <cmath>
#include <deque>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <netinet/in.h>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <sys/socket.h>
#include <unistd.h>

#include "broker/ledger.hpp"
#include "broker/metrics.hpp"
#include "broker/monitor.hpp"
#include "broker/names.hpp"
#include "broker/report.hpp"
#include "broker/stats.hpp"
#include "broker/vent.hpp"
#include "common/zmq_util.hpp"
#include "proto/messages.hpp"
#include "tests/support/process.hpp"
#include "tests/support/messages.hpp"

using namespace trawl;
using namespace trawl::broker;
using nlohmann::json;

namespace {

proto::Result result(std::uint64_t id, bool ok, std::uint32_t ms, std::uint64_t bytes, std::string node) {
  proto::Result r;
  r.id = id;
  r.url = "http://x.test/" + std::to_string(id) + ".jpg";
  r.node = std::move(node);
  r.ms = ms;
  r.ttfb_ms = ms / 4;
  r.attempt = 1;
  if (ok) {
    r.status = proto::Status::done;
    r.path = "/out/" + std::to_string(id) + ".jpg";
    r.http_code = 200;
    r.bytes = bytes;
    r.sha256 = std::string(64, 'a');
  } else {
    r.status = proto::Status::failed;
    r.http_code = 404;
    r.reason = proto::Reason::http_client;
    r.detail = "HTTP 404";
  }
  return r;
}

std::uint32_t exact_percentile(std::vector<std::uint32_t> v, double p) {
  std::sort(v.begin(), v.end());
  auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  rank = std::clamp<std::size_t>(rank, 1, v.size());
  return v[rank - 1];
}

std::vector<std::string> lines_of(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

} // namespace

TEST_CASE("histogram: buckets are contiguous and every value lands in its own", "[report]") {
  std::uint32_t expected_lower = 0;
  for (std::size_t i = 0; i < Histogram::kBuckets; ++i) {
    const auto lo = Histogram::lower_edge(i), hi = Histogram::upper_edge(i);
    REQUIRE(lo == expected_lower);
    REQUIRE(hi >= lo);
    REQUIRE(Histogram::index(lo) == i);
    REQUIRE(Histogram::index(hi) == i);
    // Width at most 1/32 of the lower edge (exact below 64).
    if (lo >= 64) REQUIRE(static_cast<double>(hi - lo + 1) <= lo / 32.0 + 1e-9);
    else REQUIRE(hi == lo);
    expected_lower = hi + 1;
  }
  CHECK(Histogram::upper_edge(Histogram::kBuckets - 1) == 0xffffffffu);
  CHECK(Histogram::index(0xffffffffu) == Histogram::kBuckets - 1);
}

TEST_CASE("histogram: percentiles within 1/32 of the exact nearest rank, exact below 64", "[report]") {
  Histogram empty;
  CHECK(empty.percentile(50) == 0);
  CHECK(empty.count() == 0);

  Histogram small;
  std::vector<std::uint32_t> sv;
  for (std::uint32_t v = 0; v < 64; ++v) {
    small.add(v);
    sv.push_back(v);
  }
  for (double p : {1.0, 25.0, 50.0, 90.0, 99.0, 100.0}) CHECK(small.percentile(p) == exact_percentile(sv, p));

  std::mt19937 rng(7);
  std::lognormal_distribution<double> dist(5.5, 1.2); // ~250 ms median, long tail
  Histogram h;
  std::vector<std::uint32_t> v;
  for (int i = 0; i < 20000; ++i) {
    const auto x = static_cast<std::uint32_t>(std::min(4.0e9, dist(rng)));
    h.add(x);
    v.push_back(x);
  }
  CHECK(h.count() == v.size());
  CHECK(h.max() == *std::max_element(v.begin(), v.end()));
  CHECK(h.min() == *std::min_element(v.begin(), v.end()));
  for (double p : {50.0, 90.0, 99.0, 99.9}) {
    const auto want = exact_percentile(v, p), got = h.percentile(p);
    INFO("p" << p << ": exact " << want << ", histogram " << got);
    CHECK(got >= want); // the bucket's upper edge: never under-reports
    CHECK(static_cast<double>(got - want) <= want / 32.0 + 1);
  }
  CHECK(h.percentile(100) == h.max());
  std::uint64_t total = 0;
  for (const auto& b : h.buckets()) total += b.count;
  CHECK(total == h.count());
}

TEST_CASE("fixed buckets count values at or below each bound", "[report]") {
  FixedBuckets b;
  for (std::uint32_t v : {1u, 5u, 6u, 100u, 101u, 70000u}) b.add(v);
  CHECK(b.at_most(0) == 2); // <= 5
  CHECK(b.at_most(1) == 3); // <= 10
  CHECK(b.at_most(4) == 4); // <= 100
  CHECK(b.at_most(5) == 5); // <= 250
  CHECK(b.at_most(FixedBuckets::kBoundsMs.size() - 1) == 5); // 70 s is above 60 s
}

TEST_CASE("timeline: slots coarsen to stay bounded, nothing is lost", "[report]") {
  Timeline t;
  std::uint64_t done = 0, failed = 0, bytes = 0;
  for (std::int64_t s = 0; s < 5000; ++s) {
    const bool ok = s % 7 != 0;
    t.add(s * 1000 + 500, ok, ok ? 10 : 0);
    (ok ? done : failed) += 1;
    if (ok) bytes += 10;
  }
  CHECK(t.slots().size() <= Timeline::kMaxSlots);
  CHECK(t.slot_ms() == 12800); // 5000 s in at most 512 slots: 100 ms doubled seven times
  std::uint64_t d = 0, f = 0, b = 0;
  for (const auto& s : t.slots()) {
    d += s.done;
    f += s.failed;
    b += s.bytes;
  }
  CHECK(d == done);
  CHECK(f == failed);
  CHECK(b == bytes);
  Timeline early;
  early.add(-5, true, 1); // a clock step back goes to the first slot
  CHECK(early.slots().size() == 1);
}

TEST_CASE("formatting: bytes, durations, thousands, the live block and line", "[report]") {
  CHECK(human_bytes(999) == "999 B");
  CHECK(human_bytes(1500) == "1.5 KB");
  CHECK(human_bytes(2.5e9) == "2.5 GB");
  CHECK(human_duration(0) == "0s");
  CHECK(human_duration(9.2) == "10s");
  CHECK(human_duration(187) == "3m07s");
  CHECK(human_duration(7500) == "2h05m");
  CHECK(human_duration(-1) == "?");
  CHECK(grouped(0) == "0");
  CHECK(grouped(999) == "999");
  CHECK(grouped(1000) == "1,000");
  CHECK(grouped(12345678) == "12,345,678");

  LiveFigures f;
  f.unix_ms = 1764500000000; // 2025-11-30T10:53:20Z
  f.total = 20000;
  f.done = 9041;
  f.failed = 12;
  f.skipped = 40;
  f.bytes = 740100000;
  f.files_per_s = 1203.4;
  f.bytes_per_s = 98.2e6;
  f.eta_s = 9.1;
  f.elapsed_s = 7;
  f.active = 128;
  f.nodes = 2;
  const std::string block = render_block(f, 20);
  CHECK(std::count(block.begin(), block.end(), '\n') == 3);
  CHECK_THAT(block, Catch::StartsWith("[#########...........]  45.3%  9,041/20,000 done (40 skipped), 12 failed\n"));
  CHECK_THAT(block, Catch::Contains("1203.4 files/s  98.2 MB/s (last 5 s)"));
  CHECK_THAT(block, Catch::Contains("ETA 10s"));
  CHECK_THAT(block, Catch::Contains("128 active transfers on 2 nodes"));
  const std::string line = render_line(f);
  CHECK_THAT(line, Catch::StartsWith("2025-11-30T10:53:20Z 9041/20000 done, 12 failed, 1203.4 files/s"));
  CHECK_THAT(line, Catch::Contains("128 active, 2 nodes"));
  f.total = -1;
  CHECK_THAT(render_block(f, 4), Catch::StartsWith("[????]"));
}

TEST_CASE("live figures: JSON round trip, malformed objects are refused", "[report]") {
  LiveFigures f;
  f.unix_ms = 5;
  f.total = -1;
  f.done = 3;
  f.failed = 1;
  f.bytes = 1234;
  f.files_per_s = 2.5;
  f.eta_s = -1;
  f.active = 7;
  f.nodes = 2;
  f.complete = true;
  auto back = live_from_json(live_to_json(f));
  REQUIRE(back);
  CHECK(back->done == 3);
  CHECK(back->total == -1);
  CHECK(back->files_per_s == 2.5);
  CHECK(back->active == 7);
  CHECK(back->complete);
  auto j = live_to_json(f);
  j["done"] = "three";
  CHECK_FALSE(live_from_json(j));
  j = live_to_json(f);
  j.erase("complete");
  CHECK_FALSE(live_from_json(j));
  CHECK_FALSE(live_from_json(json::array()));
  CHECK_FALSE(live_from_json(json(nullptr)));

  // The monitor's frames carry them; a huge summary is left out, the figures stay.
  const auto frame = json::parse(final_message(f, 1, std::string(400000, 'x')));
  CHECK(frame["event"] == "final");
  CHECK(frame["status"] == 1);
  CHECK_FALSE(frame.contains("summary"));
  CHECK(live_from_json(frame["figures"]));
  CHECK(json::parse(progress_message(f))["event"] == "progress");
}

TEST_CASE("report: counts, per-node sums, failures and requeues from the ventilator", "[report]") {
  JobStats s(1000);
  std::uint64_t id = 0, bytes = 0;
  for (int i = 0; i < 30; ++i) {
    bytes += 100 + i;
    CHECK(s.add(result(++id, true, 50 + i, 100 + i, i % 3 ? "a" : "b"), 2000 + i * 10));
  }
  CHECK(s.add(result(++id, false, 5, 0, "b"), 2500));
  CHECK_FALSE(s.add(result(1, true, 5, 100, "a"), 2600)); // duplicate
  proto::Job j = trawl::testsupport::job_of(1000, 31, 30, 1, 4, true);
  j.active = 0;
  j.nodes = 2;
  j.requeued = 3;
  j.requeued_nodes = {"b", "gone"};
  j.requeued_counts = {2, 1};
  s.set_job(j);
  ReportContext ctx;
  ctx.complete = true;
  ctx.exit_status = 1;
  ctx.manifest_path = "m.jsonl";
  ctx.manifest_rows = 31;
  const auto r = report_json(s, ctx);
  CHECK(r["schema"] == kReportSchema);
  CHECK(r["links"]["total"] == 31);
  CHECK(r["links"]["done"] == 30);
  CHECK(r["links"]["skipped"] == 4);
  CHECK(r["links"]["failed"] == 1);
  CHECK(r["links"]["duplicates"] == 1);
  CHECK(r["links"]["requeued"] == 3);
  CHECK(r["bytes"] == bytes);
  CHECK(r["latency_ms"]["count"] == 30);
  CHECK(r["latency_ms"]["max"] == 79);
  CHECK(r["failures"].size() == 1);
  CHECK(r["failures"][0]["reason"] == "http-4xx");
  CHECK(r["failures"][0]["example_url"] == "http://x.test/31.jpg");
  std::uint64_t node_done = 0, node_bytes = 0;
  std::map<std::string, json> by_name;
  for (const auto& n : r["nodes"]) {
    node_done += n["done"].get<std::uint64_t>();
    node_bytes += n["bytes"].get<std::uint64_t>();
    by_name[n["node"]] = n;
  }
  CHECK(node_done == 30);
  CHECK(node_bytes == bytes);
  CHECK(by_name["b"]["requeued"] == 2);
  CHECK(by_name["b"]["failed"] == 1);
  CHECK(by_name["gone"]["requeued"] == 1); // a node with no result still shows what it lost
  CHECK(r["files"]["manifest"]["rows"] == 31);
  CHECK(r["files"]["failed"].is_null());
  std::uint64_t timeline_done = 0;
  for (const auto& d : r["timeline"]["done"]) timeline_done += d.get<std::uint64_t>();
  CHECK(timeline_done == 30);
  const std::string text = s.summary();
  CHECK_THAT(text, Catch::Contains("31 links: 30 done, 1 failed (4 skipped"));
  CHECK_THAT(text, Catch::Contains("re-sent     3 tasks dispatched again, 1 duplicate results ignored"));
  CHECK_THAT(text, Catch::Contains("p50 "));
}

TEST_CASE("HTML report: data inline, no way out of its script element", "[report]") {
  JobStats s(1);
  auto bad = result(1, false, 5, 0, "n</script><script>alert(1)</script>");
  bad.url = "http://x.test/</script><img src=x>.jpg";
  s.add(bad, 10);
  s.add(result(2, true, 5, 10, "n"), 20);
  const std::string html = render_html(report_json(s, {}));
  CHECK(html.find("</script><img") == std::string::npos);
  CHECK(html.find("</script><script>alert") == std::string::npos);
  CHECK_THAT(html, Catch::Contains("\\u003c/script>\\u003cimg src=x>.jpg"));
  for (const char* id : {"id=\"throughput\"", "id=\"latency\"", "id=\"nodes\"", "id=\"failures\""})
    CHECK_THAT(html, Catch::Contains(id));
  // Nothing from the network: no external script, style sheet or image.
  CHECK(html.find("<script src") == std::string::npos);
  CHECK(html.find("<link") == std::string::npos);
  CHECK(html.find("https://") == std::string::npos);
}

TEST_CASE("manifest: JSON Lines and CSV, one row per call, quoting", "[report]") {
  trawl::testsupport::TempDir dir("trawl-unit-manifest");
  auto failed = result(2, false, 7, 0, "n,2");
  failed.url = "http://x.test/a,\"b\".jpg";
  failed.detail = "line one\nline two";
  {
    ManifestWriter w(dir / "m.jsonl");
    CHECK_FALSE(w.csv());
    w.write(manifest_row(result(1, true, 12, 345, "n1")));
    w.write(manifest_row(failed));
    w.close();
    CHECK(w.rows() == 2);
  }
  auto rows = lines_of(dir / "m.jsonl");
  REQUIRE(rows.size() == 2);
  auto a = json::parse(rows[0]), b = json::parse(rows[1]);
  CHECK(a["status"] == "done");
  CHECK(a["bytes"] == 345);
  CHECK(a["ms"] == 12);
  CHECK(a["sha256"] == std::string(64, 'a'));
  CHECK(a["path"] == "/out/1.jpg");
  CHECK(a["reason"] == "");
  CHECK(b["status"] == "failed");
  CHECK(b["reason"] == "http-4xx");
  CHECK(b["http_code"] == 404);
  CHECK(b["error"] == "line one\nline two");
  CHECK(a["ttfb_ms"] == 3);
  CHECK(a["attempts"] == 1);
  CHECK(a["id"] == 1);
  {
    // What a hostile node may send: invalid UTF-8 and control bytes; the row stays valid JSON.
    ManifestWriter w(dir / "odd.jsonl");
    ManifestRow odd;
    odd.id = 7;
    odd.url = "http://x.test/\xff\xfe\x01\"\\/é.jpg";
    odd.status = "failed";
    odd.error = std::string("tab\there\0nul", 12);
    w.write(odd);
    w.close();
    const auto row = json::parse(lines_of(dir / "odd.jsonl").at(0));
    CHECK(row["url"] == "http://x.test/\xef\xbf\xbd\xef\xbf\xbd\x01\"\\/é.jpg");
    CHECK(row["error"] == std::string("tab\there\0nul", 12));
    CHECK(row["ms"].is_null());
  }
  {
    ManifestWriter w(dir / "m.CSV");
    CHECK(w.csv());
    w.write(manifest_row(failed));
    ManifestRow skipped;
    skipped.id = 9;
    skipped.url = "http://x.test/9.jpg";
    skipped.status = "skipped";
    w.write(skipped);
    w.close();
  }
  const std::string csv = trawl::testsupport::read_file(dir / "m.CSV");
  CHECK(csv == "id,url,path,node,status,http_code,bytes,sha256,attempts,ms,ttfb_ms,reason,error,meta\n"
               "2,\"http://x.test/a,\"\"b\"\".jpg\",,\"n,2\",failed,404,0,,1,7,1,http-4xx,\"line one\nline two\",\n"
               "9,http://x.test/9.jpg,,,skipped,0,0,,0,,,,,\n");
  CHECK_THROWS_AS(ManifestWriter(dir / "no/such/dir/m.jsonl"), std::runtime_error);

  UrlListWriter u(dir / "failed.txt");
  u.write("http://x.test/1.jpg");
  u.write("http://x.test/evil\nhttp://other.test/");
  u.write("http://x.test/2.jpg");
  u.close();
  CHECK(u.rows() == 2);
  CHECK(trawl::testsupport::read_file(dir / "failed.txt") == "http://x.test/1.jpg\nhttp://x.test/2.jpg\n");
}

TEST_CASE("ledger pass: the links without a result here, with their ledger state", "[report]") {
  trawl::testsupport::TempDir dir("trawl-unit-ledger-pass");
  {
    Ledger ledger(dir.path(), false);
    NameAssigner names;
    for (int i = 1; i <= 5; ++i) ledger.add_link("http://x.test/" + std::to_string(i) + ".jpg", names);
    for (std::uint64_t id : {1, 2, 3}) ledger.lease(id, "n1", 0);
    auto r1 = result(1, true, 5, 11, "n1");
    r1.path = "/out/1.jpg";
    ledger.finish(r1);
    ledger.finish(result(2, true, 5, 22, "n1"));
    ledger.fail(3, proto::Reason::aborted, "dispatched 5 times");
    ledger.commit();
    // Link 4 pending, 5 pending. The sink saw a result for 2 only.
    std::vector<ManifestRow> rows;
    const auto n = for_each_ledger_row(
        dir / "ledger.sqlite", [](std::uint64_t id) { return id == 2; },
        [&rows](const ManifestRow& r) { rows.push_back(r); });
    CHECK(n == 4);
    REQUIRE(rows.size() == 4);
    CHECK(rows[0].id == 1);
    CHECK(rows[0].status == "skipped");
    CHECK(rows[0].bytes == 11);
    CHECK(rows[0].path == "/out/1.jpg");
    CHECK(rows[0].node == "n1");
    CHECK_FALSE(rows[0].ms);
    CHECK(rows[1].id == 3);
    CHECK(rows[1].status == "failed");
    CHECK(rows[1].reason == "aborted");
    CHECK(rows[2].status == "pending");
    CHECK(rows[3].url == "http://x.test/5.jpg");
  }
  CHECK_THROWS_AS(for_each_ledger_row(dir / "missing.sqlite", [](std::uint64_t) { return false; },
                                      [](const ManifestRow&) {}),
                  std::runtime_error);
}

TEST_CASE("metrics: Prometheus text with exact values, served on loopback", "[report]") {
  JobStats s(1000);
  for (std::uint64_t id = 1; id <= 10; ++id) s.add(result(id, true, static_cast<std::uint32_t>(id * 100), 1000, "n\"1"), 5000);
  s.add(result(11, false, 1, 0, "n2"), 5000);
  proto::Job j = trawl::testsupport::job_of(1000, 12, 10, 1, 0, false);
  j.active = 1;
  j.nodes = 2;
  s.set_job(j);
  const std::string text = prometheus_text(s);
  CHECK_THAT(text, Catch::Contains("\ntrawl_links_total 12\n"));
  CHECK_THAT(text, Catch::Contains("\ntrawl_results_done_total 10\n"));
  CHECK_THAT(text, Catch::Contains("\ntrawl_results_failed_total{reason=\"http-4xx\"} 1\n"));
  CHECK_THAT(text, Catch::Contains("\ntrawl_bytes_total 10000\n"));
  CHECK_THAT(text, Catch::Contains("\ntrawl_transfers_active 1\n"));
  CHECK_THAT(text, Catch::Contains("trawl_node_bytes_total{node=\"n\\\"1\"} 10000\n"));
  CHECK_THAT(text, Catch::Contains("trawl_transfer_duration_seconds_bucket{le=\"0.5\"} 5\n"));
  CHECK_THAT(text, Catch::Contains("trawl_transfer_duration_seconds_bucket{le=\"1\"} 10\n"));
  CHECK_THAT(text, Catch::Contains("trawl_transfer_duration_seconds_bucket{le=\"+Inf\"} 10\n"));
  CHECK_THAT(text, Catch::Contains("trawl_transfer_duration_seconds_sum 5.5\n"));
  CHECK_THAT(text, Catch::Contains("trawl_transfer_duration_seconds_count 10\n"));

  MetricsServer server(0);
  REQUIRE(server.port() > 0);
  server.publish(text);
  const std::string base = "http://127.0.0.1:" + std::to_string(server.port());
  auto res = trawl::testsupport::http_request(base + "/metrics");
  CHECK(res.status == 200);
  CHECK(res.body == text);
  CHECK(trawl::testsupport::http_request(base + "/nothing").status == 404);
  server.publish("x 1\n");
  CHECK(trawl::testsupport::http_get(base + "/metrics") == "x 1\n");
}

namespace {

// A TCP connection to 127.0.0.1:port whose reads wait at most 2 s. A connect failure throws.
int connect_loopback(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const timeval tv{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    throw std::runtime_error("connect failed");
  }
  return fd;
}

// Sends `request` to 127.0.0.1:port and returns everything the server answers until it closes
// (at most 2 s).
std::string raw_exchange(int port, const std::string& request) {
  const int fd = connect_loopback(port);
  REQUIRE(::send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(request.size()));
  std::string got;
  char buf[4096];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;)
    got.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  return got;
}

} // namespace

TEST_CASE("metrics: only GET and HEAD are answered, an idle client blocks no one, a taken port "
          "is an error",
          "[report]") {
  MetricsServer server(0);
  REQUIRE(server.port() > 0);
  server.publish("m 1\n");
  const std::string base = "http://127.0.0.1:" + std::to_string(server.port());

  // A client that connects and says nothing holds one connection, not the server.
  const int idle = connect_loopback(server.port());
  CHECK(trawl::testsupport::http_get(base + "/metrics") == "m 1\n");
  const auto root = trawl::testsupport::http_request(base + "/");
  CHECK(root.status == 200);
  CHECK_THAT(root.body, Catch::Contains("/metrics"));
  ::close(idle);

  const std::string post =
      raw_exchange(server.port(), "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                                  "Connection: close\r\n\r\nhello");
  CHECK(post.rfind("HTTP/1.1 405", 0) == 0);
  CHECK_THAT(post, Catch::Contains("GET, HEAD"));
  const std::string head =
      raw_exchange(server.port(), "HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  CHECK(head.rfind("HTTP/1.1 200", 0) == 0);
  CHECK(head.find("m 1") == std::string::npos); // headers only
  CHECK_THAT(head, Catch::Contains("text/plain; version=0.0.4"));
  // Garbage instead of a request: an error status or a closed connection, and the server goes on.
  const std::string junk = raw_exchange(server.port(), std::string("\x01\x02 not http\r\n\r\n"));
  CHECK(junk.find("m 1") == std::string::npos);
  CHECK(trawl::testsupport::http_get(base + "/metrics") == "m 1\n");

  // The same port again: refused with the reason.
  try {
    MetricsServer second(server.port());
    FAIL("a second server on a taken port started");
  } catch (const std::runtime_error& e) {
    CHECK_THAT(e.what(),
               Catch::Contains("cannot listen on 127.0.0.1:" + std::to_string(server.port())));
  }
}

TEST_CASE("job: the optional per-node requeue figures travel, and a bad pair is refused", "[report][proto]") {
  proto::Job j = trawl::testsupport::job_of(5, 10, 3, 1, 0, false);
  j.active = 4;
  j.nodes = 2;
  j.requeued = 7;
  j.requeued_nodes = {"h-d1", "h-d2"};
  j.requeued_counts = {5, 2};
  auto d = proto::decode(proto::encode(j));
  REQUIRE(std::holds_alternative<proto::Message>(d));
  CHECK(std::get<proto::Job>(std::get<proto::Message>(d)) == j);
  // Without them (an older ventilator), the frame is the old one and decodes to zeros.
  const proto::Job plain = trawl::testsupport::job_of(5, 10, 3, 1, 0, false);
  auto p = proto::decode(proto::encode(plain));
  REQUIRE(std::holds_alternative<proto::Message>(p));
  CHECK(std::get<proto::Job>(std::get<proto::Message>(p)).requeued_nodes.empty());
  CHECK(proto::encode(plain).size() < proto::encode(j).size());
  // Arrays of different lengths: encode() never does it; a hand-made frame is refused.
  std::string frame = proto::encode(j);
  const std::string from = std::string("\xa8rq_count\x92\x05\x02", 12);
  const auto at = frame.find(from);
  REQUIRE(at != std::string::npos);
  frame.replace(at, from.size(), std::string("\xa8rq_count\x91\x05", 11));
  CHECK(std::holds_alternative<proto::DecodeError>(proto::decode(frame)));
}

TEST_CASE("vent: tasks sent again are counted against the node they were taken from", "[report][broker]") {
  trawl::testsupport::TempDir dir("trawl-unit-vent-requeue");
  zmq::context_t ctx;
  auto sink = make_socket(ctx, zmq::socket_type::pull, {});
  const auto sink_ep = bind_all(sink, {"tcp://127.0.0.1:*"}).front();
  VentOptions o;
  o.links_bind = {"tcp://127.0.0.1:*"};
  o.tasks_bind = {"tcp://127.0.0.1:*"};
  o.acks_bind = {"tcp://127.0.0.1:*"};
  o.sink = {sink_ep};
  o.state_dir = dir / "state";
  o.ready_file = dir / "ready";
  o.ack_timeout = std::chrono::milliseconds(200);
  auto vent = std::async(std::launch::async, [&] { return run(o); });
  const auto ep = trawl::testsupport::wait_ready_file(dir / "ready", std::chrono::seconds(10));

  auto links = make_socket(ctx, zmq::socket_type::dealer, {});
  links.connect(ep.at("links"));
  for (int i = 1; i <= 2; ++i)
    links.send(zmq::buffer(proto::encode(proto::Link{"http://a.test/" + std::to_string(i) + ".jpg"})), zmq::send_flags::none);
  links.send(zmq::buffer(proto::encode(proto::LinksEnd{2})), zmq::send_flags::none);

  // One task at a time, from a "task" frame or a "tasks" batch (the rest of a batch waits in
  // `queued`, per socket).
  std::map<void*, std::deque<proto::Task>> queued;
  auto recv_task = [&queued](zmq::socket_t& s) {
    auto& q = queued[s.handle()];
    if (q.empty()) {
      zmq::message_t msg;
      REQUIRE(s.recv(msg));
      auto d = proto::decode(msg.to_string_view());
      REQUIRE(std::holds_alternative<proto::Message>(d));
      auto& m = std::get<proto::Message>(d);
      if (auto* one = std::get_if<proto::Task>(&m)) q.push_back(*one);
      else
        for (auto& t : std::get<proto::Tasks>(m).items) q.push_back(t);
    }
    proto::Task t = q.front();
    q.pop_front();
    return t;
  };
  // Node a takes both tasks, then says it holds neither and no result comes: both are lost.
  auto a = make_socket(ctx, zmq::socket_type::dealer, {});
  a.connect(ep.at("tasks"));
  a.send(zmq::buffer(proto::encode(proto::Ready{"node-a", 2, 0, 0, {}})), zmq::send_flags::none);
  recv_task(a);
  recv_task(a);
  a.send(zmq::buffer(proto::encode(proto::Ready{"node-a", 0, 0, 2, {}})), zmq::send_flags::none);
  // Node b gets them again after --ack-timeout-ms, and finishes them.
  auto b = make_socket(ctx, zmq::socket_type::dealer, {});
  b.connect(ep.at("tasks"));
  b.send(zmq::buffer(proto::encode(proto::Ready{"node-b", 2, 0, 0, {}})), zmq::send_flags::none);
  b.set(zmq::sockopt::rcvtimeo, 10000);
  auto acks = make_socket(ctx, zmq::socket_type::push, {});
  acks.connect(ep.at("acks"));
  for (int i = 0; i < 2; ++i) {
    auto t = recv_task(b);
    CHECK(t.attempt == 2);
    proto::Result r;
    r.id = t.id;
    r.url = t.url;
    r.status = proto::Status::done;
    r.sha256 = std::string(64, 'd');
    r.node = "node-b";
    acks.send(zmq::buffer(proto::encode(r)), zmq::send_flags::none);
  }
  REQUIRE(vent.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
  CHECK(vent.get() == 0);
  proto::Job job;
  sink.set(zmq::sockopt::rcvtimeo, 5000);
  for (int i = 0; i < 50 && !job.complete; ++i) {
    zmq::message_t msg;
    REQUIRE(sink.recv(msg));
    job = std::get<proto::Job>(std::get<proto::Message>(proto::decode(msg.to_string_view())));
  }
  REQUIRE(job.complete);
  CHECK(job.done == 2);
  CHECK(job.requeued == 2);
  CHECK(job.nodes == 2);
  CHECK(job.requeued_nodes == std::vector<std::string>{"node-a"});
  CHECK(job.requeued_counts == std::vector<std::uint64_t>{2});
}
