#include <catch2/catch.hpp>
#include <stdexcept>
#include <string>

#include "common/hash_set.hpp"
#include "common/names.hpp"

using trawl::HashSet64;

TEST_CASE("HashSet64 insert and contains", "[common]") {
  HashSet64 s;
  CHECK(s.size() == 0);
  CHECK_FALSE(s.contains(42));
  CHECK(s.insert(42));
  CHECK(s.contains(42));
  CHECK_FALSE(s.insert(42)); // already there
  CHECK(s.size() == 1);
  CHECK(s.insert(43));
  CHECK(s.size() == 2);
  CHECK_FALSE(s.contains(44));
}

TEST_CASE("HashSet64 rejects the reserved value 0", "[common]") {
  HashSet64 s;
  CHECK_THROWS_AS(s.insert(0), std::invalid_argument);
  CHECK_FALSE(s.contains(0));
  CHECK(s.size() == 0);
}

TEST_CASE("HashSet64 grows to 100k entries from a small start", "[common]") {
  HashSet64 s(1);
  constexpr int kN = 100'000;
  for (int i = 0; i < kN; ++i) REQUIRE(s.insert(trawl::hash64("http://h/" + std::to_string(i))));
  CHECK(s.size() == kN);
  for (int i = 0; i < kN; ++i) REQUIRE(s.contains(trawl::hash64("http://h/" + std::to_string(i))));
  for (int i = kN; i < kN + 1000; ++i)
    REQUIRE_FALSE(s.contains(trawl::hash64("http://h/" + std::to_string(i))));
  for (int i = 0; i < kN; i += 97) REQUIRE_FALSE(s.insert(trawl::hash64("http://h/" + std::to_string(i))));
  CHECK(s.size() == kN);
  // Load factor at most 0.7 after growth, at least ~0.17: between 8 and 48 bytes per entry.
  CHECK(s.memory_bytes() >= kN * 8);
  CHECK(s.memory_bytes() <= kN * 48);
}

TEST_CASE("HashSet64 handles clustered values", "[common]") {
  // Consecutive small values land in consecutive slots: linear probing must still find them all,
  // across growth.
  HashSet64 s(4);
  for (std::uint64_t v = 1; v <= 5000; ++v) REQUIRE(s.insert(v << 20));
  for (std::uint64_t v = 1; v <= 5000; ++v) REQUIRE(s.contains(v << 20));
  CHECK_FALSE(s.contains(5001ull << 20));
  CHECK(s.size() == 5000);
}
