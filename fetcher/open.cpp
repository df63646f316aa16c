// open_source(): from --source and the format flags to a LinkSource. Format detection (content
// type, extension, first bytes), gzip, and the choice between one document and a paged API.
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sstream>
#include <sys/stat.h>
#include <thread>

#include "common/signals.hpp"
#include "fetcher/fetch.hpp"
#include "fetcher/html_source.hpp"
#include "fetcher/http.hpp"
#include "fetcher/json_source.hpp"
#include "fetcher/paged_source.hpp"
#include "fetcher/stream.hpp"
#include "fetcher/table_source.hpp"

namespace trawl::fetcher {
namespace {

enum class Format { automatic, list, gallery, json, html, csv, tsv, jsonl };

const char* format_name(Format f) {
  switch (f) {
  case Format::automatic: return "auto";
  case Format::list: return "URL list";
  case Format::gallery: return "gallery JSON";
  case Format::json: return "JSON";
  case Format::html: return "HTML";
  case Format::csv: return "CSV";
  case Format::tsv: return "TSV";
  case Format::jsonl: return "JSON Lines";
  }
  return "?";
}

Format parse_format(const std::string& s) {
  if (s == "auto") return Format::automatic;
  if (s == "list") return Format::list;
  if (s == "gallery") return Format::gallery;
  if (s == "json") return Format::json;
  if (s == "html") return Format::html;
  if (s == "csv") return Format::csv;
  if (s == "tsv") return Format::tsv;
  if (s == "jsonl") return Format::jsonl;
  throw std::invalid_argument("--format must be auto, list, gallery, json, html, csv, tsv or jsonl, not \"" +
                              s + "\"");
}

// A whole document (parsed at once, bounded by --max-body-bytes) rather than a stream.
bool is_document(Format f) { return f == Format::gallery || f == Format::json || f == Format::html; }

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

bool starts_with_nocase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && lower(s.substr(0, prefix.size())) == prefix;
}

bool is_http(std::string_view src) {
  return starts_with_nocase(src, "http://") || starts_with_nocase(src, "https://");
}

// The path of a URL (no query, no fragment) or a file name, lower case, without a ".gz".
std::string name_for_extension(std::string_view name) {
  if (is_http(name)) {
    const auto scheme_end = name.find("://");
    const auto path_start = name.find('/', scheme_end + 3);
    name = path_start == std::string_view::npos ? std::string_view() : name.substr(path_start);
    name = name.substr(0, name.find_first_of("?#"));
  }
  std::string n = lower(name);
  if (n.ends_with(".gz")) n.resize(n.size() - 3);
  return n;
}

// "json" stands for the gallery shape unless --links says where the links are.
Format json_kind(const FetchOptions& o) { return o.links.empty() ? Format::gallery : Format::json; }

Format from_extension(std::string_view name, const FetchOptions& o) {
  const std::string n = name_for_extension(name);
  if (n.ends_with(".jsonl") || n.ends_with(".ndjson")) return Format::jsonl;
  if (n.ends_with(".json")) return json_kind(o);
  if (n.ends_with(".csv")) return Format::csv;
  if (n.ends_with(".tsv") || n.ends_with(".tab")) return Format::tsv;
  if (n.ends_with(".html") || n.ends_with(".htm") || n.ends_with(".xhtml")) return Format::html;
  return Format::automatic; // .txt and the rest: the content decides (a URL list by default)
}

Format from_content_type(std::string_view ctype, const FetchOptions& o) {
  const std::string t = lower(ctype.substr(0, ctype.find(';')));
  if (t.find("html") != std::string::npos) return Format::html;
  if (t.find("ndjson") != std::string::npos || t.find("jsonl") != std::string::npos ||
      t.find("json-seq") != std::string::npos || t.find("x-json-stream") != std::string::npos)
    return Format::jsonl;
  if (t.find("json") != std::string::npos) return json_kind(o);
  if (t == "text/csv" || t == "application/csv") return Format::csv;
  if (t == "text/tab-separated-values") return Format::tsv;
  return Format::automatic; // text/plain, octet-stream, gzip...: says nothing
}

Format from_content(std::string_view head, const FetchOptions& o) {
  constexpr std::string_view kBom = "\xEF\xBB\xBF";
  if (head.starts_with(kBom)) head.remove_prefix(kBom.size());
  const auto first = head.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return Format::list;
  head.remove_prefix(first);
  if (head[0] == '{' || head[0] == '[') {
    // One object per line with another line after it is JSON Lines; else one document.
    const auto nl = head.find('\n');
    if (head[0] == '{' && nl != std::string_view::npos) {
      const auto line = head.substr(0, nl);
      const auto rest = head.substr(nl + 1);
      const auto more = rest.find_first_not_of(" \t\r\n");
      if (more != std::string_view::npos && rest[more] == '{' &&
          nlohmann::json::accept(line))
        return Format::jsonl;
    }
    return json_kind(o);
  }
  if (head[0] == '<') {
    const std::string l = lower(head.substr(0, 4096));
    if (l.find("<html") != std::string::npos || l.find("<!doctype html") != std::string::npos ||
        l.find("<a ") != std::string::npos || l.find("<img") != std::string::npos ||
        l.find("<body") != std::string::npos)
      return Format::html;
  }
  // A first line that names the URL column among delimited fields: a table's header.
  const auto line = head.substr(0, head.find('\n'));
  if (lower(line).find(lower(o.url_column)) != std::string::npos && !starts_with_nocase(line, "http")) {
    if (line.find('\t') != std::string_view::npos) return Format::tsv;
    if (line.find(',') != std::string_view::npos) return Format::csv;
  }
  return Format::list;
}

// The format to read: --format, else the content type, the extension, the first bytes.
Format detect(const FetchOptions& o, Format forced, std::string_view name, std::string_view ctype,
              std::string_view head) {
  if (forced != Format::automatic) return forced;
  Format f = from_content_type(ctype, o);
  if (f == Format::automatic) f = from_extension(name, o);
  if (f == Format::automatic) f = from_content(head, o);
  return f;
}

char delimiter(Format f) { return f == Format::tsv ? '\t' : ','; }

// A stream format's source over `in`.
std::unique_ptr<LinkSource> stream_source(Format f, std::unique_ptr<std::istream> in, const FetchOptions& o) {
  switch (f) {
  case Format::csv:
  case Format::tsv: return std::make_unique<CsvSource>(std::move(in), delimiter(f), o.url_column);
  case Format::jsonl: return std::make_unique<JsonLinesSource>(std::move(in), o.url_column);
  default: return std::make_unique<ListSource>(std::move(in));
  }
}

struct Paths {
  std::optional<JsonPath> links, next;
};

// One document's links: the source and how many entries the page had.
PageLinks read_document(Format f, const std::string& text, const std::string& page_url,
                        const FetchOptions& o, const Paths& paths, const std::string& name) {
  PageLinks out;
  switch (f) {
  case Format::gallery: {
    auto g = std::make_unique<GallerySource>(text, o.gallery);
    out.entries = g->items();
    out.source = std::move(g);
    break;
  }
  case Format::json: {
    if (!paths.links) throw std::invalid_argument("--format json needs --links PATH (e.g. data[].link)");
    auto j = std::make_unique<JsonSource>(text, *paths.links, paths.next ? &*paths.next : nullptr, name);
    out.entries = j->found() + j->skipped();
    out.next = j->next_page();
    out.source = std::move(j);
    break;
  }
  case Format::html: {
    auto h = std::make_unique<HtmlSource>(text, o.base_url.empty() ? page_url : o.base_url);
    out.entries = h->found() + h->skipped();
    out.source = std::move(h);
    break;
  }
  default:
    throw SourceError(name + " is " + format_name(f) + ", not a JSON or HTML page");
  }
  return out;
}

Paths make_paths(const FetchOptions& o) {
  Paths p;
  try {
    if (!o.links.empty()) p.links.emplace(o.links);
    if (!o.next.empty()) p.next.emplace(o.next);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string(o.links.empty() ? "--next: " : "--links/--next: ") + e.what());
  }
  return p;
}

