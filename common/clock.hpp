// Wall-clock time as the protocol carries it (unix milliseconds).
#pragma once

#include <chrono>
#include <cstdint>

namespace trawl {

inline std::int64_t unix_ms_now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

} // namespace trawl
