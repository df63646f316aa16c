#include "common/host.hpp"

#include <unistd.h>

namespace trawl {

std::string host_name() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') return "node";
  return host;
}

} // namespace trawl
