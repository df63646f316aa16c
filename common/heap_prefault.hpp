// Memory pages made present ahead of their first use. On the VMs we measure on, the first touch of
// a fresh page costs 11-18 us (a page fault, then the hypervisor's own mapping of it); a range
// made present with MADV_POPULATE_WRITE costs ~1 us a page in one system call, and its first
// touch ~6 us. The downloader uses it for libcurl's receive buffers (downloader/recv_prefault.hpp),
// which its first responses touch for the first time all together.
#pragma once

#include <cstddef>

namespace trawl {

// Makes every page that holds a byte of the block [p, p + n) present and writable
// (MADV_POPULATE_WRITE): a live allocation's pages, each of them mapped and writable, the partial
// ones at either end included. The contents are left as they are. Returns the bytes of the pages
// made present: 0 for an empty block, or when the kernel refuses the advice (older than Linux
// 5.14, or a page that is not mapped writable).
std::size_t populate_block(void* p, std::size_t n) noexcept;

// populate_block, then each page of the block read once through its address by the kernel and
// once by this thread, so that neither the kernel's first access (a recv() into it) nor the
// program's (a copy out of it) is the first of its mode. On the VMs we measure on (PVM guests) the
// hypervisor maps a page for the guest's kernel and for its programs apart, ~6 us each at the
// first access of each mode, whatever thread or core makes it: a 4 MiB mapping, MADV_POPULATE_WRITE
// on one core (~1 us a page), then on the other a copy into it by the kernel (pread) 6.0-6.5 us a
// page and a read of a byte per page 5.1 us; after the kernel's read of each page (a write(2) from
// it) and a byte read per page on the first core, 0.46 and 0.01 us. The kernel reads the block by
// a pwrite(2) of it to `scratch_fd` (a memfd; -1: not at all), so the block must be live and
// allocated for the whole call; its bytes are only read. Returns what populate_block does.
std::size_t prime_block(void* p, std::size_t n, int scratch_fd) noexcept;

} // namespace trawl
