// trawl-fixture: the HTTP server that end-to-end tests, the demo and benchmarks download from.
// It serves a generated corpus (tests/support/corpus.hpp) in the shape of Imgur's API: a gallery
// page, the files, album pages, a plain URL list, and the manifest (name, size, SHA-256) that a
// finished job must match, plus request counters. It binds a free port and announces it in a
// ready file, so tests never guess ports and never sleep to wait.
//
// Fault injection lives in one place: parse_fault() reads the mode from a /fault/... path (and
// FaultPlan picks one for /i/NAME from the command line), and send_file() applies it while
// answering. File answers handle Range themselves (206, Content-Range, If-Range, 416, ETag,
// Accept-Ranges) unless --no-ranges, and count the body bytes they send (/stats).
#include <httplib.h>
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>

#include "tests/support/corpus.hpp"
#include "tests/support/fixture_hostile.hpp"
#include "tests/support/sources.hpp"

namespace ts = trawl::testsupport;

namespace {

using httplib::Request;
using httplib::Response;

struct Options {
  std::string host = "127.0.0.1";
  int port = 0;
  std::string ready_file;
  std::string corpus = "classic";
  std::size_t count = 2000;
  std::uint64_t size = 100 * 1000;
  std::uint64_t seed = 1;
  int delay_ms = 0;
  std::size_t threads = 512;
  std::string require_client_id;
  std::string base_url;
  bool verbose = false;
  std::size_t gallery_per_page = 0; // > 0: gallery pages hold this many items each (by page number)
  std::size_t api_per_page = 25;    // links per page of /api/pages and /api/next
  std::size_t api_fail_page = 0;    // > 0: that page of /api/pages and /api/next answers 500
  int transient_pct = 0;     // these % of names fail their first request (kind by name)
  int permanent_404_pct = 0; // these % of names always answer 404
  bool no_ranges = false;    // ignore Range and If-Range; no Accept-Ranges, ETag, Last-Modified
  std::int64_t cut_after = -1;   // the first cut_count answers per file end after this many bytes
  int cut_count = 1;
  std::int64_t stall_after = -1; // every file answer goes silent after this many body bytes
  int trickle_ms = 0;            // every file answer sends one body byte per this many ms
  int vhosts = 0;            // extra listeners on 127.0.0.2, 127.0.0.3, ... (virtual hosts)
  std::string robots_file;   // served as /robots.txt (else 404)
  int robots_status = 200;   // the status /robots.txt answers with when robots_file is set
};

// Set when the server is asked to stop: a stalled or trickling answer gives up its thread.
std::atomic<bool> g_stopping{false};

// The corpus and the bytes of its files. Bytes are generated on first request and kept, so
// repeated requests cost a lookup; they are shared (not copied) with the responses in flight.
class FileStore {
public:
  static constexpr std::uint64_t kCacheCapBytes = std::uint64_t{1} << 30;


  explicit FileStore(std::vector<ts::Item> items) : items_(std::move(items)) {
    for (const auto& f : ts::files_of(items_, true)) {
      sizes_.emplace(f.name, f.size);
    }
    // An animated gif's "mp4" link in the gallery JSON points at a smaller video: serve it
    // too, so a fetcher that prefers mp4 finds it (it is not in the manifest).
    for (const auto& f : ts::files_of(items_, true)) {
      if (f.type == "image/gif") {
        sizes_.emplace(f.id + ".mp4", f.size / 5 + 1);
      }
    }
    for (const auto& it : items_) {
      if (it.is_album) albums_.emplace(it.id, &it);
    }
  }

  const std::vector<ts::Item>& items() const noexcept { return items_; }

  // The bytes of file `name`, or nullptr when the corpus has no such file.
  std::shared_ptr<const std::string> get(const std::string& name) {
    const auto size = sizes_.find(name);
    if (size == sizes_.end()) return nullptr;
    {
      std::lock_guard lock(mutex_);
      if (auto hit = cache_.find(name); hit != cache_.end()) return hit->second;
    }
    // Generated outside the lock: two threads may both build the same file; one result wins.
    auto bytes = std::make_shared<const std::string>(ts::file_bytes(name, size->second));
    std::lock_guard lock(mutex_);
    // Past the cap (a huge benchmark corpus) files are generated per request instead: about
    // 1 ms per MB, cheaper than running out of memory.
    if (cached_bytes_ + bytes->size() > kCacheCapBytes) return bytes;
    const auto [it, inserted] = cache_.emplace(name, std::move(bytes));
    if (inserted) cached_bytes_ += it->second->size();
    return it->second;
  }

  const ts::Item* album(const std::string& id) const {
    const auto it = albums_.find(id);
    return it == albums_.end() ? nullptr : it->second;
  }

