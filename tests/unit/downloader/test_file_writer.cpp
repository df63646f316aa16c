// The file thread (FileWriter) alone, and a transfer that hands its body to it: jobs run in the
// order given, submit() waits for room instead of dropping anything, and a body written in
// chunks on the other thread lands byte for byte with the same SHA-256; a write that fails there
// fails the transfer with the reason the event loop would have given.
#include <catch2/catch.hpp>

#include <condition_variable>
#include <fcntl.h>
#include <mutex>
#include <sched.h>
#include <set>
#include <thread>
#include <unistd.h>

#include "downloader/file_writer.hpp"
#include "downloader/transfer.hpp"
#include "tests/unit/downloader/harness.hpp"

using namespace trawl::dltest;
using trawl::downloader::FileWriter;
using trawl::downloader::Finished;
using trawl::downloader::TempFile;
using trawl::downloader::Transfer;
using Clock = std::chrono::steady_clock;

namespace {

// One attempt the way the downloader runs it with a file thread: the transfer on this thread,
// its ending on the writer's, after its chunks.
Finished fetch_with_writer(Transfer& t, FileWriter& w, const std::string& final_path) {
  const CURLcode code = curl_easy_perform(t.easy().get());
  t.prepare_finish(code);
  Finished f;
  std::thread::id ran_on;
  w.submit([&] {
    ran_on = std::this_thread::get_id();
    f = t.finish_prepared(final_path, AT_FDCWD, final_path, false);
  });
  w.drain();
  CHECK(ran_on != std::this_thread::get_id());
  return f;
}

} // namespace

TEST_CASE("file writer: jobs run in the order given, on one other thread, and drain() waits for "
          "them",
          "[downloader][filewriter]") {
  FileWriter w;
  std::vector<int> order;
  std::set<std::thread::id> threads;
  for (int i = 0; i < 200; ++i)
    w.submit([&, i] {
      order.push_back(i);
      threads.insert(std::this_thread::get_id());
    });
  w.drain();
  REQUIRE(order.size() == 200);
  for (int i = 0; i < 200; ++i) CHECK(order[static_cast<std::size_t>(i)] == i);
  CHECK(threads.size() == 1);
  CHECK(threads.count(std::this_thread::get_id()) == 0);
  CHECK(w.stats().jobs == 200);
}

TEST_CASE("file writer: its thread runs as SCHED_BATCH, so that a job does not preempt the "
          "submitter",
          "[downloader][filewriter]") {
  const int submitter = sched_getscheduler(0);
  FileWriter w;
  int policy = -1;
  w.submit([&] { policy = sched_getscheduler(0); });
  w.drain();
  CHECK(policy == SCHED_BATCH);
  CHECK(sched_getscheduler(0) == submitter); // the submitter's own policy is left alone
}

TEST_CASE("file writer: over its byte budget, submit() waits for room, and nothing is dropped",
          "[downloader][filewriter]") {
  FileWriter w(100); // bytes
  std::mutex m;
  std::condition_variable cv;
  bool open = false;
  std::vector<int> order;
  // The first job holds the thread until the gate opens; 60 + 60 bytes exceed the budget.
  w.submit(
      [&] {
        std::unique_lock lock(m);
        cv.wait_for(lock, 10s, [&] { return open; });
        order.push_back(1);
      },
      60);
  std::thread opener([&] {
    std::this_thread::sleep_for(100ms);
    std::lock_guard lock(m);
    open = true;
    cv.notify_all();
  });
  const auto t0 = Clock::now();
  w.submit([&] { order.push_back(2); }, 60); // waits for the first to finish
  const auto waited = Clock::now() - t0;
  w.submit([&] { order.push_back(3); }, 500); // larger than the budget: goes alone
  w.drain();
  opener.join();
  CHECK(order == std::vector<int>{1, 2, 3});
  CHECK(w.stats().waits >= 1);
  CHECK(waited >= 50ms);
  CHECK(w.stats().max_queued <= 500);
}

TEST_CASE("file writer: buffers come back for reuse, with their room", "[downloader][filewriter]") {
  FileWriter w;
  std::vector<char> b = w.buffer();
  CHECK(b.empty());
  CHECK(b.capacity() >= FileWriter::kChunk);
  b.assign(1000, 'x');
  const char* data = b.data();
  w.recycle(std::move(b));
  std::vector<char> again = w.buffer();
  CHECK(again.empty());
  CHECK(again.data() == data); // the same allocation
  std::vector<char> small(10);
  w.recycle(std::move(small)); // too small to be worth keeping: not handed out
  CHECK(w.buffer().capacity() >= FileWriter::kChunk);
}

