#include "common/signals.hpp"

#include <atomic>
#include <csignal>
#include <unistd.h>

namespace trawl {
namespace {

std::atomic<int> g_stops{0};
static_assert(std::atomic<int>::is_always_lock_free);

extern "C" void on_stop_signal(int) {
  if (g_stops.fetch_add(1) >= 1) _exit(130);
}

} // namespace

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0; // no SA_RESTART: blocking calls return EINTR so loops notice at once
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
}

bool stop_requested() noexcept { return g_stops.load(std::memory_order_relaxed) > 0; }

void request_stop() noexcept { g_stops.fetch_add(1); }

void reset_stop_for_tests() noexcept { g_stops.store(0); }

} // namespace trawl
