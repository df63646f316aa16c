// trawl-fixture: the HTTP server that end-to-end tests, the demo and benchmarks download from.
// It serves a generated corpus (tests/support/corpus.hpp) in the shape of Imgur's API: a gallery
// page, the files, album pages, a plain URL list, and the manifest (name, size, SHA-256) that a
// finished job must match, plus request counters. It binds a free port and announces it in a
// ready file, so tests never guess ports and never sleep to wait.
//
// Fault injection lives in one place: parse_fault() reads the mode from a /fault/... path and
// send_file() applies it while answering. No mode exists yet; see the comments there.
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
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>

#include "tests/support/corpus.hpp"
#include "tests/support/fixture_hostile.hpp"

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
  int transient_pct = 0;     // these % of names fail their first request (kind by name)
  int permanent_404_pct = 0; // these % of names always answer 404
};

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
  void count(const std::string& path) {
    std::lock_guard lock(mutex_);
    ++requests_;
    if (path.rfind("/i/", 0) == 0) ++file_requests_;
    ++by_path_[path];
  }

  std::string json() const {
    std::lock_guard lock(mutex_);
    nlohmann::json j;
    j["requests"] = requests_;
    j["file_requests"] = file_requests_;
    j["by_path"] = by_path_;
    return j.dump();
  }

private:
  mutable std::mutex mutex_;
  std::uint64_t requests_ = 0;
  std::uint64_t file_requests_ = 0;
  std::map<std::string, std::uint64_t> by_path_;
};

// How to misbehave while answering a file request. Add a mode by adding a kind and its fields
// here, parsing it in parse_fault() and applying it in send_file(); the routes need no change.
// Planned: status codes (with Retry-After), connection resets, truncated bodies, slow trickle.
struct Fault {
  enum class Kind { none, status, cut };
  Kind kind = Kind::none;
  int status = 0;          // for Kind::status
  int retry_after_s = -1;  // Retry-After header when >= 0
};