// A local file or stdin, gzip or not.
std::unique_ptr<LinkSource> open_local(const FetchOptions& o, Format forced) {
  const bool is_stdin = o.source == "-";
  std::unique_ptr<FdStream> fd_stream;
  const std::string name = is_stdin ? "stdin" : o.source;
  if (is_stdin) {
    fd_stream = std::make_unique<FdStream>(0, "stdin", false);
  } else {
    const int fd = ::open(o.source.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw SourceError("cannot open " + o.source + ": " + std::strerror(errno));
    fd_stream = std::make_unique<FdStream>(fd, o.source, true);
    struct stat st {};
    if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode))
      throw SourceError("cannot read " + o.source + ": it is a directory");
  }
  bool gz = false;
  auto in = open_maybe_gzip(std::move(fd_stream), name, &gz);
  // stdin may be a slow pipe: its format is not sniffed (that would wait for 4 KiB), only read
  // from --format, gzip's magic aside.
  const std::string_view head = is_stdin ? std::string_view() : in->head(4096);
  const Format f = is_stdin && forced == Format::automatic ? Format::list
                                                             : detect(o, forced, o.source, "", head);
  spdlog::debug("{}: read as {}{}", name, format_name(f), gz ? " (gzip)" : "");
  if (is_document(f)) {
    const std::string text = read_bounded(*in, o.max_body_bytes, name);
    return std::move(read_document(f, text, o.base_url, o, make_paths(o), name).source);
  }
  return stream_source(f, std::move(in), o);
}

