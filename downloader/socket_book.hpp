// What the event loop knows of each connection socket, by descriptor: whether libcurl opened it
// through our open-socket callback and has not closed it yet through our close-socket callback
// (it is "ours": we see both ends of its life), and whether it is in the epoll set, with which
// events, and whether libcurl still wants them.
//
// A kept-alive connection leaves the epoll set when its transfer ends (CURL_POLL_REMOVE) and joins
// it again when the next transfer on it waits for its response: two epoll_ctl calls per transfer
// that waited (small files against nginx, one downloader of 64: 1.2 epoll_ctl per file, 5 % of the
// event loop's samples). A socket of ours stays in the set instead, parked: it asks again for the
// same events at no cost, a parked socket that turns ready (the server closed it) leaves the set
// then, and its close, which we see, forgets it before its descriptor can be reused. A socket
// that is not ours (a robots.txt fetch's) is added and removed as libcurl says, as before.
//
// Outlives the curl multi handle whose connections it books: libcurl may close a connection, and
// call the close callback with this book, as late as curl_multi_cleanup. One thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <curl/curl.h>
#include <vector>

namespace trawl::downloader {

class SocketBook {
public:
  static constexpr std::uint8_t kOurs = 1;   // opened by our callback, not closed yet
  static constexpr std::uint8_t kInSet = 2;  // in the epoll set with events()
  static constexpr std::uint8_t kParked = 4; // in the set although libcurl no longer wants it

  void opened(int fd) {
    if (fd < 0) return;
    const auto need = static_cast<std::size_t>(fd) + 1;
    if (flags_.size() < need) {
      flags_.resize(need, 0);
      events_.resize(need, 0);
    }
    flags_[static_cast<std::size_t>(fd)] = kOurs;
  }
  // Before the descriptor is closed: nothing of it is kept (the kernel drops it from the set).
  void closed(int fd) noexcept {
    if (fd >= 0 && static_cast<std::size_t>(fd) < flags_.size())
      flags_[static_cast<std::size_t>(fd)] = 0;
  }

  std::uint8_t flags(int fd) const noexcept {
    return fd >= 0 && static_cast<std::size_t>(fd) < flags_.size()
               ? flags_[static_cast<std::size_t>(fd)]
               : 0;
  }
  std::uint32_t events(int fd) const noexcept {
    return fd >= 0 && static_cast<std::size_t>(fd) < events_.size()
               ? events_[static_cast<std::size_t>(fd)]
               : 0;
  }
  // A socket of ours (opened() booked it) is in the set with `events`, wanted by libcurl.
  void in_set(int fd, std::uint32_t events) noexcept {
    if (fd < 0 || static_cast<std::size_t>(fd) >= flags_.size()) return;
    const auto i = static_cast<std::size_t>(fd);
    flags_[i] = static_cast<std::uint8_t>((flags_[i] & kOurs) | kInSet);
    events_[i] = events;
  }
  void parked(int fd) noexcept {
    if (flags(fd) & kInSet) flags_[static_cast<std::size_t>(fd)] |= kParked;
  }
  void out_of_set(int fd) noexcept {
    if (fd >= 0 && static_cast<std::size_t>(fd) < flags_.size())
      flags_[static_cast<std::size_t>(fd)] &= kOurs;
  }

private:
  std::vector<std::uint8_t> flags_;
  std::vector<std::uint32_t> events_;
};

// CURLOPT_CLOSESOCKETFUNCTION with CURLOPT_CLOSESOCKETDATA at a SocketBook: forgets the socket,
// then closes it.
int close_booked_socket(void* book, curl_socket_t fd);

} // namespace trawl::downloader
