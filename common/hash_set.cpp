#include "common/hash_set.hpp"

#include <bit>
#include <stdexcept>

namespace trawl {

HashSet64::HashSet64(std::size_t expected) {
  slots_.assign(std::bit_ceil(expected < 8 ? std::size_t{16} : expected * 2), 0);
}

bool HashSet64::insert(std::uint64_t h) {
  if (h == 0) throw std::invalid_argument("HashSet64: 0 is reserved");
  if ((size_ + 1) * 10 > slots_.size() * 7) grow();
  const std::size_t mask = slots_.size() - 1;
  for (std::size_t i = h & mask;; i = (i + 1) & mask) {
    if (slots_[i] == h) return false;
    if (slots_[i] == 0) {
      slots_[i] = h;
      ++size_;
      return true;
    }
  }
}

bool HashSet64::contains(std::uint64_t h) const noexcept {
  if (h == 0) return false; // 0 marks an empty slot; it is never a member
  const std::size_t mask = slots_.size() - 1;
  for (std::size_t i = h & mask;; i = (i + 1) & mask) {
    if (slots_[i] == h) return true;
    if (slots_[i] == 0) return false;
  }
}

void HashSet64::grow() {
  std::vector<std::uint64_t> old;
  old.swap(slots_);
  slots_.assign(old.size() * 2, 0);
  const std::size_t mask = slots_.size() - 1;
  for (std::uint64_t h : old) {
    if (h == 0) continue;
    std::size_t i = h & mask;
    while (slots_[i] != 0) i = (i + 1) & mask;
    slots_[i] = h;
  }
}

} // namespace trawl
