// --expect image and --min-size (downloader/content_check.hpp), -H checks
// (downloader/request_headers.hpp) and the output tree (downloader/output_tree.hpp).
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <sys/stat.h>
#include <unistd.h>

#include "downloader/content_check.hpp"
#include "downloader/output_tree.hpp"
#include "downloader/request_headers.hpp"

using namespace trawl::downloader;
namespace fs = std::filesystem;

namespace {

std::string bytes(std::initializer_list<int> b) {
  std::string s;
  for (int c : b) s.push_back(static_cast<char>(c));
  return s;
}

std::string ftyp(std::string_view major, std::string_view compatible, std::uint32_t box = 24) {
  std::string s = bytes({0, 0, 0, static_cast<int>(box)});
  s += "ftyp";
  s += major;
  s += bytes({0, 0, 0, 0});
  s += compatible;
  s.resize(std::max<std::size_t>(s.size(), 40), 'x');
  return s;
}

// Feeds `body` in chunks of `chunk` bytes; returns the first failure or finish()'s verdict.
std::string verdict(const ContentPolicy& p, const std::string& body, std::size_t chunk) {
  ContentSniffer s;
  for (std::size_t at = 0; at < body.size(); at += chunk)
    if (auto why = s.feed(p, std::string_view(body).substr(at, chunk)); !why.empty()) return why;
  return s.finish(p, body.size());
}

struct Dir {
  fs::path path;
  Dir() {
    std::string t = (fs::temp_directory_path() / "trawl-tree-XXXXXX").string();
    REQUIRE(mkdtemp(t.data()) != nullptr);
    path = t;
  }
  ~Dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

void write(const fs::path& p, const std::string& data) {
  std::ofstream(p, std::ios::binary) << data;
}

} // namespace

TEST_CASE("image signatures are recognised from their first bytes", "[downloader][content]") {
  CHECK(image_format(bytes({0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10}), false) == "jpeg");
  CHECK(image_format("\x89PNG\r\n\x1A\n....", false) == "png");
  CHECK(image_format("GIF87a....", false) == "gif");
  CHECK(image_format("GIF89a....", false) == "gif");
  CHECK(image_format(std::string("RIFF\x10\0\0\0WEBPVP8 ", 16), false) == "webp");
  CHECK(image_format(ftyp("avif", "mif1miaf"), false) == "avif");
  CHECK(image_format(ftyp("miaf", "miafavif"), false) == "avif"); // found among compatible brands
  CHECK(image_format(ftyp("heic", "mif1heic"), false) == "heif");
  // Not images.
  CHECK(image_format(ftyp("isom", "iso2mp41", 32), false) == "");
  CHECK(image_format("<!DOCTYPE html><html><head>......", false) == "");
  CHECK(image_format(std::string("RIFF\x10\0\0\0WAVEfmt ", 16), false) == "");
  CHECK(image_format("GIF88a.........", false) == "");
  // Too short to tell, unless the body ends there.
  CHECK_FALSE(image_format(bytes({0xFF, 0xD8}), false));
  CHECK(image_format(bytes({0xFF, 0xD8}), true) == "");
  CHECK_FALSE(image_format("", false));
  CHECK(image_format("", true) == "");
  CHECK_FALSE(image_format("RIFF", false));
  CHECK_FALSE(image_format(bytes({0, 0, 0, 40}) + "ftypmiaf", false)); // brands may follow
}

TEST_CASE("content check: --expect image fails HTML, JSON and video whatever the chunking", "[downloader][content]") {
  ContentPolicy image{Expect::image, 0};
  const std::string html = "<!DOCTYPE html>\n<html><body>gone</body></html>\n";
  for (std::size_t chunk : {1, 3, 7, 32, 4096}) {
    INFO("chunk " << chunk);
    CHECK_THAT(verdict(image, html, chunk), Catch::Contains("not an image") && Catch::Contains("HTML"));
    CHECK_THAT(verdict(image, "{\"error\": \"not found\"}", chunk), Catch::Contains("JSON"));
    CHECK_THAT(verdict(image, ftyp("isom", "iso2mp41", 32), chunk), Catch::Contains("ISO media"));
    CHECK(verdict(image, "\x89PNG\r\n\x1A\n" + std::string(100, 'p'), chunk).empty());
    CHECK(verdict(image, bytes({0xFF, 0xD8, 0xFF}), chunk).empty()); // a short JPEG is a JPEG
  }
  CHECK_THAT(verdict(image, "", 1), Catch::Contains("an empty body"));
  CHECK_THAT(verdict(image, bytes({1, 2, 3, 4, 5, 6, 7, 8, 9}), 4), Catch::Contains("bytes 0102030405060708"));
  // --expect any accepts anything.
  CHECK(verdict(ContentPolicy{}, html, 5).empty());
}

TEST_CASE("content check: --min-size fails bodies below it, at the end", "[downloader][content]") {
  ContentPolicy p{Expect::any, 100};
  CHECK_THAT(verdict(p, std::string(99, 'x'), 10), Catch::Contains("below --min-size 100"));
  CHECK(verdict(p, std::string(100, 'x'), 10).empty());
  ContentPolicy both{Expect::image, 1000};
  CHECK_THAT(verdict(both, "GIF89a" + std::string(29, '\0'), 8), Catch::Contains("35 bytes"));
  CHECK(parse_expect("image") == Expect::image);
  CHECK_FALSE(parse_expect("images"));
}

TEST_CASE("headers: -H takes 'Name: value' only, never CR or LF", "[downloader][headers]") {
  CHECK(check_header("Authorization: Bearer abc").empty());
  CHECK(check_header("X-Empty:").empty());
  CHECK(check_header("Accept: image/*;q=0.9\t, */*").empty());
  CHECK_THAT(check_header("Authorization Bearer"), Catch::Contains("':'"));
  CHECK_THAT(check_header(": x"), Catch::Contains("empty"));
  CHECK_THAT(check_header("X-A: b\r\nHost: evil"), Catch::Contains("CR or LF"));
  CHECK_THAT(check_header("X-A: b\nc"), Catch::Contains("CR or LF"));
  CHECK_THAT(check_header(std::string("X-A: b\0c", 8)), Catch::Contains("NUL"));
  CHECK_THAT(check_header("X A: b"), Catch::Contains("name"));
  CHECK_THAT(check_header("X-A: \x01"), Catch::Contains("control"));
  HeaderList list({"A: 1", "B: 2"});
  REQUIRE(list.get() != nullptr);
  CHECK(std::string(list.get()->data) == "A: 1");
  REQUIRE(list.get()->next != nullptr);
  CHECK(std::string(list.get()->next->data) == "B: 2");
}

TEST_CASE("output tree: subdirectories are made inside, never through a link", "[downloader][tree]") {
  Dir out, elsewhere;
  OutputTree tree(out.path.string());
  const int fd = tree.open_subdir("0000");
  REQUIRE(fd >= 0);
  ::close(fd);
  CHECK(fs::is_directory(out.path / "0000"));
  const int again = tree.open_subdir("0000"); // exists: opened
  REQUIRE(again >= 0);
  ::close(again);
  fs::create_directory_symlink(elsewhere.path, out.path / "0001");
  errno = 0;
  CHECK(tree.open_subdir("0001") < 0);
  CHECK((errno == ELOOP || errno == ENOTDIR));
  write(out.path / "0002", "a file");
  CHECK(tree.open_subdir("0002") < 0);
  CHECK(tree.open_subdir("..") < 0);
  CHECK(tree.open_subdir("a/b") < 0);
  CHECK(fs::is_empty(elsewhere.path));
}

TEST_CASE("output tree: identical content is stored once, as hard links", "[downloader][tree]") {
  Dir out;
  OutputTree tree(out.path.string());
  const std::string sha(64, 'a'), other(64, 'b');
  write(out.path / "first.jpg", "same bytes");
  auto d = tree.dedupe(tree.root(), "first.jpg", "first.jpg", 10, sha, ".trawl-1-1.part");
  CHECK(d.error.empty());
  CHECK_FALSE(d.linked);
  const int sub = tree.open_subdir("0001");
  REQUIRE(sub >= 0);
  write(out.path / "0001" / "second.jpg", "same bytes");
  d = tree.dedupe(sub, "second.jpg", "0001/second.jpg", 10, sha, ".trawl-1-2.part");
  CHECK(d.error.empty());
  CHECK(d.linked);
  CHECK(d.first == "first.jpg");
  struct stat a {}, b {};
  REQUIRE(::stat((out.path / "first.jpg").c_str(), &a) == 0);
  REQUIRE(::stat((out.path / "0001" / "second.jpg").c_str(), &b) == 0);
  CHECK(a.st_ino == b.st_ino);
  CHECK(a.st_nlink == 2);
  CHECK_FALSE(fs::exists(out.path / ".trawl-1-2.part"));
  // The same file again (a task sent twice): nothing to do.
  d = tree.dedupe(tree.root(), "first.jpg", "first.jpg", 10, sha, ".trawl-1-3.part");
  CHECK_FALSE(d.linked);
  CHECK(d.error.empty());
  // Other content: a file of its own.
  write(out.path / "third.jpg", "other");
  d = tree.dedupe(tree.root(), "third.jpg", "third.jpg", 5, other, ".trawl-1-4.part");
  CHECK_FALSE(d.linked);
  // The first copy removed by hand: the next one becomes the first.
  fs::remove(out.path / "first.jpg");
  fs::remove(out.path / "0001" / "second.jpg");
  write(out.path / "fourth.jpg", "same bytes");
  d = tree.dedupe(tree.root(), "fourth.jpg", "fourth.jpg", 10, sha, ".trawl-1-5.part");
  CHECK(d.error.empty());
  CHECK_FALSE(d.linked);
  write(out.path / "fifth.jpg", "same bytes");
  d = tree.dedupe(tree.root(), "fifth.jpg", "fifth.jpg", 10, sha, ".trawl-1-6.part");
  CHECK(d.linked);
  CHECK(d.first == "fourth.jpg");
  // A planted index entry pointing outside is refused, and the file kept.
  const std::string evil(64, 'c');
  fs::create_directories(out.path / ".trawl/objects/cc");
  fs::create_symlink("../../../../etc/passwd", out.path / ".trawl/objects/cc" / evil);
  write(out.path / "sixth.jpg", "x");
  d = tree.dedupe(tree.root(), "sixth.jpg", "sixth.jpg", 1, evil, ".trawl-1-7.part");
  CHECK_FALSE(d.linked);
  CHECK_THAT(d.error, Catch::Contains("not ours"));
  CHECK(fs::file_size(out.path / "sixth.jpg") == 1);
  ::close(sub);
}
