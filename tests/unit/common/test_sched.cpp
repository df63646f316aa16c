// The helper threads' scheduling policy (common/sched.hpp): run_as_batch() on the calling thread,
// and the ZeroMQ I/O threads of a context whose sockets come from make_socket().
#include <catch2/catch.hpp>

#include <chrono>
#include <dirent.h>
#include <fstream>
#include <map>
#include <pthread.h>
#include <sched.h>
#include <string>
#include <thread>

#include "common/sched.hpp"
#include "common/zmq_util.hpp"

namespace {

// The threads of this process: tid -> name (/proc/self/task/TID/comm).
std::map<int, std::string> threads() {
  std::map<int, std::string> out;
  DIR* d = opendir("/proc/self/task");
  if (d == nullptr) return out;
  while (const dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream comm(std::string("/proc/self/task/") + e->d_name + "/comm");
    std::string name;
    std::getline(comm, name);
    out[std::stoi(e->d_name)] = name;
  }
  closedir(d);
  return out;
}

// The policy of `fn`'s thread after run_as_batch(), started from a thread of policy `start`.
int batch_from(int start) {
  int policy = -2;
  std::thread t([&] {
    const sched_param zero{};
    if (pthread_setschedparam(pthread_self(), start, &zero) != 0) return; // -2: not testable
    (void)trawl::run_as_batch();
    policy = sched_getscheduler(0);
  });
  t.join();
  return policy;
}

} // namespace

TEST_CASE("run_as_batch: the default policy becomes SCHED_BATCH, others are left alone",
          "[common][sched]") {
  CHECK(batch_from(SCHED_OTHER) == SCHED_BATCH);
  CHECK(batch_from(SCHED_IDLE) == SCHED_IDLE);   // lower than batch: kept
  CHECK(batch_from(SCHED_BATCH) == SCHED_BATCH); // no change
  CHECK(sched_getscheduler(0) == SCHED_OTHER);   // the test's own thread untouched
}

TEST_CASE("make_socket: the context's I/O threads run as SCHED_BATCH, the caller's policy stays",
          "[common][sched]") {
  const auto before = threads();
  zmq::context_t ctx(1);
  {
    auto s = trawl::make_socket(ctx, zmq::socket_type::pull, {});
    // The context's new threads (the I/O thread and the reaper): each names itself once it has
    // set its policy, so the ones named are the ones to check.
    std::map<int, std::string> started;
    for (int i = 0; i < 500 && started.size() < 2; ++i) {
      if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      started.clear();
      for (const auto& [tid, name] : threads())
        if (!before.count(tid) && name.rfind("ZMQbg/", 0) == 0) started[tid] = name;
    }
    REQUIRE(started.size() >= 2);
    for (const auto& [tid, name] : started) {
      INFO(name);
      CHECK(sched_getscheduler(tid) == SCHED_BATCH);
    }
    CHECK(sched_getscheduler(0) == SCHED_OTHER);
  }
  ctx.close();
}