  const std::string& manifest() {
    std::call_once(manifest_once_, [this] { manifest_ = ts::manifest_tsv(items_); });
    return manifest_;
  }

private:
  const std::vector<ts::Item> items_;
  std::unordered_map<std::string, std::uint64_t> sizes_;
  std::unordered_map<std::string, const ts::Item*> albums_;
  std::mutex mutex_;
  std::unordered_map<std::string, std::shared_ptr<const std::string>> cache_;
  std::uint64_t cached_bytes_ = 0;
  std::once_flag manifest_once_;
  std::string manifest_;
};

// Request counters for tests that check how often something was asked for. Requests for /stats
// itself are not counted, so reading the counters does not change them.
class Stats {
public:
  // `peer`: the client's address and port, one per connection it opened.
  void count(const std::string& path, const std::string& peer) {
    std::lock_guard lock(mutex_);
    ++requests_;
    peers_.insert(peer);
    if (path.rfind("/i/", 0) == 0) ++file_requests_;
    ++by_path_[path];
  }
  // A file request that carried a Range header, and whether it was answered with a range (206).
  void count_range(bool partial) {
    ++range_requests_;
    if (partial) ++partial_responses_;
  }
  // File body bytes handed to the socket (of /i/ and /fault/ answers, ranges included).
  void count_body(std::size_t n) { body_bytes_ += n; }

  std::string json() const {
    std::lock_guard lock(mutex_);
    nlohmann::json j;
    j["requests"] = requests_;
    j["connections"] = peers_.size();
    j["file_requests"] = file_requests_;
    j["range_requests"] = range_requests_.load();
    j["partial_responses"] = partial_responses_.load();
    j["body_bytes"] = body_bytes_.load();
    j["by_path"] = by_path_;
    return j.dump();
  }

private:
  mutable std::mutex mutex_;
  std::uint64_t requests_ = 0;
  std::uint64_t file_requests_ = 0;
  std::atomic<std::uint64_t> range_requests_{0}, partial_responses_{0}, body_bytes_{0};
  std::map<std::string, std::uint64_t> by_path_;
  std::set<std::string> peers_;
};

// Per virtual host (the Host header the client sent): requests, requests in flight now and at
// most, and when each request arrived (ms since the fixture started; the first 100,000). In flight
// means from the request's arrival until its response is written (the logger runs then), so the
// maximum is the concurrency a politeness limit is judged by.
class HostStats {
public:
  static constexpr std::size_t kMaxTimes = 100000;

  void arrived(const std::string& host) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - start_)
                        .count();
    std::lock_guard lock(mutex_);
    auto& h = hosts_[host];
    ++h.requests;
    h.max_in_flight = std::max(h.max_in_flight, ++h.in_flight);
    if (h.times_ms.size() < kMaxTimes) h.times_ms.push_back(ms);
  }

  void answered(const std::string& host) {
    std::lock_guard lock(mutex_);
    auto& h = hosts_[host];
    if (h.in_flight > 0) --h.in_flight;
  }

  nlohmann::json json() const {
    std::lock_guard lock(mutex_);
    nlohmann::json j = nlohmann::json::object();
    for (const auto& [name, h] : hosts_)
      j[name] = {{"requests", h.requests}, {"in_flight", h.in_flight},
                 {"max_in_flight", h.max_in_flight}, {"times_ms", h.times_ms}};
    return j;
  }

  // The first request on a host to a /x/busy/ path is answered 429; true when this is it.
  bool first_busy(const std::string& host) {
    std::lock_guard lock(mutex_);
    return hosts_[host].busy_answered++ == 0;
  }

private:
  struct Host {
    std::uint64_t requests = 0, in_flight = 0, max_in_flight = 0, busy_answered = 0;
    std::vector<std::int64_t> times_ms;
  };
  const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  mutable std::mutex mutex_;
  std::map<std::string, Host> hosts_;
};

// A 1x1 GIF (35 bytes), written out field by field: the placeholder image that --min-size drops.
std::string placeholder_gif() {
  std::string g = "GIF89a";
  g += std::string("\x01\x00\x01\x00\x80\x00\x00", 7);  // 1x1, a 2-colour global table
  g += std::string("\x00\x00\x00\xFF\xFF\xFF", 6);      // black, white
  g += std::string("\x2C\x00\x00\x00\x00\x01\x00\x01\x00\x00", 10); // image descriptor
  g += std::string("\x02\x02\x44\x01\x00", 5);           // LZW: clear, pixel 0, end
  g += "\x3B";                                              // trailer
  return g;
}

// How to misbehave while answering a file request. Add a mode by adding a kind and its fields
// here, parsing it in parse_fault() and applying it in send_file(); the routes need no change.
struct Fault {
  enum class Kind { none, status, cut, stall, trickle };
  Kind kind = Kind::none;
  int status = 0;          // for Kind::status
  int retry_after_s = -1;  // Retry-After header when >= 0
  // cut: close the connection after this many body bytes of the answer (-1: half the file);
  // stall: send this many, then nothing until the client leaves (or the server stops, or 60 s).
  std::int64_t after = -1;
  int every_ms = 0;        // trickle: one body byte per this many milliseconds
};

// Which fault a name gets, from --transient-pct and --permanent-404-pct: decided by a hash of the
// name (stable across runs) and, for transient faults, only on the name's first request.
class FaultPlan {
public:
  explicit FaultPlan(const Options& opt)
      : transient_(opt.transient_pct), permanent_(opt.permanent_404_pct), cut_after_(opt.cut_after),
        cut_count_(opt.cut_count), stall_after_(opt.stall_after), trickle_ms_(opt.trickle_ms) {}

  static unsigned bucket(const std::string& name) {
    std::uint64_t h = 1469598103934665603ULL;
    for (unsigned char c : name) h = (h ^ c) * 1099511628211ULL;
    return static_cast<unsigned>((h >> 17) % 100);
  }
  bool permanent(const std::string& name) const { return static_cast<int>(bucket(name)) >= 100 - permanent_; }
  bool transient(const std::string& name) const { return static_cast<int>(bucket(name)) < transient_; }

