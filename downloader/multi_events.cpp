#include "downloader/multi_events.hpp"

#include <algorithm>
#include <cerrno>
#include <string>
#include <sys/eventfd.h>
#include <system_error>
#include <unistd.h>

#include "downloader/curl_handles.hpp"

namespace trawl::downloader {
namespace {

std::uint64_t tag(MultiEvents::Kind kind, int fd) {
  return (static_cast<std::uint64_t>(kind) << 32) | static_cast<std::uint32_t>(fd);
}

} // namespace

MultiEvents::MultiEvents(CURLM* multi, int tasks_fd, SocketBook* book)
    : multi_(multi), book_(book), tasks_fd_(tasks_fd) {
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) {
    const int err = errno;
    ::close(epoll_fd_);
    throw std::system_error(err, std::generic_category(), "eventfd");
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = tag(Kind::wakeup, wake_fd_);
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev) != 0) {
    const int err = errno;
    ::close(wake_fd_);
    ::close(epoll_fd_);
    throw std::system_error(err, std::generic_category(), "epoll_ctl");
  }
  curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, &MultiEvents::on_socket);
  curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
  curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, &MultiEvents::on_timer);
  curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
}

MultiEvents::~MultiEvents() {
  // Handles removed after this (the slots go after the loop) must not call back into it.
  curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, nullptr);
  curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, nullptr);
  curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, nullptr);
  curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, nullptr);
  ::close(wake_fd_);
  ::close(epoll_fd_);
}

void MultiEvents::watch_tasks(bool on) {
  if (on == tasks_watched_ || tasks_fd_ < 0) return;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = tag(Kind::tasks, tasks_fd_);
  if (::epoll_ctl(epoll_fd_, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, tasks_fd_, &ev) != 0)
    throw std::system_error(errno, std::generic_category(), "epoll_ctl (task socket)");
  tasks_watched_ = on;
}

std::size_t MultiEvents::wait(int timeout_ms, std::span<Ready> out) {
  if (timer_set_) {
    const auto now = Clock::now();
    const auto left = timer_due_ <= now
                          ? 0
                          : std::chrono::ceil<std::chrono::milliseconds>(timer_due_ - now).count();
    if (timeout_ms < 0 || left < timeout_ms) timeout_ms = static_cast<int>(left);
  }
  const int room = static_cast<int>(std::min<std::size_t>(out.size(), std::size(events_)));
  const int n = ::epoll_wait(epoll_fd_, events_, room, timeout_ms);
  if (n < 0) {
    if (errno == EINTR) return 0;
    throw std::system_error(errno, std::generic_category(), "epoll_wait");
  }
  std::size_t got = 0;
  for (int i = 0; i < n; ++i) {
    const auto kind = static_cast<Kind>(events_[i].data.u64 >> 32);
    const int fd = static_cast<int>(events_[i].data.u64 & 0xFFFFFFFFu);
    if (kind == Kind::curl_socket && book_ != nullptr &&
        (book_->flags(fd) & SocketBook::kParked) != 0) {
      unpark(fd); // an idle connection the server closed, or sent something to: not libcurl's
      continue;
    }
    const std::uint32_t e = events_[i].events;
    int bits = 0;
    if ((e & (EPOLLIN | EPOLLHUP)) != 0) bits |= CURL_CSELECT_IN;
    if ((e & EPOLLOUT) != 0) bits |= CURL_CSELECT_OUT;
    if ((e & EPOLLERR) != 0) bits |= CURL_CSELECT_ERR;
    out[got++] = Ready{kind, fd, bits};
    if (kind == Kind::wakeup) {
      std::uint64_t count = 0;
      while (::read(wake_fd_, &count, sizeof count) < 0 && errno == EINTR) {
      }
    }
  }
  return got;
}

void MultiEvents::unpark(int fd) noexcept {
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  book_->out_of_set(fd);
}

bool MultiEvents::timer_due() const noexcept { return timer_set_ && Clock::now() >= timer_due_; }

void MultiEvents::run_due_timers() {
  if (timer_due()) socket_action(CURL_SOCKET_TIMEOUT, 0);
}

void MultiEvents::socket_action(curl_socket_t fd, int curl_bits) {
  int running = 0;
  const CURLMcode mc = curl_multi_socket_action(multi_, fd, curl_bits, &running);
  if (mc != CURLM_OK)
    throw CurlError(std::string("curl_multi_socket_action: ") + curl_multi_strerror(mc));
}

void MultiEvents::wakeup() noexcept {
  const std::uint64_t one = 1;
  // EAGAIN: the counter is full, a wake-up is pending anyway.
  while (::write(wake_fd_, &one, sizeof one) < 0 && errno == EINTR) {
  }
}

int MultiEvents::on_socket(CURL*, curl_socket_t s, int what, void* self_p, void* socketp) {
  auto* self = static_cast<MultiEvents*>(self_p);
  // Only our sockets are booked (see SocketBook); the others go in and out of the set as
  // libcurl says.
  SocketBook* book = self->book_;
  const std::uint8_t flags = book != nullptr ? book->flags(s) : 0;
  const bool ours = (flags & SocketBook::kOurs) != 0;
  const bool ours_in_set = ours && (flags & SocketBook::kInSet) != 0;
  if (what == CURL_POLL_REMOVE) {
    // A socket of ours waiting for input only stays in the set, parked; its close, which we
    // see, forgets it.
    if (ours_in_set && book->events(s) == EPOLLIN) {
      book->parked(s);
      return 0;
    }
    // The socket may be closed already (then epoll dropped it itself): errors do not matter.
    ::epoll_ctl(self->epoll_fd_, EPOLL_CTL_DEL, s, nullptr);
    if (ours) book->out_of_set(s);
    return 0;
  }
  epoll_event ev{};
  ev.events =
      ((what & CURL_POLL_IN) != 0 ? EPOLLIN : 0u) | ((what & CURL_POLL_OUT) != 0 ? EPOLLOUT : 0u);
  ev.data.u64 = tag(Kind::curl_socket, s);
  // Parked with these very events: wanted again, no system call.
  if (!ours_in_set || book->events(s) != ev.events) {
    // socketp is set once a socket is in the set (libcurl forgets it with CURL_POLL_REMOVE); a
    // parked socket of ours is in the set too. A descriptor number reused before its removal
    // was seen is added or modified as the set says.
    int op = socketp == nullptr && !ours_in_set ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    if (::epoll_ctl(self->epoll_fd_, op, s, &ev) != 0) {
      op = errno == EEXIST ? EPOLL_CTL_MOD : errno == ENOENT ? EPOLL_CTL_ADD : -1;
      if (op < 0 || ::epoll_ctl(self->epoll_fd_, op, s, &ev) != 0) return -1;
    }
  }
  if (ours) book->in_set(s, ev.events);
  if (socketp == nullptr) curl_multi_assign(self->multi_, s, self);
  return 0;
}

int close_booked_socket(void* book, curl_socket_t fd) {
  static_cast<SocketBook*>(book)->closed(fd);
  return ::close(fd);
}

int MultiEvents::on_timer(CURLM*, long timeout_ms, void* self_p) {
  auto* self = static_cast<MultiEvents*>(self_p);
  if (timeout_ms < 0) {
    self->timer_set_ = false;
  } else {
    self->timer_set_ = true;
    self->timer_due_ = Clock::now() + std::chrono::milliseconds(timeout_ms);
  }
  return 0;
}

} // namespace trawl::downloader
