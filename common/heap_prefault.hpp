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

} // namespace trawl
