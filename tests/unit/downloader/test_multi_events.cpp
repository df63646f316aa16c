// MultiEvents, the epoll set that drives the downloader's curl multi handle one ready socket at a
// time: transfers run to the last byte through it, libcurl's timer starts new ones, the wake-up
// descriptor ends a wait from another thread, the task descriptor counts only while watched, and
// handles removed after it is gone do not call back into it.
#include <catch2/catch.hpp>

#include <array>
#include <sys/eventfd.h>
#include <thread>
#include <unistd.h>

#include "downloader/address_policy.hpp"
#include "downloader/curl_handles.hpp"
#include "downloader/multi_events.hpp"
#include "downloader/socket_book.hpp"
#include "tests/unit/downloader/harness.hpp"

using namespace trawl::dltest;
using trawl::downloader::CurlEasy;
using trawl::downloader::CurlMulti;
using trawl::downloader::MultiEvents;
using trawl::downloader::SocketBook;
using trawl::downloader::SocketGate;
using Clock = std::chrono::steady_clock;

namespace {

std::size_t append(char* data, std::size_t size, std::size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

struct Fetch {
  CurlEasy easy;
  std::string body;
  SocketGate gate;
  // With a book, its sockets are opened and closed through it, as the downloader's transfers do.
  explicit Fetch(const std::string& url, SocketBook* book = nullptr) {
    easy.set_str(CURLOPT_URL, url.c_str());
    easy.set_write_fn(CURLOPT_WRITEFUNCTION, &append);
    easy.set_ptr(CURLOPT_WRITEDATA, &body);
    if (book != nullptr) {
      gate.book = book;
      easy.set_opensocket_fn(&trawl::downloader::open_gated_socket);
      easy.set_ptr(CURLOPT_OPENSOCKETDATA, &gate);
      easy.set_closesocket_fn(&trawl::downloader::close_booked_socket);
      easy.set_ptr(CURLOPT_CLOSESOCKETDATA, book);
    }
  }
};

// The descriptors the book has with all of `flags`.
std::vector<int> booked(const SocketBook& book, std::uint8_t flags) {
  std::vector<int> fds;
  for (int fd = 0; fd < 4096; ++fd)
    if ((book.flags(fd) & flags) == flags) fds.push_back(fd);
  return fds;
}

// Turns of the downloader's loop, bounded: wait, hand over the ready sockets, run the due
// timers, collect what ended. Returns the endings (easy handle, code) and counts socket events.
std::vector<std::pair<CURL*, CURLcode>> drive(CurlMulti& multi, MultiEvents& ev, std::size_t want,
                                              std::size_t& socket_events) {
  std::vector<std::pair<CURL*, CURLcode>> ended;
  std::array<MultiEvents::Ready, 4> ready{}; // fewer than the sockets: several turns per round
  const auto deadline = Clock::now() + 10s;
  while (ended.size() < want && Clock::now() < deadline) {
    const std::size_t n = ev.wait(100, ready);
    for (std::size_t i = 0; i < n; ++i) {
      if (ready[i].kind != MultiEvents::Kind::curl_socket) continue;
      ++socket_events;
      ev.socket_action(ready[i].fd, ready[i].curl_bits);
    }
    ev.run_due_timers();
    int queued = 0;
    while (CURLMsg* m = curl_multi_info_read(multi.get(), &queued))
      if (m->msg == CURLMSG_DONE) ended.emplace_back(m->easy_handle, m->data.result);
  }
  return ended;
}

} // namespace

TEST_CASE("multi events: transfers run through the epoll set to the last byte",
          "[downloader][events]") {
  const std::string small = pattern_body(1000, 1);
  const std::string big = pattern_body(700 * 1024, 2);
  const std::string empty;
  Server server;
  serve_bodies(server, {{"/small", &small}, {"/big", &big}, {"/empty", &empty}});

  CurlMulti multi;
  MultiEvents ev(multi.get(), -1);
  std::vector<std::unique_ptr<Fetch>> fetches;
  for (const char* path : {"/small", "/big", "/empty", "/small", "/big", "/big"})
    fetches.push_back(std::make_unique<Fetch>(server.url(path)));
  for (auto& f : fetches) multi.add(f->easy);
  // libcurl asks to be called at once for new handles: nothing starts without the timer.
  CHECK(ev.timer_due());

  std::size_t socket_events = 0;
  const auto ended = drive(multi, ev, fetches.size(), socket_events);
  REQUIRE(ended.size() == fetches.size());
  for (const auto& [easy, code] : ended) CHECK(code == CURLE_OK);
  CHECK(socket_events > 0);
  const std::vector<const std::string*> expect{&small, &big, &empty, &small, &big, &big};
  for (std::size_t i = 0; i < fetches.size(); ++i) {
    INFO("transfer " << i);
    CHECK(fetches[i]->body.size() == expect[i]->size());
    CHECK(fetches[i]->body == *expect[i]);
  }

  // A second round on the same (kept-alive) connections goes through the set as well.
  for (auto& f : fetches) {
    multi.remove(f->easy);
    f->body.clear();
    multi.add(f->easy);
  }
  socket_events = 0;
  const auto again = drive(multi, ev, fetches.size(), socket_events);
  REQUIRE(again.size() == fetches.size());
  for (std::size_t i = 0; i < fetches.size(); ++i) CHECK(fetches[i]->body == *expect[i]);
  CHECK(socket_events > 0);
  for (auto& f : fetches) multi.remove(f->easy);
}

TEST_CASE("multi events: wakeup() from another thread ends a wait at once",
          "[downloader][events]") {
  CurlMulti multi;
  MultiEvents ev(multi.get(), -1);
  std::array<MultiEvents::Ready, 8> ready{};
  CHECK(ev.wait(0, ready) == 0);

  const auto t0 = Clock::now();
  std::thread waker([&] {
    std::this_thread::sleep_for(50ms);
    ev.wakeup();
  });
  const std::size_t n = ev.wait(5000, ready);
  const auto waited = Clock::now() - t0;
  waker.join();
  REQUIRE(n == 1);
  CHECK(ready[0].kind == MultiEvents::Kind::wakeup);
  CHECK(waited < 2s);
  // The wake-up was taken: the next wait sleeps its time out.
  CHECK(ev.wait(20, ready) == 0);

  // Several wake-ups before a wait make one entry.
  ev.wakeup();
  ev.wakeup();
  CHECK(ev.wait(0, ready) == 1);
  CHECK(ev.wait(0, ready) == 0);
}

TEST_CASE("multi events: the task descriptor is reported only while watched",
          "[downloader][events]") {
  const int fd = ::eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK); // readable from the start
  REQUIRE(fd >= 0);
  {
    CurlMulti multi;
    MultiEvents ev(multi.get(), fd);
    std::array<MultiEvents::Ready, 8> ready{};
    CHECK(ev.wait(0, ready) == 0);
    ev.watch_tasks(true);
    ev.watch_tasks(true); // twice: no error
    REQUIRE(ev.wait(0, ready) == 1);
    CHECK(ready[0].kind == MultiEvents::Kind::tasks);
    CHECK(ready[0].fd == fd);
    ev.watch_tasks(false);
    CHECK(ev.wait(0, ready) == 0);
  }
  ::close(fd);
}

