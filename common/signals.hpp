// Graceful stop: SIGINT/SIGTERM set an atomic flag that every loop polls; a second signal aborts.
#pragma once

namespace trawl {

// Installs the handlers. The first SIGINT/SIGTERM asks loops to stop; a second one calls
// _exit(130) at once.
void install_stop_handlers();

// True once a stop was asked for (by a signal or by request_stop()).
bool stop_requested() noexcept;

// For tests and for actors that finish on their own.
void request_stop() noexcept;

// Tests only: forgets any stop request, so a test can run another loop in the same process.
void reset_stop_for_tests() noexcept;

} // namespace trawl