  // The fault for this request of `name`.
  Fault next(const std::string& name) {
    if (permanent(name)) return Fault{Fault::Kind::status, 404, -1};
    if (!transient(name)) return for_every_file(name);
    {
      std::lock_guard lock(mutex_);
      if (seen_[name]++ > 0) return for_every_file(name);
    }
    switch (bucket(name) % 5) {
    case 0: return Fault{Fault::Kind::status, 500, -1};
    case 1: return Fault{Fault::Kind::status, 503, 1};
    case 2: return Fault{Fault::Kind::status, 429, 1};
    case 3: return Fault{Fault::Kind::status, 503, -1};
    default: return Fault{Fault::Kind::cut, 0, -1}; // connection closed halfway through the body
    }
  }

  std::string describe(const std::vector<ts::Item>& files) const {
    nlohmann::json j;
    j["transient"] = nlohmann::json::array();
    j["permanent"] = nlohmann::json::array();
    for (const auto& f : files) {
      if (permanent(f.name)) j["permanent"].push_back(f.name);
      else if (transient(f.name)) j["transient"].push_back(f.name);
    }
    return j.dump();
  }

private:
  // --cut-after (the first --cut-count answers of each file), --stall-after, --trickle-ms.
  Fault for_every_file(const std::string& name) {
    if (cut_after_ >= 0) {
      std::lock_guard lock(mutex_);
      if (cuts_[name]++ < cut_count_) return Fault{Fault::Kind::cut, 0, -1, cut_after_};
    }
    if (stall_after_ >= 0) return Fault{Fault::Kind::stall, 0, -1, stall_after_};
    if (trickle_ms_ > 0) return Fault{Fault::Kind::trickle, 0, -1, -1, trickle_ms_};
    return {};
  }

  int transient_, permanent_;
  std::int64_t cut_after_;
  int cut_count_;
  std::int64_t stall_after_;
  int trickle_ms_;
  std::mutex mutex_;
  std::map<std::string, int> seen_;
  std::map<std::string, int> cuts_;
};

// "/fault/<mode>/i/<name>" -> the fault and the file name; std::nullopt for an unknown mode.
// Modes (applied to every request of that path): cut-N (close after N body bytes), stall-N (N
// bytes, then silence), trickle-MS (a byte every MS ms), status-CODE (e.g. status-503).
std::optional<std::pair<Fault, std::string>> parse_fault(const std::string& spec) {
  const auto slash = spec.find("/i/");
  if (slash == std::string::npos || slash == 0) return std::nullopt;
  const std::string mode = spec.substr(0, slash), name = spec.substr(slash + 3);
  if (name.empty() || name.find('/') != std::string::npos) return std::nullopt;
  const auto dash = mode.rfind('-');
  if (dash == std::string::npos || dash + 1 == mode.size() || dash + 10 < mode.size() ||
      mode.find_first_not_of("0123456789", dash + 1) != std::string::npos)
    return std::nullopt;
  const std::string kind = mode.substr(0, dash);
  const long n = std::stol(mode.substr(dash + 1));
  Fault f;
  if (kind == "cut") f = Fault{Fault::Kind::cut, 0, -1, n};
  else if (kind == "stall") f = Fault{Fault::Kind::stall, 0, -1, n};
  else if (kind == "trickle" && n > 0) f = Fault{Fault::Kind::trickle, 0, -1, -1, static_cast<int>(n)};
  else if (kind == "status" && n >= 100 && n <= 599) f = Fault{Fault::Kind::status, static_cast<int>(n), -1};
  else return std::nullopt;
  return std::make_pair(f, name);
}

// Sleeps `ms` in slices; false when the server stops meanwhile.
bool nap(int ms) {
  for (int waited = 0; waited < ms; waited += 20) {
    if (g_stopping) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(20, ms - waited)));
  }
  return !g_stopping;
}

// A file's validators: a strong ETag from its name and size, and a fixed Last-Modified date.
std::string etag_of(const std::string& name, std::size_t size) {
  return "\"" + std::to_string(FaultPlan::bucket(name)) + "-" + std::to_string(size) + "-" +
         std::to_string(std::hash<std::string>{}(name) & 0xFFFFFFFFu) + "\"";
}
constexpr const char* kLastModified = "Mon, 01 Jan 2024 00:00:00 GMT";

// The part of a file an answer carries: [from, to), with its status (200, 206 or 416).
struct Slice {
  std::size_t from = 0, to = 0;
  int status = 200;
};

// Reads one "bytes=A-B", "bytes=A-" or "bytes=-N" range. Anything else (several ranges, another
// unit, garbage) is ignored and the whole file is sent, which RFC 9110 allows.
Slice slice_for(const Request& req, const std::string& etag, std::size_t size) {
  Slice whole{0, size, 200};
  const std::string range = req.get_header_value("Range");
  if (range.rfind("bytes=", 0) != 0 || range.find(',') != std::string::npos) return whole;
  const std::string if_range = req.get_header_value("If-Range");
  if (!if_range.empty() && if_range != etag && if_range != kLastModified) return whole; // changed
  const std::string spec = range.substr(6);
  const auto dash = spec.find('-');
  const auto digits = [](const std::string& d) {
    return !d.empty() && d.size() < 19 && d.find_first_not_of("0123456789") == std::string::npos;
  };
  if (dash == std::string::npos) return whole;
  const std::string a = spec.substr(0, dash), b = spec.substr(dash + 1);
  if (a.empty()) { // the last N bytes
    if (!digits(b) || std::stoull(b) == 0) return whole;
    const std::size_t n = std::min<std::size_t>(std::stoull(b), size);
    return Slice{size - n, size, 206};
  }
  if (!digits(a) || (!b.empty() && !digits(b))) return whole;
  const std::size_t first = std::stoull(a);
  if (!b.empty() && std::stoull(b) < first) return whole;
  if (first >= size) return Slice{0, 0, 416};
  const std::size_t last = b.empty() ? size - 1 : std::min<std::size_t>(std::stoull(b), size - 1);
  return Slice{first, last + 1, 206};
}

