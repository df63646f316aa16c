#include <catch2/catch.hpp>
#include <string>

#include "common/names.hpp"
#include "tests/support/utf8_reference.hpp"

using namespace trawl;

namespace {


// The properties every name handed to the file system must have.
void check_safe(const std::string& name) {
  INFO("name: " << name);
  CHECK(!name.empty());
  CHECK(name.size() <= kMaxFileNameBytes);
  CHECK(name.find('/') == std::string::npos);
  CHECK(name.find('\\') == std::string::npos);
  CHECK(name != "..");
  CHECK(name.front() != '.');
  CHECK(trawl::testsupport::valid_utf8_reference(name));
  for (char c : name) {
    const auto u = static_cast<unsigned char>(c);
    CHECK((u >= 0x20 && u != 0x7F));
  }
  CHECK(is_safe_name(name));
}

} // namespace

TEST_CASE("url_basename drops query and fragment", "[common]") {
  CHECK(url_basename("http://h/a/b.jpg") == "b.jpg");
  CHECK(url_basename("http://h/a/b.jpg?x=1&y=/z.png") == "b.jpg");
  CHECK(url_basename("http://h/a/b.jpg#frag/x.png") == "b.jpg");
  CHECK(url_basename("http://h/a/b.jpg?q#f") == "b.jpg");
  CHECK(url_basename("https://user@h:8080/dir/file.tar.gz") == "file.tar.gz");
}

TEST_CASE("url_basename percent-decodes", "[common]") {
  CHECK(url_basename("http://h/a%20b.jpg") == "a b.jpg");
  CHECK(url_basename("http://h/caf%C3%A9.jpg") == "caf\xC3\xA9.jpg");
  CHECK(url_basename("http://h/100%") == "100%");   // a lone '%' stays
  CHECK(url_basename("http://h/a%zzb") == "a%zzb"); // not hex: kept as is
  CHECK(url_basename("http://h/x/%2e%2e%2f") == "../");
  CHECK(url_basename("http://h/%2e%2e%2fetc%2fpasswd") == "../etc/passwd");
}

TEST_CASE("url_basename of empty paths and host-only URLs", "[common]") {
  CHECK(url_basename("http://h") == "");
  CHECK(url_basename("http://h/") == "");
  CHECK(url_basename("http://h/dir/") == "");
  CHECK(url_basename("http://h?x=/y.jpg") == "");
  CHECK(url_basename("http://h#/y.jpg") == "");
  CHECK(url_basename("") == "");
  CHECK(url_basename("http://h/a/..") == "..");
}

TEST_CASE("names for hostile URLs are safe", "[common]") {
  check_safe(name_for_url("http://h/x/%2e%2e%2f"));
  check_safe(name_for_url("http://h/%2e%2e%2f%2e%2e%2fetc%2fpasswd"));
  check_safe(name_for_url("http://h/a/.."));
  check_safe(name_for_url("http://h/a/."));
  check_safe(name_for_url("http://h/"));
  check_safe(name_for_url("http://h"));
  check_safe(name_for_url("http://h/%00%01%ff.jpg"));
  check_safe(name_for_url("http://h/a%5cb.jpg"));
  CHECK(name_for_url("http://h/") == "file");
  CHECK(name_for_url("http://h/a/..") == "file");
  CHECK(name_for_url("http://h/%2e%2e%2fetc%2fpasswd") == "_etc_passwd");
  CHECK(name_for_url("http://h/pics/cat.jpg?size=large") == "cat.jpg");
}

TEST_CASE("url_extension is lower-case and ignores the query", "[common]") {
  CHECK(url_extension("http://h/a.JPG?x=1") == ".jpg");
  CHECK(url_extension("http://h/a.jpg#x.png") == ".jpg");
  CHECK(url_extension("http://h/a.tar.gz") == ".gz");
  CHECK(url_extension("http://h/noext") == "");
  CHECK(url_extension("http://h/.bashrc") == "");
  CHECK(url_extension("http://h/a.") == "");
  CHECK(url_extension("http://h/dir.d/") == "");
  CHECK(url_extension("http://h.example.com") == "");
}

