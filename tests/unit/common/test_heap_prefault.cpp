// Heap pages made present ahead of use (common/heap_prefault.hpp): populate_pages() on a mapping
// whose residency mincore() reports, and the HeapPrefault thread's count.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <sys/mman.h>
#include <unistd.h>
#include <vector>

#include "common/heap_prefault.hpp"

using trawl::allocator_reuses_freed_pages;
using trawl::HeapPrefault;
using trawl::populate_heap;
using trawl::populate_pages;

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

TEST_CASE("populate_pages makes every whole page of the range present and keeps its bytes",
          "[heap_prefault]") {
  Mapping m(16);
  REQUIRE(m.base != nullptr);
  std::memset(m.base + 3 * kPage, 0x5a, kPage); // one page holds data already
  const auto before = m.resident();
  REQUIRE(before.size() == 16);
  CHECK(count(before) == 1);

  const std::size_t n = populate_pages(m.base, m.size);
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

TEST_CASE("populate_pages leaves the partial pages at either end alone", "[heap_prefault]") {
  Mapping m(8);
  REQUIRE(m.base != nullptr);
  // From the middle of page 1 to the middle of page 6: whole pages 2..5.
  const std::size_t n = populate_pages(m.base + kPage + kPage / 2, 5 * kPage);
  if (n == 0) {
    WARN("the kernel refuses MADV_POPULATE_WRITE: nothing to check");
    return;
  }
  CHECK(n == 4 * kPage);
  const auto r = m.resident();
  REQUIRE(r.size() == 8);
  CHECK_FALSE(r[0]);
  CHECK_FALSE(r[1]);
  CHECK(r[2]);
  CHECK(r[5]);
  CHECK_FALSE(r[6]);
  CHECK_FALSE(r[7]);
}

TEST_CASE("populate_pages on a range without a whole page, or none, does nothing",
          "[heap_prefault]") {
  Mapping m(2);
  REQUIRE(m.base != nullptr);
  CHECK(populate_pages(m.base + 1, kPage) == 0); // straddles a boundary: no whole page
  CHECK(populate_pages(m.base, kPage - 1) == 0);
  CHECK(populate_pages(nullptr, 4 * kPage) == 0);
  CHECK(count(m.resident()) == 0);
}

TEST_CASE("populate_heap populates the blocks it is asked for", "[heap_prefault]") {
  CHECK(populate_heap(0) == 0); // nothing asked, nothing done
  const std::size_t n = populate_heap(3u << 20);
  if (n == 0) {
    WARN("the kernel refuses MADV_POPULATE_WRITE: nothing to check");
    return;
  }
  // Each block's whole pages: all of them when the allocator aligns the block to a page, one
  // fewer when it does not (glibc puts a header before it).
  CHECK(n <= (3u << 20));
  CHECK(n >= (3u << 20) - 3 * kPage);
}

TEST_CASE("HeapPrefault populates only under an allocator that reuses freed pages",
          "[heap_prefault]") {
  HeapPrefault none(0);
  CHECK(none.wait() == 0);
  HeapPrefault maybe(1u << 20);
  if (allocator_reuses_freed_pages()) CHECK(maybe.wait() > 0);
  else CHECK(maybe.wait() == 0);
  CHECK(maybe.wait() == maybe.wait()); // waiting again returns the same
}
