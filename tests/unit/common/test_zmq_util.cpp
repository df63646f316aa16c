#include <catch2/catch.hpp>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/zmq_util.hpp"

using namespace trawl;

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

} // namespace

TEST_CASE("endpoints: only tcp, ipc and inproc are bound or connected", "[zmq_util]") {
  zmq::context_t ctx;
  auto push = make_socket(ctx, zmq::socket_type::push, {});
  auto sub = make_socket(ctx, zmq::socket_type::sub, {});
  // ZeroMQ's multicast transports, and a typo: refused before ZeroMQ sees them (the trawl binary
  // links a stand-in for libnorm, which must never be called).
  for (const std::string ep :
       {"norm://127.0.0.1:5555", "pgm://eth0;239.192.1.1:5555", "epgm://eth0;239.192.1.1:5555",
        "tcp:/127.0.0.1:5555", "127.0.0.1:5555"}) {
    INFO(ep);
    const auto bind_error = error_of([&] { bind_all(sub, {ep}); });
    CHECK(bind_error.find("cannot bind " + ep + ": trawl's endpoints are tcp://") == 0);
    const auto connect_error = error_of([&] { connect_all(sub, {ep}); });
    CHECK(connect_error.find("cannot connect to " + ep + ": trawl's endpoints are tcp://") == 0);
    CHECK(error_of([&] { connect_all(push, {ep}); }) == connect_error);
  }
  // The three transports pass the check (and bind and connect).
  const auto bound = bind_all(push, {"tcp://127.0.0.1:*", "inproc://test-zmq-util"});
  REQUIRE(bound.size() == 2);
  CHECK(bound[0].starts_with("tcp://127.0.0.1:"));
  CHECK(error_of([&] { connect_all(sub, {bound[0], "inproc://test-zmq-util"}); }).empty());
  CHECK(error_of([&] { connect_all(sub, {"ipc:///nonexistent/trawl-test.sock"}); }).empty());
}
