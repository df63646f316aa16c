// Heap pages made present ahead of their first use. On the VMs we measure on, the first touch of a
// fresh page costs 11-18 us (a page fault, then the hypervisor's own mapping of it); a range made
// present with MADV_POPULATE_WRITE costs ~1 us a page in one system call, and its first touch
// ~6 us. A downloader touches its buffers for the first time when its first responses arrive all
// together (libcurl's receive buffer per transfer, the chunks of large bodies): in a classic job
// (1 x 64) some 1,300 of those faults fell inside the burst that decides the job's end. So each
// downloader, as it starts, has a thread populate a few MiB of heap and free them again; the
// allocator (jemalloc, which keeps freed pages mapped and hands them out before new ones) then
// serves those buffers from pages already present.
#pragma once

#include <cstddef>
#include <thread>

namespace trawl {

// Makes the whole pages inside [p, p + n) present and writable (MADV_POPULATE_WRITE). Returns the
// bytes it made present: 0 when the range holds no whole page or the kernel refuses the advice
// (older than Linux 5.14). The contents are left as they are.
std::size_t populate_pages(void* p, std::size_t n) noexcept;

// Whether the allocator serving this process keeps the pages of freed blocks mapped and reuses
// them first: jemalloc (the trawl binary links it) does; glibc's malloc returns a block of a MiB
// to the system at once, so populating one ahead would be wasted.
bool allocator_reuses_freed_pages() noexcept;

// Allocates `bytes` in blocks of 1 MiB (far below jemalloc's threshold for blocks that get an
// arena of their own), populates each, then frees them all. Returns the bytes it made present
// (0 when the kernel refuses the advice).
std::size_t populate_heap(std::size_t bytes);

// populate_heap(bytes) on a thread of its own. Nothing when `bytes` is 0, when the allocator would
// not reuse the pages, or when no thread can start. The destructor waits for it (a few ms).
class HeapPrefault {
public:
  explicit HeapPrefault(std::size_t bytes);
  ~HeapPrefault();
  HeapPrefault(const HeapPrefault&) = delete;
  HeapPrefault& operator=(const HeapPrefault&) = delete;

  // Waits for the thread; returns the bytes it made present (0 when it did nothing).
  std::size_t wait();

private:
  std::thread thread_;
  std::size_t populated_ = 0;
};

} // namespace trawl
