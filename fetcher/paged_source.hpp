// A source that spans the pages of an API: numbered pages (a "{page}" placeholder in the URL, as
// Imgur's /3/gallery/hot/viral/{page}.json) or pages linked by a "next" URL in each page. Pages
// are fetched one at a time, only when the links of the previous one are used up, so --limit
// stops the fetching too. No network here: the caller gives a function that fetches a page and
// one that reads it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/hash_set.hpp"
#include "fetcher/source.hpp"

namespace trawl::fetcher {

struct Page {
  std::string url;          // as requested
  std::string final_url;    // after redirects (relative next links resolve against it)
  std::string content_type;
  std::string body;
};

struct PageLinks {
  std::unique_ptr<LinkSource> source;
  std::size_t entries = 0;          // links (or items) on the page; 0 is an empty page
  std::optional<std::string> next;  // the next page's URL (next mode), absolute or relative
};

struct PagingPlan {
  enum class Mode { numbered, next };
  Mode mode = Mode::numbered;
  std::string url;                 // numbered: the template with "{page}"; next: the first page
  std::int64_t first_page = 0;     // numbered: the first page number
  std::uint64_t max_pages = 0;     // 0: until an empty page (or no next page)
};

// The hard cap on pages when max_pages is 0, so a misbehaving API cannot page forever.
inline constexpr std::uint64_t kMaxPagesUnbounded = 100000;

// `url` with every "{page}" replaced by `page`.
std::string page_url(const std::string& url_template, std::int64_t page);

class PagedSource final : public LinkSource {
public:
  using Fetch = std::function<Page(const std::string& url)>;       // throws SourceError
  using Read = std::function<PageLinks(const Page& page)>;         // throws SourceError

  PagedSource(PagingPlan plan, Fetch fetch, Read read);

  // Fetches and reads pages as needed. A failure on the first page throws SourceError; on a later
  // page it is logged, paging stops, and incomplete() says why.
  std::optional<std::string> next() override;
  std::string where() const override;
  std::uint64_t skipped() const noexcept override;
  std::string_view meta() const noexcept override;
  std::string incomplete() const override { return incomplete_; }

  std::uint64_t pages() const noexcept { return pages_; }
  // Extra figures of the page sources for the summary (albums skipped of gallery pages).
  std::uint64_t albums() const noexcept;

private:
  bool open_next_page();
  void retire_page();

  PagingPlan plan_;
  Fetch fetch_;
  Read read_;
  std::unique_ptr<LinkSource> page_;
  std::optional<std::string> next_url_;
  std::string page_url_;
  std::uint64_t pages_ = 0;
  std::uint64_t skipped_done_ = 0; // skipped by pages already retired
  std::uint64_t albums_done_ = 0;
  HashSet64 seen_pages_{64};
  bool done_ = false;
  std::string incomplete_;
};

} // namespace trawl::fetcher