// Which fault a name gets, from --transient-pct and --permanent-404-pct: decided by a hash of the
// name (stable across runs) and, for transient faults, only on the name's first request.
class FaultPlan {
public:
  explicit FaultPlan(const Options& opt) : transient_(opt.transient_pct), permanent_(opt.permanent_404_pct) {}

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
    if (!transient(name)) return {};
    {
      std::lock_guard lock(mutex_);
      if (seen_[name]++ > 0) return {};
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
  int transient_, permanent_;
  std::mutex mutex_;
  std::map<std::string, int> seen_;
};

// "/fault/<mode...>/i/<name>" -> the fault and the file name; std::nullopt for an unknown mode.
std::optional<std::pair<Fault, std::string>> parse_fault(const std::string& spec) {
  (void)spec;
  return std::nullopt;
}

// The one place that writes a file's body: Content-Length and type set, Range handled by httplib.
void send_file(Response& res, std::shared_ptr<const std::string> bytes, const std::string& type,
               const Fault& fault) {
  switch (fault.kind) {
  case Fault::Kind::none:
    break;
  case Fault::Kind::status:
    res.status = fault.status;
    if (fault.retry_after_s >= 0) res.set_header("Retry-After", std::to_string(fault.retry_after_s));
    res.set_content("fault: HTTP " + std::to_string(fault.status) + "\n", "text/plain");
    return;
  case Fault::Kind::cut: {
    // Announce the whole length, send half, then drop the connection.
    const std::size_t size = bytes->size();
    res.set_content_provider(size, type, [bytes = std::move(bytes)](std::size_t offset, std::size_t length, httplib::DataSink& sink) {
      const std::size_t half = bytes->size() / 2;
      if (offset >= half) return false;
      return sink.write(bytes->data() + offset, std::min(length, half - offset));
    });
    return;
  }
  }
  const std::size_t size = bytes->size();
  res.set_content_provider(
      size, type,
      [bytes = std::move(bytes)](std::size_t offset, std::size_t length, httplib::DataSink& sink) {
        const std::size_t n = std::min(length, bytes->size() - offset);
        return sink.write(bytes->data() + offset, n);
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

void install_routes(httplib::Server& svr, const Options& opt, FileStore& store, Stats& stats,
                    FaultPlan& faults, const std::string& own_url) {
  svr.set_pre_routing_handler([&stats](const Request& req, Response&) {
    if (req.path.rfind("/stats", 0) != 0) stats.count(req.path);
    return httplib::Server::HandlerResponse::Unhandled;
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
    res.set_content(ts::gallery_json(store.items(), base_url_for(req, opt, own_url)),
                    "application/json");
  });

  svr.Get(R"(/i/([^/]+))", [&](const Request& req, Response& res) {
    delay(opt);
    const std::string name = req.matches[1];
    auto bytes = store.get(name);
    if (!bytes) return not_found(res, name);
    send_file(res, std::move(bytes), ts::mime_type_for(name), faults.next(name));
  });

  svr.Get(R"(/fault/(.+))", [&](const Request& req, Response& res) {
    const auto parsed = parse_fault(req.matches[1]);
    if (!parsed) return not_found(res, "fault mode in " + req.path);
    delay(opt);
    auto bytes = store.get(parsed->second);
    if (!bytes) return not_found(res, parsed->second);
    send_file(res, std::move(bytes), ts::mime_type_for(parsed->second), parsed->first);
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

  svr.Get("/manifest.tsv", [&](const Request&, Response& res) {
    res.set_content(store.manifest(), "text/tab-separated-values");
  });

  svr.Get("/faults", [&faults, &store](const Request&, Response& res) {
    res.set_content(faults.describe(ts::files_of(store.items(), true)), "application/json");
  });

  svr.Get("/stats", [&stats](const Request&, Response& res) {
    res.set_content(stats.json(), "application/json");
  });

  ts::install_hostile_routes(svr); // /h/...: lying, stalling, redirecting, bombing

  if (opt.verbose) {
    svr.set_logger([](const Request& req, const Response& res) {
      spdlog::info("{} {} -> {}", req.method, req.path, res.status);
    });
  }
}

// PATH.tmp then rename: a reader sees no file or the whole file, never half of it.
void write_ready_file(const std::string& path, int port, const std::string& url) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << "port=" << port << "\nurl=" << url << "\npid=" << ::getpid() << "\n";
    if (!out.flush()) throw std::runtime_error("cannot write " + tmp);
  }
  std::filesystem::rename(tmp, path);
}

} // namespace

int main(int argc, char** argv) {
  Options opt;
  CLI::App app{"trawl-fixture: a local HTTP server with a generated, Imgur-shaped corpus for "
               "trawl's tests, demo and benchmarks.\n"
               "Routes: /3/gallery/...json (gallery page), /i/NAME (file), /a/ID (album page), "
               "/list.txt, /manifest.tsv (name, size, sha256), /stats (request counters)."};
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
  install_routes(svr, opt, store, stats, faults, own_url);

  std::atomic<bool> done{false};
  std::thread signal_thread([&] {
    const timespec tick{0, 100 * 1000 * 1000};
    bool stopping = false;
    while (!done.load()) {
      const int sig = sigtimedwait(&stop_signals, nullptr, &tick);
      if (sig > 0) {
        spdlog::info("trawl-fixture: signal {}, stopping", sig);
        stopping = true;
      }
      // Repeated until listen returns: a stop() before the accept loop starts is a no-op.
      if (stopping) {
        ts::stop_hostile_routes();
        svr.stop();
      }
    }
  });

  try {
    if (!opt.ready_file.empty()) write_ready_file(opt.ready_file, port, own_url);
  } catch (const std::exception& e) {
    spdlog::error("trawl-fixture: {}", e.what());
    done = true;
    signal_thread.join();
    return 1;
  }
  spdlog::info("trawl-fixture: serving {} corpus on {}", opt.corpus, own_url);

  const bool ok = svr.listen_after_bind();
  done = true;
  signal_thread.join();
  spdlog::info("trawl-fixture: stopped");
  return ok ? 0 : 1;
}