// The one place that writes a file's body: status, Range, validators, Content-Length and type,
// then the fault (if any) while the body streams. Every body byte sent is counted.
void send_file(const Request& req, Response& res, const std::string& name,
               std::shared_ptr<const std::string> bytes, const std::string& type, const Fault& fault,
               const Options& opt, Stats& stats, HostStats* hosts = nullptr) {
  // httplib would apply the request's Range to whatever we answer (even an error page, even a
  // 206 we built ourselves); ranges are answered here, so its copy is cleared. The request object
  // is the server's own, non-const one.
  const_cast<Request&>(req).ranges.clear();
  if (fault.kind == Fault::Kind::status) {
    res.status = fault.status;
    if (fault.retry_after_s >= 0) res.set_header("Retry-After", std::to_string(fault.retry_after_s));
    res.set_content("fault: HTTP " + std::to_string(fault.status) + "\n", "text/plain");
    return;
  }
  const std::size_t size = bytes->size();
  Slice slice{0, size, 200};
  if (!opt.no_ranges) {
    const std::string etag = etag_of(name, size);
    res.set_header("Accept-Ranges", "bytes");
    res.set_header("ETag", etag);
    res.set_header("Last-Modified", kLastModified);
    if (req.has_header("Range")) {
      slice = slice_for(req, etag, size);
      stats.count_range(slice.status == 206);
    }
    if (slice.status == 416) {
      res.status = 416;
      res.set_header("Content-Range", "bytes */" + std::to_string(size));
      res.set_content("", type);
      return;
    }
    if (slice.status == 206) {
      res.status = 206;
      res.set_header("Content-Range", "bytes " + std::to_string(slice.from) + "-" +
                                          std::to_string(slice.to - 1) + "/" + std::to_string(size));
    }
  } else if (req.has_header("Range")) {
    stats.count_range(false);
  }
  const std::size_t length = slice.to - slice.from;
  // Body bytes this answer sends before its fault strikes (all of them without a fault).
  std::size_t limit = length;
  if (fault.kind == Fault::Kind::cut || fault.kind == Fault::Kind::stall)
    limit = std::min<std::size_t>(length, fault.after < 0 ? size / 2 : static_cast<std::size_t>(fault.after));
  res.set_content_provider(
      length, type,
      [bytes = std::move(bytes), from = slice.from, length, limit, fault, &stats, hosts,
       host = req.get_header_value("Host"), answer = &res](std::size_t offset, std::size_t want,
                                                            httplib::DataSink& sink) {
        if (offset >= limit) {
          if (fault.kind == Fault::Kind::stall) nap(60000); // silence; the client gives up
          return false; // httplib closes the connection: the body ends short
        }
        std::size_t n = std::min({want, length - offset, limit - offset});
        if (fault.kind == Fault::Kind::trickle) {
          if (offset > 0 && !nap(fault.every_ms)) return false;
          n = 1;
        }
        if (hosts != nullptr && offset + n == length) {
          // The request stops counting as in flight as its last bytes go out, not when the
          // logger runs after the write: by then the client may have sent its next request, and
          // a per-host count would see one request too many.
          hosts->answered(host);
          answer->set_header("X-Fixture-Counted", "1"); // the logger must not count it again
        }
        if (!sink.write(bytes->data() + from + offset, n)) return false;
        stats.count_body(n);
        return true;
      });
}

// The address links in generated documents point at: --base-url when given, else the Host the
// client used (so a client in another network namespace gets links it can reach), else ours.
std::string base_url_for(const Request& req, const Options& opt, const std::string& own_url) {
  if (!opt.base_url.empty()) return opt.base_url;
  const auto host = req.get_header_value("Host");
  const bool sane = !host.empty() && host.size() < 256 &&
                    host.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                           "0123456789.-:[]") == std::string::npos;
  return sane ? "http://" + host : own_url;
}

void delay(const Options& opt) {
  if (opt.delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(opt.delay_ms));
}

// A JSON document (gallery pages, the paged APIs) as a real API sends it: gzip-compressed when the
// client accepts gzip, so that the fetcher's decoding is exercised. Not left to cpp-httplib, which
// would compress a bare "application/json" with brotli at its highest quality: ~0.25 s for the
// classic gallery's 83 KB, most of the demo's clock. The charset parameter keeps httplib's own
// compression off (it matches the bare type only).
void set_json(const Request& req, Response& res, const std::string& body) {
  const std::string type = "application/json; charset=utf-8";
  if (req.get_header_value("Accept-Encoding").find("gzip") == std::string::npos)
    return res.set_content(body, type);
  res.set_header("Content-Encoding", "gzip");
  res.set_header("Vary", "Accept-Encoding");
  res.set_content(ts::gzip(body), type);
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
    case '<': out += "&lt;"; break;
    case '>': out += "&gt;"; break;
    case '&': out += "&amp;"; break;
    case '"': out += "&quot;"; break;
    default: out += c;
    }
  }
  return out;
}

