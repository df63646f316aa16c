// What the fetcher lets through: a valid http(s) URL, with a wanted extension, seen for the first
// time. No ZeroMQ, no network; counters feed the fetcher's final summary line.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/hash_set.hpp"
#include "fetcher/warn_budget.hpp"

namespace trawl::fetcher {

// True for an absolute http:// or https:// URL (scheme case-insensitive) with a non-empty host,
// an optional numeric port, at most proto::kMaxUrlBytes bytes, no spaces, no control bytes, and
// any non-ASCII bytes forming valid UTF-8.
bool is_valid_url(std::string_view url) noexcept;

// ".jpg" for "jpg", ".JPG" or ".jpg". Throws std::invalid_argument for an empty extension or one
// containing '/', '?', '#', whitespace or control bytes.
std::string normalize_extension(std::string_view ext);

class LinkFilter {
public:
  enum class Verdict { accept, invalid, wrong_extension, duplicate };

  // `exts` as given on the command line (normalised here); empty means every extension.
  // Throws std::invalid_argument for a malformed extension.
  explicit LinkFilter(const std::vector<std::string>& exts, std::size_t expected_links = 1 << 16);

  // Decides about one URL; `where` ("line 12", "data[3]") names it in the log line of an invalid
  // one. Counts each verdict. Only accepted URLs enter the de-duplication set.
  Verdict check(std::string_view url, std::string_view where);

  std::uint64_t accepted() const noexcept { return accepted_; }
  std::uint64_t invalid() const noexcept { return invalid_; }
  std::uint64_t wrong_extension() const noexcept { return wrong_extension_; }
  std::uint64_t duplicates() const noexcept { return duplicates_; }
  const std::vector<std::string>& extensions() const noexcept { return exts_; }

private:
  std::vector<std::string> exts_;
  HashSet64 seen_;
  WarnBudget warn_;
  std::uint64_t accepted_ = 0;
  std::uint64_t invalid_ = 0;
  std::uint64_t wrong_extension_ = 0;
  std::uint64_t duplicates_ = 0;
};

} // namespace trawl::fetcher
