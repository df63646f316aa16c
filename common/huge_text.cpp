#include "common/huge_text.hpp"

#include <cstdint>
#include <link.h>
#include <sys/mman.h>

namespace trawl {
namespace {

constexpr std::uintptr_t kHuge = std::uintptr_t{2} << 20;

// dl_iterate_phdr's first object is the executable.
int advise_first(dl_phdr_info* info, std::size_t, void* data) {
  auto* advised = static_cast<std::size_t*>(data);
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD || (ph.p_flags & PF_X) == 0) continue;
    const std::uintptr_t start = info->dlpi_addr + ph.p_vaddr;
    const std::uintptr_t begin = (start + kHuge - 1) & ~(kHuge - 1);
    const std::uintptr_t end = (start + ph.p_memsz) & ~(kHuge - 1);
    if (end > begin && ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE) == 0)
      *advised += end - begin;
  }
  return 1;
}

} // namespace

std::size_t advise_huge_text() noexcept {
  std::size_t advised = 0;
  ::dl_iterate_phdr(advise_first, &advised);
  return advised;
}

} // namespace trawl
