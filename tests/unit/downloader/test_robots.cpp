// robots.txt rules (downloader/robots.hpp, RFC 9309): groups chosen by product token, longest
// match with * and $, Allow on ties, percent-normalisation, limits; URL origins (robots_cache.hpp).
#include <catch2/catch.hpp>

#include "downloader/robots.hpp"
#include "downloader/robots_cache.hpp"

using namespace trawl::downloader;

namespace {

bool allowed(const RobotsRules& r, std::string_view path) { return r.check(path).allowed; }

} // namespace

TEST_CASE("robots: product token of a User-Agent", "[robots]") {
  CHECK(robots_token("trawl/0.3") == "trawl");
  CHECK(robots_token("  My_Bot-2 (+https://example.test)") == "My_Bot-2");
  CHECK(robots_token("/weird") == "");
}

TEST_CASE("robots: patterns with * and $", "[robots]") {
  CHECK(robots_match("/", "/anything"));
  CHECK(robots_match("/fish", "/fish.html"));
  CHECK(robots_match("/fish", "/fishheads/yummy.html"));
  CHECK_FALSE(robots_match("/fish", "/Fish.asp"));
  CHECK_FALSE(robots_match("/fish", "/catfish"));
  CHECK(robots_match("/fish*", "/fish"));
  CHECK(robots_match("/*.php", "/index.php"));
  CHECK(robots_match("/*.php", "/folder/any.php.file.html"));
  CHECK_FALSE(robots_match("/*.php", "/"));
  CHECK(robots_match("/*.php$", "/filename.php"));
  CHECK(robots_match("/*.php$", "/folder/filename.php"));
  CHECK_FALSE(robots_match("/*.php$", "/filename.php?parameters"));
  CHECK_FALSE(robots_match("/*.php$", "/filename.php5"));
  CHECK(robots_match("/fish*.php", "/fishheads/catfish.php?parameters"));
  CHECK_FALSE(robots_match("/fish*.php", "/Fish.PHP"));
  CHECK(robots_match("*", ""));
  CHECK(robots_match("/a*b*c$", "/aXbYbZc"));
  CHECK_FALSE(robots_match("/a*b*c$", "/aXbYbZcd"));
  CHECK(robots_match("/$", "/"));
  CHECK_FALSE(robots_match("/$", "/a"));
  // A '$' that is not last is an ordinary octet.
  CHECK(robots_match("/a$b", "/a$b/c"));
  // Many stars against a long path that does not match stays fast (no exponential backtracking).
  CHECK_FALSE(robots_match("/*a*a*a*a*a*a*a*a*a*a*b$", "/" + std::string(5000, 'a')));
}

TEST_CASE("robots: percent-encoding is compared canonically", "[robots]") {
  CHECK(robots_normalise("/%7Efoo") == "/~foo");
  CHECK(robots_normalise("/a%2fb") == "/a%2Fb");           // reserved: stays encoded, upper hex
  CHECK(robots_normalise("/caf\xC3\xA9") == "/caf%C3%A9"); // non-ASCII octets are encoded
  CHECK(robots_normalise("/100%") == "/100%");             // not an escape: kept
  const auto r =
      RobotsRules::parse("User-agent: *\nDisallow: /caf\xC3\xA9\nDisallow: /%7ea\n", "trawl");
  CHECK_FALSE(allowed(r, "/caf%c3%a9/menu"));
  CHECK_FALSE(allowed(r, "/~a"));
  CHECK(allowed(r, "/a%2Fb"));
}

TEST_CASE("robots: the group of our product token wins over *, groups merge", "[robots]") {
  const std::string txt = "# comment\n"
                          "User-agent: *\n"
                          "Disallow: /\n"
                          "\n"
                          "User-agent: OtherBot\n"
                          "User-agent: TRAWL/1.0\n"
                          "Disallow: /private   # trailing comment\n"
                          "Sitemap: https://example.test/sitemap.xml\n"
                          "user-agent: somebody\n"
                          "disallow: /somebody\n"
                          "User-Agent: trawl\n"
                          "Disallow: /also\n";
  const auto r = RobotsRules::parse(txt, "trawl");
  CHECK(allowed(r, "/public/x.jpg"));
  CHECK_FALSE(allowed(r, "/private/x.jpg"));
  CHECK_FALSE(allowed(r, "/also"));
  CHECK(allowed(r, "/somebody")); // another group's rule
  CHECK(r.check("/private/x").rule == "Disallow: /private");

  // Nobody names us: the "*" groups apply.
  const auto other = RobotsRules::parse(txt, "otherbot-not");
  CHECK_FALSE(allowed(other, "/public/x.jpg"));
  // Neither us nor "*": everything allowed.
  const auto none = RobotsRules::parse("User-agent: a\nDisallow: /\n", "trawl");
  CHECK(allowed(none, "/x"));
  CHECK(none.rules().empty());
}

