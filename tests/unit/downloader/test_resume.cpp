// Range resume: the header checks as pure functions, then whole downloads through run() against a
// scripted loopback server whose answers are written byte by byte (cut mid-body, 206 with the
// right or a wrong Content-Range, 200 instead of a range, 416). Each test checks the requests the
// downloader made (Range, If-Range), the bytes the server sent, and every byte of the file.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <cerrno>
#include <functional>
#include <mutex>
#include <poll.h>
#include <sys/socket.h>

#include "common/exit_codes.hpp"
#include "downloader/outcome.hpp"
#include "downloader/transfer.hpp"
#include "tests/unit/downloader/harness.hpp"

using namespace trawl::dltest;
using trawl::downloader::accepts_byte_ranges;
using trawl::downloader::ContentRange;
using trawl::downloader::if_range_validator;
using trawl::downloader::parse_content_range;
using trawl::downloader::range_continues;
using Clock = std::chrono::steady_clock;

TEST_CASE("resume: Content-Range parsing", "[downloader][resume]") {
  const auto r = parse_content_range("bytes 100-999/1000");
  REQUIRE(r);
  CHECK(r->first == 100);
  CHECK(r->last == 999);
  CHECK(r->total == 1000);
  const auto star = parse_content_range("  Bytes 5-9/* ");
  REQUIRE(star);
  CHECK(star->total == -1);
  CHECK(parse_content_range("bytes 0-0/1"));
  for (const char* bad : {"", "bytes", "bytes */1000", "bytes 10-5/1000", "bytes 0-1000/1000",
                          "items 0-9/10", "bytes -1-9/10", "bytes 0-9/", "bytes 0-9/10x",
                          "bytes 0 -9/10", "bytes 0-9/10, 20-29/100", "bytes 0-99999999999999999999/1",
                          "bytes=0-9/10"}) {
    INFO(bad);
    CHECK_FALSE(parse_content_range(bad));
  }
}

TEST_CASE("resume: Accept-Ranges, validators and continuity", "[downloader][resume]") {
  CHECK(accepts_byte_ranges("bytes"));
  CHECK(accepts_byte_ranges(" Bytes "));
  CHECK(accepts_byte_ranges("pages, bytes"));
  CHECK_FALSE(accepts_byte_ranges("none"));
  CHECK_FALSE(accepts_byte_ranges(""));
  CHECK_FALSE(accepts_byte_ranges("bytesx"));

  CHECK(if_range_validator("\"abc\"", "Tue, 01 Jan 2030 00:00:00 GMT") == "\"abc\"");
  CHECK(if_range_validator("W/\"abc\"", "Tue, 01 Jan 2030 00:00:00 GMT") ==
        "Tue, 01 Jan 2030 00:00:00 GMT"); // a weak tag is never sent in If-Range
  CHECK(if_range_validator("W/\"abc\"", "").empty());
  CHECK(if_range_validator("", "").empty());
  CHECK(if_range_validator("abc", "").empty()); // not a quoted tag

  CHECK(range_continues(ContentRange{100, 999, 1000}, 100, 1000));
  CHECK(range_continues(ContentRange{100, 999, 1000}, 100, -1));
  CHECK_FALSE(range_continues(ContentRange{0, 999, 1000}, 100, 1000));    // starts elsewhere
  CHECK_FALSE(range_continues(ContentRange{100, 499, 1000}, 100, 1000));  // stops short
  CHECK_FALSE(range_continues(ContentRange{100, 1099, 1100}, 100, 1000)); // another length
  CHECK_FALSE(range_continues(ContentRange{100, 999, -1}, 100, 1000));    // length unknown
}