void not_found(Response& res, const std::string& what) {
  res.status = 404;
  res.set_content("not found: " + what + "\n", "text/plain");
}

// The link sources besides the gallery and /list.txt (tests/support/sources.hpp): paged JSON
// APIs, an HTML page, CSV/TSV/JSON Lines tables, and any of them gzip-compressed under NAME.gz
// (served as application/gzip, not as a Content-Encoding: the client must see the magic bytes).
std::optional<std::pair<std::string, std::string>> source_document(const std::string& path,
                                                                   const std::string& base,
                                                                   const Options& opt,
                                                                   FileStore& store) {
  const auto& items = store.items();
  auto page_of = [](const std::string& p, const std::string& prefix) -> std::optional<std::size_t> {
    if (p.rfind(prefix, 0) != 0 || !p.ends_with(".json")) return std::nullopt;
    const std::string num = p.substr(prefix.size(), p.size() - prefix.size() - 5);
    if (num.empty() || num.size() > 6 || num.find_first_not_of("0123456789") != std::string::npos)
      return std::nullopt;
    return std::stoul(num);
  };
  if (opt.api_fail_page > 0 && (page_of(path, "/api/pages/") == opt.api_fail_page ||
                                page_of(path, "/api/next/") == opt.api_fail_page))
    return std::make_pair(std::string(), std::string("fail"));
  if (auto page = page_of(path, "/api/pages/"))
    return std::make_pair(ts::api_numbered_page(items, base, *page, opt.api_per_page), "application/json");
  if (auto page = page_of(path, "/api/next/"))
    return std::make_pair(ts::api_next_page(items, base, *page, opt.api_per_page), "application/json");
  if (path == "/html/page.html") return std::make_pair(ts::links_html(items, base), "text/html; charset=utf-8");
  if (path == "/list.csv") return std::make_pair(ts::url_table(items, base, ','), "text/csv");
  if (path == "/list.tsv") return std::make_pair(ts::url_table(items, base, '\t'), "text/tab-separated-values");
  if (path == "/list.jsonl") return std::make_pair(ts::url_jsonl(items, base), "application/x-ndjson");
  if (path == "/list.txt") return std::make_pair(ts::url_list(items, base, false), "text/plain");
  return std::nullopt;
}

void install_source_routes(httplib::Server& svr, const Options& opt, FileStore& store,
                           const std::string& own_url) {
  svr.Get(R"(/(api|html)/.+|/list\.(csv|tsv|jsonl)|/list\.(txt|csv|tsv|jsonl)\.gz)", [&opt, &store, own_url](const Request& req, Response& res) {
    delay(opt);
    const bool gz = req.path.ends_with(".gz");
    const std::string path = gz ? req.path.substr(0, req.path.size() - 3) : req.path;
    auto doc = source_document(path, base_url_for(req, opt, own_url), opt, store);
    if (!doc) return not_found(res, req.path);
    if (doc->second == "fail") {
      res.status = 500;
      res.set_content("fault: HTTP 500 (--api-fail-page)\n", "text/plain");
      return;
    }
    if (gz) res.set_content(ts::gzip(doc->first), "application/gzip");
    else if (doc->second == "application/json") set_json(req, res, doc->first);
    else res.set_content(doc->first, doc->second);
  });
}

