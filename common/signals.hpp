// Graceful stop: SIGINT/SIGTERM set an atomic flag that every loop polls; a second signal aborts.
// Status: SIGUSR1 sets another flag; the long-running roles log one line of their state when
// they see it (`kill -USR1 PID`, docs/OPERATIONS.md).
#pragma once

namespace trawl {

// Installs the handlers. The first SIGINT/SIGTERM asks loops to stop; a second one calls
// _exit(130) at once. SIGUSR1 asks for a status line (see take_status_request()); it no longer
// terminates the process. Call it before any thread is started (ZeroMQ's, curl's): SIGUSR1 is
// blocked in the calling thread, so every thread started later inherits the block, and a thread
// of its own takes it.
void install_stop_handlers();

// True once a stop was asked for (by a signal or by request_stop()).
bool stop_requested() noexcept;

// For tests and for actors that finish on their own.
void request_stop() noexcept;

// Tests only: forgets any stop request, so a test can run another loop in the same process.
void reset_stop_for_tests() noexcept;

// True once per SIGUSR1 (or request_status()) received since the last call: the caller logs its
// status line. Several signals before a call make one request.
bool take_status_request() noexcept;

// As if a SIGUSR1 had come (tests).
void request_status() noexcept;

} // namespace trawl
