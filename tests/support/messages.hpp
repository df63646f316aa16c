// Message builders for tests.
#pragma once

#include <cstdint>

#include "proto/messages.hpp"

namespace trawl::testsupport {

// A job message with the six fields every ventilator sends; the optional ones (active, nodes,
// re-dispatch counts) stay empty. (Aggregate initialisation by position would leave them out
// too, with a -Wmissing-field-initializers warning at every use.)
inline proto::Job job_of(std::int64_t started, std::int64_t total, std::uint64_t done = 0,
                         std::uint64_t failed = 0, std::uint64_t skipped = 0,
                         bool complete = false) {
  proto::Job j;
  j.started_unix_ms = started;
  j.total = total;
  j.done = done;
  j.failed = failed;
  j.skipped = skipped;
  j.complete = complete;
  return j;
}

} // namespace trawl::testsupport
