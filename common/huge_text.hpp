// trawl's code mapped in 2 MiB pages. On the VMs we measure on (PVM guests) every page a process
// touches for the first time costs it a fault or a hypervisor mapping (~3-6 us a page, more for a
// fault), and each process of `trawl pipeline` is a fork with an address space of its own: each
// role touched its 3-4 MB of trawl's code again, page by page. The trawl binary is linked with its
// segments aligned to 2 MiB in the file and in memory (app/CMakeLists.txt, TRAWL_HUGE_TEXT), so
// that where the page cache holds the binary in 2 MiB folios the kernel maps its code a 2 MiB page
// at a time. The build writes the binary in 2 MiB writes (scripts/rewrite-2m), which leaves it in
// the page cache in such folios; a binary read back from disk is in smaller ones, except the parts
// first read after this advice (below), which the kernel reads ahead 2 MiB at a time.
#pragma once

#include <cstddef>

namespace trawl {

// The huge page advice (MADV_HUGEPAGE) for the 2 MiB-aligned part of this executable's code
// segment. Returns the bytes advised: 0 when the segment holds no whole aligned 2 MiB or the
// kernel refuses the advice (no transparent huge pages).
std::size_t advise_huge_text() noexcept;

} // namespace trawl
