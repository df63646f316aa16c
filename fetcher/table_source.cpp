#include "fetcher/table_source.hpp"

#include <nlohmann/json.hpp>

#include "proto/messages.hpp"

namespace trawl::fetcher {
namespace {

constexpr std::string_view kBom = "\xEF\xBB\xBF";

std::string lower_trimmed(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

std::string trimmed(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return std::string(s);
}

std::string json_string(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string printable(std::string_view s, std::size_t max = 80) {
  std::string out;
  for (char c : s.substr(0, max)) {
    const auto u = static_cast<unsigned char>(c);
    out.push_back(u < 0x20 || u == 0x7F ? '?' : c);
  }
  if (s.size() > max) out += "...";
  return out;
}

} // namespace

// ---- MetaBuilder ------------------------------------------------------------------------------

void MetaBuilder::add_raw(const std::string& name, const std::string& json_value) {
  std::string member = (text_.empty() ? "{" : ",") + json_string(name) + ":" + json_value;
  if (text_.size() + member.size() + 1 > proto::kMaxMetaBytes) {
    ++dropped_;
    return;
  }
  text_ += member;
}

void MetaBuilder::add(const std::string& name, const std::string& value) {
  if (value.empty()) return;
  add_raw(name, json_string(value));
}

std::string MetaBuilder::finish() {
  if (text_.empty()) return {};
  std::string out = std::move(text_);
  out.push_back('}');
  text_.clear();
  return out;
}

// ---- CsvSource --------------------------------------------------------------------------------

CsvSource::CsvSource(std::unique_ptr<std::istream> in, char delimiter, const std::string& url_column)
    : in_(std::move(in)), buf_(in_ ? in_->rdbuf() : nullptr), delim_(delimiter) {
  if (buf_ == nullptr) throw SourceError("the table stream has no buffer");
  const char* kind = delimiter == '\t' ? "TSV" : "CSV";
  if (!read_record()) throw SourceError(std::string(kind) + ": the input is empty (no header row)");
  if (too_long_ || unterminated_)
    throw SourceError(std::string(kind) + ": the header row is " +
                      (too_long_ ? "too long" : "an unterminated quoted field"));
  header_ = fields_;
  if (!header_.empty() && std::string_view(header_[0]).starts_with(kBom)) header_[0].erase(0, kBom.size());
  const std::string want = lower_trimmed(url_column);
  bool found = false;
  for (std::size_t i = 0; i < header_.size(); ++i) {
    header_[i] = trimmed(header_[i]);
    if (!found && lower_trimmed(header_[i]) == want) {
      url_index_ = i;
      found = true;
    }
  }
  if (!found) {
    std::string cols;
    for (const auto& h : header_) cols += (cols.empty() ? "" : ", ") + printable(h, 40);
    throw SourceError(std::string(kind) + ": no column \"" + url_column + "\" in the header (" +
                      cols + "); name the URL column with --url-column");
  }
}

bool CsvSource::read_record() {
  // RFC 4180: fields separated by the delimiter, records by CRLF or LF; a field that starts with
  // '"' is quoted, may hold delimiters, newlines and "" for a quote. A quote inside an unquoted
  // field is taken literally (lenient, as most readers are).
  fields_.clear();
  too_long_ = false;
  unterminated_ = false;
  if (eof_) return false;
  record_line_ = line_;
  std::size_t bytes = 0;
  std::string field;
  enum class S { field_start, unquoted, quoted, quote_in_quoted } st = S::field_start;
  bool any = false;
  auto push = [&] {
    if (!too_long_) fields_.push_back(std::move(field));
    field.clear();
  };
  for (;;) {
    const int ci = buf_->sbumpc();
    if (ci == std::char_traits<char>::eof()) {
      eof_ = true;
      if (!any) return false;
      if (st == S::quoted) unterminated_ = true;
      push();
      return true;
    }
    any = true;
    const char c = static_cast<char>(ci);
    if (c == '\n') ++line_;
    if (++bytes > kMaxRecordBytes && !too_long_) {
      too_long_ = true;
      fields_.clear();
      field.clear();
    }
    switch (st) {
    case S::field_start:
      if (c == '"') {
        st = S::quoted;
        continue;
      }
      st = S::unquoted;
      [[fallthrough]];
    case S::unquoted:
      if (c == delim_) {
        push();
        st = S::field_start;
      } else if (c == '\n') {
        if (!field.empty() && field.back() == '\r') field.pop_back();
        push();
        return true;
      } else if (!too_long_) {
        field.push_back(c);
      }
      continue;
    case S::quoted:
      if (c == '"') st = S::quote_in_quoted;
      else if (!too_long_) field.push_back(c);
      continue;
    case S::quote_in_quoted:
      if (c == '"') {
        if (!too_long_) field.push_back('"');
        st = S::quoted;
      } else if (c == delim_) {
        push();
        st = S::field_start;
      } else if (c == '\n') {
        push();
        return true;
      } else if (c != '\r') {
        // Text after a closing quote: kept, as if the field went on unquoted.
        if (!too_long_) field.push_back(c);
        st = S::unquoted;
      }
      continue;
    }
  }
}

std::optional<std::string> CsvSource::next() {
  for (;;) {
    if (!read_record()) return std::nullopt;
    if (too_long_) {
      ++skipped_;
      warn_.warn("line {}: record longer than {} bytes, skipped", record_line_, kMaxRecordBytes);
      continue;
    }
    if (unterminated_) {
      ++skipped_;
      warn_.warn("line {}: a quoted field is not closed before the end of the input, skipped",
                 record_line_);
      continue;
    }
    if (fields_.size() == 1 && trimmed(fields_[0]).empty()) continue; // blank line
    if (fields_.size() <= url_index_) {
      ++skipped_;
      warn_.warn("line {}: {} fields, no \"{}\" (column {}), skipped", record_line_, fields_.size(),
                 header_[url_index_], url_index_ + 1);
      continue;
    }
    std::string url = trimmed(fields_[url_index_]);
    if (url.empty()) {
      ++skipped_;
      warn_.warn("line {}: empty \"{}\", skipped", record_line_, header_[url_index_]);
      continue;
    }
    MetaBuilder mb;
    for (std::size_t i = 0; i < fields_.size() && i < header_.size(); ++i)
      if (i != url_index_) mb.add(header_[i], fields_[i]);
    if (fields_.size() > header_.size())
      warn_.warn("line {}: {} fields, the header has {}; the extra ones are ignored", record_line_,
                 fields_.size(), header_.size());
    if (mb.dropped() > 0)
      warn_.warn("line {}: {} columns left out of the link's meta (over {} bytes)", record_line_,
                 mb.dropped(), proto::kMaxMetaBytes);
    meta_ = mb.finish();
    return url;
  }
}

// ---- JsonLinesSource --------------------------------------------------------------------------

JsonLinesSource::JsonLinesSource(std::unique_ptr<std::istream> in, const std::string& url_column)
    : in_(std::move(in)), buf_(in_ ? in_->rdbuf() : nullptr), url_column_(url_column) {
  if (buf_ == nullptr) throw SourceError("the JSON Lines stream has no buffer");
}

std::optional<std::string> JsonLinesSource::next() {
  while (!eof_) {
    line_.clear();
    bool too_long = false;
    bool any = false;
    ++line_no_;
    for (;;) {
      const int c = buf_->sbumpc();
      if (c == std::char_traits<char>::eof()) {
        eof_ = true;
        break;
      }
      any = true;
      if (c == '\n') break;
      if (too_long) continue;
      if (line_.size() >= kMaxRecordBytes) {
        too_long = true;
        line_.clear();
        continue;
      }
      line_.push_back(static_cast<char>(c));
    }
    if (!any) break;
    if (too_long) {
      ++skipped_;
      warn_.warn("line {}: longer than {} bytes, skipped", line_no_, kMaxRecordBytes);
      continue;
    }
    std::string_view text(line_);
    if (line_no_ == 1 && text.starts_with(kBom)) text.remove_prefix(kBom.size());
    if (text.find_first_not_of(" \t\r") == std::string_view::npos) continue; // blank
    nlohmann::ordered_json obj; // members keep their order in the meta
    try {
      obj = nlohmann::ordered_json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      ++skipped_;
      warn_.warn("line {}: not valid JSON ({}), skipped: {}", line_no_, e.what(), printable(text));
      continue;
    }
    if (!obj.is_object()) {
      ++skipped_;
      warn_.warn("line {}: is {}, expected an object with \"{}\", skipped", line_no_, obj.type_name(),
                 url_column_);
      continue;
    }
    const auto it = obj.find(url_column_);
    if (it == obj.end() || !it->is_string()) {
      ++skipped_;
      warn_.warn("line {}: no string \"{}\", skipped", line_no_, url_column_);
      continue;
    }
    std::string url = it->get<std::string>();
    MetaBuilder mb;
    for (const auto& [k, v] : obj.items()) {
      if (k == url_column_ || v.is_null()) continue;
      if (v.is_string()) mb.add(k, v.get<std::string>());
      else mb.add_raw(k, v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    }
    if (mb.dropped() > 0)
      warn_.warn("line {}: {} members left out of the link's meta (over {} bytes)", line_no_,
                 mb.dropped(), proto::kMaxMetaBytes);
    meta_ = mb.finish();
    return url;
  }
  return std::nullopt;
}

} // namespace trawl::fetcher
