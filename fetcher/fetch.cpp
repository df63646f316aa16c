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
#include "proto/messages.hpp"

namespace trawl::fetcher {
namespace {

using Clock = std::chrono::steady_clock;

// A configuration problem (bad flag value): exit code kExitUsage.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

bool has_prefix_nocase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != prefix[i]) return false;
  }
  return true;
}

bool is_http_source(std::string_view src) {
  return has_prefix_nocase(src, "http://") || has_prefix_nocase(src, "https://");
}

bool has_json_extension(std::string_view path) {
  if (path.size() < 5) return false;
  return has_prefix_nocase(path.substr(path.size() - 5), ".json");
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

std::unique_ptr<LinkSource> gallery_from_text(const std::string& text, const FetchOptions& o) {
  return std::make_unique<GallerySource>(text, o.gallery);
}

std::unique_ptr<LinkSource> open_http(const FetchOptions& o) {
  const HttpOptions http = http_options_from_env(o.max_body_bytes);
  spdlog::info("downloading {}{}", o.source,
               http.client_id.empty() ? "" : " (with the Client-ID from IMGUR_CLIENT_ID)");
  HttpResponse resp = http_get(o.source, http);
  if (resp.status == 401 || resp.status == 403)
    throw SourceError("the gallery API refused the request (HTTP " + std::to_string(resp.status) +
                      "): set IMGUR_CLIENT_ID to a valid Client-ID" +
                      (http.client_id.empty() ? " (it is not set)" : " (the one set was refused)"));
  if (resp.status < 200 || resp.status > 299)
    throw SourceError("GET " + o.source + " answered HTTP " + std::to_string(resp.status));
  bool gallery = o.format == "gallery";
  if (o.format == "auto") {
    std::string ctype = resp.content_type;
    for (auto& c : ctype) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    gallery = ctype.find("json") != std::string::npos || looks_like_json(resp.body);
  }
  spdlog::debug("{}: HTTP {}, {} bytes, {}, read as {}", o.source, resp.status, resp.body.size(),
                resp.content_type.empty() ? "no content type" : resp.content_type,
                gallery ? "gallery JSON" : "URL list");
  if (gallery) return gallery_from_text(resp.body, o);
  return std::make_unique<ListSource>(std::make_unique<std::istringstream>(std::move(resp.body)));
}

std::unique_ptr<LinkSource> open_stream(std::unique_ptr<FdStream> in, const std::string& name,
                                        bool gallery, const FetchOptions& o) {
  if (gallery) return gallery_from_text(read_bounded(*in, o.max_body_bytes, name), o);
  return std::make_unique<ListSource>(std::move(in));
}

std::unique_ptr<LinkSource> open_file(const FetchOptions& o) {
  const int fd = ::open(o.source.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw SourceError("cannot open " + o.source + ": " + std::strerror(errno));
  auto in = std::make_unique<FdStream>(fd, o.source, true);
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode))
    throw SourceError("cannot read " + o.source + ": it is a directory");
  bool gallery = o.format == "gallery";
  if (o.format == "auto")
    gallery = has_json_extension(o.source) || looks_like_json(in->peek(4096));
  spdlog::debug("{}: read as {}", o.source, gallery ? "gallery JSON" : "URL list");
  return open_stream(std::move(in), o.source, gallery, o);
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
  std::unique_ptr<LinkSource> source = open_source(o);

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
  spdlog::info("fetching links from {} to {}{}", o.source == "-" ? "stdin" : o.source,
               join(o.connect),
               filter->extensions().empty() ? "" : " (keeping " + join(filter->extensions()) + ")");

  Sender sender(sock, o.connect, stop);
  std::uint64_t sent = 0;
  bool interrupted = false;
  while (auto url = source->next()) {
    if (stop()) {
      interrupted = true;
      break;
    }
    if (filter->check(*url, source->where()) != LinkFilter::Verdict::accept) continue;
    if (!sender.send(proto::encode(proto::Link{std::move(*url)}))) {
      interrupted = true;
      break;
    }
    ++sent;
    if (sent % 1'000'000 == 0) spdlog::debug("{} links emitted so far", sent);
  }
  if (!interrupted && (stop() || stop_requested())) interrupted = true;

  const auto* gallery = dynamic_cast<const GallerySource*>(source.get());
  spdlog::info("{} links emitted, {} duplicates dropped, {} filtered by extension, "
               "{} invalid lines skipped{}",
               sent, filter->duplicates(), filter->wrong_extension(),
               filter->invalid() + source->skipped(),
               gallery ? ", " + std::to_string(gallery->albums()) + " albums skipped" : "");

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
    return kExitOk;
  }
}

} // namespace

std::unique_ptr<LinkSource> open_source(const FetchOptions& o) {
  if (o.format != "auto" && o.format != "gallery" && o.format != "list")
    throw std::invalid_argument("--format must be auto, gallery or list, not \"" + o.format + "\"");
  if (o.source.empty()) throw std::invalid_argument("--source is empty");
  if (o.source == "-")
    return open_stream(std::make_unique<FdStream>(0, "stdin", false), "stdin",
                       o.format == "gallery", o);
  if (is_http_source(o.source)) return open_http(o);
  return open_file(o);
}

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
    cmd.description("Read links from a gallery page, a URL list or stdin, keep the valid, wanted "
                    "and new ones, and send them to the ventilator.");
  cmd.add_option("--source", o.source,
                 "Where the links come from. '-' reads a URL list from stdin. An http:// or "
                 "https:// URL is downloaded: an Imgur API v3 gallery page (e.g. "
                 "https://api.imgur.com/3/gallery/hot/viral/0.json; the Client-ID in the "
                 "environment variable IMGUR_CLIENT_ID is sent as 'Authorization: Client-ID') or "
                 "a URL list. Anything else is a local file: gallery JSON or a URL list (one URL "
                 "per line; blank lines and '#' comments are skipped).")
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
                 "How to read the source. 'auto': a local file ending in .json or starting with "
                 "'{', or an HTTP body with a JSON content type or starting with '{', is a gallery "
                 "page; anything else (and stdin) is a URL list. 'gallery' or 'list' force one.")
      ->type_name("auto|gallery|list")
      ->check(CLI::IsMember({"auto", "gallery", "list"}))
      ->capture_default_str();
  cmd.add_option_function<std::int64_t>(
         "--linger-ms",
         [&o](const std::int64_t& ms) { o.linger = std::chrono::milliseconds(ms); },
         "At exit, how long to wait for the links still queued to reach the ventilator before "
         "giving up (then the exit status is 3). 0 drops them at once.")
      ->type_name("MS")
      ->check(CLI::NonNegativeNumber)
      ->default_str(std::to_string(o.linger.count()));
  cmd.add_option("--max-body-bytes", o.max_body_bytes,
                 "Largest gallery document or downloaded source accepted, in bytes (a URL list "
                 "read from a file or stdin is streamed and has no such limit).")
      ->type_name("BYTES")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  add_curve_options(cmd, o.curve, CurveRole::client);
}

} // namespace trawl::fetcher
