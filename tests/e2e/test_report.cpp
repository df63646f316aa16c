// End to end: what the sink shows and writes, checked against the files on disk. A real pipeline
// (launch/pipeline) downloads a fixture corpus with permanent 404s; the report's counts, bytes and
// per-node sums, the manifest's rows, the failed list and a monitor attached mid-job must all agree
// with the disk and the fixture's fault plan; the same job again (resume) still has one manifest
// row per link; the failed list goes back in as --source; the HTML report renders in headless
// chromium. A sink driven by hand checks the metrics endpoint's values and --json-progress.
#include <catch2/catch.hpp>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <thread>
#include <zmq.hpp>

#include "proto/messages.hpp"
#include "tests/support/corpus.hpp"
#include "tests/support/process.hpp"
#include "tests/support/messages.hpp"

namespace fs = std::filesystem;
using namespace trawl::testsupport;
using nlohmann::json;

namespace {

struct DiskFile {
  std::uint64_t size;
  std::string sha256;
};

std::map<std::string, DiskFile> files_in(const std::string& out) {
  std::map<std::string, DiskFile> files;
  for (const auto& e : fs::directory_iterator(out))
    if (e.path().filename() != ".trawl")
      files[e.path().filename().string()] = {e.file_size(), sha256_file(e.path().string())};
  return files;
}

std::vector<std::string> lines_of(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string l; std::getline(in, l);)
    if (!l.empty()) out.push_back(l);
  return out;
}

std::string basename_of(const std::string& url) { return url.substr(url.rfind('/') + 1); }

