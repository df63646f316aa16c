#include <catch2/catch.hpp>
#include <map>
#include <string>
#include <vector>

#include "fetcher/json_source.hpp"
#include "fetcher/paged_source.hpp"

using namespace trawl::fetcher;

namespace {

// A fake API: the pages by URL; a missing URL is an error, as a failed GET would be.
struct Api {
  std::map<std::string, std::string> pages;
  std::vector<std::string> asked;
  JsonPath links{"data[].link"};
  JsonPath next{"next"};

  PagedSource source(PagingPlan plan) {
    auto fetch = [this](const std::string& url) {
      asked.push_back(url);
      const auto it = pages.find(url);
      if (it == pages.end()) throw SourceError("GET " + url + " answered HTTP 500");
      return Page{url, url, "application/json", it->second};
    };
    auto read = [this](const Page& p) {
      auto src = std::make_unique<JsonSource>(p.body, links, &next, p.url);
      PageLinks out;
      out.entries = src->found() + src->skipped();
      out.next = src->next_page();
      out.source = std::move(src);
      return out;
    };
    return PagedSource(std::move(plan), fetch, read);
  }
};

std::string page(std::initializer_list<const char*> urls, const char* next = nullptr) {
  nlohmann::json j;
  j["data"] = nlohmann::json::array();
  for (const char* u : urls) j["data"].push_back({{"link", u}});
  if (next) j["next"] = next;
  return j.dump();
}

std::vector<std::string> drain(LinkSource& s) {
  std::vector<std::string> out;
  while (auto u = s.next()) out.push_back(*u);
  return out;
}

} // namespace

TEST_CASE("page_url replaces every {page}", "[fetcher][paged]") {
  CHECK(page_url("http://h/p/{page}.json", 3) == "http://h/p/3.json");
  CHECK(page_url("http://h/?p={page}&again={page}", 12) == "http://h/?p=12&again=12");
  CHECK(page_url("http://h/none", 1) == "http://h/none");
}

TEST_CASE("numbered pages: read until the first empty page", "[fetcher][paged]") {
  Api api;
  api.pages["http://h/p/1.json"] = page({"http://h/1.jpg", "http://h/2.jpg"});
  api.pages["http://h/p/2.json"] = page({"http://h/3.jpg"});
  api.pages["http://h/p/3.json"] = page({});
  api.pages["http://h/p/4.json"] = page({"http://h/never.jpg"});
  auto src = api.source({PagingPlan::Mode::numbered, "http://h/p/{page}.json", 1, 0});
  CHECK(drain(src) == std::vector<std::string>{"http://h/1.jpg", "http://h/2.jpg", "http://h/3.jpg"});
  CHECK(api.asked.size() == 3);
  CHECK(src.pages() == 3);
  CHECK(src.incomplete().empty());
}

TEST_CASE("numbered pages: --pages bounds the pages asked for", "[fetcher][paged]") {
  Api api;
  for (int i = 0; i < 10; ++i) api.pages["http://h/p/" + std::to_string(i) + ".json"] = page({"http://h/x.jpg"});
  auto src = api.source({PagingPlan::Mode::numbered, "http://h/p/{page}.json", 0, 4});
  CHECK(drain(src).size() == 4);
  CHECK(api.asked == std::vector<std::string>{"http://h/p/0.json", "http://h/p/1.json", "http://h/p/2.json",
                                              "http://h/p/3.json"});
}

TEST_CASE("next pages: followed (relative links resolved) until there is none", "[fetcher][paged]") {
  Api api;
  api.pages["http://h/api/a"] = page({"http://h/1.jpg"}, "/api/b");
  api.pages["http://h/api/b"] = page({"http://h/2.jpg"}, "c?x=1");
  api.pages["http://h/api/c?x=1"] = page({"http://h/3.jpg"});
  auto src = api.source({PagingPlan::Mode::next, "http://h/api/a", 0, 0});
  CHECK(drain(src) == std::vector<std::string>{"http://h/1.jpg", "http://h/2.jpg", "http://h/3.jpg"});
  CHECK(src.pages() == 3);
}

TEST_CASE("next pages: a link back to a page already read stops the loop", "[fetcher][paged]") {
  Api api;
  api.pages["http://h/a"] = page({"http://h/1.jpg"}, "http://h/b");
  api.pages["http://h/b"] = page({"http://h/2.jpg"}, "http://h/a");
  auto src = api.source({PagingPlan::Mode::next, "http://h/a", 0, 0});
  CHECK(drain(src).size() == 2);
  CHECK(api.asked.size() == 2);
}

TEST_CASE("a failing later page keeps the links read and says the source is incomplete", "[fetcher][paged]") {
  Api api;
  api.pages["http://h/p/0.json"] = page({"http://h/1.jpg"});
  api.pages["http://h/p/1.json"] = "{\"data\": [ broken";
  auto src = api.source({PagingPlan::Mode::numbered, "http://h/p/{page}.json", 0, 0});
  CHECK(drain(src) == std::vector<std::string>{"http://h/1.jpg"});
  CHECK_THAT(src.incomplete(), Catch::Contains("page 2") && Catch::Contains("does not parse"));

  Api missing;
  missing.pages["http://h/p/0.json"] = page({"http://h/1.jpg"});
  auto src2 = missing.source({PagingPlan::Mode::numbered, "http://h/p/{page}.json", 0, 3});
  CHECK(drain(src2).size() == 1);
  CHECK_THAT(src2.incomplete(), Catch::Contains("HTTP 500"));
}

TEST_CASE("a failing first page is a SourceError", "[fetcher][paged]") {
  Api api;
  auto src = api.source({PagingPlan::Mode::numbered, "http://h/p/{page}.json", 0, 0});
  CHECK_THROWS_AS(src.next(), SourceError);
}
