// A cap on repeated warnings: a list with a million bad lines must not produce a million log
// lines. The first `budget` warnings are logged at warn level, one more says the rest are demoted,
// and every further one goes to debug. The counters that the final summary reports stay exact.
#pragma once

#include <cstdint>
#include <spdlog/spdlog.h>
#include <utility>

namespace trawl::fetcher {

class WarnBudget {
public:
  explicit WarnBudget(std::uint64_t budget = 50) : budget_(budget) {}

  template <typename... Args>
  void warn(spdlog::format_string_t<Args...> fmt, Args&&... args) {
    if (used_ < budget_) {
      spdlog::warn(fmt, std::forward<Args>(args)...);
    } else {
      if (used_ == budget_)
        spdlog::warn("further warnings of this kind are logged at debug level only");
      spdlog::debug(fmt, std::forward<Args>(args)...);
    }
    ++used_;
  }

private:
  std::uint64_t budget_;
  std::uint64_t used_ = 0;
};

} // namespace trawl::fetcher
