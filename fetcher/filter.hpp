// What the fetcher lets through: a valid http(s) URL, with a wanted extension, seen for the first
// time. No ZeroMQ, no network; counters feed the fetcher's final summary line.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/hash_set.hpp"
#include "fetcher/warn_budget.hpp"

namespace re2 {
class RE2;
}

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
  enum class Verdict { accept, invalid, wrong_extension, no_match, excluded, duplicate };

  // `exts` as given on the command line (normalised here); empty means every extension.
  // Throws std::invalid_argument for a malformed extension. The de-duplication set starts small
  // and doubles as links come: made for 65,536 links, its 1 MB of slots was zeroed before the
  // first request of every job (HashSet64 of 65,536 and 91 inserts in a fresh process, 20 runs:
  // median 0.60 ms, 0.52-1.58; of 1,024: 0.015 ms).
  explicit LinkFilter(const std::vector<std::string>& exts, std::size_t expected_links = 1024);
  ~LinkFilter();
  LinkFilter(const LinkFilter&) = delete;
  LinkFilter& operator=(const LinkFilter&) = delete;

  // Keep only URLs in which `match` finds a match (when not empty) and drop those in which
  // `exclude` does (when not empty): RE2 syntax (as POSIX extended / Perl, without
  // backreferences), searched anywhere in the URL, case-sensitive unless the pattern says (?i).
  // Throws std::invalid_argument naming the flag and RE2's error for an invalid pattern.
  void set_patterns(const std::string& match, const std::string& exclude);

  // Decides about one URL; `where` ("line 12", "data[3]") names it in the log line of an invalid
  // one. Counts each verdict. Only accepted URLs enter the de-duplication set.
  Verdict check(std::string_view url, std::string_view where);

  std::uint64_t accepted() const noexcept { return accepted_; }
  std::uint64_t invalid() const noexcept { return invalid_; }
  std::uint64_t wrong_extension() const noexcept { return wrong_extension_; }
  std::uint64_t duplicates() const noexcept { return duplicates_; }
  std::uint64_t unmatched() const noexcept { return no_match_; }
  std::uint64_t excluded() const noexcept { return excluded_; }
  // Bytes held by the de-duplication set (8 per slot; 8-16 per distinct accepted URL).
  std::size_t dedup_bytes() const noexcept { return seen_.memory_bytes(); }
  const std::vector<std::string>& extensions() const noexcept { return exts_; }

private:
  std::vector<std::string> exts_;
  std::unique_ptr<re2::RE2> match_, exclude_;
  HashSet64 seen_;
  WarnBudget warn_;
  std::uint64_t accepted_ = 0;
  std::uint64_t invalid_ = 0;
  std::uint64_t wrong_extension_ = 0;
  std::uint64_t duplicates_ = 0;
  std::uint64_t no_match_ = 0;
  std::uint64_t excluded_ = 0;
};

} // namespace trawl::fetcher
