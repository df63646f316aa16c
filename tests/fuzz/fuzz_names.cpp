// libFuzzer target: file names derived from arbitrary URLs and raw names. Every name the
// functions produce must be safe to create inside the output directory (non-empty, bounded, no
// '/', '\', control bytes, leading dot or invalid UTF-8), accepted by is_safe_name, and a fixed
// point of sanitize_name; is_safe_name must accept nothing that is not such a name.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/names.hpp"

namespace {

void require(bool ok) {
  if (!ok) std::abort();
}

bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    std::size_t n = 0;
    std::uint32_t cp = 0;
    if (b0 < 0x80) {
      ++i;
      continue;
    }
    if ((b0 & 0xE0) == 0xC0) {
      n = 2;
      cp = b0 & 0x1Fu;
    } else if ((b0 & 0xF0) == 0xE0) {
      n = 3;
      cp = b0 & 0x0Fu;
    } else if ((b0 & 0xF8) == 0xF0) {
      n = 4;
      cp = b0 & 0x07u;
    } else {
      return false;
    }
    if (i + n > s.size()) return false;
    for (std::size_t k = 1; k < n; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if ((b & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (b & 0x3Fu);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000)) return false;
    if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return false;
    i += n;
  }
  return true;
}

void require_safe(const std::string& name) {
  require(!name.empty() && name.size() <= trawl::kMaxFileNameBytes);
  require(name != "." && name != "..");
  require(name.front() != '.' && name.front() != ' ');
  require(name.back() != '.' && name.back() != ' ');
  for (char c : name) {
    const auto u = static_cast<unsigned char>(c);
    require(u >= 0x20 && u != 0x7F && c != '/' && c != '\\');
  }
  require(valid_utf8(name));
  require(trawl::is_safe_name(name));
  require(trawl::sanitize_name(name) == name);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);

  require_safe(trawl::sanitize_name(in));
  // is_safe_name never accepts what sanitize_name would change.
  if (trawl::is_safe_name(in)) require_safe(std::string(in));

  const std::string base = trawl::url_basename(in);
  require(base.size() <= in.size());
  const std::string name = trawl::name_for_url(in);
  require_safe(name);
  const std::string other = trawl::disambiguated_name(name, in);
  require_safe(other);
  require(other != name);

  const std::string ext = trawl::url_extension(in);
  if (!ext.empty()) {
    require(ext.front() == '.' && ext.size() >= 2);
    for (char c : ext) require(!(c >= 'A' && c <= 'Z'));
  }
  return 0;
}
