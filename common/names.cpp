#include "common/names.hpp"

#include <cstdio>

namespace trawl {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}


bool unsafe_ascii(unsigned char c) {
  return c < 0x20 || c == 0x7F || c == '/' || c == '\\' || c == ':' || c == '*' || c == '?' ||
         c == '"' || c == '<' || c == '>' || c == '|';
}

// Cuts `s` to at most `max` bytes without splitting a UTF-8 sequence.
std::string_view cut_utf8(std::string_view s, std::size_t max) {
  if (s.size() <= max) return s;
  std::size_t end = max;
  while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) --end;
  return s.substr(0, end);
}

char ascii_upper(char c) { return c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c; }

// Windows refuses these device names as files, whatever the extension ("nul.tar.gz", "Com1.jpg")
// and with trailing spaces before the extension ("CON .txt"); an output directory may be an SMB
// share served by Windows.
bool windows_reserved(std::string_view name) {
  std::string_view stem = name.substr(0, name.find('.'));
  while (!stem.empty() && stem.back() == ' ') stem.remove_suffix(1);
  std::string up;
  for (char c : stem) up.push_back(ascii_upper(c));
  if (up == "CON" || up == "PRN" || up == "AUX" || up == "NUL" || up == "CONIN$" ||
      up == "CONOUT$")
    return true;
  if (up.size() < 4 || (!up.starts_with("COM") && !up.starts_with("LPT"))) return false;
  const std::string_view digit = std::string_view(up).substr(3);
  // COM0-9 and LPT0-9, also with the superscript digits Windows treats alike (U+00B9, B2, B3).
  return (digit.size() == 1 && digit[0] >= '0' && digit[0] <= '9') || digit == "\xC2\xB9" ||
         digit == "\xC2\xB2" || digit == "\xC2\xB3";
}

std::size_t extension_pos(std::string_view name) {
  const auto dot = name.rfind('.');
  if (dot == std::string_view::npos || dot == 0 || name.size() - dot > 16) return name.size();
  return dot;
}

} // namespace

// Length of the valid UTF-8 sequence starting at s[i], or 0 when it is not valid.
std::size_t utf8_sequence_length(std::string_view s, std::size_t i) noexcept {
  const auto b0 = static_cast<unsigned char>(s[i]);
  std::size_t n = 0;
  std::uint32_t cp = 0;
  if (b0 < 0x80) return 1;
  if ((b0 & 0xE0) == 0xC0) { n = 2; cp = b0 & 0x1F; }
  else if ((b0 & 0xF0) == 0xE0) { n = 3; cp = b0 & 0x0F; }
  else if ((b0 & 0xF8) == 0xF0) { n = 4; cp = b0 & 0x07; }
  else return 0;
  if (i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b & 0x3F);
  }
  // Reject overlong forms, surrogates and values past U+10FFFF.
  if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000)) return 0;
  if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return 0;
  return n;
}

std::string url_basename(std::string_view url) {
  auto scheme = url.find("://");
  std::string_view rest = scheme == std::string_view::npos ? url : url.substr(scheme + 3);
  const auto end = rest.find_first_of("?#");
  if (end != std::string_view::npos) rest = rest.substr(0, end);
  const auto slash = rest.find('/');
  if (slash == std::string_view::npos) return ""; // host only
  std::string_view path = rest.substr(slash);
  return percent_decode(path.substr(path.rfind('/') + 1));
}

std::string url_extension(std::string_view url) {
  const std::string base = url_basename(url);
  const auto dot = base.rfind('.');
  if (dot == std::string::npos || dot == 0 || dot + 1 == base.size()) return "";
  std::string ext = base.substr(dot);
  for (auto& c : ext)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return ext;
}

// At most kMaxFileNameBytes of `v` (already free of unsafe bytes and of leading and trailing
// dots and spaces), keeping the extension.
std::string bounded_name(std::string_view v) {
  if (v.size() <= kMaxFileNameBytes) return std::string(v);
  const std::size_t ext_at = extension_pos(v);
  const std::string_view ext = v.substr(ext_at);
  std::string out(cut_utf8(v.substr(0, ext_at), kMaxFileNameBytes - ext.size()));
  out.append(ext);
  // Without an extension the cut may end on a dot or space, which sanitize_name itself strips:
  // drop them so the result passes is_safe_name.
  while (out.back() == '.' || out.back() == ' ') out.pop_back();
  return out;
}

std::string sanitize_name(std::string_view raw) {
  std::string clean;
  clean.reserve(raw.size());
  for (std::size_t i = 0; i < raw.size();) {
    const auto c = static_cast<unsigned char>(raw[i]);
    if (c < 0x80) {
      clean.push_back(unsafe_ascii(c) ? '_' : static_cast<char>(c));
      ++i;
      continue;
    }
    const std::size_t n = utf8_sequence_length(raw, i);
    if (n == 0) {
      clean.push_back('_');
      ++i;
    } else {
      clean.append(raw.substr(i, n));
      i += n;
    }
  }
  std::string_view v = clean;
  while (!v.empty() && (v.front() == '.' || v.front() == ' ')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == '.' || v.back() == ' ')) v.remove_suffix(1);
  if (v.empty()) return "file";
  std::string out = bounded_name(v);
  // A reserved name gets a '_' in front ("CON.txt" -> "_CON.txt"); checked after the cut, which
  // can turn a long name into one ("CON.aaa...").
  if (windows_reserved(out)) out = bounded_name("_" + out);
  return out;
}

bool is_safe_name(std::string_view name) {
  return !name.empty() && sanitize_name(name) == name;
}

std::string name_for_url(std::string_view url) { return sanitize_name(url_basename(url)); }

std::string disambiguated_name(std::string_view name, std::string_view url) {
  char tag[10];
  std::snprintf(tag, sizeof tag, "-%08x", static_cast<unsigned>(hash64(url) & 0xFFFFFFFFu));
  const std::size_t ext_at = extension_pos(name);
  std::string stem(cut_utf8(name.substr(0, ext_at), kMaxFileNameBytes - 9 - (name.size() - ext_at)));
  return stem + tag + std::string(name.substr(ext_at));
}

std::uint64_t hash64(std::string_view s) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebULL;
  h ^= h >> 31;
  return h == 0 ? 1 : h;
}

} // namespace trawl
