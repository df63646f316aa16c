// `trawl fetch`: reads links from a source (a gallery JSON page, a URL list file, stdin, or either
// of those over HTTP), keeps the valid, wanted, new ones, and pushes each to the ventilator as a
// proto::Link, then a proto::LinksEnd with the count. Streams: the only per-link state is a
// 64-bit hash per distinct accepted URL.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/curve.hpp"
#include "fetcher/source.hpp"

namespace CLI {
class App;
}

namespace trawl::fetcher {

struct FetchOptions {
  std::string source;                  // "-" (stdin), a file path, or an http(s) URL
  std::vector<std::string> exts;       // wanted extensions (".jpg" or "jpg"); empty = all
  std::vector<std::string> connect{"tcp://127.0.0.1:5557"}; // the ventilator's links endpoint(s)
  std::string format = "auto";         // auto | list | gallery | json | html | csv | tsv | jsonl
  std::chrono::milliseconds linger{60000}; // how long to wait at exit for queued links to go out
  std::uint64_t max_body_bytes = 64ull * 1024 * 1024; // cap on a fetched or gallery document
  int sndhwm = 1000;                   // links queued in ZeroMQ before sending blocks
  GalleryOptions gallery;              // --expand-albums
  CurveOptions curve;                  // --curve-secret, --curve-server
  std::string links;                   // --links PATH: where the links are in a JSON document
  std::string next;                    // --next PATH: the next page's URL in a JSON document
  std::int64_t pages = -1;             // --pages N; -1: not given (see open_source)
  std::optional<std::int64_t> first_page; // --first-page N (default 0, or the URL's number)
  std::string imgur_api = "https://api.imgur.com"; // where imgur:SECTION sources go
  std::string url_column = "url";      // --url-column NAME (CSV, TSV, JSON Lines)
  std::string base_url;                // --base-url URL: resolves an HTML page's relative links
  std::string match, exclude;          // --match / --exclude REGEX (RE2)
  std::uint64_t limit = 0;             // --limit N: at most N links (0: no limit)
};

// Registers the fetch flags on `cmd` (the `fetch` subcommand). `o` must outlive the parse.
void add_options(CLI::App& cmd, FetchOptions& o);

// Opens the source named by o.source, detecting its format unless o.format says otherwise, and
// spanning pages when asked ("imgur:SECTION[/SORT[/WINDOW]]", "{page}" in the URL, --next, or
// --pages with a URL that ends in a page number). Throws SourceError (unreadable, refused by the
// API, wrong shape), std::invalid_argument (bad option value or combination) and StopRequested
// (http.hpp; a stop arrived during the download).
std::unique_ptr<LinkSource> open_source(const FetchOptions& o);

// Runs the fetcher; returns kExitOk, kExitUsage (bad option), kExitFatal (source unreadable,
// API refused, links not delivered within the linger time) or kExitInterrupted. Never throws.
int run(const FetchOptions& o);

// As run(o), with the stop condition checked by the send loop given explicitly (tests).
int run(const FetchOptions& o, const std::function<bool()>& stop);

} // namespace trawl::fetcher
