#include <catch2/catch.hpp>
#include "proto/messages.hpp"
TEST_CASE("link round trip", "[proto]") {
  using namespace trawl::proto;
  auto d = decode(encode(Link{"http://x/a.jpg"}));
  REQUIRE(std::holds_alternative<Message>(d));
  CHECK(std::get<Link>(std::get<Message>(d)).url == "http://x/a.jpg");
}
