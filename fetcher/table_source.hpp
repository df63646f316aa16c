// Links from tables: CSV or TSV with a header row (RFC 4180 quoting), and JSON Lines (one object
// per line). The URL is the column or member named by --url-column; the other columns or members
// travel with it as the link's meta, a JSON object of at most proto::kMaxMetaBytes. Both stream:
// memory is bounded by one record (at most kMaxRecordBytes) whatever the length of the input.
#pragma once

#include <cstdint>
#include <istream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "fetcher/source.hpp"

namespace trawl::fetcher {

// The largest record (a CSV row, quoted newlines included, or a JSON line) that is read; a longer
// one is skipped with a warning naming its line, and reading goes on after it.
inline constexpr std::size_t kMaxRecordBytes = 1 << 20;

class CsvSource final : public LinkSource {
public:
  // Reads `in` (owned) with `delimiter` (',' or '\t'). The first record is the header; the URL is
  // in the column named `url_column` (matched ignoring ASCII case and surrounding blanks).
  // Throws SourceError naming the header's columns when there is no such column, or when the
  // input has no header.
  CsvSource(std::unique_ptr<std::istream> in, char delimiter, const std::string& url_column);

  std::optional<std::string> next() override;
  std::string where() const override { return "line " + std::to_string(record_line_); }
  std::uint64_t skipped() const noexcept override { return skipped_; }
  std::string_view meta() const noexcept override { return meta_; }

private:
  // Reads one record into fields_; false at the end of the input. Sets record_line_ and
  // too_long_ / unterminated_ for a record that must be skipped.
  bool read_record();

  std::unique_ptr<std::istream> in_;
  std::streambuf* buf_;
  char delim_;
  std::vector<std::string> header_;
  std::size_t url_index_ = 0;
  std::vector<std::string> fields_;
  std::string meta_;
  std::uint64_t line_ = 1;        // the physical line the reader is on
  std::uint64_t record_line_ = 0; // the line the last record started on
  bool too_long_ = false;
  bool unterminated_ = false;
  bool eof_ = false;
  std::uint64_t skipped_ = 0;
  WarnBudget warn_;
};

class JsonLinesSource final : public LinkSource {
public:
  // Reads `in` (owned), one JSON object per line; blank lines are skipped. The URL is the string
  // member named `url_column`.
  JsonLinesSource(std::unique_ptr<std::istream> in, const std::string& url_column);

  std::optional<std::string> next() override;
  std::string where() const override { return "line " + std::to_string(line_no_); }
  std::uint64_t skipped() const noexcept override { return skipped_; }
  std::string_view meta() const noexcept override { return meta_; }

private:
  std::unique_ptr<std::istream> in_;
  std::streambuf* buf_;
  std::string url_column_;
  std::string line_;
  std::string meta_;
  std::uint64_t line_no_ = 0;
  bool eof_ = false;
  std::uint64_t skipped_ = 0;
  WarnBudget warn_;
};

// Builds a link's meta from name/value pairs: a JSON object, members in the order given, empty
// values left out; a member that would make it longer than proto::kMaxMetaBytes is left out (and
// counted in dropped()). Invalid UTF-8 in a value is replaced with U+FFFD.
class MetaBuilder {
public:
  void clear() { text_.clear(); }
  // Adds `value` as JSON text already serialised (a JSON Lines member).
  void add_raw(const std::string& name, const std::string& json_value);
  void add(const std::string& name, const std::string& value);
  // "{...}", or empty when nothing was added.
  std::string finish();
  std::uint64_t dropped() const noexcept { return dropped_; }

private:
  std::string text_;
  std::uint64_t dropped_ = 0;
};

} // namespace trawl::fetcher
