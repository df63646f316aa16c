#include "common/heap_prefault.hpp"

#include <cstdint>
#include <cstdlib>
#include <sys/mman.h>
#include <system_error>
#include <unistd.h>
#include <vector>

// jemalloc's control interface, referenced weakly: its address is null unless jemalloc is in the
// process, whether linked into the executable (the trawl binary links its archive, and the
// executable's own symbols are not in the table that dlsym(RTLD_DEFAULT) searches) or loaded as a
// shared library.
extern "C" int mallctl(const char*, void*, std::size_t*, void*, std::size_t) __attribute__((weak));

namespace trawl {
namespace {

constexpr std::size_t kBlock = std::size_t{1} << 20;

} // namespace

std::size_t populate_pages(void* p, std::size_t n) noexcept {
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = (reinterpret_cast<std::uintptr_t>(p) + page - 1) & ~(page - 1);
  const auto end = (reinterpret_cast<std::uintptr_t>(p) + n) & ~(page - 1);
  if (p == nullptr || end <= begin) return 0;
  if (::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_WRITE) != 0) return 0;
  return end - begin;
}

bool allocator_reuses_freed_pages() noexcept { return &mallctl != nullptr; }

std::size_t populate_heap(std::size_t bytes) {
  std::vector<void*> blocks;
  blocks.reserve((bytes + kBlock - 1) / kBlock);
  std::size_t done = 0;
  for (std::size_t have = 0; have < bytes; have += kBlock) {
    void* b = std::malloc(kBlock);
    if (b == nullptr) break;
    blocks.push_back(b);
    const std::size_t n = populate_pages(b, kBlock);
    if (n == 0) break; // the kernel refuses: no point in the next ones
    done += n;
  }
  for (void* b : blocks) std::free(b);
  return done;
}

HeapPrefault::HeapPrefault(std::size_t bytes) {
  if (bytes == 0 || !allocator_reuses_freed_pages()) return;
  try {
    thread_ = std::thread([this, bytes] { populated_ = populate_heap(bytes); });
  } catch (const std::system_error&) { // no thread: the pages fault in when first used
  }
}

HeapPrefault::~HeapPrefault() { wait(); }

std::size_t HeapPrefault::wait() {
  if (thread_.joinable()) thread_.join();
  return populated_;
}

} // namespace trawl
