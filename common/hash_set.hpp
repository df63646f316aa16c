// A compact set of 64-bit hashes (open addressing, linear probing): 8-16 bytes per entry, so the
// fetcher can de-duplicate millions of URLs and the ventilator can track millions of file names
// in bounded, predictable memory. Two different strings collide with probability ~n^2/2^65
// (about 3e-8 for 1e6 links); a collision drops a link as a duplicate, which is logged.
#pragma once

#include <cstdint>
#include <vector>

namespace trawl {

class HashSet64 {
public:
  explicit HashSet64(std::size_t expected = 1024);

  // Inserts h (must not be 0); returns false when it was already present.
  bool insert(std::uint64_t h);
  bool contains(std::uint64_t h) const noexcept;
  std::size_t size() const noexcept { return size_; }
  std::size_t memory_bytes() const noexcept { return slots_.size() * sizeof(std::uint64_t); }

private:
  void grow();
  std::vector<std::uint64_t> slots_;
  std::size_t size_ = 0;
};

// Maps a task id to a HashSet64 key without collisions: splitmix64's finaliser is a bijection on
// 64-bit values, so distinct ids >= 1 give distinct keys (only id 0, never a task id, maps to 0).
inline std::uint64_t id_key(std::uint64_t id) noexcept {
  std::uint64_t z = id;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return z == 0 ? 1 : z;
}

} // namespace trawl
