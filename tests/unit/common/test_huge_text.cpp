// The huge page advice for this executable's code (common/huge_text.hpp): what it advises is whole
// 2 MiB pages of the code segment, and /proc/self/smaps shows the advice on that range.
#include <catch2/catch.hpp>

#include <cstdint>
#include <fstream>
#include <link.h>
#include <sstream>
#include <string>

#include "common/huge_text.hpp"

namespace {

constexpr std::uintptr_t kHuge = std::uintptr_t{2} << 20;

struct Code {
  std::uintptr_t start = 0, end = 0;
};

int find_code(dl_phdr_info* info, std::size_t, void* data) {
  auto* code = static_cast<Code*>(data);
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type == PT_LOAD && (ph.p_flags & PF_X) != 0) {
      code->start = info->dlpi_addr + ph.p_vaddr;
      code->end = code->start + ph.p_memsz;
    }
  }
  return 1;
}

// The VmFlags of the mapping that holds `addr`, from /proc/self/smaps.
std::string vm_flags_at(std::uintptr_t addr) {
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    std::uintptr_t lo = 0, hi = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> lo >> dash >> hi && dash == '-') {
      inside = lo <= addr && addr < hi;
      continue;
    }
    if (inside && line.rfind("VmFlags:", 0) == 0) return line;
  }
  return "";
}

} // namespace

TEST_CASE("advise_huge_text advises the whole 2 MiB pages of the code segment", "[huge_text]") {
  Code code;
  ::dl_iterate_phdr(find_code, &code);
  REQUIRE(code.end > code.start);
  const std::uintptr_t first = (code.start + kHuge - 1) & ~(kHuge - 1);
  const std::uintptr_t last = code.end & ~(kHuge - 1);
  const std::size_t whole = last > first ? last - first : 0;
  const std::size_t advised = trawl::advise_huge_text();
  if (whole == 0) {
    CHECK(advised == 0);
    return;
  }
  if (advised == 0) {
    WARN("the kernel refuses MADV_HUGEPAGE (no transparent huge pages): nothing advised");
    return;
  }
  CHECK(advised == whole);
  // The advice is on that range (VmFlags "hg"), and not on the code before it.
  CHECK(vm_flags_at(first).find(" hg") != std::string::npos);
  if (first > code.start) CHECK(vm_flags_at(code.start).find(" hg") == std::string::npos);
}