TEST_CASE("robots: the longest match decides, Allow wins a tie", "[robots]") {
  const auto r = RobotsRules::parse("User-agent: trawl\r\n"
                                    "Disallow: /img/\r\n"
                                    "Allow: /img/public/\r\n"
                                    "Disallow: /img/public/secret\r\n"
                                    "Allow: /page\r\n"
                                    "Disallow: /page\r\n"
                                    "Disallow: /*.gif$\r\n"
                                    "Allow: /*.gif$\r\n"
                                    "Disallow: /q?*\r\n"
                                    "Disallow:\r\n",
                                    "trawl");
  CHECK_FALSE(allowed(r, "/img/a.jpg"));
  CHECK(allowed(r, "/img/public/a.jpg"));
  CHECK(r.check("/img/public/a.jpg").rule == "Allow: /img/public/");
  CHECK_FALSE(allowed(r, "/img/public/secret.jpg"));
  CHECK(allowed(r, "/page"));
  CHECK(allowed(r, "/x.gif"));
  CHECK_FALSE(allowed(r, "/q?id=1"));
  CHECK(allowed(r, "/q"));
  CHECK(allowed(r, "/other"));
  CHECK(r.check("/other").rule.empty());
  CHECK(r.rules().size() == 8); // the empty Disallow is no rule
}

TEST_CASE("robots: rules outside a group, odd lines, /robots.txt itself", "[robots]") {
  const auto r =
      RobotsRules::parse("Disallow: /before-any-agent\n"
                         "garbage line without colon\n"
                         "User-agent: *\n"
                         "Crawl-delay: 10\n"
                         "User-agent: trawl\n" // still the same group: no rule came between
                         "Disallow: /\n",
                         "trawl");
  CHECK(allowed(r, "/robots.txt"));
  CHECK_FALSE(allowed(r, "/x"));
  REQUIRE(r.rules().size() == 1); // the rule before any User-agent line belongs to nobody
  CHECK(r.rules()[0].pattern == "/");
  // A byte order mark at the very start is skipped.
  const auto bom = RobotsRules::parse("\xEF\xBB\xBFUser-agent: *\nDisallow: /x\n", "trawl");
  CHECK_FALSE(allowed(bom, "/x"));
  CHECK(allowed(RobotsRules::allow_all(), "/x"));
  CHECK_FALSE(allowed(RobotsRules::disallow_all(), "/x"));
  CHECK_FALSE(allowed(RobotsRules::disallow_all(), "/"));
  CHECK(allowed(RobotsRules::disallow_all(), "/robots.txt"));
}

TEST_CASE("robots: only the first 500 KiB are read", "[robots]") {
  std::string txt = "User-agent: *\n";
  while (txt.size() < kMaxRobotsBytes) txt += "Allow: /filler\n";
  const auto r = RobotsRules::parse(txt + "Disallow: /late\n", "trawl");
  CHECK(allowed(r, "/late"));
  const auto early = RobotsRules::parse("User-agent: *\nDisallow: /late\n" + txt, "trawl");
  CHECK_FALSE(allowed(early, "/late"));
}

TEST_CASE("robots: a URL's origin and path", "[robots]") {
  std::string origin, path;
  REQUIRE(RobotsCache::split_url("http://Example.TEST/a/b%20c?x=1&y", origin, path));
  CHECK(origin == "http://example.test:80");
  CHECK(path == "/a/b%20c?x=1&y");
  REQUIRE(RobotsCache::split_url("https://h.test:8443", origin, path));
  CHECK(origin == "https://h.test:8443");
  CHECK(path == "/");
  REQUIRE(RobotsCache::split_url("http://[::1]:9/x#frag", origin, path));
  CHECK(origin == "http://[::1]:9");
  CHECK(path == "/x");
  CHECK_FALSE(RobotsCache::split_url("ftp://h.test/x", origin, path));
  CHECK_FALSE(RobotsCache::split_url("not a url", origin, path));
}