TEST_CASE("sanitize_name removes path separators and traversal", "[common]") {
  const std::string n = sanitize_name("../../etc/passwd");
  check_safe(n);
  CHECK(n == "_.._etc_passwd");
  CHECK(sanitize_name("a\\b") == "a_b");
  CHECK(sanitize_name("..") == "file");
  CHECK(sanitize_name(".") == "file");
  CHECK(sanitize_name("") == "file");
  CHECK(sanitize_name("...hidden") == "hidden");
  CHECK(sanitize_name(" . name . ") == "name");
  CHECK(sanitize_name("C:\\x*?\"<>|.jpg") == "C__x______.jpg");
}

TEST_CASE("sanitize_name replaces control bytes, NUL and invalid UTF-8", "[common]") {
  CHECK(sanitize_name("a\x01" "b\x7F.jpg") == "a_b_.jpg");
  CHECK(sanitize_name(std::string("a\0b.jpg", 7)) == "a_b.jpg");
  CHECK(sanitize_name("a\nb\tc\r") == "a_b_c_");
  CHECK(sanitize_name("\xFF\xFE.jpg") == "__.jpg");
  CHECK(sanitize_name("\xC0\xAF") == "__");             // overlong '/'
  CHECK(sanitize_name("\xED\xA0\x80x") == "___x");      // surrogate
  CHECK(sanitize_name("caf\xC3\xA9.jpg") == "caf\xC3\xA9.jpg");
  CHECK(sanitize_name("\xE2\x82") == "__");             // truncated sequence
  check_safe(sanitize_name("\xF4\x90\x80\x80"));        // past U+10FFFF
}

TEST_CASE("sanitize_name bounds long names and keeps the extension", "[common]") {
  const std::string ascii = sanitize_name(std::string(10000, 'a') + ".jpg");
  check_safe(ascii);
  CHECK(ascii.size() == kMaxFileNameBytes);
  CHECK(ascii.ends_with(".jpg"));

  std::string multi;
  for (int i = 0; i < 5000; ++i) multi += "\xC3\xA9"; // 10,000 bytes of 'é'
  const std::string m = sanitize_name(multi + ".jpeg");
  check_safe(m);
  CHECK(m.ends_with(".jpeg"));

  std::string noext = sanitize_name(std::string(10000, 'b'));
  check_safe(noext);
  CHECK(noext.size() == kMaxFileNameBytes);

  // A cut that lands just after a space or a dot must not leave a name that is not itself safe.
  check_safe(sanitize_name(std::string(199, 'a') + " " + std::string(500, 'b')));
  check_safe(sanitize_name(std::string(199, 'a') + "." + std::string(500, 'b')));
  check_safe(sanitize_name(std::string(195, 'a') + " " + std::string(500, 'b') + ".jpg"));
  check_safe(sanitize_name(std::string(190, 'a') + ". . . ." + std::string(500, 'b') + ".png"));
}

TEST_CASE("is_safe_name accepts exactly the sanitised names", "[common]") {
  CHECK(is_safe_name("a.jpg"));
  CHECK(is_safe_name("file"));
  CHECK(is_safe_name("caf\xC3\xA9.jpg"));
  CHECK_FALSE(is_safe_name(""));
  CHECK_FALSE(is_safe_name("."));
  CHECK_FALSE(is_safe_name(".."));
  CHECK_FALSE(is_safe_name("a/b"));
  CHECK_FALSE(is_safe_name("a\\b"));
  CHECK_FALSE(is_safe_name("../x"));
  CHECK_FALSE(is_safe_name(".hidden"));
  CHECK_FALSE(is_safe_name("trailing."));
  CHECK_FALSE(is_safe_name("a\x01"));
  CHECK_FALSE(is_safe_name(std::string("a\0b", 3)));
  CHECK_FALSE(is_safe_name("\xFF"));
  CHECK_FALSE(is_safe_name(std::string(kMaxFileNameBytes + 1, 'a')));
}

TEST_CASE("disambiguated_name differs per URL and keeps the extension", "[common]") {
  const std::string a = disambiguated_name("cat.jpg", "http://one.example/cat.jpg");
  const std::string b = disambiguated_name("cat.jpg", "http://two.example/cat.jpg");
  CHECK(a != b);
  CHECK(a != "cat.jpg");
  CHECK(a.starts_with("cat-"));
  CHECK(a.ends_with(".jpg"));
  CHECK(a.size() == std::string("cat-12345678.jpg").size());
  check_safe(a);
  check_safe(b);
  CHECK(a == disambiguated_name("cat.jpg", "http://one.example/cat.jpg")); // stable

  const std::string noext = disambiguated_name("README", "http://h/README");
  CHECK(noext.starts_with("README-"));
  check_safe(noext);

  const std::string longest = sanitize_name(std::string(500, 'x') + ".jpg");
  const std::string d = disambiguated_name(longest, "http://h/long");
  CHECK(d.size() <= kMaxFileNameBytes);
  CHECK(d.ends_with(".jpg"));
  CHECK(d != longest);
  check_safe(d);
}

