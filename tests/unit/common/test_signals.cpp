// The status flag behind SIGUSR1 (common/signals.hpp): each request is taken once, and requests
// that come before the loop looks make one status line, not a burst. The signal itself, in real
// processes: tests/e2e/test_pipeline.cpp ("SIGUSR1: ..."). The job-complete stop (the
// launcher's word to its downloaders and ventilator) in forked processes.
#include <catch2/catch.hpp>

#include <csignal>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/signals.hpp"

TEST_CASE("status requests: each is taken once, several before a take count as one", "[common]") {
  while (trawl::take_status_request()) {
  } // whatever an earlier test left
  CHECK_FALSE(trawl::take_status_request());
  trawl::request_status();
  CHECK(trawl::take_status_request());
  CHECK_FALSE(trawl::take_status_request());
  trawl::request_status();
  trawl::request_status();
  trawl::request_status();
  CHECK(trawl::take_status_request());
  CHECK_FALSE(trawl::take_status_request());
  // A status request is not a stop request.
  trawl::reset_stop_for_tests();
  trawl::request_status();
  CHECK_FALSE(trawl::stop_requested());
  CHECK(trawl::take_status_request());
}

namespace {

// Forks a process that installs the stop handlers, says it is ready, waits (up to 5 s) for a
// stop, and exits 10 when the stop said the job is complete, 11 when it did not, 12 with no stop.
// With `grandchild`, that process is a child of the forked one, so the test process signalling it
// is not its parent. Returns the pid to signal and the pid to wait for.
struct Waiter {
  pid_t target = -1;
  pid_t child = -1;
};

Waiter start_waiter(bool grandchild) {
  int ready[2];
  REQUIRE(::pipe(ready) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    const auto wait_for_stop = [&ready] {
      trawl::reset_stop_for_tests();
      trawl::install_stop_handlers();
      const pid_t self = ::getpid();
      (void)!::write(ready[1], &self, sizeof self);
      for (int i = 0; i < 5000 && !trawl::stop_requested(); ++i) ::usleep(1000);
      ::_exit(!trawl::stop_requested() ? 12 : trawl::job_complete_stop() ? 10 : 11);
    };
    if (!grandchild) wait_for_stop();
    const pid_t inner = ::fork();
    if (inner == 0) wait_for_stop();
    int st = 0;
    ::waitpid(inner, &st, 0);
    ::_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 13);
  }
  ::close(ready[1]);
  pid_t target = -1;
  REQUIRE(::read(ready[0], &target, sizeof target) == static_cast<ssize_t>(sizeof target));
  ::close(ready[0]);
  return {target, child};
}

int exit_code(pid_t pid) {
  int st = 0;
  REQUIRE(::waitpid(pid, &st, 0) == pid);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

} // namespace

TEST_CASE("a job-complete stop: only the parent's SIGTERM with the value says so", "[common]") {
  SECTION("sent by the parent with send_job_complete_stop") {
    const auto w = start_waiter(false);
    REQUIRE(trawl::send_job_complete_stop(w.target));
    CHECK(exit_code(w.child) == 10);
  }
  SECTION("an ordinary SIGTERM") {
    const auto w = start_waiter(false);
    REQUIRE(::kill(w.target, SIGTERM) == 0);
    CHECK(exit_code(w.child) == 11);
  }
  SECTION("a SIGTERM queued with another value") {
    const auto w = start_waiter(false);
    union sigval v {};
    v.sival_int = trawl::kJobCompleteStop + 1;
    REQUIRE(::sigqueue(w.target, SIGTERM, v) == 0);
    CHECK(exit_code(w.child) == 11);
  }
  SECTION("the value, from a process that is not the parent") {
    const auto w = start_waiter(true);
    REQUIRE(trawl::send_job_complete_stop(w.target));
    CHECK(exit_code(w.child) == 11);
  }
}
