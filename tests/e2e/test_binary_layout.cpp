// The trawl binary's layout for its code in 2 MiB pages (TRAWL_HUGE_TEXT; docs/ARCHITECTURE.md,
// The launcher): every loadable segment aligned to 2 MiB, its file offset and its address alike
// modulo 2 MiB, the code segment starting on a 2 MiB boundary of both and holding at least one
// whole 2 MiB page.
#include <catch2/catch.hpp>

#include <cstdint>
#include <elf.h>
#include <fstream>
#include <vector>

namespace {

constexpr std::uint64_t kHuge = std::uint64_t{2} << 20;

std::vector<Elf64_Phdr> program_headers(const char* path) {
  std::ifstream in(path, std::ios::binary);
  Elf64_Ehdr eh{};
  in.read(reinterpret_cast<char*>(&eh), sizeof eh);
  REQUIRE(in.good());
  REQUIRE(eh.e_ident[EI_CLASS] == ELFCLASS64);
  REQUIRE(eh.e_phentsize == sizeof(Elf64_Phdr));
  std::vector<Elf64_Phdr> out(eh.e_phnum);
  in.seekg(static_cast<std::streamoff>(eh.e_phoff));
  in.read(reinterpret_cast<char*>(out.data()),
          static_cast<std::streamsize>(out.size() * sizeof(Elf64_Phdr)));
  REQUIRE(in.good());
  return out;
}

} // namespace

TEST_CASE("the trawl binary's segments are aligned for its code in 2 MiB pages", "[layout]") {
#ifndef TRAWL_HUGE_TEXT
  WARN("built with TRAWL_HUGE_TEXT=OFF: nothing to check");
  return;
#endif
  int code_segments = 0;
  for (const Elf64_Phdr& ph : program_headers(TRAWL_BIN)) {
    if (ph.p_type != PT_LOAD) continue;
    INFO("segment at offset " << ph.p_offset << ", address " << ph.p_vaddr);
    CHECK(ph.p_align >= kHuge);
    CHECK(ph.p_offset % kHuge == ph.p_vaddr % kHuge);
    if ((ph.p_flags & PF_X) == 0) continue;
    ++code_segments;
    CHECK(ph.p_vaddr % kHuge == 0);
    CHECK(ph.p_filesz >= kHuge);
  }
  CHECK(code_segments == 1);
}
