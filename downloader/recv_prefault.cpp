#include "downloader/recv_prefault.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <sys/mman.h>
#include <system_error>
#include <thread>
#include <unistd.h>

#include "common/heap_prefault.hpp"

namespace trawl::downloader {
namespace {

// What is noted, process-wide: libcurl's allocations may come from any thread. The size is 0 while
// nothing is noted; a block's slot is written once its index is taken, its size before its address.
// A slot's state says whether its block may still be primed: kLive until the thread takes it
// (kPriming) or libcurl frees it; kDone once primed or freed. A free waits for a prime under way,
// so the thread never reads a block that is gone (the allocator may have unmapped it).
enum SlotState : int { kLive = 0, kPriming = 1, kDone = 2 };
struct Noted {
  std::atomic<void*> block{nullptr};
  std::atomic<std::size_t> bytes{0};
  std::atomic<int> state{kLive};
};
std::atomic<std::size_t> g_size{0};
std::atomic<std::size_t> g_count{0};
// On from the first note until every noted block is primed or freed: until then each free looks
// for its block among the noted ones.
std::atomic<bool> g_guard{false};
std::array<Noted, RecvPrefault::kMaxNoted> g_noted{};

void note(void* p, std::size_t n) noexcept {
  const std::size_t size = g_size.load(std::memory_order_acquire);
  if (size == 0 || (n != size && n != size + 1) || p == nullptr) return;
  const std::size_t i = g_count.fetch_add(1, std::memory_order_relaxed);
  if (i >= g_noted.size()) return;
  g_noted[i].bytes.store(n, std::memory_order_relaxed);
  g_noted[i].state.store(kLive, std::memory_order_relaxed);
  g_noted[i].block.store(p, std::memory_order_release);
}

// `p` is about to be freed (or moved by realloc): its live slot, if any, is done with, after the
// prime under way on it if there is one. An address freed and allocated again is noted again in a
// new slot; at most one of its slots is not kDone.
void forget(void* p) noexcept {
  if (p == nullptr || !g_guard.load(std::memory_order_acquire)) return;
  const std::size_t count = std::min(g_count.load(std::memory_order_acquire), g_noted.size());
  for (std::size_t i = 0; i < count; ++i) {
    Noted& slot = g_noted[i];
    if (slot.block.load(std::memory_order_acquire) != p) continue;
    int state = kLive;
    if (slot.state.compare_exchange_strong(state, kDone, std::memory_order_acq_rel)) return;
    if (state == kDone) continue; // an earlier life of this address
    while (slot.state.load(std::memory_order_acquire) == kPriming) std::this_thread::yield();
    return;
  }
}

// libcurl's defaults are the C library's functions; these call them.
void* noting_malloc(std::size_t n) {
  void* p = std::malloc(n);
  note(p, n);
  return p;
}
void noting_free(void* p) {
  forget(p);
  std::free(p);
}
void* noting_realloc(void* p, std::size_t n) {
  forget(p);
  return std::realloc(p, n);
}
char* noting_strdup(const char* s) { return ::strdup(s); }
void* noting_calloc(std::size_t count, std::size_t n) { return std::calloc(count, n); }

// Primes each noted block that libcurl has not freed (prime_block), holding it against a free
// meanwhile. A slot whose block is not written yet reads as none.
std::size_t prime_noted(std::size_t count) {
  const int scratch = ::memfd_create("trawl-prime", MFD_CLOEXEC); // -1: no kernel read
  std::size_t done = 0;
  for (std::size_t i = 0; i < count; ++i) {
    Noted& slot = g_noted[i];
    void* const p = slot.block.load(std::memory_order_acquire);
    int state = kLive;
    if (p == nullptr ||
        !slot.state.compare_exchange_strong(state, kPriming, std::memory_order_acq_rel))
      continue;
    done += prime_block(p, slot.bytes.load(std::memory_order_relaxed), scratch);
    slot.state.store(kDone, std::memory_order_release);
  }
  if (scratch >= 0) ::close(scratch);
  return done;
}

} // namespace

CURLcode curl_global_init_noting() {
  return curl_global_init_mem(CURL_GLOBAL_DEFAULT, noting_malloc, noting_free, noting_realloc,
                              noting_strdup, noting_calloc);
}

RecvPrefault::RecvPrefault(std::size_t buffer_bytes) {
  // The slots an earlier instance used (none in a downloader, which has one).
  g_guard.store(false, std::memory_order_release);
  const std::size_t used = std::min(g_count.exchange(0, std::memory_order_relaxed), g_noted.size());
  for (std::size_t i = 0; i < used; ++i) g_noted[i].block.store(nullptr, std::memory_order_relaxed);
  g_guard.store(true, std::memory_order_release);
  g_size.store(buffer_bytes, std::memory_order_release);
}

RecvPrefault::~RecvPrefault() {
  g_size.store(0, std::memory_order_release);
  wait();
  g_guard.store(false, std::memory_order_release);
}

std::size_t RecvPrefault::noted() const noexcept {
  return std::min(g_count.load(std::memory_order_acquire), g_noted.size());
}

void RecvPrefault::start() {
  if (started_) return;
  started_ = true;
  g_size.store(0, std::memory_order_release);
  const std::size_t count = noted();
  const auto run = [this, count] {
    populated_ = prime_noted(count);
    g_guard.store(false, std::memory_order_release); // every slot is done with
  };
  if (count == 0) {
    g_guard.store(false, std::memory_order_release);
    return;
  }
  try {
    thread_ = std::thread(run);
  } catch (const std::system_error&) {
    run();
  }
}

std::size_t RecvPrefault::wait() {
  if (thread_.joinable()) thread_.join();
  return populated_;
}

} // namespace trawl::downloader