// Sleeps `d` unless a stop is requested first (then throws StopRequested).
void pause(std::chrono::milliseconds d) {
  const auto until = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < until) {
    if (stop_requested()) throw StopRequested{};
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// GET with a few retries for what may pass (transfer errors, 429, 5xx); the status of the answer
// that ended it. 401/403 become an error that names IMGUR_CLIENT_ID.
HttpResponse get_page(const std::string& url, const HttpOptions& http) {
  constexpr int kAttempts = 3;
  for (int attempt = 1;; ++attempt) {
    HttpResponse resp;
    try {
      resp = http_get(url, http);
    } catch (const SourceError& e) {
      if (attempt >= kAttempts) throw;
      spdlog::warn("{}; trying again ({} of {})", e.what(), attempt + 1, kAttempts);
      pause(std::chrono::milliseconds(500 << attempt));
      continue;
    }
    if ((resp.status == 429 || resp.status >= 500) && attempt < kAttempts) {
      spdlog::warn("GET {} answered HTTP {}; trying again ({} of {})", url, resp.status, attempt + 1,
                   kAttempts);
      pause(std::chrono::milliseconds(500 << attempt));
      continue;
    }
    if (resp.status == 401 || resp.status == 403)
      throw SourceError("the gallery API refused the request (HTTP " + std::to_string(resp.status) +
                        "): set IMGUR_CLIENT_ID to a valid Client-ID" +
                        (http.client_id.empty() ? " (it is not set)" : " (the one set was refused)"));
    return resp;
  }
}

// The body, decompressed when it is gzip (served as a .gz file rather than with a
// Content-Encoding, which curl already undoes), within the body cap.
std::string document_text(std::string body, const std::string& name, std::uint64_t max_bytes) {
  if (!is_gzip(body)) return body;
  GunzipStream gz(std::make_unique<std::istringstream>(std::move(body)), name);
  return read_bounded(gz, max_bytes, name + " (decompressed)");
}

// "imgur:hot/viral", "imgur:top/top/week", "imgur:user/rising": Imgur's gallery, paged.
std::optional<std::string> imgur_template(const FetchOptions& o) {
  if (!starts_with_nocase(o.source, "imgur:")) return std::nullopt;
  std::string spec = o.source.substr(6);
  std::vector<std::string> parts;
  std::stringstream ss(spec);
  for (std::string part; std::getline(ss, part, '/');) parts.push_back(lower(part));
  auto one_of = [](const std::string& v, std::initializer_list<const char*> allowed) {
    for (const char* a : allowed)
      if (v == a) return true;
    return false;
  };
  if (parts.empty() || parts.size() > 3 || !one_of(parts[0], {"hot", "top", "user"}))
    throw std::invalid_argument("--source " + o.source +
                                ": expected imgur:SECTION[/SORT[/WINDOW]], SECTION hot, top or user");
  if (parts.size() > 1 && !one_of(parts[1], {"viral", "top", "time", "rising"}))
    throw std::invalid_argument("--source " + o.source + ": SORT is viral, top, time or rising");
  if (parts.size() > 2 && !one_of(parts[2], {"day", "week", "month", "year", "all"}))
    throw std::invalid_argument("--source " + o.source + ": WINDOW is day, week, month, year or all");
  if (parts.size() > 2 && parts[0] != "top")
    throw std::invalid_argument("--source " + o.source + ": a WINDOW applies to the top section only");
  std::string base = o.imgur_api;
  while (!base.empty() && base.back() == '/') base.pop_back();
  std::string path;
  for (const auto& p : parts) path += "/" + p;
  return base + "/3/gallery" + path + "/{page}.json";
}

// A URL whose path ends in a page number ("/3/gallery/hot/viral/0.json", ".../page/2"): the
// template with "{page}" in its place, and the number.
std::optional<std::pair<std::string, std::int64_t>> numbered_url(const std::string& url) {
  const std::size_t path_end = url.find_first_of("?#", url.find("://") + 3);
  const std::size_t end = path_end == std::string::npos ? url.size() : path_end;
  std::size_t digits_end = end;
  if (end >= 5 && lower(url.substr(end - 5, 5)) == ".json")
    digits_end = end - 5;
  std::size_t digits_start = digits_end;
  while (digits_start > 0 && std::isdigit(static_cast<unsigned char>(url[digits_start - 1]))) --digits_start;
  if (digits_start == digits_end || digits_start == 0 || url[digits_start - 1] != '/' ||
      digits_end - digits_start > 9)
    return std::nullopt;
  return std::make_pair(url.substr(0, digits_start) + "{page}" + url.substr(digits_end),
                        std::stoll(url.substr(digits_start, digits_end - digits_start)));
}

std::unique_ptr<LinkSource> open_http(const FetchOptions& o, Format forced, std::string url,
                                      std::optional<PagingPlan> plan) {
  const HttpOptions http = http_options_from_env(o.max_body_bytes);
  const Paths paths = make_paths(o);
  if (plan) {
    if (forced != Format::automatic && !is_document(forced))
      throw std::invalid_argument(std::string("paging (--pages, --next, {page}) reads JSON or HTML pages, not ") +
                                  format_name(forced));
    spdlog::info("reading pages from {}{}{}", plan->url,
                 plan->max_pages ? " (at most " + std::to_string(plan->max_pages) + " pages)" : "",
                 http.client_id.empty() ? "" : " with the Client-ID from IMGUR_CLIENT_ID");
    auto fetch = [http](const std::string& page) {
      HttpResponse resp = get_page(page, http);
      if (resp.status < 200 || resp.status > 299)
        throw SourceError("GET " + page + " answered HTTP " + std::to_string(resp.status));
      return Page{page, resp.effective_url, resp.content_type,
                  document_text(std::move(resp.body), page, http.max_body_bytes)};
    };
    auto read = [o, paths, forced](const Page& page) {
      const Format f = detect(o, forced, page.url, is_gzip(page.body) ? "" : page.content_type,
                              std::string_view(page.body).substr(0, 4096));
      return read_document(f, page.body, page.final_url, o, paths, page.url);
    };
    return std::make_unique<PagedSource>(std::move(*plan), fetch, read);
  }
  spdlog::info("downloading {}{}", url,
               http.client_id.empty() ? "" : " (with the Client-ID from IMGUR_CLIENT_ID)");
  HttpResponse resp = get_page(url, http);
  if (resp.status < 200 || resp.status > 299)
    throw SourceError("GET " + url + " answered HTTP " + std::to_string(resp.status));
  const bool gz = is_gzip(resp.body);
  auto in = open_maybe_gzip(std::make_unique<std::istringstream>(std::move(resp.body)), url);
  const std::string_view head = in->head(4096);
  const Format f = detect(o, forced, url, gz ? "" : resp.content_type, head);
  spdlog::debug("{}: HTTP {}, {}, read as {}{}", url, resp.status,
                resp.content_type.empty() ? "no content type" : resp.content_type, format_name(f),
                gz ? " (gzip)" : "");
  if (is_document(f)) {
    const std::string text = read_bounded(*in, o.max_body_bytes, url);
    return std::move(read_document(f, text, resp.effective_url.empty() ? url : resp.effective_url, o,
                                   paths, url)
                         .source);
  }
  return stream_source(f, std::move(in), o);
}

} // namespace

