#include <signal.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <chrono>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "tests/support/corpus.hpp"
#include "tests/support/process.hpp"

using namespace trawl::testsupport;
using namespace std::chrono_literals;

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_alnum_id(const std::string& id) {
  if (id.size() != 7) return false;
  for (unsigned char c : id) {
    if (!std::isalnum(c)) return false;
  }
  return true;
}

using Manifest = std::map<std::string, std::pair<std::uint64_t, std::string>>;

Manifest parse_manifest(const std::string& tsv) {
  Manifest out;
  std::istringstream in(tsv);
  std::string line;
  while (std::getline(in, line)) {
    const auto t1 = line.find('\t');
    const auto t2 = line.find('\t', t1 + 1);
    REQUIRE(t1 != std::string::npos);
    REQUIRE(t2 != std::string::npos);
    out[line.substr(0, t1)] = {std::stoull(line.substr(t1 + 1, t2 - t1 - 1)), line.substr(t2 + 1)};
  }
  return out;
}

} // namespace

TEST_CASE("classic gallery has 91 single jpgs and the other kinds", "[support]") {
  const auto items = classic_gallery();
  std::size_t jpg = 0, gif = 0, png = 0, mp4 = 0, albums = 0, album_jpgs = 0;
  std::set<std::string> ids;
  for (const auto& it : items) {
    REQUIRE(is_alnum_id(it.id));
    CHECK(ids.insert(it.id).second);
    if (it.is_album) {
      ++albums;
      CHECK(it.images.size() >= 2);
      CHECK(it.images.size() <= 4);
      for (const auto& child : it.images) {
        REQUIRE(is_alnum_id(child.id));
        CHECK(ids.insert(child.id).second);
        CHECK_FALSE(child.is_album);
        CHECK(child.name.rfind(child.id, 0) == 0);
        CHECK(child.size > 0);
        CHECK(child.size <= kClassicMaxFileSize);
        album_jpgs += ends_with(child.name, ".jpg") ? 1 : 0;
      }
      continue;
    }
    CHECK(it.name.rfind(it.id, 0) == 0);
    CHECK(it.size <= kClassicMaxFileSize);
    CHECK(it.type == mime_type_for(it.name));
    if (ends_with(it.name, ".jpg")) {
      ++jpg;
      CHECK(it.type == "image/jpeg");
      CHECK(it.size >= kClassicJpgMin);
      CHECK(it.size <= kClassicJpgMax);
    } else if (ends_with(it.name, ".gif")) {
      ++gif;
    } else if (ends_with(it.name, ".png")) {
      ++png;
    } else if (ends_with(it.name, ".mp4")) {
      ++mp4;
    }
  }
  CHECK(jpg == 91);
  CHECK(gif >= 4);
  CHECK(png >= 2);
  CHECK(mp4 >= 1);
  CHECK(albums == 3);
  CHECK(album_jpgs >= 3);

  // Spread over the range, not clustered: some small, some large.
  const auto singles = files_of(items, false);
  std::size_t small = 0, large = 0;
  for (const auto& f : singles) {
    if (ends_with(f.name, ".jpg")) {
      small += f.size < 100 * 1000 ? 1 : 0;
      large += f.size > 1000 * 1000 ? 1 : 0;
    }
  }
  CHECK(small >= 10);
  CHECK(large >= 5);

  // Deterministic.
  const auto again = classic_gallery();
  REQUIRE(again.size() == items.size());
  for (std::size_t i = 0; i < items.size(); ++i) {
    CHECK(again[i].id == items[i].id);
    CHECK(again[i].size == items[i].size);
  }
}

TEST_CASE("uniform corpus sizes stay within 20 percent", "[support]") {
  const auto items = uniform_corpus(2000, 100 * 1000, 7);
  REQUIRE(items.size() == 2000);
  std::set<std::string> ids;
  for (const auto& it : items) {
    CHECK(is_alnum_id(it.id));
    CHECK(ids.insert(it.id).second);
    CHECK(ends_with(it.name, ".jpg"));
    CHECK(it.size >= 80 * 1000);
    CHECK(it.size <= 120 * 1000);
  }
  CHECK(uniform_corpus(5, 1000, 7)[0].id == uniform_corpus(5, 1000, 7)[0].id);
  CHECK(uniform_corpus(5, 1000, 7)[0].id != uniform_corpus(5, 1000, 8)[0].id);
}

