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

std::size_t prime_block(void* p, std::size_t n, int scratch_fd) noexcept {
  const std::size_t populated = populate_block(p, n);
  if (p == nullptr || n == 0) return populated;
  // The kernel's read: every page of the block, through the block's own addresses.
  if (scratch_fd >= 0) (void)!::pwrite(scratch_fd, p, n, 0);
  // Ours: a byte of each page, within the block (the rest of its first page may be another's).
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto first = reinterpret_cast<std::uintptr_t>(p);
  const auto last = first + n - 1;
  for (std::uintptr_t a = first;;) {
    const unsigned char c = *reinterpret_cast<const volatile unsigned char*>(a);
    asm volatile("" : : "r"(c));
    const std::uintptr_t next = (a & ~(page - 1)) + page;
    if (next > last) break;
    a = next;
  }
  return populated;
}

} // namespace trawl
