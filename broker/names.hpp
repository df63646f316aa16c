// The ventilator's naming authority: gives every link of a job a file name that no other link of
// the job has, in the layout chosen with --name and --shard:
// - basename (default): the URL's base name, sanitised. The first URL with a given base name keeps
//   it ("cat.jpg"); a later, different URL whose name is taken (also when it differs only in case,
//   for case-insensitive filesystems) gets "cat-1a2b3c4d.jpg", with 8 hex digits of its URL hash;
// - hash: the SHA-256 of the URL in hex, plus the URL's extension ("9f86d0...0f00a08.jpg"). It is
//   the URL's hash, not the content's: names are chosen before anything is downloaded;
// - index: the link's position in the job (its task id, from 1), zero-padded to 9 digits, plus
//   the extension ("000000042.jpg").
// --shard N puts the files into subdirectories of at most N files each, by job order: links 1..N
// in "0000/", N+1..2N in "0001/", ... The stored name is then "0000/cat.jpg" (split_name()).
// Memory: one 64-bit hash per name.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "common/hash_set.hpp"

namespace trawl::broker {

enum class NameLayout { basename, hash, index };

// "basename", "hash" or "index"; nullopt for anything else.
std::optional<NameLayout> parse_layout(std::string_view s);

struct NamingOptions {
  NameLayout layout = NameLayout::basename;
  std::uint64_t shard = 0; // files per subdirectory; 0 = none
};

// The extension a hash or index name keeps: the URL's, lower-case, with its dot, when it is 1 to
// 15 letters or digits; "" otherwise.
std::string plain_extension(std::string_view url);

// "0000/cat.jpg" -> {"0000", "cat.jpg"}; "cat.jpg" -> {"", "cat.jpg"}.
std::pair<std::string_view, std::string_view> split_name(std::string_view stored);

class NameAssigner {
public:
  NameAssigner() = default;
  explicit NameAssigner(const NamingOptions& o) : opt_(o) {}

  // The name of the link `url`, the `index`-th of the job (its task id, from 1).
  std::string assign(std::string_view url, std::uint64_t index);
  // The same, for the next index this assigner has not seen.
  std::string assign(std::string_view url) { return assign(url, ++count_); }
  // Marks a name as taken (names already given in an earlier run, from the ledger).
  void reserve_name(const std::string& stored) { take(std::string(split_name(stored).second)); }

  const NamingOptions& options() const noexcept { return opt_; }

private:
  bool take(const std::string& name);
  NamingOptions opt_;
  std::uint64_t count_ = 0;
  HashSet64 taken_;
};

} // namespace trawl::broker
