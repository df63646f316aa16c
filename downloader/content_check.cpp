#include "downloader/content_check.hpp"

#include <algorithm>
#include <array>
#include <cstdio>

namespace trawl::downloader {

namespace {

bool starts(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

std::uint32_t be32(std::string_view s, std::size_t at) {
  return (std::uint32_t{static_cast<unsigned char>(s[at])} << 24) |
         (std::uint32_t{static_cast<unsigned char>(s[at + 1])} << 16) |
         (std::uint32_t{static_cast<unsigned char>(s[at + 2])} << 8) |
         std::uint32_t{static_cast<unsigned char>(s[at + 3])};
}

// ISO-BMFF brands of still images: AVIF and the HEIF family (HEIC ...).
std::string_view bmff_image_brand(std::string_view brand) {
  static constexpr std::array<std::string_view, 2> avif{"avif", "avis"};
  static constexpr std::array<std::string_view, 8> heif{"heic", "heix", "heim", "heis",
                                                        "hevc", "hevx", "mif1", "msf1"};
  if (std::find(avif.begin(), avif.end(), brand) != avif.end()) return "avif";
  if (std::find(heif.begin(), heif.end(), brand) != heif.end()) return "heif";
  return "";
}

std::string lower_prefix(std::string_view s, std::size_t n) {
  std::string out(s.substr(0, n));
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

} // namespace

std::optional<Expect> parse_expect(std::string_view s) {
  if (s == "any") return Expect::any;
  if (s == "image") return Expect::image;
  return std::nullopt;
}

std::optional<std::string_view> image_format(std::string_view h, bool complete) {
  // Each signature: decided as soon as the bytes seen contradict it or match it whole.
  struct Sig {
    std::string_view name;
    std::string_view magic;
  };
  static constexpr Sig fixed[] = {
      {"jpeg", std::string_view("\xFF\xD8\xFF", 3)},
      {"png", std::string_view("\x89PNG\r\n\x1A\n", 8)},
      {"gif", "GIF87a"},
      {"gif", "GIF89a"},
  };
  bool undecided = false;
  for (const auto& s : fixed) {
    if (starts(h, s.magic)) return s.name;
    if (h.size() < s.magic.size() && starts(s.magic, h)) undecided = true;
  }
  // WebP: "RIFF" size "WEBP".
  if (h.size() >= 12) {
    if (starts(h, "RIFF") && h.substr(8, 4) == "WEBP") return "webp";
  } else if (starts(std::string_view("RIFF"), h.substr(0, std::min<std::size_t>(h.size(), 4)))) {
    undecided = true;
  }
  // AVIF/HEIF: a first box "ftyp" whose major brand or one of its compatible brands names a
  // still-image format (an MP4 video's brands do not).
  if (h.size() >= 8 && h.substr(4, 4) == "ftyp") {
    const std::uint32_t box = be32(h, 0);
    if (h.size() >= 12) {
      if (auto f = bmff_image_brand(h.substr(8, 4)); !f.empty()) return f;
    }
    // Compatible brands from offset 16 to the end of the box (as far as we have it).
    const std::size_t end = std::min<std::size_t>({h.size(), box, kSniffBytes});
    for (std::size_t at = 16; at + 4 <= end; at += 4)
      if (auto f = bmff_image_brand(h.substr(at, 4)); !f.empty()) return f;
    if (h.size() < kSniffBytes && h.size() < box) undecided = true;
  } else if (h.size() < 8) {
    undecided = true; // could still be an ftyp box
  }
  if (undecided && !complete) return std::nullopt;
  return std::string_view();
}

std::string describe_head(std::string_view head) {
  std::size_t i = 0;
  if (starts(head, "\xEF\xBB\xBF")) i = 3; // UTF-8 byte-order mark
  while (i < head.size() && (head[i] == ' ' || head[i] == '\t' || head[i] == '\r' || head[i] == '\n')) ++i;
  const std::string t = lower_prefix(head.substr(i), 16);
  if (starts(t, "<!doctype html") || starts(t, "<html") || starts(t, "<head") || starts(t, "<body"))
    return "HTML";
  if (starts(t, "<?xml") || starts(t, "<svg")) return "XML/SVG";
  if (starts(t, "{") || starts(t, "[")) return "JSON";
  if (head.size() >= 8 && head.substr(4, 4) == "ftyp") return "ISO media (e.g. MP4 video)";
  const bool printable = std::all_of(head.begin(), head.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u >= 0x20 || c == '\n' || c == '\r' || c == '\t';
  });
  if (!head.empty() && printable) return "text";
  std::string hex;
  char buf[4];
  for (std::size_t k = 0; k < std::min<std::size_t>(head.size(), 8); ++k) {
    std::snprintf(buf, sizeof buf, "%02x", static_cast<unsigned char>(head[k]));
    hex += buf;
  }
  return head.empty() ? "an empty body" : "bytes " + hex;
}

std::string ContentSniffer::check(const ContentPolicy& p, bool complete) {
  if (p.expect == Expect::any) {
    decided_ = true;
    return "";
  }
  const auto format = image_format(head_, complete);
  if (!format) return ""; // not yet
  if (format->empty() && !complete && head_.size() < kSniffBytes)
    return ""; // not an image: say what it is once the first bytes are all in
  decided_ = true;
  if (!format->empty()) return "";
  return "not an image (--expect image): the body starts like " + describe_head(head_);
}

std::string ContentSniffer::feed(const ContentPolicy& p, std::string_view data) {
  if (decided_) return "";
  head_.append(data.substr(0, kSniffBytes - std::min(kSniffBytes, head_.size())));
  return check(p, false);
}

std::string ContentSniffer::finish(const ContentPolicy& p, std::uint64_t bytes) {
  if (!decided_) {
    if (std::string why = check(p, true); !why.empty()) return why;
  }
  if (p.min_size > 0 && bytes < p.min_size)
    return "body of " + std::to_string(bytes) + " bytes is below --min-size " +
           std::to_string(p.min_size) + " (a placeholder?)";
  return "";
}

} // namespace trawl::downloader
