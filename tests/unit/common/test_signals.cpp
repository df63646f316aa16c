// The status flag behind SIGUSR1 (common/signals.hpp): each request is taken once, and requests
// that come before the loop looks make one status line, not a burst. The signal itself, in real
// processes: tests/e2e/test_pipeline.cpp ("SIGUSR1: ...").
#include <catch2/catch.hpp>

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