TEST_CASE("file writer: a transfer's body in chunks on the file thread lands whole, with its "
          "SHA-256, for sizes around the chunk",
          "[downloader][filewriter]") {
  TempDir tmp;
  Server server;
  const std::vector<std::size_t> sizes = {0,
                                          1,
                                          1000,
                                          FileWriter::kChunk - 1,
                                          FileWriter::kChunk,
                                          FileWriter::kChunk + 1,
                                          3 * FileWriter::kChunk + 12345};
  std::vector<std::string> bodies;
  for (std::size_t i = 0; i < sizes.size(); ++i) bodies.push_back(pattern_body(sizes[i], 11 + i));
  server.svr().Get(R"(/f/(\d+))", [&](const httplib::Request& req, httplib::Response& res) {
    res.set_content(bodies.at(std::stoul(req.matches[1])), "application/octet-stream");
  });
  server.start();
  trawl::downloader::curl_global_once();
  FileWriter w;
  Transfer t(EVP_sha256());
  t.set_writer(&w);
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    INFO("body of " << sizes[i] << " bytes");
    const std::string name = "f" + std::to_string(i) + ".bin";
    REQUIRE(t.begin(Task{i + 1, server.url("/f/" + std::to_string(i)), name, 1}, 1,
                    transfer_settings(),
                    (tmp.path / (".trawl-t" + std::to_string(i) + ".part")).string())
                .empty());
    const Finished f = fetch_with_writer(t, w, (tmp.path / name).string());
    CHECK(f.reason == Reason::none);
    CHECK(f.bytes == sizes[i]);
    CHECK(f.sha256 == sha256_hex(bodies[i]));
    CHECK(read_file(tmp.path / name) == bodies[i]);
  }
  CHECK(part_files(tmp.path).empty());
}

TEST_CASE("file writer: a body announced small is written as it comes, a larger or unannounced "
          "one in chunks",
          "[downloader][filewriter]") {
  TempDir tmp;
  Server server;
  const std::size_t small = Transfer::kWriteAsItComes;
  const std::string small_body = pattern_body(small, 3);
  const std::string large_body = pattern_body(small + 1, 4);
  const std::string unannounced_body = pattern_body(1000, 5);
  for (const auto& [path, body] : {std::pair{"/small", &small_body}, {"/large", &large_body}})
    server.svr().Get(path, [body](const httplib::Request&, httplib::Response& res) {
      res.set_content(*body, "application/octet-stream"); // with a Content-Length
    });
  server.svr().Get("/unannounced", [&](const httplib::Request&, httplib::Response& res) {
    res.set_chunked_content_provider(
        "application/octet-stream", [&](std::size_t offset, httplib::DataSink& sink) {
          if (offset >= unannounced_body.size()) {
            sink.done();
            return true;
          }
          const auto n = std::min<std::size_t>(8192, unannounced_body.size() - offset);
          return sink.write(unannounced_body.data() + offset, n);
        });
  });
  server.start();
  trawl::downloader::curl_global_once();
  struct Case {
    const char* path;
    const std::string& body;
    bool as_it_comes;
  };
  for (const Case& c : {Case{"/small", small_body, true}, Case{"/large", large_body, false},
                        Case{"/unannounced", unannounced_body, false}}) {
    INFO(c.path);
    FileWriter w;
    Transfer t(EVP_sha256());
    t.set_writer(&w);
    const std::string part = (tmp.path / ".trawl-t.part").string();
    REQUIRE(t.begin(Task{1, server.url(c.path), "f.bin", 1}, 1, transfer_settings(), part).empty());
    const CURLcode code = curl_easy_perform(t.easy().get());
    REQUIRE(code == CURLE_OK);
    w.drain(); // chunks handed over are in the file now; what is in hand is not
    if (c.as_it_comes) {
      CHECK(t.unwritten() == 0);
      CHECK(t.nothing_handed_over());
      CHECK(fs::file_size(part) == c.body.size()); // in the file before the ending
    } else {
      CHECK(t.unwritten() > 0); // the last chunk, or the whole body, still in hand
      CHECK(fs::file_size(part) + t.unwritten() == c.body.size());
    }
    t.prepare_finish(code);
    const std::string final_path = (tmp.path / "f.bin").string();
    const Finished f = t.finish_prepared(final_path, AT_FDCWD, final_path, false);
    CHECK(f.reason == Reason::none);
    CHECK(f.sha256 == sha256_hex(c.body));
    CHECK(read_file(final_path) == c.body);
    fs::remove(final_path);
  }
}

TEST_CASE("file writer: a write that fails on the file thread fails the transfer as disk, with "
          "the error, and leaves no file",
          "[downloader][filewriter]") {
  TempDir tmp;
  Server server;
  const std::string body = pattern_body(2 * FileWriter::kChunk + 100, 5);
  serve_body(server, "/f", body);
  trawl::downloader::curl_global_once();
  for (const bool with_writer : {true, false}) {
    INFO((with_writer ? "with" : "without") << " a file thread");
    // /dev/full as the body's file: every write fails with ENOSPC.
    const int fd = ::open("/dev/full", O_WRONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    const std::string never = (tmp.path / ".trawl-never.part").string(); // not created
    FileWriter w;
    Transfer t(EVP_sha256());
    t.set_writer(with_writer ? &w : nullptr);
    REQUIRE(t.begin(Task{1, server.url("/f"), "f.bin", 1}, 1, transfer_settings(), "", std::nullopt,
                    TempFile(fd, never))
                .empty());
    const std::string final_path = (tmp.path / "f.bin").string();
    const Finished f = with_writer ? fetch_with_writer(t, w, final_path)
                                   : t.finish(curl_easy_perform(t.easy().get()), final_path);
    CHECK(f.reason == Reason::disk);
    CHECK_THAT(f.detail, Catch::Contains("No space left on device"));
    CHECK(f.sha256.empty());
    CHECK_FALSE(fs::exists(final_path));
  }
}
