#include "tests/support/fixture_hostile.hpp"

#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

#include "tests/support/corpus.hpp"

namespace trawl::testsupport {
namespace {

using httplib::Request;
using httplib::Response;

constexpr std::uint64_t kMaxBody = 64ULL << 20;

std::atomic<bool> g_stop{false};

std::uint64_t number(const Request& req, const char* key, std::uint64_t fallback) {
  if (!req.has_param(key)) return fallback;
  try {
    return std::stoull(req.get_param_value(key));
  } catch (const std::exception&) {
    return fallback;
  }
}

// The body of a ?k=KEY&n=N request, or nullptr (and a 400) when it has no key or is too large.
std::shared_ptr<const std::string> keyed_body(const Request& req, Response& res) {
  const std::uint64_t n = number(req, "n", 1000);
  if (!req.has_param("k") || n > kMaxBody) {
    res.status = 400;
    res.set_content("need ?k=KEY&n=N (N <= 64 MiB)\n", "text/plain");
    return nullptr;
  }
  return std::make_shared<const std::string>(file_bytes(req.get_param_value("k"), n));
}

// Sleeps up to `ms`, ending early when the server stops.
void stall(std::uint64_t ms) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (!g_stop.load() && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
}

// gzip of 64 MiB of zeros, made once.
const std::string& bomb() {
  static std::once_flag once;
  static std::string body;
  std::call_once(once, [] {
    z_stream z{};
    if (deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY) != Z_OK)
      throw std::runtime_error("deflateInit2 failed");
    const std::string zeros(1 << 20, '\0');
    char out[1 << 16];
    for (int i = 0; i < 64; ++i) {
      z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(zeros.data()));
      z.avail_in = static_cast<uInt>(zeros.size());
      const int flush = i == 63 ? Z_FINISH : Z_NO_FLUSH;
      int rc = Z_OK;
      do {
        z.next_out = reinterpret_cast<Bytef*>(out);
        z.avail_out = sizeof out;
        rc = deflate(&z, flush);
        body.append(out, sizeof out - z.avail_out);
      } while (z.avail_out == 0 || (flush == Z_FINISH && rc != Z_STREAM_END));
    }
    deflateEnd(&z);
  });
  return body;
}

} // namespace

void stop_hostile_routes() { g_stop = true; }

void install_hostile_routes(httplib::Server& svr) {
  const auto good = [](const Request& req, Response& res) {
    auto body = keyed_body(req, res);
    if (!body) return;
    res.set_content(*body, "application/octet-stream");
  };
  svr.Get(R"(/h/f/[\s\S]*)", good);
  svr.Get("/etc/passwd", good);

  svr.Get("/h/redirect", [](const Request& req, Response& res) {
    res.status = 302;
    res.set_header("Location", req.get_param_value("to"));
    res.set_content("redirect\n", "text/plain");
  });

  svr.Get("/h/chunked", [](const Request& req, Response& res) {
    auto body = keyed_body(req, res);
    if (!body) return;
    res.set_chunked_content_provider(
        "application/octet-stream",
        [body, off = std::size_t{0}](std::size_t, httplib::DataSink& sink) mutable {
          if (off >= body->size()) {
            sink.done();
            return true;
          }
          const std::size_t n = std::min<std::size_t>(64 * 1024, body->size() - off);
          if (!sink.write(body->data() + off, n)) return false;
          off += n;
          return true;
        });
  });

  // A Content-Length that lies: `send` bytes of the keyed body go out whatever `n` announced.
  const auto lying = [](const Request& req, Response& res) {
    auto body = keyed_body(req, res);
    if (!body) return;
    const std::uint64_t send = std::min<std::uint64_t>(number(req, "send", 0), kMaxBody);
    auto bytes = std::make_shared<const std::string>(
        send <= body->size() ? body->substr(0, send)
                             : *body + file_bytes(req.get_param_value("k") + "+", send - body->size()));
    res.set_content_provider(
        body->size(), "application/octet-stream",
        [bytes](std::size_t offset, std::size_t, httplib::DataSink& sink) {
          // Everything at once on the first call; then stop (the connection is closed).
          if (offset > 0 || bytes->empty()) return false;
          sink.write(bytes->data(), bytes->size());
          return false;
        });
  };
  svr.Get("/h/short", lying);
  svr.Get("/h/long", lying);

  svr.Get("/h/stall", [](const Request& req, Response& res) {
    auto body = keyed_body(req, res);
    if (!body) return;
    const std::uint64_t after = std::min<std::uint64_t>(number(req, "after", 0), body->size());
    const std::uint64_t ms = number(req, "ms", 10000);
    res.set_content_provider(body->size(), "application/octet-stream",
                             [body, after, ms](std::size_t offset, std::size_t, httplib::DataSink& sink) {
                               if (offset == 0 && after > 0) sink.write(body->data(), after);
                               stall(ms);
                               return false;
                             });
  });

  svr.Get("/h/silent", [](const Request& req, Response& res) {
    stall(number(req, "ms", 10000));
    res.status = 504;
    res.set_content("too late\n", "text/plain");
  });

  svr.Get("/h/bomb.gz", [](const Request&, Response& res) {
    res.set_header("Content-Encoding", "gzip");
    res.set_content(bomb(), "application/octet-stream");
  });
  svr.Get("/h/bomb.gz.sha256", [](const Request&, Response& res) {
    res.set_content(sha256_hex(bomb()) + " " + std::to_string(bomb().size()) + "\n",
                    "text/plain");
  });
}

} // namespace trawl::testsupport