TEST_CASE("file_bytes is deterministic, exact and distinct per name", "[support]") {
  const auto a = file_bytes("aB3dE5f.jpg", 123457);
  CHECK(a.size() == 123457);
  CHECK(a == file_bytes("aB3dE5f.jpg", 123457));
  CHECK(a != file_bytes("aB3dE5g.jpg", 123457));
  CHECK(a.compare(0, 4, "\xFF\xD8\xFF\xE0") == 0);
  CHECK(file_bytes("x.png", 100).compare(0, 8, "\x89PNG\r\n\x1A\n") == 0);
  CHECK(file_bytes("x.gif", 100).compare(0, 6, "GIF89a") == 0);
  CHECK(file_bytes("x.mp4", 100).compare(4, 4, "ftyp") == 0);
  CHECK(file_bytes("tiny.jpg", 0).empty());
  CHECK(file_bytes("tiny.jpg", 3).size() == 3);

  const auto start = std::chrono::steady_clock::now();
  const auto big = file_bytes("big.jpg", 1500 * 1000);
  const auto took = std::chrono::steady_clock::now() - start;
  CHECK(big.size() == 1500 * 1000);
  CHECK(took < 50ms);  // well under 10 ms in a release build; slack for sanitizers and load
}

TEST_CASE("gallery_json has Imgur's shape with links to the base URL", "[support]") {
  const auto items = classic_gallery();
  const std::string base = "http://127.0.0.1:9999";
  const auto doc = nlohmann::json::parse(gallery_json(items, base));
  CHECK(doc.at("success") == true);
  CHECK(doc.at("status") == 200);
  const auto& data = doc.at("data");
  REQUIRE(data.is_array());
  REQUIRE(data.size() == items.size());
  std::size_t albums = 0, gifs = 0;
  for (std::size_t i = 0; i < items.size(); ++i) {
    const auto& j = data[i];
    CHECK(j.at("id") == items[i].id);
    CHECK(j.at("is_album") == items[i].is_album);
    CHECK(j.contains("title"));
    if (items[i].is_album) {
      ++albums;
      CHECK(j.at("link") == base + "/a/" + items[i].id);
      REQUIRE(j.at("images").size() == items[i].images.size());
      for (std::size_t k = 0; k < items[i].images.size(); ++k) {
        CHECK(j.at("images")[k].at("link") == base + "/i/" + items[i].images[k].name);
        CHECK(j.at("images")[k].at("size") == items[i].images[k].size);
      }
    } else {
      CHECK(j.at("link") == base + "/i/" + items[i].name);
      CHECK(j.at("type") == items[i].type);
      CHECK(j.at("size") == items[i].size);
      CHECK(j.at("animated").is_boolean());
      if (items[i].type == "image/gif") {
        ++gifs;
        CHECK(j.at("animated") == true);
        CHECK(j.at("mp4") == base + "/i/" + items[i].id + ".mp4");
        CHECK(j.at("gifv") == base + "/i/" + items[i].id + ".gifv");
      }
    }
  }
  CHECK(albums == 3);
  CHECK(gifs >= 4);
}

TEST_CASE("url_list lists singles, and album files only when asked", "[support]") {
  const auto items = classic_gallery();
  const std::string base = "http://h:1";
  const auto plain = url_list(items, base, false);
  const auto expanded = url_list(items, base, true);
  const auto lines = [](const std::string& s) { return std::count(s.begin(), s.end(), '\n'); };
  CHECK(lines(plain) == 98);
  CHECK(lines(expanded) == 98 + 9);
  CHECK(plain.find("/a/") == std::string::npos);
  CHECK(plain.rfind(base + "/i/", 0) == 0);
}

TEST_CASE("sha256 matches the known vectors", "[support]") {
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");

  TempDir dir;
  const std::string path = dir / "f.bin";
  const auto bytes = file_bytes("f.jpg", 3 * 1000 * 1000);  // more than one read buffer
  std::ofstream(path, std::ios::binary) << bytes;
  CHECK(sha256_file(path) == sha256_hex(bytes));
  CHECK(read_file(path) == bytes);
  CHECK_THROWS(sha256_file(dir / "missing"));
}

