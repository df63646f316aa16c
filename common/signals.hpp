// Graceful stop: SIGINT/SIGTERM set an atomic flag that every loop polls; a second signal aborts.
// Status: SIGUSR1 sets another flag; the long-running roles log one line of their state when
// they see it (`kill -USR1 PID`, docs/OPERATIONS.md).
#pragma once

#include <functional>
#include <thread>

namespace trawl {

// Installs the handlers. The first SIGINT/SIGTERM asks loops to stop; a second one calls
// _exit(130) at once. SIGUSR1 asks for a status line (see take_status_request()); it no longer
// terminates the process. Call it before any thread is started (ZeroMQ's, curl's): SIGUSR1 is
// blocked in the calling thread, so every thread started later inherits the block, and a thread
// of its own takes it.
void install_stop_handlers();

// True once a stop was asked for (by a signal or by request_stop()).
bool stop_requested() noexcept;

// `trawl pipeline` stops its downloaders and its ventilator with a SIGTERM that says the job is
// complete (the sink has a result for every task, and the ventilator's complete figures): sent
// with sigqueue() carrying kJobCompleteStop, by the parent. Nothing the process still holds is
// wanted then, so it may end without its orderly teardown (closing every connection, joining its
// threads, ZeroMQ's linger): see downloader::run and broker::run. Any other SIGTERM or SIGINT,
// from anyone, is an ordinary stop.
inline constexpr int kJobCompleteStop = 0x74726c31;

// True once a stop came as above (its first signal: a second one aborts anyway).
bool job_complete_stop() noexcept;

// Sends that SIGTERM to `pid` (our child). False, with errno, when sigqueue() fails.
bool send_job_complete_stop(int pid) noexcept;

// For tests and for actors that finish on their own.
void request_stop() noexcept;

// Tests only: forgets any stop request, so a test can run another loop in the same process.
void reset_stop_for_tests() noexcept;

// True once per SIGUSR1 (or request_status()) received since the last call: the caller logs its
// status line. Several signals before a call make one request.
bool take_status_request() noexcept;

// As if a SIGUSR1 had come (tests).
void request_status() noexcept;

// `trawl pipeline` starts the sink once the processes on the way to the first request have done
// their part (app/pipeline.cpp): a downloader says its first transfers have started, the
// ventilator that it has none to dispatch. They say it with this real-time signal (SIGRTMIN:
// queued, so words that come together are all heard, and carrying the sender's pid).
int started_signal() noexcept;

// Sends `sig` to `pid` if it is our parent (a stray --notify-pid signals no one else); nothing
// when pid <= 0. The sink's "job complete" (SIGUSR2) and the started_signal() words use it.
void notify_parent(int pid, int sig) noexcept;

// Starts a worker thread that takes no signal (all blocked in it) and names it `name` (at most 15
// characters; for top -H and perf): SIGINT and SIGTERM then go to a thread that polls the stop
// flag, and a handler never runs in the middle of the worker's system calls. Throws
// std::system_error when no thread can be started.
std::thread start_quiet_thread(std::function<void()> fn, const char* name);

} // namespace trawl