std::unique_ptr<LinkSource> open_source(const FetchOptions& o) {
  const Format forced = parse_format(o.format);
  if (o.source.empty()) throw std::invalid_argument("--source is empty");
  if (forced == Format::json && o.links.empty())
    throw std::invalid_argument("--format json needs --links PATH (e.g. data[].link)");
  if (!o.next.empty() && o.links.empty())
    throw std::invalid_argument("--next needs --links: the pages are JSON documents");
  if (o.pages == 0 || o.pages < -1) throw std::invalid_argument("--pages must be at least 1");

  std::optional<PagingPlan> plan;
  std::string url = o.source;
  const std::uint64_t max_pages = o.pages > 0 ? static_cast<std::uint64_t>(o.pages) : 0;
  if (auto imgur = imgur_template(o)) {
    plan = PagingPlan{PagingPlan::Mode::numbered, *imgur, o.first_page.value_or(0), o.pages > 0 ? max_pages : 1};
  } else if (o.source.find("{page}") != std::string::npos) {
    plan = PagingPlan{PagingPlan::Mode::numbered, o.source, o.first_page.value_or(0), max_pages};
  } else if (!o.next.empty()) {
    plan = PagingPlan{PagingPlan::Mode::next, o.source, 0, max_pages};
  } else if (o.pages > 1) {
    auto numbered = is_http(o.source) ? numbered_url(o.source) : std::nullopt;
    if (!numbered)
      throw std::invalid_argument("--pages needs a URL with a {page} placeholder or one whose path ends "
                                  "in a page number (e.g. .../hot/viral/0.json), or --next");
    plan = PagingPlan{PagingPlan::Mode::numbered, numbered->first,
                      o.first_page.value_or(numbered->second), max_pages};
  }
  if (plan && !is_http(plan->url))
    throw std::invalid_argument("paging (--pages, --next, {page}) needs an http(s) source");
  if (is_http(url) || plan) return open_http(o, forced, url, std::move(plan));
  return open_local(o, forced);
}

} // namespace trawl::fetcher
