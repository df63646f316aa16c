// A token bucket for log lines about things a remote peer can repeat at will (refused keys,
// frames of another protocol version): a burst is logged, then about one line per interval, and
// the next line that is logged says how many were left out. Not thread-safe: one per thread.
#pragma once

#include <chrono>
#include <cstdint>

namespace trawl {

class LogRateLimit {
public:
  using Clock = std::chrono::steady_clock;

  explicit LogRateLimit(int burst = 5, std::chrono::milliseconds refill = std::chrono::seconds(2))
      : burst_(burst), refill_(refill), tokens_(burst), last_(Clock::now()) {}

  // True when this occurrence may be logged; otherwise it is counted as suppressed.
  bool allow(Clock::time_point now = Clock::now()) {
    if (tokens_ < burst_ && now > last_) {
      const auto gained = (now - last_) / refill_;
      if (gained > 0) {
        tokens_ = gained >= burst_ - tokens_ ? burst_ : tokens_ + static_cast<int>(gained);
        last_ += refill_ * gained;
      }
    }
    if (tokens_ == burst_) last_ = now;
    if (tokens_ > 0) {
      --tokens_;
      return true;
    }
    ++suppressed_;
    return false;
  }

  // How many were suppressed since the last call; resets the count. Call after allow() is true.
  std::uint64_t take_suppressed() {
    const auto n = suppressed_;
    suppressed_ = 0;
    return n;
  }

private:
  int burst_;
  std::chrono::milliseconds refill_;
  int tokens_;
  Clock::time_point last_;
  std::uint64_t suppressed_ = 0;
};

} // namespace trawl