// A pipeline job in `dir`, with extra flags; returns its exit status. Its stdout and stderr are in
// dir/stdout and dir/stderr.
int run_pipeline(const TempDir& dir, const std::string& run_dir, std::vector<std::string> args,
                 const std::function<void(Child&)>& while_running = {}) {
  fs::create_directories(run_dir);
  std::vector<std::string> argv = {TRAWL_PIPELINE, "--trawl", TRAWL_BIN, "--run-dir", run_dir, "--progress", "lines"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto child = Child::spawn(argv, {}, dir / "stdout", dir / "stderr");
  if (while_running) while_running(child);
  auto status = child.wait_for(std::chrono::seconds(120));
  if (!status)
    FAIL(
        stop_hung_pipeline(child, "pipeline did not finish within 120 s", run_dir, dir / "stderr"));
  return *status;
}

// Sum of a field over the report's nodes.
std::uint64_t node_sum(const json& report, const char* field) {
  std::uint64_t n = 0;
  for (const auto& node : report["nodes"]) n += node[field].get<std::uint64_t>();
  return n;
}

std::string chromium_bin() {
  for (const char* p : {"/usr/bin/chromium", "/usr/bin/chromium-browser"})
    if (fs::exists(p)) return p;
  return "";
}

// The part of `dom` from <svg id="ID" to its </svg>.
std::string svg_of(const std::string& dom, const std::string& id) {
  const auto start = dom.find("<svg id=\"" + id + "\"");
  if (start == std::string::npos) return "";
  const auto end = dom.find("</svg>", start);
  return dom.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

// A sink started by hand on loopback tcp with `extra` flags, fed through a PUSH socket of the
// test's own with the frames a ventilator and the downloaders would send.
class HandSink {
public:
  HandSink(const TempDir& dir, std::vector<std::string> extra)
      : process_(spawn(dir, std::move(extra))),
        ready_(wait_ready_file(dir / "ready", std::chrono::seconds(10), &process_)) {
    REQUIRE(ready_.count("results"));
    push_.set(zmq::sockopt::linger, 2000);
    push_.connect(ready_.at("results"));
  }

  void send(const trawl::proto::Message& m) {
    const std::string frame = trawl::proto::encode(m);
    REQUIRE(push_.send(zmq::buffer(frame)));
  }
  const std::map<std::string, std::string>& ready() const { return ready_; }
  std::optional<int> wait_for(std::chrono::milliseconds timeout) { return process_.wait_for(timeout); }

private:
  static Child spawn(const TempDir& dir, std::vector<std::string> extra) {
    std::vector<std::string> argv{TRAWL_BIN, "sink", "--bind", "tcp://127.0.0.1:*", "--acks", "",
                                  "--ready-file", dir / "ready"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return Child::spawn(std::move(argv), {}, dir / "stdout", dir / "stderr");
  }

  Child process_;
  std::map<std::string, std::string> ready_;
  zmq::context_t ctx_;
  zmq::socket_t push_{ctx_, zmq::socket_type::push};
};

} // namespace

TEST_CASE("report, manifest, failed list and a monitor attached mid-job agree with the disk", "[e2e][report]") {
  constexpr int kFiles = 240;
  auto fixture = FixtureServer::start({"--corpus", "uniform", "--count", std::to_string(kFiles), "--size",
                                       "20000", "--delay-ms", "120", "--permanent-404-pct", "10"});
  const auto faults = json::parse(http_get(fixture.url() + "/faults"));
  std::set<std::string> permanent;
  for (const auto& n : faults["permanent"]) permanent.insert(n.get<std::string>());
  REQUIRE(permanent.size() > 5);
  REQUIRE(permanent.size() < kFiles / 4);
  std::set<std::string> list_urls, failed_urls;
  {
    std::istringstream list(http_get(fixture.url() + "/list.txt"));
    for (std::string l; std::getline(list, l);)
      if (!l.empty() && l[0] != '#') {
        list_urls.insert(l);
        if (permanent.count(basename_of(l))) failed_urls.insert(l);
      }
  }
  REQUIRE(list_urls.size() == kFiles);
  REQUIRE(failed_urls.size() == permanent.size());

  TempDir dir("trawl-e2e-report");
  const std::string out = dir / "out", run_dir = dir / "run";
  std::optional<Child> monitor;
  bool attached_mid_job = false;
  const int status = run_pipeline(
      dir, run_dir, {"--source",      fixture.url() + "/list.txt",
                     "--out",         out,
                     "--downloaders", "2",
                     "--concurrency", "4",
                     "--report",      dir / "report.json",
                     "--manifest",    dir / "manifest.jsonl",
                     "--failed",      dir / "failed.txt",
                     "--html-report", dir / "report.html",
                     "--monitor",     "--",
                     "--digest",      "sha256"},
      [&](Child& pipeline) {
        // Attach once some files have landed, while the job still runs.
        auto landed = [&] {
          if (!fs::exists(out)) return std::size_t{0};
          std::size_t n = 0;
          for (const auto& e : fs::directory_iterator(out))
            if (e.path().filename() != ".trawl" && e.path().extension() != ".part") ++n;
          return n;
        };
        for (int i = 0; i < 600 && landed() < 20 && pipeline.running(); ++i)
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
        monitor = Child::spawn({TRAWL_BIN, "monitor", "--connect", "ipc://" + run_dir + "/monitor",
                                "--progress", "lines", "--interval", "0.5", "--timeout", "60"},
                               {}, dir / "monitor.out", dir / "monitor.err");
        attached_mid_job = pipeline.running() && landed() < kFiles - permanent.size();
      });
  const std::string summary = read_file(dir / "stdout");
  INFO("stdout:\n" << summary << "\nstderr:\n" << read_file(dir / "stderr"));
  CHECK(status == 1); // some failed
  CHECK(attached_mid_job);

  // The disk.
  const auto disk = files_in(out);
  std::uint64_t disk_bytes = 0;
  for (const auto& [name, f] : disk) disk_bytes += f.size;
  CHECK(disk.size() == kFiles - permanent.size());
  for (const auto& name : permanent) CHECK(disk.count(name) == 0);

  // The report.
  const auto report = json::parse(read_file(dir / "report.json"));
  CHECK(report["schema"] == 1);
  CHECK(report["complete"] == true);
  CHECK(report["exit_status"] == 1);
  CHECK(report["links"]["total"] == kFiles);
  CHECK(report["links"]["done"] == disk.size());
  CHECK(report["links"]["failed"] == permanent.size());
  CHECK(report["links"]["skipped"] == 0);
  CHECK(report["bytes"] == disk_bytes);
  CHECK(node_sum(report, "done") == disk.size());
  CHECK(node_sum(report, "bytes") == disk_bytes);
  CHECK(node_sum(report, "failed") == permanent.size());
  CHECK(report["nodes"].size() == 2);
  CHECK(report["latency_ms"]["count"] == disk.size());
  CHECK(report["latency_ms"]["p50"].get<std::uint32_t>() >= 120); // the fixture's delay
  CHECK(report["latency_ms"]["p99"] >= report["latency_ms"]["p50"]);
  REQUIRE(report["failures"].size() == 1);
  CHECK(report["failures"][0]["reason"] == "http-4xx");
  CHECK(report["failures"][0]["count"] == permanent.size());
  CHECK(failed_urls.count(report["failures"][0]["example_url"].get<std::string>()) == 1);
  CHECK(report["wall_s"].get<double>() > 0);
  CHECK_THAT(summary, Catch::Contains(std::to_string(kFiles) + " links: " + std::to_string(disk.size()) +
                                      " done, " + std::to_string(permanent.size()) + " failed"));
  CHECK_THAT(summary, Catch::Contains("latency     p50 "));
  CHECK_THAT(summary, Catch::Contains("first byte  p50 "));

  // The manifest: exactly one row per link, each done row matching its file.
  std::set<std::string> manifest_urls, manifest_failed;
  std::size_t rows = 0;
  for (const auto& line : lines_of(dir / "manifest.jsonl")) {
    ++rows;
    const auto row = json::parse(line);
    manifest_urls.insert(row["url"].get<std::string>());
    if (row["status"] == "done") {
      const auto name = fs::path(row["path"].get<std::string>()).filename().string();
      REQUIRE(disk.count(name) == 1);
      CHECK(row["bytes"] == disk.at(name).size);
      CHECK(row["sha256"] == disk.at(name).sha256);
      CHECK(row["http_code"] == 200);
      CHECK(row["ms"].is_number());
    } else {
      CHECK(row["status"] == "failed");
      CHECK(row["http_code"] == 404);
      CHECK(row["reason"] == "http-4xx");
      manifest_failed.insert(row["url"].get<std::string>());
    }
  }
  CHECK(rows == kFiles);
  CHECK(manifest_urls == list_urls);
  CHECK(manifest_failed == failed_urls);

  // The failed list: exactly the failed links.
  const auto failed_lines = lines_of(dir / "failed.txt");
  CHECK(failed_lines.size() == failed_urls.size());
  CHECK(std::set<std::string>(failed_lines.begin(), failed_lines.end()) == failed_urls);

  // The monitor saw the end and printed the same counts.
  REQUIRE(monitor);
  {
    auto mstatus = monitor->wait_for(std::chrono::seconds(30));
    // Scoped, as the second run's below: a hang of a later run leads its own failure message.
    INFO("monitor stdout:\n"
         << read_file(dir / "monitor.out") << "\nmonitor stderr:\n"
         << read_file(dir / "monitor.err"));
    REQUIRE(mstatus);
    CHECK(*mstatus == 1);
    CHECK_THAT(read_file(dir / "monitor.out"),
               Catch::Contains(std::to_string(kFiles) + " links: " + std::to_string(disk.size()) +
                               " done, " + std::to_string(permanent.size()) + " failed"));
    CHECK_THAT(read_file(dir / "monitor.err"), Catch::Contains(" done, "));
  }

  // The HTML report renders in a real browser, with every plot drawn.
  const std::string chromium = chromium_bin();
  if (chromium.empty()) {
    WARN("chromium is not installed (scripts/install-deps installs it): the HTML report was not rendered");
  } else {
    TempDir profile("trawl-e2e-chromium");
    const std::vector<std::string> common = {chromium, "--headless", "--no-sandbox", "--disable-gpu",
                                             "--disable-background-networking", "--disable-component-update",
                                             "--disable-sync", "--no-first-run", "--user-data-dir=" + profile.path()};
    auto dump_argv = common;
    dump_argv.insert(dump_argv.end(), {"--dump-dom", "file://" + (dir / "report.html")});
    auto dump = Child::spawn(dump_argv, {}, dir / "dom.html", dir / "chromium.err");
    auto dstatus = dump.wait_for(std::chrono::seconds(90));
    INFO("chromium stderr:\n" << read_file(dir / "chromium.err"));
    REQUIRE(dstatus);
    CHECK(*dstatus == 0);
    const std::string dom = read_file(dir / "dom.html");
    CHECK_THAT(dom, Catch::Contains("data-rendered=\"1\""));
    const auto throughput = svg_of(dom, "throughput");
    CHECK(std::regex_search(throughput, std::regex(R"(<path class="files" d="M[0-9.]+ [0-9.]+( L[0-9.]+ [0-9.]+)+)")));
    CHECK(count_of(svg_of(dom, "latency"), "<rect class=\"bar\"") >= 2);
    CHECK(count_of(svg_of(dom, "nodes"), "<rect class=\"bar\"") == 2);
    CHECK(count_of(svg_of(dom, "failures"), "<rect class=\"fail\"") == 1);
    CHECK_THAT(svg_of(dom, "failures"), Catch::Contains("http-4xx"));

    auto shot_argv = common;
    shot_argv.insert(shot_argv.end(), {"--screenshot=" + (dir / "report.png"), "--window-size=1000,1400",
                                       "file://" + (dir / "report.html")});
    auto shot = Child::spawn(shot_argv, {}, dir / "shot.out", dir / "shot.err");
    auto sstatus = shot.wait_for(std::chrono::seconds(90));
    REQUIRE(sstatus);
    CHECK(*sstatus == 0);
    REQUIRE(fs::exists(dir / "report.png"));
    CHECK(fs::file_size(dir / "report.png") > 10000); // a page of plots, not a blank image
  }

  // The same job again: done links are skipped, the 404s fail again; the CSV manifest still has
  // one row per link (the skipped ones from the ledger).
  TempDir again("trawl-e2e-report-again");
  const int status2 = run_pipeline(again, again / "run",
                                   {"--source", fixture.url() + "/list.txt", "--out", out, "--manifest",
                                    again / "manifest.csv", "--failed", again / "failed.txt", "--report",
                                    again / "report.json"});
  {
    INFO("second run stderr:\n" << read_file(again / "stderr"));
    CHECK(status2 == 1);
    const auto csv = lines_of(again / "manifest.csv");
    REQUIRE(!csv.empty());
    CHECK(csv[0] ==
          "id,url,path,node,status,http_code,bytes,sha256,attempts,ms,ttfb_ms,reason,error,meta");
    std::map<std::string, std::string>
        status_of; // url -> status (URLs hold no comma or quote here)
    for (std::size_t i = 1; i < csv.size(); ++i) {
      std::vector<std::string> cells;
      std::stringstream ss(csv[i]);
      for (std::string c; std::getline(ss, c, ',');) cells.push_back(c);
      REQUIRE(cells.size() >= 5);
      CHECK(status_of.emplace(cells[1], cells[4]).second); // no URL twice
    }
    CHECK(csv.size() - 1 == kFiles);
    std::size_t skipped = 0;
    for (const auto& [url, st] : status_of) {
      if (failed_urls.count(url)) CHECK(st == "failed");
      else {
        CHECK(st == "skipped");
        ++skipped;
      }
    }
    CHECK(skipped == disk.size());
    const auto report2 = json::parse(read_file(again / "report.json"));
    CHECK(report2["links"]["skipped"] == disk.size());
    CHECK(report2["files"]["manifest"]["ledger_rows"] == disk.size());
    const auto failed2 = lines_of(again / "failed.txt");
    CHECK(std::set<std::string>(failed2.begin(), failed2.end()) == failed_urls);
  }

  // The failed list goes back in as a source: only those links are tried.
  TempDir retry("trawl-e2e-report-retry");
  const int status3 = run_pipeline(retry, retry / "run",
                                   {"--source", dir / "failed.txt", "--out", retry / "out", "--report",
                                    retry / "report.json"});
  CHECK(status3 == 1);
  const auto report3 = json::parse(read_file(retry / "report.json"));
  CHECK(report3["links"]["total"] == failed_urls.size());
  CHECK(report3["links"]["failed"] == failed_urls.size());
}

TEST_CASE("a sink driven by hand: metrics endpoint values and JSON progress lines", "[e2e][report]") {
  TempDir dir("trawl-e2e-metrics");
  HandSink sink(dir, {"--metrics-port", "0", "--json-progress", "--interval", "0.2", "--report",
                      dir / "report.json"});
  REQUIRE(sink.ready().count("metrics"));
  const std::string metrics_url = sink.ready().at("metrics") + "/metrics";

  sink.send(trawl::testsupport::job_of(1, -1, 0, 0, 0, false));
  std::uint64_t bytes = 0, latency_ms_sum = 0;
  for (std::uint64_t id = 1; id <= 20; ++id) {
    trawl::proto::Result r;
    r.id = id;
    r.url = "http://127.0.0.1:1/" + std::to_string(id);
    r.node = id % 2 ? "odd" : "even";
    r.ms = static_cast<std::uint32_t>(id * 40);
    if (id <= 15) {
      r.status = trawl::proto::Status::done;
      r.bytes = 1000 * id;
      r.sha256 = std::string(64, 'c');
      r.http_code = 200;
      bytes += r.bytes;
      latency_ms_sum += r.ms;
    } else {
      r.status = trawl::proto::Status::failed;
      r.reason = id <= 17 ? trawl::proto::Reason::http_client : trawl::proto::Reason::timeout;
      r.http_code = id <= 17 ? 404 : 0;
    }
    sink.send(r);
  }
  sink.send(trawl::proto::Result{}); // id 0: dropped, not counted
  // The metrics follow within a moment (rendered every 250 ms).
  std::string text;
  for (int i = 0; i < 100; ++i) {
    text = http_get(metrics_url);
    if (text.find("\ntrawl_results_done_total 15\n") != std::string::npos &&
        text.find("reason=\"timeout\"} 3") != std::string::npos)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  INFO("metrics:\n" << text);
  CHECK_THAT(text, Catch::Contains("\ntrawl_results_done_total 15\n"));
  CHECK_THAT(text, Catch::Contains("\ntrawl_results_failed_total{reason=\"http-4xx\"} 2\n"));
  CHECK_THAT(text, Catch::Contains("\ntrawl_results_failed_total{reason=\"timeout\"} 3\n"));
  CHECK_THAT(text, Catch::Contains("\ntrawl_bytes_total " + std::to_string(bytes) + "\n"));
  CHECK_THAT(text, Catch::Contains("\ntrawl_transfer_duration_seconds_count 15\n"));
  CHECK_THAT(text, Catch::Contains("\ntrawl_transfer_duration_seconds_bucket{le=\"0.25\"} 6\n")); // 40..240 ms
  CHECK_THAT(text, Catch::Contains("\ntrawl_transfer_duration_seconds_bucket{le=\"+Inf\"} 15\n"));
  char sum[64];
  std::snprintf(sum, sizeof sum, "%.17g", static_cast<double>(latency_ms_sum) / 1000.0);
  CHECK_THAT(text, Catch::Contains("\ntrawl_transfer_duration_seconds_sum " + std::string(sum) + "\n"));
  CHECK_THAT(text, Catch::Contains("trawl_node_results_total{node=\"odd\",status=\"done\"} 8\n"));
  CHECK_THAT(text, Catch::Contains("\ntrawl_links_total -1\n"));
  CHECK_THAT(text, Catch::Contains("\ntrawl_job_complete 0\n"));

  std::this_thread::sleep_for(std::chrono::milliseconds(600)); // a few --interval 0.2 lines
  sink.send(trawl::testsupport::job_of(1, 20, 15, 5, 0, true));
  auto status = sink.wait_for(std::chrono::seconds(20));
  REQUIRE(status);
  CHECK(*status == 1);
  const auto lines = lines_of(dir / "stdout");
  INFO("stdout:\n" << read_file(dir / "stdout"));
  REQUIRE(lines.size() >= 2);
  std::size_t progress = 0;
  for (std::size_t i = 0; i + 1 < lines.size(); ++i) {
    const auto j = json::parse(lines[i]); // every line is one JSON object
    CHECK(j["event"] == "progress");
    CHECK(j.contains("files_per_s"));
    ++progress;
  }
  CHECK(progress >= 3); // every 0.2 s, and the last figures before the summary
  CHECK(json::parse(lines[lines.size() - 2])["done"] == 15);
  const auto last = json::parse(lines.back());
  CHECK(last["event"] == "summary");
  CHECK(last["links"]["done"] == 15);
  CHECK(last["links"]["failed"] == 5);
  CHECK(last["bytes"] == bytes);
  CHECK(json::parse(read_file(dir / "report.json"))["bytes"] == bytes);
  CHECK_THAT(read_file(dir / "stderr"), Catch::Contains("dropped a frame"));
}

TEST_CASE("quiet mode: --quiet prints no progress and no summary, the exit status and the report still tell", "[e2e][report]") {
  TempDir dir("trawl-e2e-quiet");
  // --progress lines and a short --interval ask for lines that --quiet must silence.
  HandSink sink(dir, {"--progress", "lines", "--interval", "0.1", "--quiet", "--report",
                      dir / "report.json", "--failed", dir / "failed.txt"});
  sink.send(trawl::testsupport::job_of(1, -1, 0, 0, 0, false));
  for (std::uint64_t id = 1; id <= 6; ++id) {
    trawl::proto::Result r;
    r.id = id;
    r.url = "http://127.0.0.1:1/q" + std::to_string(id);
    r.node = "n";
    r.ms = 10;
    if (id <= 5) {
      r.status = trawl::proto::Status::done;
      r.bytes = 100;
      r.sha256 = std::string(64, 'a');
      r.http_code = 200;
    } else {
      r.status = trawl::proto::Status::failed;
      r.reason = trawl::proto::Reason::http_client;
      r.http_code = 404;
    }
    sink.send(r);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500)); // five --interval periods
  sink.send(trawl::testsupport::job_of(1, 6, 5, 1, 0, true));
  auto status = sink.wait_for(std::chrono::seconds(20));
  REQUIRE(status);
  CHECK(*status == 1); // one link failed
  CHECK(read_file(dir / "stdout").empty());
  const std::string err = read_file(dir / "stderr");
  INFO("stderr:\n" << err);
  CHECK(err.find("files/s") == std::string::npos); // no progress line
  CHECK(err.find("done,") == std::string::npos);
  const auto report = json::parse(read_file(dir / "report.json"));
  CHECK(report["links"]["done"] == 5);
  CHECK(report["links"]["failed"] == 1);
  CHECK(report["bytes"] == 500);
  CHECK(read_file(dir / "failed.txt") == "http://127.0.0.1:1/q6\n");
}
