#include "common/sched.hpp"

#include <pthread.h>
#include <sched.h>

namespace trawl {
namespace {

bool default_policy() noexcept {
  int policy = -1;
  sched_param param{};
  return pthread_getschedparam(pthread_self(), &policy, &param) == 0 && policy == SCHED_OTHER;
}

} // namespace

bool run_as_batch() noexcept {
  if (!default_policy()) return false;
  const sched_param normal{}; // priority 0, the only one SCHED_BATCH takes
  return pthread_setschedparam(pthread_self(), SCHED_BATCH, &normal) == 0;
}

zmq::context_t& batch_io_threads(zmq::context_t& ctx) {
  if (default_policy()) ctx.set(zmq::ctxopt::thread_sched_policy, SCHED_BATCH);
  return ctx;
}

} // namespace trawl
