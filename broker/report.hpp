// What the sink writes besides its summary: the JSON report (docs/REPORT.md, "schema": 1), the
// manifest (one row per link, JSON Lines or CSV), the list of failed URLs (a URL list that
// `trawl fetch --source` takes back), the self-contained HTML report, and the JSON form of the
// live figures (--json-progress lines and the monitor's stats messages).
// Everything is streamed or bounded: a manifest row is written when its result arrives.
#pragma once

#include <cstdint>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "broker/stats.hpp"
#include "proto/messages.hpp"

namespace trawl::broker {

inline constexpr int kReportSchema = 1;

// JSON text that never throws on bad UTF-8 from the network (invalid bytes become U+FFFD).
std::string dump_json(const nlohmann::json& j, int indent = -1);
// Appends `s` as a JSON string literal (quoted, escaped; invalid UTF-8 bytes become U+FFFD).
void json_string(std::string& out, std::string_view s);

nlohmann::json live_to_json(const LiveFigures& f);
// nullopt when `j` is not an object with the expected fields and types.
std::optional<LiveFigures> live_from_json(const nlohmann::json& j);

struct ReportContext {
  bool complete = false;
  int exit_status = 0;
  std::int64_t finished_unix_ms = 0;
  std::string manifest_path;
  std::uint64_t manifest_rows = 0;
  std::uint64_t manifest_ledger_rows = 0; // rows taken from the ledger (links without a result here)
  std::string failed_path;
  std::uint64_t failed_rows = 0;
};

// Everything in the summary, machine-readable (schema in docs/REPORT.md).
nlohmann::json report_json(const JobStats& s, const ReportContext& ctx);

// A self-contained HTML page (no network): the report's data inline and a script that draws
// throughput over time, the latency histogram, per-node bars and failures by reason as SVG.
std::string render_html(const nlohmann::json& report);

// Writes `text` to `path` atomically (PATH.tmp, then rename). Throws std::runtime_error.
void write_file_atomic(const std::string& path, const std::string& text);

// One row of the manifest.
struct ManifestRow {
  std::uint64_t id = 0;
  std::string url, path, node;
  std::string status; // done | failed | skipped (done before this sink started) | pending
  std::uint32_t http_code = 0;
  std::uint64_t bytes = 0;
  std::string sha256;
  std::uint32_t attempts = 0;
  std::optional<std::uint32_t> ms, ttfb_ms; // unknown for rows from the ledger
  std::string reason; // reason name when failed, else ""
  std::string error;
  std::string meta; // the link's meta (a JSON object's text, from its source), empty when none
};

ManifestRow manifest_row(const proto::Result& r);

// Streams manifest rows to a file: CSV when the name ends in ".csv" (with a header line), JSON
// Lines otherwise. Throws std::runtime_error when the file cannot be created or written.
// The row's meta is written as a JSON object ("meta" member; CSV: one "meta" column holding the
// object's JSON text), on one line; a meta that is not a JSON object (only a hostile node sends
// one) is written as null (CSV: empty) and counted in bad_meta(), the first few logged.
class ManifestWriter {
public:
  explicit ManifestWriter(const std::string& path);
  void write(const ManifestRow& row);
  void close();
  std::uint64_t rows() const { return rows_; }
  bool csv() const { return csv_; }
  std::uint64_t bad_meta() const { return bad_meta_; }

private:
  std::string_view checked_meta(const ManifestRow& r);

  std::string path_;
  std::ofstream out_;
  std::string line_; // reused for every row
  std::string meta_; // a meta re-serialised on one line (rare: only when it has line breaks)
  bool csv_ = false;
  std::uint64_t rows_ = 0;
  std::uint64_t bad_meta_ = 0;
};

// Streams URLs, one per line (the format of a `--source` URL list). A URL with a line break
// (never sent by trawl fetch) is skipped with a warning rather than split.
class UrlListWriter {
public:
  explicit UrlListWriter(const std::string& path);
  void write(const std::string& url);
  void close();
  std::uint64_t rows() const { return rows_; }

private:
  std::string path_;
  std::ofstream out_;
  std::uint64_t rows_ = 0;
};

// Reads the ventilator's ledger (read-only; it may still be open in the ventilator) and calls
// `fn` for every link `have` says this sink has no result for, in id order: links done in an
// earlier run ("skipped"), failed without a result (dispatched too often), or not finished
// ("pending", when the job was interrupted), each with its meta. Returns the number of rows passed to `fn`.
// Throws std::runtime_error when the ledger cannot be read.
std::uint64_t for_each_ledger_row(const std::string& ledger_path,
                                  const std::function<bool(std::uint64_t)>& have,
                                  const std::function<void(const ManifestRow&)>& fn);

} // namespace trawl::broker
