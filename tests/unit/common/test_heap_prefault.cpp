// Memory pages made present ahead of use (common/heap_prefault.hpp): populate_block() and
// prime_block() on a mapping whose residency mincore() reports.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <string>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include "common/heap_prefault.hpp"

using trawl::populate_block;
using trawl::prime_block;

namespace {

const std::size_t kPage = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));

// An anonymous private mapping of `pages` pages, none of them touched.
struct Mapping {
  explicit Mapping(std::size_t pages) : size(pages * kPage) {
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    base = p == MAP_FAILED ? nullptr : static_cast<char*>(p);
  }
  ~Mapping() {
    if (base != nullptr) ::munmap(base, size);
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;

  // Which pages are resident, one flag per page.
  std::vector<bool> resident() const {
    std::vector<unsigned char> v(size / kPage);
    std::vector<bool> out;
    if (::mincore(base, size, v.data()) != 0) return out;
    for (unsigned char c : v) out.push_back((c & 1) != 0);
    return out;
  }

  char* base = nullptr;
  std::size_t size;
};

std::size_t count(const std::vector<bool>& v) {
  std::size_t n = 0;
  for (bool b : v) n += b ? 1 : 0;
  return n;
}

} // namespace

TEST_CASE("populate_block makes every page of the block present and keeps its bytes",
          "[heap_prefault]") {
  Mapping m(16);
  REQUIRE(m.base != nullptr);
  std::memset(m.base + 3 * kPage, 0x5a, kPage); // one page holds data already
  const auto before = m.resident();
  REQUIRE(before.size() == 16);
  CHECK(count(before) == 1);

  const std::size_t n = populate_block(m.base, m.size);
  if (n == 0) {
    WARN("the kernel refuses MADV_POPULATE_WRITE (older than Linux 5.14): nothing to check");
    return;
  }
  CHECK(n == m.size);
  CHECK(count(m.resident()) == 16);
  const char* data = m.base + 3 * kPage;
  CHECK(std::all_of(data, data + kPage, [](char c) { return c == 0x5a; }));
  CHECK(m.base[0] == 0); // a populated page of an anonymous mapping reads as zeros
}

TEST_CASE("populate_block takes in the partial pages at either end, and no other",
          "[heap_prefault]") {
  Mapping m(8);
  REQUIRE(m.base != nullptr);
  // From the middle of page 1 to the middle of page 6: pages 1..6 hold its bytes.
  const std::size_t n = populate_block(m.base + kPage + kPage / 2, 5 * kPage);
  if (n == 0) {
    WARN("the kernel refuses MADV_POPULATE_WRITE: nothing to check");
    return;
  }
  CHECK(n == 6 * kPage);
  const auto r = m.resident();
  REQUIRE(r.size() == 8);
  CHECK_FALSE(r[0]);
  CHECK(r[1]);
  CHECK(r[2]);
  CHECK(r[5]);
  CHECK(r[6]);
  CHECK_FALSE(r[7]);
  // One byte: its page alone.
  CHECK(populate_block(m.base + 7 * kPage + 10, 1) == kPage);
  CHECK(m.resident()[7]);
  CHECK_FALSE(m.resident()[0]);
}

TEST_CASE("populate_block on an empty block, or none, does nothing", "[heap_prefault]") {
  Mapping m(2);
  REQUIRE(m.base != nullptr);
  CHECK(populate_block(m.base + 1, 0) == 0);
  CHECK(populate_block(nullptr, 4 * kPage) == 0);
  CHECK(count(m.resident()) == 0);
}

TEST_CASE("prime_block populates the block, has the kernel read all of it, and keeps its bytes",
          "[heap_prefault]") {
  Mapping m(8);
  REQUIRE(m.base != nullptr);
  // From the middle of page 1 to the middle of page 6, every byte known.
  char* const block = m.base + kPage + kPage / 2;
  const std::size_t n = 5 * kPage;
  for (std::size_t i = 0; i < n; ++i) block[i] = static_cast<char>('a' + i % 23);
  const std::string before(block, n);
  ::madvise(m.base, m.size, MADV_DONTNEED); // gone again: the block's pages read as zeros now
  for (std::size_t i = 0; i < n; ++i) block[i] = static_cast<char>('a' + i % 23);
  const int scratch = ::memfd_create("test-prime", MFD_CLOEXEC);
  REQUIRE(scratch >= 0);
  const std::size_t populated = prime_block(block, n, scratch);
  if (populated == 0) WARN("the kernel refuses MADV_POPULATE_WRITE: nothing populated");
  else CHECK(populated == 6 * kPage);
  CHECK(std::string(block, n) == before);
  // The kernel read the block through its addresses: the scratch file holds its bytes, no more.
  struct stat st {};
  REQUIRE(::fstat(scratch, &st) == 0);
  CHECK(static_cast<std::size_t>(st.st_size) == n);
  std::string copied(n, '\0');
  CHECK(::pread(scratch, copied.data(), n, 0) == static_cast<ssize_t>(n));
  CHECK(copied == before);
  ::close(scratch);
  // Pages 0 and 7 hold no byte of it: neither populated nor read.
  const auto r = m.resident();
  REQUIRE(r.size() == 8);
  CHECK_FALSE(r[0]);
  CHECK_FALSE(r[7]);
}

TEST_CASE("prime_block without a scratch file, or on an empty block, only reads",
          "[heap_prefault]") {
  Mapping m(3);
  REQUIRE(m.base != nullptr);
  std::memset(m.base, 0x33, 2 * kPage);
  const std::size_t populated = prime_block(m.base + 100, 2 * kPage - 100, -1);
  CHECK((populated == 0 || populated == 2 * kPage));
  CHECK(std::all_of(m.base, m.base + 2 * kPage, [](char c) { return c == 0x33; }));
  CHECK_FALSE(m.resident()[2]);
  CHECK(prime_block(m.base + 1, 0, -1) == 0);
  CHECK(prime_block(nullptr, kPage, -1) == 0);
}
