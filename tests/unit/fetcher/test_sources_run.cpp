// open_source's format detection (content type, extension, first bytes, gzip) and the run loop's
// --match, --exclude, --limit and meta, against local files and a loopback HTTP server.
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <httplib.h>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>
#include <zmq.hpp>

#include "common/exit_codes.hpp"
#include "fetcher/fetch.hpp"
#include "fetcher/filter.hpp"
#include "proto/messages.hpp"
#include "tests/support/sources.hpp"

using namespace trawl;
using namespace trawl::fetcher;
using namespace std::chrono_literals;

namespace {

struct TempFile {
  TempFile(const std::string& content, const std::string& suffix) {
    static int counter = 0;
    path = (std::filesystem::temp_directory_path() /
            ("trawl-src-test-" + std::to_string(::getpid()) + "-" + std::to_string(++counter) + suffix))
               .string();
    std::ofstream(path, std::ios::binary) << content;
  }
  ~TempFile() { std::remove(path.c_str()); }
  std::string path;
};

struct Drained {
  std::vector<std::string> urls;
  std::vector<std::string> meta;
};

Drained drain(LinkSource& s) {
  Drained d;
  while (auto u = s.next()) {
    d.urls.push_back(*u);
    d.meta.emplace_back(s.meta());
  }
  return d;
}

FetchOptions opts(const std::string& source) {
  FetchOptions o;
  o.source = source;
  return o;
}

const std::string kCsv = "id,url,caption\n1,http://h/1.jpg,\"one, first\"\n2,http://h/2.png,two\n";
const std::string kJsonl = "{\"url\":\"http://h/1.jpg\",\"caption\":\"one\"}\n{\"url\":\"http://h/2.png\"}\n";
const std::string kHtml = "<html><body><a href=\"1.jpg\">1</a><img src=\"/2.png\"></body></html>";

class Server {
public:
  Server() {
    auto serve = [this](const std::string& path, const std::string& body, const std::string& type) {
      svr_.Get(path, [body, type](const httplib::Request&, httplib::Response& res) { res.set_content(body, type); });
    };
    serve("/table", kCsv, "text/csv");
    serve("/table-plain.csv", kCsv, "text/plain");
    serve("/lines", kJsonl, "application/x-ndjson");
    serve("/dir/page", kHtml, "text/html");
    serve("/list.txt.gz", testsupport::gzip("http://h/1.jpg\nhttp://h/2.png\n"), "application/gzip");
    serve("/api.json", R"({"items":[{"u":"http://h/1.jpg"},{"u":"http://h/2.png"}]})", "application/json");
    serve("/p/1.json", R"({"data":[{"link":"http://h/1.jpg"}]})", "application/json");
    serve("/p/2.json", R"({"data":[{"link":"http://h/2.png"}]})", "application/json");
    serve("/p/3.json", R"({"data":[]})", "application/json");
    serve("/n/a", R"({"data":[{"link":"http://h/1.jpg"}],"next":"b"})", "application/json");
    serve("/n/b", R"({"data":[{"link":"http://h/2.png"}],"next":null})", "application/json");
    port_ = svr_.bind_to_any_port("127.0.0.1");
    REQUIRE(port_ > 0);
    thread_ = std::thread([this] { svr_.listen_after_bind(); });
    while (!svr_.is_running()) std::this_thread::sleep_for(1ms);
  }
  ~Server() {
    svr_.stop();
    thread_.join();
  }
  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }

private:
  httplib::Server svr_;
  int port_ = 0;
  std::thread thread_;
};

} // namespace

TEST_CASE("open_source: local files by extension, by content, and gzip", "[fetcher][sources]") {
  const std::vector<std::string> both{"http://h/1.jpg", "http://h/2.png"};
  TempFile csv(kCsv, ".csv"), tsv("url\tcaption\nhttp://h/1.jpg\tone\nhttp://h/2.png\t\n", ".tsv"),
      jsonl(kJsonl, ".jsonl"), sniffed_jsonl(kJsonl, ".data"), sniffed_csv(kCsv, ".dat"),
      csv_gz(testsupport::gzip(kCsv), ".csv.gz"), sniffed_gz(testsupport::gzip(kJsonl), ".bin"),
      list_gz(testsupport::gzip("http://h/1.jpg\nhttp://h/2.png\n"), ".gz");
  for (const auto* f : {&csv, &tsv, &jsonl, &sniffed_jsonl, &sniffed_csv, &csv_gz, &sniffed_gz, &list_gz}) {
    INFO(f->path);
    auto src = open_source(opts(f->path));
    const auto d = drain(*src);
    CHECK(d.urls == both);
  }
  auto src = open_source(opts(csv_gz.path));
  CHECK(drain(*src).meta == std::vector<std::string>{R"({"id":"1","caption":"one, first"})", R"({"id":"2","caption":"two"})"});

  TempFile html(kHtml, ".html");
  auto o = opts(html.path);
  o.base_url = "http://h/dir/";
  auto h = open_source(o);
  CHECK(drain(*h).urls == std::vector<std::string>{"http://h/dir/1.jpg", "http://h/2.png"});

  TempFile forced(kCsv, ".txt");
  auto f = opts(forced.path);
  f.format = "list"; // every line is then an invalid URL for the filter, but it is read as a list
  auto list = open_source(f);
  CHECK(drain(*list).urls.size() == 3);
}

TEST_CASE("open_source: HTTP by content type, extension, gzip body, and with --links", "[fetcher][sources]") {
  Server server;
  const std::vector<std::string> both{"http://h/1.jpg", "http://h/2.png"};
  for (const char* path : {"/table", "/table-plain.csv", "/lines", "/list.txt.gz"}) {
    INFO(path);
    auto src = open_source(opts(server.url(path)));
    CHECK(drain(*src).urls == both);
  }
  auto page = open_source(opts(server.url("/dir/page")));
  CHECK(drain(*page).urls == std::vector<std::string>{server.url("/dir/1.jpg"), server.url("/2.png")});

  auto o = opts(server.url("/api.json"));
  o.links = "items[].u";
  CHECK(drain(*open_source(o)).urls == both);
  o.links = "items[.u";
  CHECK_THROWS_AS(open_source(o), std::invalid_argument);
}

TEST_CASE("open_source: numbered pages and next links over HTTP", "[fetcher][sources]") {
  Server server;
  const std::vector<std::string> both{"http://h/1.jpg", "http://h/2.png"};
  auto numbered = opts(server.url("/p/{page}.json"));
  numbered.first_page = 1;
  numbered.links = "data[].link";
  CHECK(drain(*open_source(numbered)).urls == both);

  // Imgur style: the number that ends the path, with --pages.
  auto by_number = opts(server.url("/p/1.json"));
  by_number.pages = 5;
  CHECK(drain(*open_source(by_number)).urls == both); // gallery shape, stops at the empty page 3

  auto next = opts(server.url("/n/a"));
  next.links = "data[].link";
  next.next = "next";
  CHECK(drain(*open_source(next)).urls == both);

  auto bad = opts(server.url("/n/a"));
  bad.pages = 3; // no number at the end of the path, no {page}, no --next
  CHECK_THROWS_AS(open_source(bad), std::invalid_argument);
  auto local = opts("/tmp/{page}.json");
  CHECK_THROWS_AS(open_source(local), std::invalid_argument);
  auto no_links = opts(server.url("/n/a"));
  no_links.next = "next";
  CHECK_THROWS_AS(open_source(no_links), std::invalid_argument);
}

TEST_CASE("open_source: imgur: sources page Imgur's gallery API", "[fetcher][sources]") {
  Server server;
  auto o = opts("imgur:hot/viral");
  o.imgur_api = server.url("/nothing-here");
  // The fixture-free check: the URL asked for is the gallery page 0 of the section (a 404 here).
  CHECK_THROWS_WITH(open_source(o)->next(), Catch::Contains("/nothing-here/3/gallery/hot/viral/0.json") &&
                                                 Catch::Contains("HTTP 404"));
  for (const char* bad : {"imgur:", "imgur:cold", "imgur:hot/best", "imgur:hot/top/week", "imgur:top/top/decade"}) {
    INFO(bad);
    CHECK_THROWS_AS(open_source(opts(bad)), std::invalid_argument);
  }
}

TEST_CASE("filter: --match and --exclude with RE2, a bad pattern is a clear error", "[fetcher][sources]") {
  LinkFilter f({});
  f.set_patterns("/i/.*\\.(jpg|png)$", "(?i)thumb");
  CHECK(f.check("http://h/i/a.jpg", "1") == LinkFilter::Verdict::accept);
  CHECK(f.check("http://h/x/a.jpg", "2") == LinkFilter::Verdict::no_match);
  CHECK(f.check("http://h/i/THUMB-a.png", "3") == LinkFilter::Verdict::excluded);
  CHECK(f.check("http://h/i/a.jpg", "4") == LinkFilter::Verdict::duplicate);
  CHECK(f.unmatched() == 1);
  CHECK(f.excluded() == 1);
  CHECK_THROWS_WITH(f.set_patterns("(unclosed", ""), Catch::Contains("--match") && Catch::Contains("(unclosed"));
  CHECK_THROWS_WITH(f.set_patterns("", "a{2,1}"), Catch::Contains("--exclude"));
}

TEST_CASE("filter: the de-duplication set costs 8-16 bytes per distinct link", "[fetcher][sources]") {
  LinkFilter f({});
  for (int i = 0; i < 300000; ++i) f.check("http://h/" + std::to_string(i) + ".jpg", "x");
  CHECK(f.accepted() == 300000);
  CHECK(f.dedup_bytes() >= 300000 * 8);
  CHECK(f.dedup_bytes() <= 300000 * 16 + 64 * 1024);
}

namespace {

struct Vent {
  zmq::context_t ctx{1};
  zmq::socket_t sock{ctx, zmq::socket_type::router};
  std::string endpoint;
  Vent() {
    sock.set(zmq::sockopt::linger, 0);
    sock.bind("tcp://127.0.0.1:*");
    endpoint = sock.get(zmq::sockopt::last_endpoint);
  }
  // Receives links until LinksEnd, and answers it with the receipt.
  std::vector<proto::Link> receive() {
    std::vector<proto::Link> links;
    sock.set(zmq::sockopt::rcvtimeo, 5000);
    for (;;) {
      zmq::message_t id, msg;
      if (!sock.recv(id) || !sock.recv(msg)) break;
      auto d = proto::decode(msg.to_string_view());
      REQUIRE(std::holds_alternative<proto::Message>(d));
      const auto& m = std::get<proto::Message>(d);
      if (const auto* l = std::get_if<proto::Link>(&m)) {
        links.push_back(*l);
      } else if (std::holds_alternative<proto::LinksEnd>(m)) {
        sock.send(id, zmq::send_flags::sndmore);
        sock.send(zmq::buffer(proto::encode(proto::LinksEnd{links.size()})), zmq::send_flags::none);
        break;
      }
    }
    return links;
  }
};

} // namespace

TEST_CASE("run: --limit, --match, --exclude, and a CSV's meta in each Link", "[fetcher][sources]") {
  std::string csv = "url,caption\n";
  for (int i = 0; i < 50; ++i)
    csv += "http://h/" + std::string(i % 2 ? "odd" : "even") + "/" + std::to_string(i) + ".jpg,c" + std::to_string(i) + "\n";
  TempFile file(csv, ".csv");
  Vent vent;
  FetchOptions o = opts(file.path);
  o.connect = {vent.endpoint};
  o.linger = 5000ms;
  o.match = "/odd/";
  o.exclude = "/(1|3)\\.jpg$";
  o.limit = 5;
  auto rc = std::async(std::launch::async, [&] { return fetcher::run(o, [] { return false; }); });
  const auto links = vent.receive();
  CHECK(rc.get() == kExitOk);
  REQUIRE(links.size() == 5);
  CHECK(links[0].url == "http://h/odd/5.jpg");
  CHECK(links[0].meta == R"({"caption":"c5"})");
  CHECK(links[4].url == "http://h/odd/13.jpg");
  CHECK(links[4].meta == R"({"caption":"c13"})");
}

TEST_CASE("run: a bad --match is a usage error", "[fetcher][sources]") {
  TempFile file("http://h/1.jpg\n", ".txt");
  FetchOptions o = opts(file.path);
  o.connect = {"tcp://127.0.0.1:1"};
  o.match = "(";
  CHECK(fetcher::run(o, [] { return false; }) == kExitUsage);
}