TEST_CASE("TempDir removes itself and Child reports exit codes", "[support]") {
  std::string path;
  {
    TempDir dir;
    path = dir.path();
    std::ofstream(dir / "x") << "x";
  }
  if (std::getenv("TRAWL_KEEP_TMP") == nullptr) {
    CHECK_FALSE(std::filesystem::exists(path));
  }

  auto ok = Child::spawn({"sh", "-c", "exit 3"});
  CHECK(ok.wait_for(5s) == 3);
  CHECK_FALSE(ok.running());

  TempDir dir;
  auto echo = Child::spawn({"sh", "-c", "echo $TRAWL_X; echo err >&2"}, {"TRAWL_X=hello"},
                           dir / "out", dir / "err");
  CHECK(echo.wait_for(5s) == 0);
  CHECK(read_file(dir / "out") == "hello\n");
  CHECK(read_file(dir / "err") == "err\n");

  auto sleeper = Child::spawn({"sleep", "30"});
  const pid_t pid = sleeper.pid();
  CHECK(sleeper.running());
  CHECK(pid_alive(pid));
  CHECK_FALSE(sleeper.wait_for(20ms).has_value());
  sleeper.signal(SIGTERM);
  CHECK(sleeper.wait_for(5s) == 128 + SIGTERM);
  CHECK_FALSE(pid_alive(pid));

  CHECK_THROWS(Child::spawn({"/nonexistent/program"}));
  CHECK_THROWS(wait_ready_file(dir / "never", 30ms));
}

TEST_CASE("trawl-fixture serves the manifest, files, stats and enforces the client id",
          "[support]") {
  TempDir dir;
  const std::string ready = dir / "ready";
  auto child = Child::spawn({fixture_bin(), "--ready-file", ready, "--require-client-id", "tok"},
                            {}, dir / "out", dir / "err");
  const auto kv = wait_ready_file(ready, 10s, &child);
  REQUIRE(kv.count("url") == 1);
  REQUIRE(kv.count("port") == 1);
  const std::string url = kv.at("url");
  CHECK(url == "http://127.0.0.1:" + kv.at("port"));

  // The manifest is the corpus's: computing it locally gives the same text.
  const auto manifest_text = http_get(url + "/manifest.tsv");
  CHECK(manifest_text == manifest_tsv(classic_gallery()));
  const auto manifest = parse_manifest(manifest_text);
  CHECK(manifest.size() == 98 + 9);

  const auto& [name, entry] = *manifest.begin();
  const auto body = http_get(url + "/i/" + name);
  CHECK(body.size() == entry.first);
  CHECK(sha256_hex(body) == entry.second);
  CHECK(http_request(url + "/i/nosuchfile.jpg").status == 404);

  // Gallery: 401 without the client id, the corpus with it.
  const auto denied = http_request(url + "/3/gallery/hot/viral/0.json");
  CHECK(denied.status == 401);
  const auto err = nlohmann::json::parse(denied.body);
  CHECK(err.at("success") == false);
  CHECK(err.at("status") == 401);
  const auto wrong =
      http_request(url + "/3/gallery/hot/viral/0.json", {{"Authorization", "Client-ID nope"}});
  CHECK(wrong.status == 401);
  const auto allowed =
      http_request(url + "/3/gallery/hot/viral/0.json", {{"Authorization", "Client-ID tok"}});
  REQUIRE(allowed.status == 200);
  const auto gallery = nlohmann::json::parse(allowed.body);
  CHECK(gallery.at("data").size() == classic_gallery().size());
  CHECK(gallery.at("data")[0].at("link").get<std::string>().rfind(url + "/", 0) == 0);

  const auto list = http_get(url + "/list.txt");
  CHECK(std::count(list.begin(), list.end(), '\n') == 98);

  const auto stats = nlohmann::json::parse(http_get(url + "/stats"));
  CHECK(stats.at("file_requests") == 2);
  CHECK(stats.at("requests") == 7);  // manifest, 2 files, 3 gallery, list; /stats not counted
  CHECK(stats.at("by_path").at("/i/" + name) == 1);
  CHECK(stats.at("by_path").at("/3/gallery/hot/viral/0.json") == 3);

  child.signal(SIGTERM);
  CHECK(child.wait_for(10s) == 0);
  CHECK_FALSE(child.running());
}

TEST_CASE("FixtureServer starts a uniform corpus and stops it", "[support]") {
  auto fx = FixtureServer::start({"--corpus", "uniform", "--count", "20", "--size", "5000"});
  const auto manifest = parse_manifest(http_get(fx.url() + "/manifest.tsv"));
  CHECK(manifest.size() == 20);
  for (const auto& [name, entry] : manifest) {
    CHECK(entry.first >= 4000);
    CHECK(entry.first <= 6000);
  }
  CHECK(fx.stop() == 0);
}
