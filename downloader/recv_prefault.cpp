#include "downloader/recv_prefault.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <system_error>

#include "common/heap_prefault.hpp"

namespace trawl::downloader {
namespace {

// What is noted, process-wide: libcurl's allocations may come from any thread. The size is 0 while
// nothing is noted; a block's slot is written once its index is taken, its size before its address.
struct Noted {
  std::atomic<void*> block{nullptr};
  std::atomic<std::size_t> bytes{0};
};
std::atomic<std::size_t> g_size{0};
std::atomic<std::size_t> g_count{0};
std::array<Noted, RecvPrefault::kMaxNoted> g_noted{};

void note(void* p, std::size_t n) noexcept {
  const std::size_t size = g_size.load(std::memory_order_acquire);
  if (size == 0 || (n != size && n != size + 1) || p == nullptr) return;
  const std::size_t i = g_count.fetch_add(1, std::memory_order_relaxed);
  if (i >= g_noted.size()) return;
  g_noted[i].bytes.store(n, std::memory_order_relaxed);
  g_noted[i].block.store(p, std::memory_order_release);
}

// libcurl's defaults are the C library's functions; these call them.
void* noting_malloc(std::size_t n) {
  void* p = std::malloc(n);
  note(p, n);
  return p;
}
void noting_free(void* p) { std::free(p); }
void* noting_realloc(void* p, std::size_t n) { return std::realloc(p, n); }
char* noting_strdup(const char* s) { return ::strdup(s); }
void* noting_calloc(std::size_t count, std::size_t n) { return std::calloc(count, n); }

// A slot whose block is not written yet reads as none (populate_block does nothing with it).
std::size_t populate_noted(std::size_t count) {
  std::size_t done = 0;
  for (std::size_t i = 0; i < count; ++i) {
    void* const p = g_noted[i].block.load(std::memory_order_acquire);
    done += populate_block(p, g_noted[i].bytes.load(std::memory_order_relaxed));
  }
  return done;
}

} // namespace

CURLcode curl_global_init_noting() {
  return curl_global_init_mem(CURL_GLOBAL_DEFAULT, noting_malloc, noting_free, noting_realloc,
                              noting_strdup, noting_calloc);
}

RecvPrefault::RecvPrefault(std::size_t buffer_bytes) {
  // The slots an earlier instance used (none in a downloader, which has one).
  const std::size_t used = std::min(g_count.exchange(0, std::memory_order_relaxed), g_noted.size());
  for (std::size_t i = 0; i < used; ++i) g_noted[i].block.store(nullptr, std::memory_order_relaxed);
  g_size.store(buffer_bytes, std::memory_order_release);
}

RecvPrefault::~RecvPrefault() {
  g_size.store(0, std::memory_order_release);
  wait();
}

std::size_t RecvPrefault::noted() const noexcept {
  return std::min(g_count.load(std::memory_order_acquire), g_noted.size());
}

void RecvPrefault::start() {
  if (started_) return;
  started_ = true;
  g_size.store(0, std::memory_order_release);
  const std::size_t count = noted();
  if (count == 0) return;
  // A block libcurl has freed since is populated all the same, or the advice fails for its
  // pages; either way no byte changes (populate_block).
  try {
    thread_ = std::thread([this, count] { populated_ = populate_noted(count); });
  } catch (const std::system_error&) {
    populated_ = populate_noted(count);
  }
}

std::size_t RecvPrefault::wait() {
  if (thread_.joinable()) thread_.join();
  return populated_;
}

} // namespace trawl::downloader
