// The ventilator's naming authority: gives every link of a job a file name that no other link of
// the job has. The first URL with a given base name keeps it ("cat.jpg"); a later, different URL
// whose name is taken (also when it differs only in case, for case-insensitive filesystems) gets
// "cat-1a2b3c4d.jpg", with 8 hex digits of its URL hash. Memory: one 64-bit hash per name.
#pragma once

#include <string>
#include <string_view>

#include "common/hash_set.hpp"

namespace trawl::broker {

class NameAssigner {
public:
  std::string assign(std::string_view url);
  // Marks a name as taken (names already given in an earlier run, from the ledger).
  void reserve_name(const std::string& name) { take(name); }

private:
  bool take(const std::string& name);
  HashSet64 taken_;
};

} // namespace trawl::broker
