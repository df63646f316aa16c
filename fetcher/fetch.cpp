#include "fetcher/fetch.hpp"

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sstream>
#include <sys/stat.h>
#include <zmq.hpp>

#include "common/exit_codes.hpp"
#include "common/signals.hpp"
#include "common/zmq_util.hpp"
#include "fetcher/filter.hpp"
#include "fetcher/http.hpp"
#include "fetcher/paged_source.hpp"
#include "proto/messages.hpp"

namespace trawl::fetcher {
namespace {

using Clock = std::chrono::steady_clock;

// A configuration problem (bad flag value): exit code kExitUsage.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

// Sends one frame, waiting (without spinning) while the socket is at its high-water mark or has
// no peer yet. Returns false when `stop` became true first.
class Sender {
public:
  Sender(zmq::socket_t& s, const std::vector<std::string>& peers, const std::function<bool()>& stop)
      : s_(s), peers_(peers), stop_(stop) {}

  bool send(const std::string& frame) {
    Clock::time_point blocked_since{};
    for (;;) {
      try {
        if (try_send(s_, frame)) return true;
      } catch (const zmq::error_t& e) {
        if (e.num() != EINTR) throw;
      }
      if (stop_()) return false;
      const auto now = Clock::now();
      if (blocked_since == Clock::time_point{}) blocked_since = now;
      if (!told_waiting_ && now - blocked_since > std::chrono::seconds(5)) {
        spdlog::info("waiting for the ventilator at {} to take links", join(peers_));
        told_waiting_ = true;
      }
      zmq::pollitem_t item{s_.handle(), 0, ZMQ_POLLOUT, 0};
      try {
        zmq::poll(&item, 1, std::chrono::milliseconds(100));
      } catch (const zmq::error_t& e) {
        if (e.num() != EINTR) throw;
      }
    }
  }

private:
  zmq::socket_t& s_;
  const std::vector<std::string>& peers_;
  const std::function<bool()>& stop_;
  bool told_waiting_ = false;
};

int run_impl(const FetchOptions& o, const std::function<bool()>& stop) {
  if (o.connect.empty()) throw UsageError("no --connect endpoint given");
  if (o.linger.count() < 0) throw UsageError("--linger-ms must not be negative");
  std::unique_ptr<LinkFilter> filter;
  try {
    filter = std::make_unique<LinkFilter>(o.exts);
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("--ext: ") + e.what());
  }
  try {
    filter->set_patterns(o.match, o.exclude);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  // ZeroMQ first: its I/O thread connects to the ventilator (and does the handshake) while the
  // source is opened, which for a URL means a request and a parsed page (a classic job from the
  // gallery URL against nginx, 6 alternating runs: the first file request 24.7-27.6 ms after
  // start, median ~25.6, against 24.6-43.8, ~28). A source that cannot be opened still ends the
  // run before anything is sent.
  zmq::context_t ctx(1);
  SocketOptions so;
  so.sndhwm = o.sndhwm;
  so.linger = o.linger;
  so.immediate = true; // queue nothing for an endpoint with no ventilator behind it
  // A DEALER rather than a PUSH: the ventilator answers the end marker with the number of links
  // it received, and only then may this process exit. (Frames still in the kernel's socket buffer
  // when the sender closes can be dropped by the receiving side's I/O thread, so "sent" is not
  // "received" until the ventilator says so.)
  zmq::socket_t sock = make_socket(ctx, zmq::socket_type::dealer, so);
  try {
    CurveSetup(o.curve, CurveRole::client).make_client(sock);
    connect_all(sock, o.connect);
  } catch (const std::runtime_error& e) {
    throw UsageError(e.what());
  }
  std::unique_ptr<LinkSource> source = open_source(o);
  spdlog::info("fetching links from {} to {}{}", o.source == "-" ? "stdin" : o.source,
               join(o.connect),
               filter->extensions().empty() ? "" : " (keeping " + join(filter->extensions()) + ")");

  Sender sender(sock, o.connect, stop);
  std::uint64_t sent = 0;
  bool interrupted = false;
  bool limited = false;
  while (o.limit == 0 || sent < o.limit) {
    auto url = source->next();
    if (!url) break;
    if (stop()) {
      interrupted = true;
      break;
    }
    if (filter->check(*url, source->where()) != LinkFilter::Verdict::accept) continue;
    if (!sender.send(proto::encode(proto::Link{std::move(*url), std::string(source->meta())}))) {
      interrupted = true;
      break;
    }
    ++sent;
    if (sent % 1'000'000 == 0) spdlog::debug("{} links emitted so far", sent);
  }
  if (o.limit > 0 && sent >= o.limit) limited = true;
  if (!interrupted && (stop() || stop_requested())) interrupted = true;

  std::string extra;
  if (filter->unmatched() > 0) extra += ", " + std::to_string(filter->unmatched()) + " not matching --match";
  if (filter->excluded() > 0) extra += ", " + std::to_string(filter->excluded()) + " excluded";
  std::uint64_t albums = 0;
  if (const auto* gallery = dynamic_cast<const GallerySource*>(source.get())) albums = gallery->albums();
  if (const auto* paged = dynamic_cast<const PagedSource*>(source.get())) {
    albums = paged->albums();
    extra += ", " + std::to_string(paged->pages()) + " pages read";
  }
  if (albums > 0 && !o.gallery.expand_albums) extra += ", " + std::to_string(albums) + " albums skipped";
  if (limited) extra += " (stopped at --limit " + std::to_string(o.limit) + ")";
  spdlog::info("{} links emitted, {} duplicates dropped, {} filtered by extension, "
               "{} invalid lines skipped{}",
               sent, filter->duplicates(), filter->wrong_extension(),
               filter->invalid() + source->skipped(), extra);
  spdlog::debug("de-duplication set: {} bytes for {} links", filter->dedup_bytes(), filter->accepted());

  if (interrupted) {
    // What is queued may still go out, briefly; the end marker does not, so the ventilator
    // knows the list is incomplete.
    sock.set(zmq::sockopt::linger,
             static_cast<int>(std::min(o.linger, std::chrono::milliseconds(1000)).count()));
    spdlog::warn("interrupted after {} links; the end of the list was not sent", sent);
    return kExitInterrupted;
  }
  if (!sender.send(proto::encode(proto::LinksEnd{sent}))) {
    sock.set(zmq::sockopt::linger, 0);
    spdlog::warn("interrupted before the end of the list was sent");
    return kExitInterrupted;
  }

  // Wait for the ventilator's receipt: it echoes the end marker with the count it received.
  const auto deadline = Clock::now() + o.linger;
  for (;;) {
    if (stop() || stop_requested()) {
      sock.set(zmq::sockopt::linger, 0);
      spdlog::warn("interrupted while waiting for the ventilator's receipt");
      return kExitInterrupted;
    }
    const auto now = Clock::now();
    if (now >= deadline) {
      sock.set(zmq::sockopt::linger, 0);
      spdlog::error("the ventilator at {} did not confirm the {} links within {} ms (--linger-ms); "
                    "some may not have been delivered: run the job again to pick them up",
                    join(o.connect), sent, o.linger.count());
      return kExitFatal;
    }
    zmq::pollitem_t item{sock.handle(), 0, ZMQ_POLLIN, 0};
    try {
      zmq::poll(&item, 1, std::min(std::chrono::milliseconds(100),
                                   std::chrono::ceil<std::chrono::milliseconds>(deadline - now)));
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;
    }
    auto reply = try_recv(sock);
    if (!reply) continue;
    auto decoded = proto::decode(reply->to_string_view());
    if (const auto* err = std::get_if<proto::DecodeError>(&decoded);
        err && err->what.starts_with("protocol version")) {
      sock.set(zmq::sockopt::linger, 0);
      spdlog::error("the ventilator at {} speaks {}: it refused the links; run trawl of the "
                    "same protocol version on both sides",
                    join(o.connect), err->what);
      return kExitFatal;
    }
    const auto* m = std::get_if<proto::Message>(&decoded);
    const auto* receipt = m ? std::get_if<proto::LinksEnd>(m) : nullptr;
    if (!receipt) {
      spdlog::warn("ignored an unexpected frame from the ventilator");
      continue;
    }
    if (receipt->count < sent) {
      spdlog::error("the ventilator received {} of the {} links; run the job again to pick up the rest",
                    receipt->count, sent);
      return kExitFatal;
    }
    spdlog::debug("the ventilator confirmed {} links", receipt->count);
    if (const std::string why = source->incomplete(); !why.empty()) {
      spdlog::error("the source was not read to its end ({}): the job holds the links read before",
                    why);
      return kExitFatal;
    }
    return kExitOk;
  }
}

} // namespace

int run(const FetchOptions& o) { return run(o, [] { return stop_requested(); }); }

int run(const FetchOptions& o, const std::function<bool()>& stop) {
  try {
    return run_impl(o, stop);
  } catch (const StopRequested&) {
    spdlog::warn("interrupted while reading the source; no links were sent");
    return kExitInterrupted;
  } catch (const UsageError& e) {
    spdlog::error("{}", e.what());
    return kExitUsage;
  } catch (const std::invalid_argument& e) {
    spdlog::error("{}", e.what());
    return kExitUsage;
  } catch (const SourceError& e) {
    spdlog::error("{}", e.what());
    return kExitFatal;
  } catch (const std::exception& e) {
    spdlog::error("fetch failed: {}", e.what());
    return kExitFatal;
  } catch (...) {
    spdlog::error("fetch failed: unknown error");
    return kExitFatal;
  }
}

void add_options(CLI::App& cmd, FetchOptions& o) {
  if (cmd.get_description().empty())
    cmd.description("Read links from a gallery or JSON API (paged), an HTML page, a CSV/TSV/JSON "
                    "Lines table, a URL list or stdin (gzip or not), keep the valid, wanted and new "
                    "ones, and send them to the ventilator.");
  cmd.add_option("--source", o.source,
                 "Where the links come from. '-' reads stdin. An http:// or https:// URL is "
                 "downloaded: an Imgur API v3 gallery page (e.g. "
                 "https://api.imgur.com/3/gallery/hot/viral/0.json; the Client-ID in the "
                 "environment variable IMGUR_CLIENT_ID is sent as 'Authorization: Client-ID'), "
                 "any JSON API (--links), an HTML page, a CSV/TSV/JSON Lines table or a URL list "
                 "(see --format). 'imgur:SECTION[/SORT[/WINDOW]]' reads Imgur's gallery pages "
                 "(see --imgur-api, --pages). Anything else is a local file in any of those "
                 "formats. A URL list has one URL per line; blank lines and '#' comments are "
                 "skipped.")
      ->required()
      ->type_name("SRC");
  cmd.add_option("--ext", o.exts,
                 "Keep only links whose file name ends in this extension, e.g. '.jpg' or 'jpg' "
                 "(case-insensitive; the query string and fragment are ignored, so "
                 "'a.JPG?x=1' is .jpg). Repeat the flag or separate with commas to keep several. "
                 "Default: every extension.")
      ->type_name("EXT")
      ->delimiter(',')
      ->check(CLI::Validator(
          [](std::string& value) {
            try {
              normalize_extension(value);
              return std::string();
            } catch (const std::invalid_argument& e) {
              return std::string(e.what());
            }
          },
          "EXT"));
  cmd.add_option("--connect", o.connect,
                 "The ventilator's links endpoint to connect to, e.g. tcp://host:5557 or "
                 "ipc:///run/trawl/links. Repeat for several endpoints of the same ventilator; "
                 "links are spread round-robin among them.")
      ->type_name("ENDPOINT")
      ->capture_default_str();
  cmd.add_option("--format", o.format,
                 "How to read the source. 'auto' decides from the HTTP content type, then the "
                 "extension (.json, .jsonl/.ndjson, .csv, .tsv, .html/.htm, .txt; a further .gz is "
                 "looked through), then the first bytes ('{' or '[': JSON, or JSON Lines when "
                 "another object follows on the next line; an HTML tag: HTML; a header line naming "
                 "--url-column: CSV or TSV; else a URL list). JSON is an Imgur-shaped gallery page "
                 "unless --links is given. stdin is a URL list unless --format says otherwise. "
                 "gzip-compressed input (files, stdin, HTTP bodies) is recognised by its first "
                 "bytes and decompressed in every format.")
      ->type_name("auto|list|gallery|json|html|csv|tsv|jsonl")
      ->check(CLI::IsMember({"auto", "list", "gallery", "json", "html", "csv", "tsv", "jsonl"}))
      ->capture_default_str();
  cmd.add_flag("--expand-albums", o.gallery.expand_albums,
               "Gallery pages: take the images of each album (its images[] links) instead of "
               "skipping the album.");
  cmd.add_option("--links", o.links,
                 "JSON pages: where the links are, as field names joined by '.', '[]' meaning "
                 "every element of an array: 'data[].link', 'items[].images[].url', 'urls[]', "
                 "'[].href' (a document that is an array). Entries that are not strings are "
                 "skipped with a warning naming their place.")
      ->type_name("PATH");
  cmd.add_option("--next", o.next,
                 "JSON pages: the field holding the next page's URL (absolute or relative to the "
                 "page), e.g. 'next' or 'paging.next'. Pages are read until one has no next URL, "
                 "is empty, or links back to a page already read (or --pages is reached).")
      ->type_name("PATH");
  cmd.add_option("--pages", o.pages,
                 "Read at most N pages. Pages are numbered by a '{page}' placeholder in the --source "
                 "URL (e.g. https://api.example.com/items?page={page}) or, with --pages, by the "
                 "number that ends the URL's path (Imgur's .../hot/viral/0.json); they are linked by "
                 "--next otherwise. Reading stops at the first empty page. Default: 1 for imgur: "
                 "sources; until an empty page (at most 100000) for '{page}' and --next.")
      ->type_name("N")
      ->check(CLI::PositiveNumber);
  cmd.add_option("--first-page", o.first_page,
                 "The number of the first page for '{page}' and imgur: sources (default 0, as "
                 "Imgur counts; the URL's own number for a URL ending in one).")
      ->type_name("N")
      ->check(CLI::NonNegativeNumber);
  cmd.add_option("--imgur-api", o.imgur_api,
                 "Where 'imgur:SECTION[/SORT[/WINDOW]]' sources go: --source imgur:hot/viral reads "
                 "API/3/gallery/hot/viral/{page}.json (SECTION hot, top or user; SORT viral, top, "
                 "time or rising; WINDOW day, week, month, year or all, for top).")
      ->type_name("URL")
      ->capture_default_str();
  cmd.add_option("--url-column", o.url_column,
                 "CSV, TSV and JSON Lines: the column (header name, any case) or member holding the "
                 "URL. The other columns or members travel with the link as its meta (a JSON "
                 "object of at most 4 KiB, in the manifest), e.g. a caption.")
      ->type_name("NAME")
      ->capture_default_str();
  cmd.add_option("--base-url", o.base_url,
                 "HTML: the URL relative links are resolved against when the page has no <base "
                 "href> (for a local file; a downloaded page uses its own URL).")
      ->type_name("URL");
  cmd.add_option("--match", o.match,
                 "Keep only links in which this regular expression (RE2 syntax) matches somewhere, "
                 "e.g. '/i/.*\\.jpg$' or '(?i)cats'.")
      ->type_name("REGEX");
  cmd.add_option("--exclude", o.exclude,
                 "Drop links in which this regular expression (RE2 syntax) matches somewhere, "
                 "e.g. 'thumb|avatar'.")
      ->type_name("REGEX");
  cmd.add_option("--limit", o.limit,
                 "Send at most N links (after every filter), then stop reading the source, "
                 "fetching no further page. Default: no limit.")
      ->type_name("N")
      ->check(CLI::PositiveNumber);
  cmd.add_option_function<std::int64_t>(
         "--linger-ms",
         [&o](const std::int64_t& ms) { o.linger = std::chrono::milliseconds(ms); },
         "At exit, how long to wait for the links still queued to reach the ventilator before "
         "giving up (then the exit status is 3). 0 drops them at once.")
      ->type_name("MS")
      ->check(CLI::NonNegativeNumber)
      ->default_str(std::to_string(o.linger.count()));
  cmd.add_option("--max-body-bytes", o.max_body_bytes,
                 "Largest document (a JSON or HTML page, decompressed) or downloaded source "
                 "accepted, in bytes (a URL list or table read from a file or stdin is streamed "
                 "and has no such limit).")
      ->type_name("BYTES")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  add_curve_options(cmd, o.curve, CurveRole::client);
}

} // namespace trawl::fetcher
