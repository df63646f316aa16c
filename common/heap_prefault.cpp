#include "common/heap_prefault.hpp"

#include <cstdint>
#include <sys/mman.h>
#include <unistd.h>

namespace trawl {

std::size_t populate_block(void* p, std::size_t n) noexcept {
  if (p == nullptr || n == 0) return 0;
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<std::uintptr_t>(p) & ~(page - 1);
  const auto end = (reinterpret_cast<std::uintptr_t>(p) + n + page - 1) & ~(page - 1);
  if (::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_WRITE) != 0) return 0;
  return end - begin;
}

} // namespace trawl
