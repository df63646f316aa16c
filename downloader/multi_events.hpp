#pragma once

#include <chrono>
#include <cstdint>
#include <curl/curl.h>
#include <span>
#include <sys/epoll.h>

#include "downloader/socket_book.hpp"

namespace trawl::downloader {

// The sockets of one curl multi handle, and two descriptors of our own (the task socket's
// ZMQ_FD, a wake-up eventfd), in one epoll set. The event loop hands libcurl the ready sockets
// one by one (curl_multi_socket_action), as many per turn as it chooses: a transfer that ends
// is seen, and its slot given the next task, before the other ready sockets are read.
// curl_multi_perform() read every ready socket in one call (see kSocketsPerTurn).
//
// Not thread-safe but for wakeup(). The multi must outlive this object; the callbacks are taken
// off it when this object goes.
class MultiEvents {
public:
  using Clock = std::chrono::steady_clock;

  // What a ready descriptor is.
  enum class Kind : std::uint32_t { curl_socket, tasks, wakeup };
  struct Ready {
    Kind kind;
    int fd;
    int curl_bits; // CURL_CSELECT_IN/OUT/ERR for a curl socket
  };

  // `tasks_fd`: the task socket's ZMQ_FD, watched only while watch_tasks(true). `book`, if
  // any, is where the transfers' handles book the sockets they open and close (their
  // CURLOPT_OPENSOCKETDATA's SocketGate::book and close_booked_socket): those are parked in the
  // set between transfers instead of removed (see SocketBook). Throws std::system_error when
  // epoll or eventfd is refused.
  MultiEvents(CURLM* multi, int tasks_fd, SocketBook* book = nullptr);
  ~MultiEvents();
  MultiEvents(const MultiEvents&) = delete;
  MultiEvents& operator=(const MultiEvents&) = delete;

  void watch_tasks(bool on);

  // Waits up to `timeout_ms` (less when libcurl's timer is due sooner) and fills `out` with the
  // ready descriptors; returns how many (0 on a timeout or a signal).
  std::size_t wait(int timeout_ms, std::span<Ready> out);

  // Hands a ready socket (or CURL_SOCKET_TIMEOUT) to libcurl; throws CurlError on its refusal.
  void socket_action(curl_socket_t fd, int curl_bits);
  // Runs libcurl's due timers (new transfers start this way); a no-op when none is due.
  void run_due_timers();
  bool timer_due() const noexcept;

  // From any thread: the next wait() returns at once (with a Kind::wakeup entry).
  void wakeup() noexcept;

private:
  static int on_socket(CURL* easy, curl_socket_t s, int what, void* self, void* socketp);
  static int on_timer(CURLM* multi, long timeout_ms, void* self);

  // A parked socket turned ready: it leaves the set (libcurl no longer watches it).
  void unpark(int fd) noexcept;

  CURLM* multi_;
  SocketBook* book_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  int tasks_fd_ = -1;
  bool tasks_watched_ = false;
  bool timer_set_ = false;
  Clock::time_point timer_due_{};
  epoll_event events_[256]{};
};

} // namespace trawl::downloader
