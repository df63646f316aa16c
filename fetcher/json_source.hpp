// Links from any JSON document, found by a small path syntax (--links), and the next page's URL
// (--next) for APIs that page by link. One document is parsed whole; its size is bounded by the
// caller (--max-body-bytes).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "fetcher/source.hpp"

namespace trawl::fetcher {

// A path into a JSON document: field names separated by '.', each optionally followed by "[]"
// (every element of that array), and "[]" alone at the start for a document that is an array:
// "data[].link", "items[].images[].url", "urls[]", "[].href", "next", "paging.next".
class JsonPath {
public:
  // Throws std::invalid_argument naming the problem for an empty path, an empty field name, or
  // a name holding '[', ']' or whitespace.
  explicit JsonPath(std::string_view spec);

  const std::string& text() const noexcept { return text_; }

  // Calls found(value, where) for each string the path reaches, in document order, and
  // problem(where, why) for each place where it reaches something else (a missing field, a
  // number where a string or an object was expected). A null is treated as missing.
  void each(const nlohmann::json& doc,
            const std::function<void(const std::string&, const std::string&)>& found,
            const std::function<void(const std::string&, const std::string&)>& problem) const;

private:
  struct Step {
    std::string field; // empty: no field step (the "[]" of a root array)
    int each = 0;      // how many "[]" follow
  };
  void walk(const nlohmann::json& node, std::size_t step, int each_done, const std::string& where,
            const std::function<void(const std::string&, const std::string&)>& found,
            const std::function<void(const std::string&, const std::string&)>& problem) const;

  std::string text_;
  std::vector<Step> steps_;
};

// The links that `links` reaches in one JSON document. Entries of the wrong type are skipped,
// each with a warning naming its place ("data[3].link: is number, expected a string").
class JsonSource final : public LinkSource {
public:
  // Throws SourceError when `json_text` does not parse (the message names `name` and the byte
  // offset).
  JsonSource(std::string_view json_text, const JsonPath& links, const JsonPath* next,
             const std::string& name);

  std::optional<std::string> next() override;
  std::string where() const override { return where_; }
  std::uint64_t skipped() const noexcept override { return skipped_; }

  // How many links the path reached (0 for an empty page).
  std::size_t found() const noexcept { return links_.size(); }
  // The string at the `next` path, when there is one.
  const std::optional<std::string>& next_page() const noexcept { return next_page_; }

private:
  std::vector<std::pair<std::string, std::string>> links_; // url, where
  std::size_t pos_ = 0;
  std::string where_;
  std::optional<std::string> next_page_;
  std::uint64_t skipped_ = 0;
  WarnBudget warn_;
};

} // namespace trawl::fetcher
