#include "common/signals.hpp"

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <csignal>
#include <system_error>
#include <thread>
#include <unistd.h>

namespace trawl {
namespace {

std::atomic<int> g_stops{0};
static_assert(std::atomic<int>::is_always_lock_free);
std::atomic<bool> g_status{false};
static_assert(std::atomic<bool>::is_always_lock_free);

std::atomic<bool> g_job_complete{false};
static_assert(std::atomic<bool>::is_always_lock_free);

extern "C" void on_stop_signal(int, siginfo_t* info, void*) {
  // Set before the stop count, so a loop that sees the stop sees how it came.
  if (g_stops.load() == 0 && info != nullptr && info->si_code == SI_QUEUE &&
      info->si_value.sival_int == kJobCompleteStop && info->si_pid == ::getppid())
    g_job_complete.store(true);
  if (g_stops.fetch_add(1) >= 1) _exit(130);
}

extern "C" void on_status_signal(int) { g_status.store(true, std::memory_order_relaxed); }

// SIGUSR1 must not disturb what it asks about. A handler that ran on the event loop's thread
// would interrupt its system calls, and not only the polls that expect it: ZeroMQ fails a
// non-blocking recv or send with EINTR when the signal lands in the poll it makes inside, which
// the loops would take for an error. So the signal stays blocked in every thread but this one,
// which takes it with sigwait() and only sets the flag.
void start_status_thread() {
  sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &usr1, nullptr); // inherited by every thread started from here
  try {
    std::thread([usr1] {
      for (;;) {
        int sig = 0;
        if (sigwait(&usr1, &sig) == 0 && sig == SIGUSR1)
          g_status.store(true, std::memory_order_relaxed);
      }
    }).detach();
  } catch (const std::system_error&) {
    // No thread: the handler takes the signal on whichever thread it lands (EINTR and all).
    pthread_sigmask(SIG_UNBLOCK, &usr1, nullptr);
  }
}

} // namespace

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_sigaction = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  // No SA_RESTART: blocking calls return EINTR so loops notice at once. SA_SIGINFO: who sent it
  // and with what (job_complete_stop).
  sa.sa_flags = SA_SIGINFO;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  // The disposition as well as the thread: a thread that unblocked SIGUSR1 for itself still
  // only sets the flag, and the default action (terminate) is gone either way.
  struct sigaction su {};
  su.sa_handler = on_status_signal;
  sigemptyset(&su.sa_mask);
  su.sa_flags = SA_RESTART;
  sigaction(SIGUSR1, &su, nullptr);
  start_status_thread();
}

bool stop_requested() noexcept { return g_stops.load(std::memory_order_relaxed) > 0; }

void request_stop() noexcept { g_stops.fetch_add(1); }

void reset_stop_for_tests() noexcept {
  g_stops.store(0);
  g_job_complete.store(false);
}

bool job_complete_stop() noexcept { return g_job_complete.load(); }

bool send_job_complete_stop(int pid) noexcept {
  union sigval value {};
  value.sival_int = kJobCompleteStop;
  return ::sigqueue(pid, SIGTERM, value) == 0;
}

bool take_status_request() noexcept {
  // A load first: the loops call this every turn, and an exchange would write the line each time.
  return g_status.load(std::memory_order_relaxed) &&
         g_status.exchange(false, std::memory_order_relaxed);
}

void request_status() noexcept { g_status.store(true, std::memory_order_relaxed); }

int started_signal() noexcept { return SIGRTMIN; }

void notify_parent(int pid, int sig) noexcept {
  if (pid > 0 && ::getppid() == pid) ::kill(pid, sig);
}

std::thread start_quiet_thread(std::function<void()> fn, const char* name) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old); // the new thread inherits the mask
  std::thread t;
  try {
    t = std::thread(std::move(fn));
  } catch (...) {
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    throw;
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  pthread_setname_np(t.native_handle(), name);
  return t;
}

} // namespace trawl
