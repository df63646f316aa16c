#include "downloader/robots.hpp"

#include <algorithm>

namespace trawl::downloader {

namespace {

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                            [](char x, char y) { return lower(x) == lower(y); });
}

bool token_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

bool unreserved(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

void put_encoded(std::string& out, unsigned char c) {
  static constexpr char digits[] = "0123456789ABCDEF";
  out += '%';
  out += digits[c >> 4];
  out += digits[c & 0xF];
}

} // namespace

std::string robots_token(std::string_view user_agent) {
  user_agent = trim(user_agent);
  std::size_t n = 0;
  while (n < user_agent.size() && token_char(user_agent[n])) ++n;
  return std::string(user_agent.substr(0, n));
}

std::string robots_normalise(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
      const auto v = static_cast<unsigned char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
      if (unreserved(v)) {
        out += static_cast<char>(v);
      } else {
        put_encoded(out, v);
      }
      i += 2;
    } else if (c <= 0x20 || c >= 0x7F) {
      put_encoded(out, c);
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

bool robots_match(std::string_view pattern, std::string_view path) {
  const bool anchored = !pattern.empty() && pattern.back() == '$';
  if (anchored) pattern.remove_suffix(1);
  // Greedy matching with one backtracking point, the last '*' seen: O(|pattern| * |path|) at
  // worst, no recursion.
  std::size_t p = 0, s = 0;
  std::size_t star = std::string_view::npos, resume = 0;
  for (;;) {
    if (p == pattern.size()) {
      if (!anchored || s == path.size()) return true;
    } else if (pattern[p] == '*') {
      star = p++;
      resume = s;
      continue;
    } else if (s < path.size() && pattern[p] == path[s]) {
      ++p;
      ++s;
      continue;
    }
    // A mismatch (or the anchored end came too early): the last '*' takes one more octet.
    if (star == std::string_view::npos || resume >= path.size()) return false;
    p = star + 1;
    s = ++resume;
  }
}

RobotsRules RobotsRules::disallow_all() {
  RobotsRules r;
  r.rules_.push_back(Rule{false, "*"});
  return r;
}

RobotsRules RobotsRules::parse(std::string_view body, std::string_view token) {
  if (body.size() > kMaxRobotsBytes) body = body.substr(0, kMaxRobotsBytes);
  // A UTF-8 byte order mark may open the file.
  if (body.starts_with("\xEF\xBB\xBF")) body.remove_prefix(3);

  std::vector<Rule> mine, star;
  bool found_mine = false, found_star = false;
  // The group being read: whether its User-agent lines name us or "*". A User-agent line after
  // a rule starts a new group; rules before any User-agent line belong to no group.
  bool in_agents = false, group_mine = false, group_star = false;

  while (!body.empty()) {
    const std::size_t eol = body.find_first_of("\r\n");
    std::string_view line = body.substr(0, eol);
    body = eol == std::string_view::npos ? std::string_view{} : body.substr(eol + 1);
    if (const auto hash = line.find('#'); hash != std::string_view::npos)
      line = line.substr(0, hash);
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    const std::string_view key = trim(line.substr(0, colon));
    const std::string_view value = trim(line.substr(colon + 1));

    if (iequals(key, "user-agent")) {
      if (!in_agents) group_mine = group_star = false;
      in_agents = true;
      if (value == "*") {
        group_star = true;
        found_star = true;
      } else if (!token.empty() && iequals(robots_token(value), token)) {
        group_mine = true;
        found_mine = true;
      }
      continue;
    }
    const bool allow = iequals(key, "allow");
    if (!allow && !iequals(key, "disallow")) continue; // Sitemap, Crawl-delay, ...: not rules
    in_agents = false;
    if (value.empty()) continue; // "Disallow:" with nothing: no rule
    Rule r{allow, robots_normalise(value)};
    if (group_mine) mine.push_back(r);
    if (group_star) star.push_back(std::move(r));
  }

  RobotsRules rules;
  if (found_mine) {
    rules.rules_ = std::move(mine);
  } else if (found_star) {
    rules.rules_ = std::move(star);
  }
  return rules;
}

RobotsRules::Verdict RobotsRules::check(std::string_view path) const {
  const std::string p = path.empty() ? std::string("/") : robots_normalise(path);
  if (p == "/robots.txt") return {}; // always allowed (RFC 9309 2.2.2)
  const Rule* best = nullptr;
  for (const Rule& r : rules_) {
    if (!robots_match(r.pattern, p)) continue;
    if (best == nullptr || r.pattern.size() > best->pattern.size() ||
        (r.pattern.size() == best->pattern.size() && r.allow && !best->allow))
      best = &r;
  }
  if (best == nullptr) return {};
  return Verdict{best->allow, std::string(best->allow ? "Allow: " : "Disallow: ") + best->pattern};
}

} // namespace trawl::downloader