TEST_CASE("multi events: handles removed after the set is gone do not call back into it",
          "[downloader][events]") {
  const std::string body = pattern_body(300 * 1024, 3);
  Server server;
  serve_body(server, "/b", body);
  CurlMulti multi;
  Fetch f(server.url("/b"));
  std::size_t socket_events = 0;
  {
    MultiEvents ev(multi.get(), -1);
    multi.add(f.easy);
    // Turns until the connection is in the set (its socket reported ready), the body not
    // necessarily read: bounded to 5 s.
    std::array<MultiEvents::Ready, 4> ready{};
    for (int turn = 0; turn < 100 && socket_events == 0; ++turn) {
      const std::size_t n = ev.wait(50, ready);
      for (std::size_t i = 0; i < n; ++i)
        if (ready[i].kind == MultiEvents::Kind::curl_socket) {
          ++socket_events;
          ev.socket_action(ready[i].fd, ready[i].curl_bits);
        }
      ev.run_due_timers();
    }
  }
  // The socket was registered, so removing the handle now makes libcurl drop it: with the
  // callbacks still set, this would write into freed memory (the sanitizer build reports it).
  REQUIRE(socket_events > 0);
  multi.remove(f.easy);
}

TEST_CASE("multi events: a kept-alive connection of ours stays in the set, parked, between "
          "transfers",
          "[downloader][events]") {
  const std::string small = pattern_body(1000, 4);
  const std::string big = pattern_body(500 * 1024, 5);
  Server server;
  serve_bodies(server, {{"/small", &small}, {"/big", &big}});
  SocketBook book; // outlives the multi, which closes its connections through it
  {
    CurlMulti multi;
    MultiEvents ev(multi.get(), -1, &book);
    std::vector<std::unique_ptr<Fetch>> fetches;
    for (const char* path : {"/small", "/big", "/small"})
      fetches.push_back(std::make_unique<Fetch>(server.url(path), &book));
    const std::vector<const std::string*> expect{&small, &big, &small};
    for (int round = 0; round < 4; ++round) {
      INFO("round " << round);
      for (auto& f : fetches) {
        f->body.clear();
        multi.add(f->easy);
      }
      std::size_t socket_events = 0;
      const auto ended = drive(multi, ev, fetches.size(), socket_events);
      REQUIRE(ended.size() == fetches.size());
      for (const auto& [easy, code] : ended) CHECK(code == CURLE_OK);
      for (std::size_t i = 0; i < fetches.size(); ++i) CHECK(fetches[i]->body == *expect[i]);
      for (auto& f : fetches) multi.remove(f->easy);
      // Every connection is ours and idle now: the ones that waited for their response are
      // parked in the set, none is wanted by libcurl.
      CHECK_FALSE(booked(book, SocketBook::kOurs).empty());
      CHECK(booked(book, SocketBook::kInSet).size() ==
            booked(book, SocketBook::kInSet | SocketBook::kParked).size());
    }
    CHECK_FALSE(booked(book, SocketBook::kParked).empty());
  }
  // The multi closed its connections through the book: nothing of them is left.
  CHECK(booked(book, SocketBook::kOurs).empty());
  CHECK(booked(book, SocketBook::kInSet).empty());
}