namespace {

// The value of header `name` in a request head, "" when absent.
std::string header_of(const std::string& head, const std::string& name) {
  std::string lower_head = head, key = "\r\n" + name + ":";
  for (auto& c : lower_head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (auto& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const auto at = lower_head.find(key);
  if (at == std::string::npos) return {};
  const auto start = head.find_first_not_of(' ', at + key.size());
  const auto end = head.find("\r\n", start);
  return head.substr(start, end - start);
}

// A loopback HTTP server that answers one request per connection with `reply(n, head, fd)`, n
// counting requests from 0, then closes the connection; it records every request head and the
// body bytes sent through send_body(). A RawServer of at most 32 connections underneath.
class Scripted {
public:
  using Reply = std::function<void(int n, const std::string& head, Scripted& s, int fd)>;

  explicit Scripted(Reply r)
      : reply_(std::move(r)),
        server_([this](int fd, const std::atomic<bool>& quit) { serve(fd, quit); }, true, 32) {}

  std::string url(const std::string& path) const { return server_.url(path); }
  std::vector<std::string> heads() const {
    std::lock_guard lock(mu_);
    return heads_;
  }
  std::uint64_t body_bytes() const { return body_bytes_; }

  // Sends a response head: status line, the given header lines, Connection: close.
  static void send_head(int fd, const std::string& status, const std::string& headers) {
    send_all(fd, "HTTP/1.1 " + status + "\r\n" + headers + "Connection: close\r\n\r\n");
  }
  void send_body(int fd, std::string_view bytes) {
    if (send_all(fd, bytes)) body_bytes_ += bytes.size();
  }

private:
  void serve(int fd, const std::atomic<bool>& quit) {
    std::string head;
    if (!read_request_head(fd, head, quit)) return;
    int n = 0;
    {
      std::lock_guard lock(mu_);
      n = static_cast<int>(heads_.size());
      heads_.push_back(head);
    }
    reply_(n, head, *this, fd);
  }

  Reply reply_;
  std::atomic<std::uint64_t> body_bytes_{0};
  mutable std::mutex mu_;
  std::vector<std::string> heads_;
  RawServer server_; // last: stopped (its threads joined) before the members above go
};

// "bytes=N-" -> N; -1 when the head asks for no range (or another form).
long long range_start(const std::string& head) {
  const std::string v = header_of(head, "Range");
  if (v.rfind("bytes=", 0) != 0 || v.back() != '-') return -1;
  return std::stoll(v.substr(6, v.size() - 7));
}

std::string length_header(std::size_t n) { return "Content-Length: " + std::to_string(n) + "\r\n"; }

trawl::downloader::DownloadOptions options(const fs::path& out, int retries = 3) {
  trawl::downloader::DownloadOptions o;
  o.out = out.string();
  o.retries = retries;
  o.grace = 1000ms;
  o.low_speed_time_s = 2;
  return o;
}

// One task through run(); returns its result.
Result download(const fs::path& out, const std::string& url, int retries = 3) {
  Harness h(options(out, retries));
  h.send(Task{1, url, "file.bin", 1});
  auto results = h.collect(1, 20s);
  REQUIRE(results.size() == 1);
  CHECK(h.stop() == trawl::kExitOk);
  CHECK(part_files(out).empty());
  return results[1];
}

void check_file(const Result& r, const fs::path& out, const std::string& body, std::uint32_t attempt,
                std::uint32_t http_code) {
  INFO(trawl::proto::reason_name(r.reason) << " " << r.detail);
  REQUIRE(r.status == Status::done);
  CHECK(r.attempt == attempt);
  CHECK(r.http_code == http_code);
  CHECK(r.bytes == body.size());
  CHECK(r.sha256 == sha256_hex(body));
  CHECK(read_file(out / "file.bin") == body);
}

} // namespace

TEST_CASE("resume: a body cut mid-way is continued with Range and If-Range", "[downloader][resume]") {
  TempDir tmp;
  const std::string body = pattern_body(300000, 21);
  const char* validator = GENERATE("ETag: \"v1\"\r\n", "Last-Modified: Tue, 01 Jan 2030 00:00:00 GMT\r\n",
                                   "ETag: W/\"weak\"\r\n");
  INFO(validator);
  Scripted srv([&](int n, const std::string& head, Scripted& s, int fd) {
    const long long from = range_start(head);
    if (n == 0 || from < 0) {
      Scripted::send_head(fd, "200 OK", length_header(body.size()) + "Accept-Ranges: bytes\r\n" + validator);
      s.send_body(fd, std::string_view(body).substr(0, 100000)); // then the connection closes
      return;
    }
    const auto at = static_cast<std::size_t>(from);
    Scripted::send_head(fd, "206 Partial Content",
                        length_header(body.size() - at) + "Content-Range: bytes " + std::to_string(at) +
                            "-" + std::to_string(body.size() - 1) + "/" + std::to_string(body.size()) +
                            "\r\n" + validator);
    s.send_body(fd, std::string_view(body).substr(at));
  });
  const Result r = download(tmp.path, srv.url("/f"));
  check_file(r, tmp.path, body, 2, 206);
  const auto heads = srv.heads();
  REQUIRE(heads.size() == 2);
  CHECK(header_of(heads[0], "Range").empty());
  CHECK(header_of(heads[1], "Range") == "bytes=100000-");
  const std::string strong = if_range_validator(
      header_of(std::string("\r\n") + validator, "ETag"), header_of(std::string("\r\n") + validator, "Last-Modified"));
  CHECK(header_of(heads[1], "If-Range") == strong); // weak tag: no If-Range, the length guards
  CHECK(srv.body_bytes() == body.size());           // nothing fetched twice
}

TEST_CASE("resume: a body cut again and again is assembled from consecutive ranges",
          "[downloader][resume]") {
  TempDir tmp;
  const std::string body = pattern_body(256 * 1024, 22);
  constexpr std::size_t kSlice = 80 * 1024; // every answer stops after this much
  Scripted srv([&](int, const std::string& head, Scripted& s, int fd) {
    const long long from = range_start(head);
    const auto at = static_cast<std::size_t>(std::max(from, 0LL));
    if (from < 0) {
      Scripted::send_head(fd, "200 OK", length_header(body.size()) + "Accept-Ranges: bytes\r\nETag: \"x\"\r\n");
    } else {
      Scripted::send_head(fd, "206 Partial Content",
                          length_header(body.size() - at) + "Content-Range: bytes " + std::to_string(at) +
                              "-" + std::to_string(body.size() - 1) + "/" + std::to_string(body.size()) +
                              "\r\nETag: \"x\"\r\n");
    }
    s.send_body(fd, std::string_view(body).substr(at, kSlice));
  });
  const Result r = download(tmp.path, srv.url("/f"), 4);
  check_file(r, tmp.path, body, 4, 206);
  const auto heads = srv.heads();
  REQUIRE(heads.size() == 4);
  for (std::size_t i = 1; i < heads.size(); ++i)
    CHECK(header_of(heads[i], "Range") == "bytes=" + std::to_string(i * kSlice) + "-");
  CHECK(srv.body_bytes() == body.size());
}

TEST_CASE("resume: the next task on the same handle asks for its whole body, with the -H lines",
          "[downloader][resume]") {
  // One transfer slot, so task 2 runs on the handle whose last request was task 1's range.
  TempDir tmp;
  const std::string a = pattern_body(300000, 23);
  const std::string b = pattern_body(5000, 24);
  Scripted srv([&](int, const std::string& head, Scripted& s, int fd) {
    if (head.rfind("GET /b ", 0) == 0) {
      Scripted::send_head(fd, "200 OK", length_header(b.size()));
      s.send_body(fd, b);
      return;
    }
    const long long from = range_start(head);
    if (from < 0) { // the whole of /a, cut after 100,000 bytes
      Scripted::send_head(fd, "200 OK",
                          length_header(a.size()) + "Accept-Ranges: bytes\r\nETag: \"v1\"\r\n");
      s.send_body(fd, std::string_view(a).substr(0, 100000));
      return;
    }
    const auto at = static_cast<std::size_t>(from);
    Scripted::send_head(fd, "206 Partial Content",
                        length_header(a.size() - at) + "Content-Range: bytes " +
                            std::to_string(at) + "-" + std::to_string(a.size() - 1) + "/" +
                            std::to_string(a.size()) + "\r\nETag: \"v1\"\r\n");
    s.send_body(fd, std::string_view(a).substr(at));
  });
  auto o = options(tmp.path);
  o.concurrency = 1;
  o.headers = {"X-Trawl-Test: yes"};
  Harness h(o);
  h.send(Task{1, srv.url("/a"), "a.bin", 1});
  auto first = h.collect(1, 20s);
  REQUIRE(first.size() == 1);
  CHECK(first[1].status == Status::done);
  h.send(Task{2, srv.url("/b"), "b.bin", 1});
  auto second = h.collect(1, 20s);
  REQUIRE(second.size() == 1);
  CHECK(h.stop() == trawl::kExitOk);
  CHECK(second[2].status == Status::done);
  CHECK(second[2].http_code == 200);
  CHECK(read_file(tmp.path / "a.bin") == a);
  CHECK(read_file(tmp.path / "b.bin") == b);
  const auto heads = srv.heads();
  REQUIRE(heads.size() == 3);
  CHECK(header_of(heads[1], "Range") == "bytes=100000-");
  CHECK(header_of(heads[1], "If-Range") == "\"v1\"");
  CHECK(heads[2].rfind("GET /b ", 0) == 0);
  CHECK(header_of(heads[2], "Range").empty());
  CHECK(header_of(heads[2], "If-Range").empty());
  for (const auto& head : heads) CHECK(header_of(head, "X-Trawl-Test") == "yes");
}

TEST_CASE("resume: with --digest none a cut body is continued too, and its result has no digest",
          "[downloader][resume]") {
  TempDir tmp;
  const std::string body = pattern_body(256 * 1024, 23);
  constexpr std::size_t kSlice = 100 * 1024;
  Scripted srv([&](int, const std::string& head, Scripted& s, int fd) {
    const long long from = range_start(head);
    const auto at = static_cast<std::size_t>(std::max(from, 0LL));
    if (from < 0) {
      Scripted::send_head(fd, "200 OK",
                          length_header(body.size()) + "Accept-Ranges: bytes\r\nETag: \"d\"\r\n");
    } else {
      Scripted::send_head(fd, "206 Partial Content",
                          length_header(body.size() - at) + "Content-Range: bytes " +
                              std::to_string(at) + "-" + std::to_string(body.size() - 1) + "/" +
                              std::to_string(body.size()) + "\r\nETag: \"d\"\r\n");
    }
    s.send_body(fd, std::string_view(body).substr(at, kSlice));
  });
  auto o = options(tmp.path, 4);
  o.digest = "none";
  Harness h(o);
  h.send(Task{1, srv.url("/f"), "file.bin", 1});
  auto results = h.collect(1, 20s);
  REQUIRE(results.size() == 1);
  CHECK(h.stop() == trawl::kExitOk);
  CHECK(part_files(tmp.path).empty());
  const Result& r = results[1];
  INFO(trawl::proto::reason_name(r.reason) << " " << r.detail);
  REQUIRE(r.status == Status::done);
  CHECK(r.sha256.empty());
  CHECK(r.attempt == 3);
  CHECK(r.http_code == 206);
  CHECK(r.bytes == body.size());
  CHECK(read_file(tmp.path / "file.bin") == body);
  const auto heads = srv.heads();
  REQUIRE(heads.size() == 3);
  CHECK(header_of(heads[1], "Range") == "bytes=102400-");
  CHECK(header_of(heads[2], "Range") == "bytes=204800-");
  CHECK(srv.body_bytes() == body.size()); // nothing fetched twice
}

TEST_CASE("resume: whatever the server answers to the range, the file is the right one",
          "[downloader][resume]") {
  TempDir tmp;
  const std::string body = pattern_body(200000, 23);
  const std::string changed = pattern_body(150000, 24);
  const std::string first_head = length_header(body.size()) + "Accept-Ranges: bytes\r\nETag: \"v1\"\r\n";
  auto cut_first = [&](Scripted& s, int fd) {
    Scripted::send_head(fd, "200 OK", first_head);
    s.send_body(fd, std::string_view(body).substr(0, 50000));
  };

  SECTION("the range is ignored: a 200 with the whole body starts the file over") {
    Scripted srv([&](int n, const std::string&, Scripted& s, int fd) {
      if (n == 0) return cut_first(s, fd);
      Scripted::send_head(fd, "200 OK", length_header(body.size()));
      s.send_body(fd, body);
    });
    check_file(download(tmp.path, srv.url("/f")), tmp.path, body, 2, 200);
    REQUIRE(srv.heads().size() == 2);
    CHECK(header_of(srv.heads()[1], "Range") == "bytes=50000-");
  }
  SECTION("the resource changed (If-Range does not match): the new body, whole") {
    Scripted srv([&](int n, const std::string& head, Scripted& s, int fd) {
      if (n == 0) return cut_first(s, fd);
      CHECK(header_of(head, "If-Range") == "\"v1\"");
      Scripted::send_head(fd, "200 OK", length_header(changed.size()) + "ETag: \"v2\"\r\n");
      s.send_body(fd, changed);
    });
    check_file(download(tmp.path, srv.url("/f")), tmp.path, changed, 2, 200);
  }
  SECTION("416: the same attempt starts over without a range") {
    Scripted srv([&](int n, const std::string&, Scripted& s, int fd) {
      if (n == 0) return cut_first(s, fd);
      if (n == 1) {
        Scripted::send_head(fd, "416 Range Not Satisfiable", "Content-Range: bytes */1\r\nContent-Length: 0\r\n");
        return;
      }
      Scripted::send_head(fd, "200 OK", length_header(body.size()));
      s.send_body(fd, body);
    });
    check_file(download(tmp.path, srv.url("/f")), tmp.path, body, 2, 200);
    const auto heads = srv.heads();
    REQUIRE(heads.size() == 3);
    CHECK(header_of(heads[1], "Range") == "bytes=50000-");
    CHECK(header_of(heads[2], "Range").empty());
  }
  SECTION("a 206 that does not continue the kept bytes is refused; the file starts over") {
    const std::string wrong = GENERATE(std::string("bytes 0-199999/200000"),   // from the start
                                       std::string("bytes 50000-99999/200000"), // not to the end
                                       std::string("bytes 50000-209999/210000"), // another length
                                       std::string("bytes 50000-199999/*"), std::string("nonsense"));
    INFO(wrong);
    Scripted srv([&](int n, const std::string&, Scripted& s, int fd) {
      if (n == 0) return cut_first(s, fd);
      if (n == 1) {
        Scripted::send_head(fd, "206 Partial Content", length_header(1000) + "Content-Range: " + wrong + "\r\n");
        s.send_body(fd, std::string(1000, 'X'));
        return;
      }
      Scripted::send_head(fd, "200 OK", length_header(body.size()));
      s.send_body(fd, body);
    });
    check_file(download(tmp.path, srv.url("/f")), tmp.path, body, 2, 200);
    REQUIRE(srv.heads().size() == 3);
    CHECK(header_of(srv.heads()[2], "Range").empty());
  }
  SECTION("a 206 with another ETag is refused") {
    Scripted srv([&](int n, const std::string&, Scripted& s, int fd) {
      if (n == 0) return cut_first(s, fd);
      if (n == 1) {
        Scripted::send_head(fd, "206 Partial Content",
                            length_header(150000) + "Content-Range: bytes 50000-199999/200000\r\nETag: \"v9\"\r\n");
        s.send_body(fd, std::string_view(changed).substr(0, 150000));
        return;
      }
      Scripted::send_head(fd, "200 OK", length_header(body.size()));
      s.send_body(fd, body);
    });
    check_file(download(tmp.path, srv.url("/f")), tmp.path, body, 2, 200);
    CHECK(srv.heads().size() == 3);
  }
  SECTION("a 206 whose Content-Length stops short of the range: truncated, then continued") {
    Scripted srv([&](int n, const std::string& head, Scripted& s, int fd) {
      if (n == 0) return cut_first(s, fd);
      const auto at = static_cast<std::size_t>(range_start(head));
      REQUIRE(at > 0);
      // Announces (and sends) 10000 bytes of a range that claims to reach the end.
      Scripted::send_head(fd, "206 Partial Content",
                          length_header(10000) + "Content-Range: bytes " + std::to_string(at) +
                              "-199999/200000\r\n");
      s.send_body(fd, std::string_view(body).substr(at, 10000));
    });
    Harness h(options(tmp.path, 2));
    h.send(Task{1, srv.url("/f"), "file.bin", 1});
    auto results = h.collect(1, 20s);
    REQUIRE(results.size() == 1);
    CHECK(results[1].status == Status::failed);
    CHECK(results[1].reason == Reason::truncated);
    CHECK(results[1].attempt == 3);
    CHECK_FALSE(fs::exists(tmp.path / "file.bin"));
    const auto heads = srv.heads();
    REQUIRE(heads.size() == 3);
    CHECK(header_of(heads[1], "Range") == "bytes=50000-");
    CHECK(header_of(heads[2], "Range") == "bytes=60000-"); // the 10000 bytes were kept
    CHECK(h.stop() == trawl::kExitOk);
    CHECK(part_files(tmp.path).empty()); // the last attempt's bytes are not left behind
  }
}

TEST_CASE("resume: no Range without Accept-Ranges, nor without a length or validator, no 206 "
          "unasked",
          "[downloader][resume]") {
  TempDir tmp;
  const std::string body = pattern_body(120000, 25);
  const std::string first = GENERATE(std::string("Content-Length: 120000\r\n"),
                                     std::string("Content-Length: 120000\r\nAccept-Ranges: none\r\n"),
                                     std::string("Transfer-Encoding: chunked\r\nAccept-Ranges: bytes\r\n"));
  INFO(first);
  Scripted srv([&](int n, const std::string&, Scripted& s, int fd) {
    if (n == 0) {
      Scripted::send_head(fd, "200 OK", first);
      if (first.find("chunked") != std::string::npos) {
        s.send_body(fd, "8000\r\n" + body.substr(0, 0x8000) + "\r\n"); // then cut
      } else {
        s.send_body(fd, std::string_view(body).substr(0, 60000));
      }
      return;
    }
    Scripted::send_head(fd, "200 OK", length_header(body.size()));
    s.send_body(fd, body);
  });
  check_file(download(tmp.path, srv.url("/f")), tmp.path, body, 2, 200);
  REQUIRE(srv.heads().size() == 2);
  CHECK(header_of(srv.heads()[1], "Range").empty());
}

TEST_CASE("resume: a 206 to a request for the whole body is never a complete file",
          "[downloader][resume]") {
  TempDir tmp;
  Scripted srv([&](int, const std::string&, Scripted& s, int fd) {
    Scripted::send_head(fd, "206 Partial Content", "Content-Length: 10\r\nContent-Range: bytes 0-9/100\r\n");
    s.send_body(fd, "0123456789");
  });
  const Result r = download(tmp.path, srv.url("/f"), 0);
  CHECK(r.status == Status::failed);
  CHECK(r.reason == Reason::other);
  CHECK_FALSE(fs::exists(tmp.path / "file.bin"));
}

TEST_CASE("resume: a kept part file is removed when the job stops before its retry",
          "[downloader][resume]") {
  TempDir tmp;
  const std::string body = pattern_body(100000, 26);
  // First answer: cut mid-body (kept), second: 503 with Retry-After 30, so the task waits.
  std::atomic<int> n_seen{0};
  Scripted cut([&](int n, const std::string&, Scripted& s, int fd) {
    ++n_seen;
    if (n == 0) {
      Scripted::send_head(fd, "200 OK", length_header(body.size()) + "Accept-Ranges: bytes\r\n");
      s.send_body(fd, std::string_view(body).substr(0, 40000));
      return;
    }
    Scripted::send_head(fd, "503 Busy", "Retry-After: 30\r\nContent-Length: 0\r\n");
  });
  Harness h(options(tmp.path, 3));
  h.send(Task{1, cut.url("/f"), "file.bin", 1});
  const auto deadline = Clock::now() + 10s;
  while (n_seen < 2 && Clock::now() < deadline) std::this_thread::sleep_for(10ms);
  REQUIRE(n_seen == 2);
  std::this_thread::sleep_for(100ms);
  CHECK(body_part_files(tmp.path).size() == 1); // kept across the 503, for the next attempt
  CHECK(header_of(cut.heads()[1], "Range") == "bytes=40000-");
  CHECK(h.stop() == trawl::kExitInterrupted);
  auto results = h.collect(1, 5s);
  REQUIRE(results.size() == 1);
  CHECK(results[1].reason == Reason::aborted);
  CHECK(part_files(tmp.path).empty());
}

TEST_CASE("resume: a part file that changed on disk is not continued", "[downloader][resume]") {
  // Transfer level: a Partial whose file no longer holds its bytes starts afresh, no Range.
  TempDir tmp;
  const std::string body = pattern_body(5000, 27);
  Scripted srv([&](int, const std::string&, Scripted& s, int fd) {
    Scripted::send_head(fd, "200 OK", length_header(body.size()));
    s.send_body(fd, body);
  });
  trawl::downloader::curl_global_once();
  const std::string part = (tmp.path / ".trawl-old.part").string();
  std::ofstream(part) << "only nine";
  trawl::downloader::Partial p;
  p.file = std::make_shared<trawl::downloader::PartFile>(part);
  p.bytes = 4000; // the file has 9
  p.total = 5000;
  p.digest.reset(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  REQUIRE(EVP_DigestInit_ex(p.digest.get(), EVP_sha256(), nullptr) == 1);

  trawl::downloader::Transfer t(EVP_sha256());
  trawl::downloader::TransferSettings s;
  REQUIRE(t.begin(Task{1, srv.url("/f"), "file.bin", 1}, 2, s, (tmp.path / ".trawl-new.part").string(),
                  std::move(p))
              .empty());
  CHECK_FALSE(fs::exists(part)); // given up and removed
  const CURLcode code = curl_easy_perform(t.easy().get());
  const auto f = t.finish(code, (tmp.path / "file.bin").string());
  CHECK(f.reason == Reason::none);
  CHECK(f.resumed_from == 0);
  CHECK(f.sha256 == sha256_hex(body));
  CHECK(read_file(tmp.path / "file.bin") == body);
  REQUIRE(srv.heads().size() == 1);
  CHECK(header_of(srv.heads()[0], "Range").empty());
  CHECK(part_files(tmp.path).empty());
}
