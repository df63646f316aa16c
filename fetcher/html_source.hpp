// Links from an HTML page: <a href>, <img src>, and the candidates of <img srcset> and
// <source srcset>, resolved against the page's <base href> (itself resolved against the page's
// URL) or the page's URL, with an HTML5 parser (Gumbo) and libcurl's RFC 3986 resolver (CURLU).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fetcher/source.hpp"

namespace trawl::fetcher {

// `ref` (absolute, or relative as in an href) resolved against the absolute URL `base`, with the
// fragment removed and surrounding ASCII whitespace ignored; nullopt when either cannot be parsed.
// Any scheme resolves; the filters decide which are wanted.
std::optional<std::string> resolve_url(std::string_view base, std::string_view ref);

// The URLs of a srcset attribute ("a.jpg 1x, b.jpg 2x"), in order, without their descriptors.
std::vector<std::string> parse_srcset(std::string_view srcset);

class HtmlSource final : public LinkSource {
public:
  // `page_url` is where the page came from (its URL, or --base-url for a local file); it may be
  // empty, and then relative links without a <base href> are skipped with a warning. Parsing
  // never fails: HTML5 parsing recovers from any input.
  HtmlSource(std::string_view html, const std::string& page_url);

  std::optional<std::string> next() override;
  std::string where() const override { return where_; }
  std::uint64_t skipped() const noexcept override { return skipped_; }

  std::size_t found() const noexcept { return links_.size(); }
  // Links to other schemes (mailto:, javascript:, data:), dropped without a warning.
  std::uint64_t other_schemes() const noexcept { return other_schemes_; }
  const std::string& base() const noexcept { return base_; }

private:
  std::vector<std::pair<std::string, std::string>> links_; // url, where
  std::size_t pos_ = 0;
  std::string where_;
  std::string base_;
  std::uint64_t skipped_ = 0;
  std::uint64_t other_schemes_ = 0;
  WarnBudget warn_;
};

} // namespace trawl::fetcher
