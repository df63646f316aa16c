// robots.txt (RFC 9309) for --respect-robots: the parser and matcher, no I/O.
// RobotsRules::parse() keeps only the rules of the group that names the crawler's product token
// (all such groups, merged), else those of the "*" groups, else none (everything allowed).
// check() picks the rule whose pattern has the most octets among those matching the path;
// on a tie Allow wins; no match allows. Patterns know '*' (any run of octets) and a final '$'
// (end of the path); both sides are percent-normalised before they are compared.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace trawl::downloader {

// RFC 9309 asks crawlers to parse at least 500 KiB; the rest of a longer file is ignored.
inline constexpr std::size_t kMaxRobotsBytes = 500 * 1024;

class RobotsRules {
public:
  struct Rule {
    bool allow = false;
    std::string pattern; // percent-normalised, as written otherwise ('*', final '$')
  };
  struct Verdict {
    bool allowed = true;
    std::string rule; // the deciding line, e.g. "Disallow: /private/"; empty when none matched
  };

  // Nothing is disallowed (no robots.txt: 4xx).
  static RobotsRules allow_all() { return RobotsRules{}; }
  // Everything is disallowed (robots.txt unreachable: 5xx, network error).
  static RobotsRules disallow_all();
  // The rules of `body` for the crawler whose product token is `token` (e.g. "trawl"); matched
  // case-insensitively against each User-agent line. At most kMaxRobotsBytes of `body` are read.
  static RobotsRules parse(std::string_view body, std::string_view token);

  // `path` is the URL's path, plus '?' and the query when it has one ("" is read as "/").
  Verdict check(std::string_view path) const;

  const std::vector<Rule>& rules() const noexcept { return rules_; }

private:
  std::vector<Rule> rules_;
};

// The product token of a User-Agent value: its first run of letters, digits, '-' and '_'
// ("trawl/0.3 (+https://...)" -> "trawl").
std::string robots_token(std::string_view user_agent);

// Percent-encoding made canonical, so that equal paths compare equal (RFC 9309 2.2.2): %XX of an
// unreserved character (ALPHA, DIGIT, "-", ".", "_", "~") is decoded, other %XX get upper-case
// hex digits, and octets outside printable US-ASCII are encoded.
std::string robots_normalise(std::string_view s);

// Whether `pattern` (normalised; '*' any run, a final '$' the end) matches the start of `path`
// (normalised), or all of it with '$'.
bool robots_match(std::string_view pattern, std::string_view path);

} // namespace trawl::downloader
