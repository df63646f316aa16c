// Scheduling policy of the helper threads: a downloader's file thread (FileWriter), its
// temporary-file thread (TempPool) and the I/O thread of every process's ZeroMQ context. Each is
// woken for a short job by a thread that is busy with the job's real work (a downloader's event
// loop, a ventilator, a sink); under the default policy the woken thread preempts that busy thread
// on a saturated machine, one context switch each way for a few microseconds of work. As
// SCHED_BATCH it runs at once on an idle core, and otherwise when the running thread waits or its
// time slice ends. Only the policy changes: the nice value stays.
#pragma once

#include <zmq.hpp>

namespace trawl {

// Makes the calling thread SCHED_BATCH when it runs under the default policy (SCHED_OTHER), and
// says whether it did. A thread under any other policy (real-time, SCHED_IDLE, or already batch)
// is left as it is; a refusal by the system leaves it as it was.
bool run_as_batch() noexcept;

// Has `ctx` start its I/O threads (and reaper) as SCHED_BATCH when the calling thread runs under
// the default policy: they inherit the calling thread's policy and priority, which libzmq then
// changes to SCHED_BATCH (it aborts should the change fail, so only the one change that cannot
// fail, SCHED_OTHER with priority 0 to SCHED_BATCH, is asked for). Takes effect for threads
// started after it: call it before the context's first socket (make_socket does). Returns `ctx`.
zmq::context_t& batch_io_threads(zmq::context_t& ctx);

} // namespace trawl