TEST_CASE("hash64 is stable, spread and never zero", "[common]") {
  CHECK(hash64("http://h/a.jpg") == hash64("http://h/a.jpg"));
  CHECK(hash64("http://h/a.jpg") != hash64("http://h/b.jpg"));
  CHECK(hash64("") != 0);
  CHECK(hash64("a") != hash64("b"));
}

TEST_CASE("Windows device names get a '_' in front, in any case and with any extension",
          "[common]") {
  const char* reserved[] = {"CON", "con", "Con", "PRN", "prn", "AUX", "aux", "NUL", "nul",
                            "COM0", "COM1", "com5", "Com9", "LPT0", "LPT1", "lpt7", "LpT9",
                            "CONIN$", "conout$", "COM\xC2\xB9", "lpt\xC2\xB3"};
  for (const char* r : reserved) {
    const std::string name(r);
    for (const std::string& ext : {std::string(), std::string(".txt"), std::string(".tar.gz"),
                                   std::string(".JPG")}) {
      INFO("name: " << name + ext);
      CHECK(sanitize_name(name + ext) == "_" + name + ext);
      CHECK_FALSE(is_safe_name(name + ext));
      check_safe(sanitize_name(name + ext));
    }
    // Trailing spaces before the extension do not make it another name on Windows.
    CHECK(sanitize_name(name + " .txt") == "_" + name + " .txt");
    CHECK(sanitize_name(name + "  ") == "_" + name); // trailing spaces dropped first
  }
  // From URLs, percent-encoded or not.
  CHECK(name_for_url("http://h/x/CON") == "_CON");
  CHECK(name_for_url("http://h/x/nul.jpg?x=1") == "_nul.jpg");
  CHECK(name_for_url("http://h/x/%41UX.png") == "_AUX.png");
  CHECK(name_for_url("http://h/x/lpt1%2Ejpg") == "_lpt1.jpg");
  CHECK(name_for_url("http://h/x/%20CON%20.txt") == "_CON .txt"); // leading blank dropped first
}

TEST_CASE("names that only look like device names are kept", "[common]") {
  for (const char* ok : {"CONSOLE.txt", "console", "COM10", "LPT", "COM", "lpt10.jpg", "NULL",
                         "AUXILIARY.png", "_CON", "xCON.txt", "PRN_1.jpg", "COMA", "con-1.txt",
                         "COM\xC2\xB4", "com1x.txt"}) {
    INFO("name: " << ok);
    CHECK(sanitize_name(ok) == ok);
    CHECK(is_safe_name(ok));
  }
}

TEST_CASE("a long name cut to a device name is still made safe", "[common]") {
  // No extension (the last dot is too far from the end), so the cut keeps the start: "CON.aaa".
  const std::string raw = "CON." + std::string(300, 'a');
  const std::string name = sanitize_name(raw);
  CHECK(name.starts_with("_CON.aaa"));
  CHECK(name.size() == kMaxFileNameBytes);
  check_safe(name);
  CHECK(sanitize_name(name) == name);
  // Already prefixed and at the limit: stays as it is.
  CHECK(sanitize_name(name) == name);
  // A name of exactly the limit that is reserved loses a byte at the cut, keeps its extension.
  const std::string at_limit = "nul" + std::string(kMaxFileNameBytes - 3 - 4, 'b') + ".jpg";
  REQUIRE(at_limit.size() == kMaxFileNameBytes);
  // "nulbbb..." is not a device name: only the stem before the first dot counts.
  CHECK(sanitize_name(at_limit) == at_limit);
  const std::string dotted = "nul." + std::string(kMaxFileNameBytes - 4 - 4, 'b') + ".jpg";
  REQUIRE(dotted.size() == kMaxFileNameBytes);
  const std::string fixed = sanitize_name(dotted);
  CHECK(fixed.size() == kMaxFileNameBytes);
  CHECK(fixed.starts_with("_nul.b"));
  CHECK(fixed.ends_with("b.jpg"));
  check_safe(fixed);
}
