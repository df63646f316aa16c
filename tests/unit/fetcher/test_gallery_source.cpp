#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "fetcher/filter.hpp"
#include "fetcher/source.hpp"

using namespace trawl::fetcher;

namespace {

std::string sample(const std::string& name) {
  std::ifstream in(std::string(TRAWL_SAMPLES_DIR) + "/" + name, std::ios::binary);
  REQUIRE(in);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> drain(LinkSource& s) {
  std::vector<std::string> out;
  while (auto u = s.next()) out.push_back(*u);
  return out;
}

std::vector<std::string> filtered(LinkSource& s, LinkFilter& f) {
  std::vector<std::string> out;
  while (auto u = s.next())
    if (f.check(*u, s.where()) == LinkFilter::Verdict::accept) out.push_back(*u);
  return out;
}

} // namespace

TEST_CASE("gallery: the sample page yields its single images, albums skipped", "[fetcher]") {
  GallerySource src(sample("imgur-gallery-hot-viral-0.json"));
  CHECK(drain(src) == std::vector<std::string>{
                          "https://i.imgur.com/aB3dE5f.jpg", "https://i.imgur.com/Gh7iJ9k.png",
                          "https://i.imgur.com/Lm1nO2p.gif", "https://i.imgur.com/Jk0lM2n.jpg",
                          "https://i.imgur.com/Yz1aB3c.mp4", "https://i.imgur.com/De5fG7h.jpg"});
  CHECK(src.albums() == 2);
  CHECK(src.skipped() == 0);
}

TEST_CASE("gallery: the sample page with --ext .jpg keeps the three jpegs", "[fetcher]") {
  GallerySource src(sample("imgur-gallery-hot-viral-0.json"));
  LinkFilter filter({".jpg"});
  CHECK(filtered(src, filter) == std::vector<std::string>{"https://i.imgur.com/aB3dE5f.jpg",
                                                          "https://i.imgur.com/Jk0lM2n.jpg",
                                                          "https://i.imgur.com/De5fG7h.jpg"});
  CHECK(filter.wrong_extension() == 3); // png, gif, mp4
  CHECK(filter.invalid() == 0);
  CHECK(filter.duplicates() == 0);
}

TEST_CASE("gallery: where() names the item", "[fetcher]") {
  GallerySource src(sample("imgur-gallery-hot-viral-0.json"));
  REQUIRE(src.next());
  CHECK(src.where() == "data[0]");
  REQUIRE(src.next());
  REQUIRE(src.next());
  REQUIRE(src.next() == "https://i.imgur.com/Jk0lM2n.jpg");
  CHECK(src.where() == "data[4]"); // data[3] is an album
}

TEST_CASE("gallery: album expansion yields album images in order", "[fetcher]") {
  const std::string text = sample("imgur-gallery-hot-viral-0.json");
  // The expected order, computed independently from the document.
  std::vector<std::string> expected;
  const nlohmann::json doc = nlohmann::json::parse(text);
  for (const auto& item : doc.at("data")) {
    if (item.value("is_album", false)) {
      for (const auto& img : item["images"]) expected.push_back(img["link"]);
    } else {
      expected.push_back(item["link"]);
    }
  }
  REQUIRE(expected.size() == 10);
  GallerySource src(text, GalleryOptions{.expand_albums = true});
  CHECK(drain(src) == expected);
  CHECK(src.albums() == 2);
}

TEST_CASE("gallery: bad items are skipped, good ones kept", "[fetcher]") {
  GallerySource src(R"({"data":[
      1,
      {"link": 5},
      {"title": "no link"},
      {"link": "http://a/ok.jpg"},
      {"is_album": "yes", "link": "http://a/weird.jpg"},
      {"is_album": null, "link": "http://a/null-flag.jpg"},
      {"is_album": true, "link": "https://imgur.com/a/x"},
      {"is_album": false, "link": "http://a/last.jpg"}
    ]})");
  CHECK(drain(src) ==
        std::vector<std::string>{"http://a/ok.jpg", "http://a/null-flag.jpg", "http://a/last.jpg"});
  CHECK(src.skipped() == 4);
  CHECK(src.albums() == 1);
}

