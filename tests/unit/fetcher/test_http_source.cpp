#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <httplib.h>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "fetcher/fetch.hpp"
#include "fetcher/http.hpp"

using namespace trawl::fetcher;

namespace {

std::string sample(const std::string& name) {
  std::ifstream in(std::string(TRAWL_SAMPLES_DIR) + "/" + name, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> drain(LinkSource& s) {
  std::vector<std::string> out;
  while (auto u = s.next()) out.push_back(*u);
  return out;
}

// A loopback HTTP server on a free port, serving what the fetcher's HTTP source must handle.
class Server {
public:
  Server() {
    svr_.Get("/gallery.json", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(sample("imgur-gallery-hot-viral-0.json"), "application/json");
    });
    svr_.Get("/gallery-as-text", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(R"({"data":[{"link":"http://h/x.jpg"}]})", "text/plain");
    });
    svr_.Get("/list.txt", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("http://h/1.jpg\n# c\nhttp://h/2.png\r\n", "text/plain");
    });
    svr_.Get("/redirect", [](const httplib::Request&, httplib::Response& res) {
      res.set_redirect("/list.txt");
    });
    svr_.Get("/loop", [](const httplib::Request&, httplib::Response& res) {
      res.set_redirect("/loop");
    });
    svr_.Get("/401", [](const httplib::Request&, httplib::Response& res) {
      res.status = 401;
      res.set_content(sample("imgur-error-401.json"), "application/json");
    });
    svr_.Get("/403", [](const httplib::Request&, httplib::Response& res) { res.status = 403; });
    svr_.Get("/500", [](const httplib::Request&, httplib::Response& res) { res.status = 500; });
    svr_.Get("/big", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(std::string(5000, '#'), "text/plain");
    });
    svr_.Get("/whoami", [](const httplib::Request& req, httplib::Response& res) {
      // Echoes the request headers the fetcher must send, as links.
      std::string ua = req.get_header_value("User-Agent");
      std::string auth = req.get_header_value("Authorization");
      for (auto* s : {&ua, &auth})
        for (auto& c : *s)
          if (c == ' ') c = '_';
      res.set_content("http://h/ua/" + ua + "\nhttp://h/auth/" + auth + "\n", "text/plain");
    });
    port_ = svr_.bind_to_any_port("127.0.0.1");
    REQUIRE(port_ > 0);
    thread_ = std::thread([this] { svr_.listen_after_bind(); });
    // stop() before the accept loop has started would be lost, and join() would wait forever.
    while (!svr_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~Server() {
    svr_.stop();
    thread_.join();
  }
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }

private:
  httplib::Server svr_;
  int port_ = 0;
  std::thread thread_;
};

FetchOptions opts(const std::string& source) {
  FetchOptions o;
  o.source = source;
  return o;
}

// Sets or unsets IMGUR_CLIENT_ID for the scope of a test.
struct ClientIdEnv {
  explicit ClientIdEnv(const char* value) {
    if (value) ::setenv("IMGUR_CLIENT_ID", value, 1);
    else ::unsetenv("IMGUR_CLIENT_ID");
  }
  ~ClientIdEnv() { ::unsetenv("IMGUR_CLIENT_ID"); }
};

} // namespace

TEST_CASE("http: a JSON gallery page is read as a gallery", "[fetcher]") {
  Server server;
  auto src = open_source(opts(server.url("/gallery.json")));
  REQUIRE(dynamic_cast<GallerySource*>(src.get()) != nullptr);
  CHECK(drain(*src).size() == 6);
}

TEST_CASE("http: a body starting with '{' is a gallery whatever its type", "[fetcher]") {
  Server server;
  auto src = open_source(opts(server.url("/gallery-as-text")));
  CHECK(drain(*src) == std::vector<std::string>{"http://h/x.jpg"});
  auto o = opts(server.url("/gallery-as-text"));
  o.format = "list";
  auto as_list = open_source(o);
  REQUIRE(dynamic_cast<ListSource*>(as_list.get()) != nullptr);
}

TEST_CASE("http: a text body is a URL list, redirects are followed", "[fetcher]") {
  Server server;
  auto src = open_source(opts(server.url("/list.txt")));
  CHECK(drain(*src) == std::vector<std::string>{"http://h/1.jpg", "http://h/2.png"});
  auto redirected = open_source(opts(server.url("/redirect")));
  CHECK(drain(*redirected) == std::vector<std::string>{"http://h/1.jpg", "http://h/2.png"});
  CHECK_THROWS_AS(open_source(opts(server.url("/loop"))), SourceError);
}

TEST_CASE("http: 401 and 403 are errors that mention IMGUR_CLIENT_ID", "[fetcher]") {
  Server server;
  ClientIdEnv env(nullptr);
  CHECK_THROWS_WITH(open_source(opts(server.url("/401"))),
                    Catch::Contains("HTTP 401") && Catch::Contains("IMGUR_CLIENT_ID"));
  CHECK_THROWS_WITH(open_source(opts(server.url("/403"))),
                    Catch::Contains("HTTP 403") && Catch::Contains("IMGUR_CLIENT_ID"));
}

TEST_CASE("http: other failures are errors naming the status", "[fetcher]") {
  Server server;
  CHECK_THROWS_WITH(open_source(opts(server.url("/500"))), Catch::Contains("HTTP 500"));
  CHECK_THROWS_WITH(open_source(opts(server.url("/missing"))), Catch::Contains("HTTP 404"));
  auto o = opts(server.url("/big"));
  o.max_body_bytes = 1000;
  CHECK_THROWS_WITH(open_source(o), Catch::Contains("larger than 1000 bytes"));
}

TEST_CASE("http: a refused connection is an error", "[fetcher]") {
  std::string url;
  {
    Server server;
    url = server.url("/list.txt");
  }
  CHECK_THROWS_AS(open_source(opts(url)), SourceError);
}

TEST_CASE("http: User-Agent and the Client-ID header from the environment", "[fetcher]") {
  Server server;
  {
    ClientIdEnv env("abc123");
    auto src = open_source(opts(server.url("/whoami")));
    CHECK(drain(*src) == std::vector<std::string>{"http://h/ua/trawl/0.1.0",
                                                  "http://h/auth/Client-ID_abc123"});
  }
  {
    ClientIdEnv env(nullptr);
    auto src = open_source(opts(server.url("/whoami")));
    CHECK(drain(*src) == std::vector<std::string>{"http://h/ua/trawl/0.1.0", "http://h/auth/"});
  }
}