TEST_CASE("multi events: a parked connection the server closes leaves the set, and the next "
          "transfer connects anew",
          "[downloader][events]") {
  const std::string body = pattern_body(20 * 1024, 6);
  // Answers one request per connection as if to keep it (HTTP/1.1, no Connection: close), waits
  // a moment, then closes it: the client's connection is parked by then.
  RawServer server(
      [&](int fd, const std::atomic<bool>& quit) {
        std::string head;
        if (!read_request_head(fd, head, quit)) return;
        send_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) +
                         "\r\n\r\n" + body);
        std::this_thread::sleep_for(30ms);
      },
      true, 16);
  SocketBook book;
  CurlMulti multi;
  MultiEvents ev(multi.get(), -1, &book);
  Fetch f(server.url("/b"), &book);
  std::array<MultiEvents::Ready, 4> ready{};
  for (int round = 0; round < 5; ++round) {
    INFO("round " << round);
    f.body.clear();
    multi.add(f.easy);
    std::size_t socket_events = 0;
    const auto ended = drive(multi, ev, 1, socket_events);
    REQUIRE(ended.size() == 1);
    CHECK(ended[0].second == CURLE_OK);
    CHECK(f.body == body);
    multi.remove(f.easy);
    // The server's close reaches the parked socket: it leaves the set, and is not handed to
    // libcurl, which watches nothing now (bounded: 5 s).
    const auto deadline = Clock::now() + 5s;
    while (!booked(book, SocketBook::kInSet).empty() && Clock::now() < deadline) {
      const std::size_t n = ev.wait(50, ready);
      for (std::size_t i = 0; i < n; ++i) CHECK(ready[i].kind != MultiEvents::Kind::curl_socket);
    }
    CHECK(booked(book, SocketBook::kInSet).empty());
  }
  // Each round needed a new connection, on a descriptor the closed one may have left free.
  CHECK(server.hits() == 5);
}