TEST_CASE("gallery: members it does not read, links nested in them too, change nothing",
          "[fetcher]") {
  // The parser keeps only the members the source reads: links inside the others (an account, a
  // list of tags, an image's own fields) are not the item's, with or without that filter.
  const std::string doc = R"({"success": true, "status": 200, "extra": {"link": "http://no/0.jpg"},
    "data": [
      {"id": "a", "account": {"link": "http://no/1.jpg"}, "link": "http://a/1.jpg",
       "tags": [{"link": "http://no/2.jpg", "name": "t"}], "size": 1234, "is_album": false},
      {"is_album": true, "link": "https://imgur.com/a/x", "cover": {"link": "http://no/3.jpg"},
       "images": [{"id": "i", "link": "http://a/2.jpg", "size": 5, "meta": {"link": "http://no/4.jpg"}},
                  {"link": "http://a/3.jpg", "images": [{"link": "http://no/5.jpg"}]}]},
      {"views": [1, 2, {"link": "http://no/6.jpg"}], "link": "http://a/4.jpg"}
    ]})";
  GallerySource flat(doc);
  CHECK(drain(flat) == std::vector<std::string>{"http://a/1.jpg", "http://a/4.jpg"});
  CHECK(flat.albums() == 1);
  CHECK(flat.items() == 3);
  GallerySource expanded(doc, GalleryOptions{.expand_albums = true});
  CHECK(drain(expanded) == std::vector<std::string>{"http://a/1.jpg", "http://a/2.jpg",
                                                    "http://a/3.jpg", "http://a/4.jpg"});
  CHECK(expanded.where() == "data[2]");
  CHECK(expanded.skipped() == 0);
}

TEST_CASE("gallery: an album without images is skipped when expanding", "[fetcher]") {
  GallerySource src(R"({"data":[{"is_album":true,"link":"https://imgur.com/a/x"},
                                {"is_album":true,"images":[{"link":"http://a/1.jpg"},{"id":"x"}]},
                                {"link":"http://a/2.jpg"}]})",
                    GalleryOptions{.expand_albums = true});
  CHECK(drain(src) == std::vector<std::string>{"http://a/1.jpg", "http://a/2.jpg"});
  CHECK(src.skipped() == 2);
}

TEST_CASE("gallery: a document of the wrong shape is an error naming the field", "[fetcher]") {
  CHECK_THROWS_WITH(GallerySource("[1,2]"), Catch::Contains("array") && Catch::Contains("object"));
  CHECK_THROWS_WITH(GallerySource("{}"), Catch::Contains("\"data\""));
  CHECK_THROWS_WITH(GallerySource(R"({"data": {"x": 1}})"),
                    Catch::Contains("\"data\" is object") && Catch::Contains("array"));
  CHECK_THROWS_WITH(GallerySource(R"({"data": "nope"})"), Catch::Contains("\"data\" is string"));
  CHECK_THROWS_WITH(GallerySource(R"({"data": [)"), Catch::Contains("does not parse"));
  CHECK_THROWS_WITH(GallerySource(""), Catch::Contains("does not parse"));
  CHECK_THROWS_AS(GallerySource("{}"), SourceError);
  CHECK_NOTHROW(GallerySource(R"({"data": []})"));
}

TEST_CASE("gallery: an API error document is an error mentioning IMGUR_CLIENT_ID", "[fetcher]") {
  CHECK_THROWS_WITH(GallerySource(sample("imgur-error-401.json")),
                    Catch::Contains("401") && Catch::Contains("IMGUR_CLIENT_ID") &&
                        Catch::Contains("Authentication required"));
  CHECK_THROWS_WITH(GallerySource(R"({"success": false, "status": 500, "data": []})"),
                    Catch::Contains("success=false") && Catch::Contains("500"));
  CHECK_NOTHROW(GallerySource(R"({"success": true, "status": 200, "data": []})"));
}

TEST_CASE("gallery JSON with a number that overflows a double is a SourceError", "[fetcher]") {
  // nlohmann::json throws out_of_range (not parse_error) for these; found by fuzz_gallery.
  for (const char* doc : {R"({"data":[{"link":1e400}]})", R"({"data":[],"status":-1e999})",
                          R"({"data":[{"link":"http://h/a.jpg","size":1E+4000}]})"}) {
    INFO(doc);
    CHECK_THROWS_AS(GallerySource(doc), SourceError);
    try {
      GallerySource s(doc);
    } catch (const SourceError& e) {
      CHECK_THAT(e.what(), Catch::Contains("does not parse"));
    }
  }
}
