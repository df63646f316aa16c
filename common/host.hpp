// This host's name, as the processes name themselves to each other (downloader node names, the
// address a pipeline advertises to other hosts).
#pragma once

#include <string>

namespace trawl {

// gethostname(2), or "node" when it fails.
std::string host_name();

} // namespace trawl
