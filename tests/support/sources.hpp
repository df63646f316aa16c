// The link sources trawl-fixture serves besides the gallery and the URL list, as pure functions
// of a corpus and a base URL, so a test can compute what the fixture serves without asking it:
// paged JSON APIs (numbered pages, pages linked by "next"), an HTML page, CSV/TSV/JSON Lines
// tables with captions, and gzip. Every source lists the corpus's single files (files_of(items,
// false)) and nothing else that is downloadable: its junk entries are invalid, or not links.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tests/support/corpus.hpp"

namespace trawl::testsupport {

// `s` as a field of a table with this delimiter: for ',' quoted per RFC 4180 when it holds a
// comma, a quote or a line break (quotes doubled); as it is for '\t'. (The tests' own reference,
// independent of the manifest writer's.)
std::string csv_field(const std::string& s, char delim = ',');

// The direct link of every single file, in order (the URLs every source below must yield).
std::vector<std::string> single_urls(const std::vector<Item>& items, const std::string& base_url);

// Page `page` (numbered from 1) of {"data":[{"link":URL,"title":...}, ...],"page":N}, per_page
// links a page; past the last page "data" is empty.
std::string api_numbered_page(const std::vector<Item>& items, const std::string& base_url,
                              std::size_t page, std::size_t per_page);

// Page `page` (from 1) of {"items":[{"id":...,"images":[{"url":URL},...]}, ...],"next":...}: two
// files per item (one in the last item when the count is odd), per_page files a page, "next" a
// relative link "/api/next/P.json" to the following page, or null on the last page.
std::string api_next_page(const std::vector<Item>& items, const std::string& base_url,
                          std::size_t page, std::size_t per_page);

// Imgur's gallery, paged: the items page*per_page .. (page+1)*per_page - 1 (page from 0) in
// gallery_json's shape; "data" is empty past the end.
std::string gallery_page(const std::vector<Item>& items, const std::string& base_url,
                         std::size_t page, std::size_t per_page);

// An HTML page meant to be served at base_url + "/html/page.html", whose <base href="../i/">
// points at base_url + "/i/": every single file is linked once, in turn as a base-relative
// <a href>, an absolute URL, an <img src> with blanks around it, two candidates of an <img
// srcset>, a <source srcset> in a <picture>, a root-relative and a scheme-relative link. Junk
// that a parser must not take: mailto:, javascript:, "#top", <a> without href, an empty src, a
// link in a comment and one in a <script> string, an unparsable URL, unclosed tags.
std::string links_html(const std::vector<Item>& items, const std::string& base_url);

// The caption of a file in the tables: has a comma and quotes; every 10th has a newline (CSV and
// JSON Lines only: with_newline false replaces it by a space, for TSV).
std::string caption_for(const Item& file, bool with_newline);

// A table of the single files with a header "id<d>url<d>caption<d>type" (d the delimiter),
// quoted per RFC 4180 where needed (CSV), and one bad row (too few fields) after the first file.
std::string url_table(const std::vector<Item>& items, const std::string& base_url, char delimiter);

// JSON Lines {"id","url","caption","size"} per single file, plus a line that is not JSON and an
// object without "url" after the first file, and a blank line.
std::string url_jsonl(const std::vector<Item>& items, const std::string& base_url);

// `data` compressed as one gzip member (zlib).
std::string gzip(std::string_view data);

} // namespace trawl::testsupport
