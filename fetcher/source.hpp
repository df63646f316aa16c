// Link sources: where the fetcher's URLs come from, one at a time, with no ZeroMQ and no network
// in sight. A source streams (a URL list of any length is read in bounded memory) and reports
// what it had to skip; the filters (filter.hpp) decide what is a valid, wanted, new link.
#pragma once

#include <cstdint>
#include <istream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "fetcher/warn_budget.hpp"

namespace trawl::fetcher {

// The source cannot be read or has the wrong shape as a whole (not one bad entry): fatal.
class SourceError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

class LinkSource {
public:
  virtual ~LinkSource() = default;

  // The next URL, or nullopt when the source is exhausted. Throws SourceError when the source
  // cannot be read any further.
  virtual std::optional<std::string> next() = 0;

  // Where the URL last returned by next() came from ("line 12", "data[3]"), for log lines.
  virtual std::string where() const = 0;

  // Entries the source itself dropped (over-long lines, gallery items without a link), each
  // already logged.
  virtual std::uint64_t skipped() const noexcept = 0;

  // The other fields that came with the URL last returned by next() (a CSV row's other columns,
  // a JSON Lines object's other members) as the text of a JSON object of at most
  // proto::kMaxMetaBytes bytes; empty when the source has none.
  virtual std::string_view meta() const noexcept { return {}; }

  // Why the source ended before its natural end (a later page of a paged API could not be
  // fetched), already logged; empty when it was read to the end. Checked after next() returned
  // nullopt: the links read so far are delivered, then the fetcher exits with a failure status.
  virtual std::string incomplete() const { return {}; }
};

// A URL list, one per line, from any stream (file, stdin, HTTP body). Blank lines and lines whose
// first non-blank character is '#' are skipped; surrounding whitespace (and so a CRLF's '\r') is
// trimmed; a leading UTF-8 BOM is ignored. A line whose trimmed content is longer than
// proto::kMaxUrlBytes is skipped with a warning naming its line number; it is read in chunks and
// discarded, so memory stays bounded by the limit whatever the line length.
class ListSource final : public LinkSource {
public:
  // Reads `in`, which must outlive the source.
  explicit ListSource(std::istream& in);
  // Reads and owns `in`.
  explicit ListSource(std::unique_ptr<std::istream> in);

  std::optional<std::string> next() override;
  std::string where() const override;
  std::uint64_t skipped() const noexcept override { return skipped_; }
  std::uint64_t line() const noexcept { return line_no_; }

private:
  std::unique_ptr<std::istream> owned_;
  std::streambuf* buf_;
  std::string line_;
  std::uint64_t line_no_ = 0;
  std::uint64_t skipped_ = 0;
  bool done_ = false;
  WarnBudget warn_;
};

struct GalleryOptions {
  // When true, an album yields the direct links of its images[] instead of being skipped.
  bool expand_albums = false;
};

// A gallery page in the shape of Imgur's API v3: {"data":[item, ...], "success":..., "status":...}.
// A single image (is_album false or absent) yields its "link"; an album is skipped (counted in
// albums()) unless GalleryOptions::expand_albums. An item of the wrong shape is skipped with a
// warning naming its index; a document of the wrong shape (no "data" array, success=false) throws
// SourceError from the constructor.
class GallerySource final : public LinkSource {
public:
  // Throws SourceError for a parse error or a document of the wrong shape.
  explicit GallerySource(std::string_view json_text, GalleryOptions opt = {});

  std::optional<std::string> next() override;
  std::string where() const override;
  std::uint64_t skipped() const noexcept override { return skipped_; }
  std::uint64_t albums() const noexcept { return albums_; }
  // How many items the page's data[] has (0 for an empty page).
  std::size_t items() const noexcept { return doc_.at("data").size(); }

private:
  void check_shape();
  // The link of data[item_] (or of its images[image_]), or nullopt when the entry is skipped.
  std::optional<std::string> take_single(const nlohmann::json& entry, const std::string& at);

  nlohmann::json doc_;
  GalleryOptions opt_;
  std::size_t item_ = 0;      // next item of data[] to look at
  std::size_t image_ = 0;     // next image of the current album, when expanding
  bool in_album_ = false;
  std::string where_;
  std::uint64_t skipped_ = 0;
  std::uint64_t albums_ = 0;
  WarnBudget warn_;
};

// A stream over a file descriptor (stdin, a file, a named pipe) that hands out whatever read(2)
// returns, so a list piped in slowly is emitted line by line rather than in 64 KiB batches. A read
// interrupted by a stop signal ends the stream; a read error throws SourceError from the reading
// call (ListSource::next, read_bounded).
class FdStream final : public std::istream {
public:
  // Reads `fd`; closes it at destruction when `owned`. `name` is used in error messages.
  FdStream(int fd, std::string name, bool owned);
  ~FdStream() override;
  FdStream(const FdStream&) = delete;
  FdStream& operator=(const FdStream&) = delete;

  // Up to `n` (at most 64 KiB) of the next unread bytes, without consuming them; fewer at the end
  // of the input. Used to sniff the format of a source that cannot seek.
  std::string_view peek(std::size_t n);

private:
  class Buf;
  std::unique_ptr<Buf> buf_;
};

// True when the first non-blank byte of `head` (after an optional UTF-8 BOM) is '{'.
bool looks_like_json(std::string_view head) noexcept;

// Reads all of `in` into a string; throws SourceError naming `what` when it exceeds `max_bytes`.
std::string read_bounded(std::istream& in, std::uint64_t max_bytes, const std::string& what);

} // namespace trawl::fetcher
