#include "fetcher/paged_source.hpp"

#include <spdlog/spdlog.h>

#include "common/names.hpp"
#include "fetcher/html_source.hpp"

namespace trawl::fetcher {

std::string page_url(const std::string& url_template, std::int64_t page) {
  static constexpr std::string_view kPlaceholder = "{page}";
  std::string out;
  std::size_t from = 0;
  for (;;) {
    const std::size_t at = url_template.find(kPlaceholder, from);
    if (at == std::string::npos) break;
    out.append(url_template, from, at - from);
    out += std::to_string(page);
    from = at + kPlaceholder.size();
  }
  out.append(url_template, from);
  return out;
}

PagedSource::PagedSource(PagingPlan plan, Fetch fetch, Read read)
    : plan_(std::move(plan)), fetch_(std::move(fetch)), read_(std::move(read)) {}

std::string PagedSource::where() const {
  return "page " + std::to_string(pages_) + " (" + page_url_ + ")" +
         (page_ ? ", " + page_->where() : "");
}

std::uint64_t PagedSource::skipped() const noexcept {
  return skipped_done_ + (page_ ? page_->skipped() : 0);
}

std::string_view PagedSource::meta() const noexcept { return page_ ? page_->meta() : std::string_view(); }

std::uint64_t PagedSource::albums() const noexcept {
  const auto* g = dynamic_cast<const GallerySource*>(page_.get());
  return albums_done_ + (g ? g->albums() : 0);
}

void PagedSource::retire_page() {
  if (!page_) return;
  skipped_done_ += page_->skipped();
  if (const auto* g = dynamic_cast<const GallerySource*>(page_.get())) albums_done_ += g->albums();
  page_.reset();
}

bool PagedSource::open_next_page() {
  const std::uint64_t cap = plan_.max_pages > 0 ? plan_.max_pages : kMaxPagesUnbounded;
  if (pages_ >= cap) {
    if (plan_.max_pages == 0)
      spdlog::warn("stopped after {} pages (the most one job reads without --pages)", cap);
    return false;
  }
  std::string url;
  if (plan_.mode == PagingPlan::Mode::numbered) {
    url = page_url(plan_.url, plan_.first_page + static_cast<std::int64_t>(pages_));
  } else if (pages_ == 0) {
    url = plan_.url;
  } else {
    if (!next_url_) return false;
    url = *next_url_;
  }
  // A next link back to a page already read would loop for ever.
  if (!seen_pages_.insert(hash64(url))) {
    spdlog::warn("page {} links back to {}, read already: stopped", pages_, url);
    return false;
  }
  const bool first = pages_ == 0;
  ++pages_;
  page_url_ = url;
  try {
    Page page = fetch_(url);
    if (page.final_url.empty()) page.final_url = url;
    PageLinks got = read_(page);
    next_url_.reset();
    if (got.next) {
      if (auto abs = resolve_url(page.final_url, *got.next)) next_url_ = std::move(*abs);
      else spdlog::warn("page {}: the next page's URL \"{}\" cannot be resolved", pages_, got.next->substr(0, 120));
    }
    spdlog::debug("page {} ({}): {} entries{}", pages_, url, got.entries,
                  next_url_ ? ", next " + *next_url_ : "");
    if (got.entries == 0) {
      spdlog::info("page {} ({}) is empty: the last page", pages_, url);
      skipped_done_ += got.source ? got.source->skipped() : 0;
      return false;
    }
    page_ = std::move(got.source);
    return true;
  } catch (const SourceError& e) {
    if (first) throw;
    incomplete_ = "page " + std::to_string(pages_) + " (" + url + "): " + e.what();
    spdlog::error("{}; the links of the {} pages before it are kept", incomplete_, pages_ - 1);
    return false;
  }
}

std::optional<std::string> PagedSource::next() {
  while (!done_) {
    if (!page_) {
      if (!open_next_page()) {
        done_ = true;
        break;
      }
    }
    if (auto url = page_->next()) return url;
    // Keep the page until the next one opens, so where() and meta() still name the last link.
    retire_page();
  }
  return std::nullopt;
}

} // namespace trawl::fetcher