void install_routes(httplib::Server& svr, const Options& opt, FileStore& store, Stats& stats,
                    FaultPlan& faults, const std::string& own_url, HostStats& hosts) {
  svr.set_pre_routing_handler([&stats, &hosts](const Request& req, Response&) {
    if (req.path.rfind("/stats", 0) != 0) {
      stats.count(req.path, req.remote_addr + " " + std::to_string(req.remote_port));
      hosts.arrived(req.get_header_value("Host"));
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  // Runs once the response is written: the request is no longer in flight.
  svr.set_logger([&opt, &hosts](const Request& req, const Response& res) {
    if (req.path.rfind("/stats", 0) != 0 && !res.has_header("X-Fixture-Counted"))
      hosts.answered(req.get_header_value("Host"));
    if (opt.verbose) spdlog::info("{} {} {} -> {}", req.get_header_value("Host"), req.method, req.path, res.status);
  });

  // Content checks and politeness (/x/...): an HTML error page answered with 200 under any name
  // (.jpg included), a tiny placeholder image, the same bytes under every name, and a file whose
  // host answers its first /x/busy/ request with 429 and Retry-After: SECONDS.
  svr.Get(R"(/x/html/([^/]+))", [&opt](const Request&, Response& res) {
    delay(opt);
    res.set_content("<!DOCTYPE html>\n<html><head><title>Not here</title></head><body><h1>This "
                    "image is no longer available</h1></body></html>\n",
                    "text/html; charset=utf-8");
  });
  svr.Get(R"(/x/placeholder/([^/]+))", [&opt](const Request&, Response& res) {
    delay(opt);
    res.set_content(placeholder_gif(), "image/gif");
  });
  svr.Get(R"(/x/same/([^/]+))", [&opt](const Request&, Response& res) {
    delay(opt);
    res.set_content(ts::file_bytes("same.jpg", 5000), "image/jpeg");
  });
  svr.Get(R"(/x/headers/([^/]+))", [](const Request& req, Response& res) {
    std::string body;
    for (const auto& [k, v] : req.headers) body += k + ": " + v + "\n"; // a multimap: sorted
    res.set_content(body, "text/plain");
  });
  svr.Get(R"(/x/busy/(\d{1,4})/i/([^/]+))", [&](const Request& req, Response& res) {
    delay(opt);
    if (hosts.first_busy(req.get_header_value("Host"))) {
      res.status = 429;
      res.set_header("Retry-After", req.matches[1].str());
      res.set_content("busy: come back later\n", "text/plain");
      return;
    }
    const std::string name = req.matches[2];
    auto bytes = store.get(name);
    if (!bytes) return not_found(res, name);
    send_file(req, res, name, std::move(bytes), ts::mime_type_for(name), Fault{}, opt, stats, &hosts);
  });

  svr.Get(R"(/3/gallery/.*\.json)", [&](const Request& req, Response& res) {
    delay(opt);
    if (!opt.require_client_id.empty() &&
        req.get_header_value("Authorization") != "Client-ID " + opt.require_client_id) {
      nlohmann::ordered_json err;
      err["data"] = {
          {"error", "Authentication required"}, {"request", req.path}, {"method", "GET"}};
      err["success"] = false;
      err["status"] = 401;
      res.status = 401;
      res.set_content(err.dump(1), "application/json");
      return;
    }
    if (opt.gallery_per_page > 0) {
      // Paged like Imgur's: the page number is the last path segment (".../hot/viral/2.json").
      const auto slash = req.path.rfind('/');
      const std::string num = req.path.substr(slash + 1, req.path.size() - slash - 1 - 5);
      if (num.empty() || num.size() > 6 || num.find_first_not_of("0123456789") != std::string::npos)
        return not_found(res, req.path);
      set_json(req, res,
               ts::gallery_page(store.items(), base_url_for(req, opt, own_url), std::stoul(num),
                                opt.gallery_per_page));
      return;
    }
    set_json(req, res, ts::gallery_json(store.items(), base_url_for(req, opt, own_url)));
  });

  svr.Get(R"(/i/([^/]+))", [&](const Request& req, Response& res) {
    delay(opt);
    const std::string name = req.matches[1];
    auto bytes = store.get(name);
    if (!bytes) return not_found(res, name);
    send_file(req, res, name, std::move(bytes), ts::mime_type_for(name), faults.next(name), opt,
              stats, &hosts);
  });

  svr.Get(R"(/fault/(.+))", [&](const Request& req, Response& res) {
    const auto parsed = parse_fault(req.matches[1]);
    if (!parsed) return not_found(res, "fault mode in " + req.path);
    delay(opt);
    auto bytes = store.get(parsed->second);
    if (!bytes) return not_found(res, parsed->second);
    send_file(req, res, parsed->second, std::move(bytes), ts::mime_type_for(parsed->second),
              parsed->first, opt, stats, &hosts);
  });

  svr.Get(R"(/a/([A-Za-z0-9]+))", [&](const Request& req, Response& res) {
    const ts::Item* album = store.album(req.matches[1]);
    if (album == nullptr) return not_found(res, req.path);
    const std::string base = base_url_for(req, opt, own_url);
    std::string html = "<!DOCTYPE html>\n<html><head><title>Album " + album->id +
                       "</title></head><body>\n";
    for (const auto& img : album->images) {
      const std::string link = html_escape(base + "/i/" + img.name);
      html += "<a href=\"" + link + "\"><img src=\"" + link + "\"></a>\n";
    }
    html += "</body></html>\n";
    res.set_content(html, "text/html; charset=utf-8");
  });

  svr.Get("/list.txt", [&](const Request& req, Response& res) {
    res.set_content(ts::url_list(store.items(), base_url_for(req, opt, own_url), false),
                    "text/plain");
  });

  install_source_routes(svr, opt, store, own_url);

  svr.Get("/manifest.tsv", [&](const Request&, Response& res) {
    res.set_content(store.manifest(), "text/tab-separated-values");
  });

  svr.Get("/faults", [&faults, &store](const Request&, Response& res) {
    res.set_content(faults.describe(ts::files_of(store.items(), true)), "application/json");
  });

  svr.Get("/stats", [&stats, &hosts](const Request&, Response& res) {
    auto j = nlohmann::json::parse(stats.json());
    j["hosts"] = hosts.json();
    res.set_content(j.dump(), "application/json");
  });

  if (!opt.robots_file.empty()) {
    std::ifstream in(opt.robots_file, std::ios::binary);
    std::string body((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    svr.Get("/robots.txt", [&opt, body = std::move(body)](const Request&, Response& res) {
      res.status = opt.robots_status;
      res.set_content(body, "text/plain");
    });
  }

  ts::install_hostile_routes(svr); // /h/...: lying, stalling, redirecting, bombing
}

// PATH.tmp then rename: a reader sees no file or the whole file, never half of it.
void write_ready_file(const std::string& path, int port, const std::string& url,
                      const std::vector<std::string>& vhosts) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << "port=" << port << "\nurl=" << url << "\npid=" << ::getpid() << "\n";
    for (std::size_t i = 0; i < vhosts.size(); ++i) out << "vhost." << i + 1 << "=" << vhosts[i] << "\n";
    if (!out.flush()) throw std::runtime_error("cannot write " + tmp);
  }
  std::filesystem::rename(tmp, path);
}

} // namespace

int main(int argc, char** argv) {
  Options opt;
  CLI::App app{
      "trawl-fixture: a local HTTP server with a generated, Imgur-shaped corpus for "
      "trawl's tests, demo and benchmarks.\n"
      "Routes: /3/gallery/...json (gallery page), /i/NAME (file), /a/ID (album page), "
      "/list.txt, /manifest.tsv (name, size, sha256), /stats (request, connection, range and "
      "body-byte counters; per Host: requests, in flight, most in flight, arrival times), "
      "/fault/MODE/i/NAME (a file with a fault: cut-N, stall-N, trickle-MS, status-CODE), "
      "/x/html/NAME (an HTML page with 200), /x/placeholder/NAME (a 35-byte GIF), "
      "/x/same/NAME (the same bytes for every NAME), /x/headers/NAME (the request's "
      "headers), /x/busy/SECS/i/NAME (429 with Retry-After: SECS on a host's first such "
      "request, then the file), /robots.txt (with --robots); link sources: /api/pages/N.json "
      "(numbered), /api/next/N.json (next links), /html/page.html, /list.csv, /list.tsv, "
      "/list.jsonl, and NAME.gz of each."};
  app.add_option("--host", opt.host, "Address to listen on")->capture_default_str();
  app.add_option("--port", opt.port, "Port to listen on; 0 picks a free port")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  app.add_option("--ready-file", opt.ready_file,
                 "Once listening, write port=, url= and pid= lines here (atomically)");
  app.add_option("--corpus", opt.corpus, "Which corpus to serve")
      ->capture_default_str()
      ->check(CLI::IsMember({"classic", "uniform"}));
  app.add_option("--count", opt.count, "uniform corpus: number of files")->capture_default_str();
  app.add_option("--size", opt.size, "uniform corpus: approximate file size in bytes (+-20%)")
      ->capture_default_str()
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 32));
  app.add_option("--seed", opt.seed, "uniform corpus: seed for ids and sizes")
      ->capture_default_str();
  app.add_option("--delay-ms", opt.delay_ms,
                 "Sleep this long before answering each file and gallery request")
      ->capture_default_str()
      ->check(CLI::Range(0, 600000));
  app.add_option("--threads", opt.threads,
                 "Worker threads; each open connection holds one, so this bounds concurrency")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{16384}));
  app.add_option("--require-client-id", opt.require_client_id,
                 "Answer gallery requests without 'Authorization: Client-ID ID' with 401");
  app.add_option("--base-url", opt.base_url,
                 "Prefix for links in generated documents (default: the request's Host)");
  app.add_option("--gallery-per-page", opt.gallery_per_page,
                 "Page the gallery as Imgur does: page N (the number ending the path, from 0) holds "
                 "items N*K .. N*K+K-1, an empty data[] past the end. 0: every page is the whole gallery")
      ->capture_default_str();
  app.add_option("--api-per-page", opt.api_per_page,
                 "Links per page of /api/pages/N.json and /api/next/N.json (N from 1)")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{100000}));
  app.add_option("--api-fail-page", opt.api_fail_page,
                 "Page N of /api/pages and /api/next always answers HTTP 500 (0: none)")
      ->capture_default_str();
  app.add_flag("-v,--verbose", opt.verbose, "Log every request to stderr");
  app.add_option("--transient-pct", opt.transient_pct,
                 "This % of files (chosen by a hash of the name) fail their first request: HTTP "
                 "500, 503 (with or without Retry-After: 1), 429 (Retry-After: 1), or a body cut "
                 "halfway; later requests succeed. GET /faults lists the names")
      ->capture_default_str()
      ->check(CLI::Range(0, 100));
  app.add_option("--permanent-404-pct", opt.permanent_404_pct,
                 "This % of files (by name hash, disjoint from the transient ones) always answer 404")
      ->capture_default_str()
      ->check(CLI::Range(0, 100));
  app.add_flag("--no-ranges", opt.no_ranges,
               "Behave like a server without Range support: ignore Range and If-Range (always the "
               "whole file, 200) and send no Accept-Ranges, ETag or Last-Modified");
  app.add_option("--cut-after", opt.cut_after,
                 "The first --cut-count answers for each file close the connection after this "
                 "many body bytes (a range answer counts its own bytes)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--cut-count", opt.cut_count, "Answers per file that --cut-after cuts")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  app.add_option("--stall-after", opt.stall_after,
                 "Every file answer sends this many body bytes, then nothing (the connection "
                 "stays open, silent, until the client leaves)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--trickle-ms", opt.trickle_ms,
                 "Every file answer sends its body one byte per this many milliseconds")
      ->check(CLI::Range(1, 60000));
  app.add_option("--vhosts", opt.vhosts,
                 "Also listen on 127.0.0.2, 127.0.0.3, ... (this many), each on a free port: "
                 "virtual hosts for politeness tests, announced as vhost.1=URL ... in the ready "
                 "file; /stats counts per Host")
      ->capture_default_str()
      ->check(CLI::Range(0, 16));
  app.add_option("--robots", opt.robots_file,
                 "Serve this file as /robots.txt on every host (without it, /robots.txt is 404)")
      ->check(CLI::ExistingFile);
  app.add_option("--robots-status", opt.robots_status,
                 "The status /robots.txt answers with (with --robots; e.g. 503)")
      ->capture_default_str()
      ->check(CLI::Range(200, 599));
  CLI11_PARSE(app, argc, argv);
  spdlog::set_default_logger(spdlog::stderr_color_mt("fixture"));  // stdout stays clean

  // Signals are taken by a dedicated thread (sigtimedwait), not a handler: Server::stop() is not
  // async-signal-safe. Blocked here, before any thread starts, so every thread inherits the mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  std::vector<ts::Item> items = opt.corpus == "uniform"
                                    ? ts::uniform_corpus(opt.count, opt.size, opt.seed)
                                    : ts::classic_gallery();
  FileStore store(std::move(items));
  Stats stats;

  httplib::Server svr;
  const std::size_t threads = opt.threads;
  svr.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  svr.set_keep_alive_max_count(1000);
  svr.set_keep_alive_timeout(3);
  svr.set_read_timeout(std::chrono::seconds(10));
  svr.set_write_timeout(std::chrono::seconds(10));
  // httplib listens with a backlog of 5: a burst of a hundred connects would overflow it and
  // the dropped SYNs would cost clients a 1 s retransmit. Remember the socket so the backlog
  // can be raised once it is bound.
  int listen_fd = -1;
  svr.set_socket_options([&listen_fd](int sock) {
    httplib::default_socket_options(sock);
    listen_fd = sock;
  });

  const int port = opt.port == 0 ? svr.bind_to_any_port(opt.host)
                                 : (svr.bind_to_port(opt.host, opt.port) ? opt.port : -1);
  if (port <= 0) {
    spdlog::error("trawl-fixture: cannot listen on {}:{}", opt.host, opt.port);
    return 1;
  }
  if (listen_fd < 0 || ::listen(listen_fd, 4096) != 0) {
    spdlog::warn("trawl-fixture: cannot raise the listen backlog; bursts of connects may stall");
  }
  const std::string url_host =
      opt.host == "0.0.0.0" || opt.host == "::" ? "127.0.0.1" : opt.host;
  const std::string own_url = "http://" + url_host + ":" + std::to_string(port);
  FaultPlan faults(opt);
  HostStats host_stats;
  install_routes(svr, opt, store, stats, faults, own_url, host_stats);

  // Virtual hosts: one more server per loopback address, same routes and counters.
  std::vector<std::unique_ptr<httplib::Server>> extra;
  std::vector<std::string> vhost_urls;
  for (int i = 0; i < opt.vhosts; ++i) {
    auto s = std::make_unique<httplib::Server>();
    const std::size_t vthreads = std::min<std::size_t>(opt.threads, 128);
    s->new_task_queue = [vthreads] { return new httplib::ThreadPool(vthreads); };
    s->set_keep_alive_max_count(1000);
    s->set_keep_alive_timeout(3);
    const std::string addr = "127.0.0." + std::to_string(i + 2);
    const int p = s->bind_to_any_port(addr);
    if (p <= 0) {
      spdlog::error("trawl-fixture: cannot listen on {}", addr);
      return 1;
    }
    vhost_urls.push_back("http://" + addr + ":" + std::to_string(p));
    install_routes(*s, opt, store, stats, faults, vhost_urls.back(), host_stats);
    extra.push_back(std::move(s));
  }
  std::vector<std::thread> extra_threads;
  std::vector<std::unique_ptr<std::atomic<bool>>> extra_done;
  for (auto& s : extra) {
    extra_done.push_back(std::make_unique<std::atomic<bool>>(false));
    extra_threads.emplace_back([&s, &flag = *extra_done.back()] {
      s->listen_after_bind();
      flag = true;
    });
  }
  // stop() before a server's accept loop starts is a no-op: repeat until each has returned.
  auto stop_extras = [&] {
    for (std::size_t i = 0; i < extra.size(); ++i) {
      while (!*extra_done[i]) {
        extra[i]->stop();
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      extra_threads[i].join();
    }
  };

  std::atomic<bool> done{false};
  std::thread signal_thread([&] {
    const timespec tick{0, 100 * 1000 * 1000};
    bool stopping = false;
    while (!done.load()) {
      const int sig = sigtimedwait(&stop_signals, nullptr, &tick);
      if (sig > 0) {
        spdlog::info("trawl-fixture: signal {}, stopping", sig);
        stopping = true;
        g_stopping = true;
      }
      // Repeated until listen returns: a stop() before the accept loop starts is a no-op.
      if (stopping) {
        ts::stop_hostile_routes();
        svr.stop();
      }
    }
  });

  try {
    if (!opt.ready_file.empty()) write_ready_file(opt.ready_file, port, own_url, vhost_urls);
  } catch (const std::exception& e) {
    spdlog::error("trawl-fixture: {}", e.what());
    done = true;
    signal_thread.join();
    stop_extras();
    return 1;
  }
  spdlog::info("trawl-fixture: serving {} corpus on {}", opt.corpus, own_url);

  const bool ok = svr.listen_after_bind();
  stop_extras(); // the main server stopped: the virtual hosts stop too
  done = true;
  signal_thread.join();
  spdlog::info("trawl-fixture: stopped");
  return ok ? 0 : 1;
}
