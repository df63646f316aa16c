// Content checks on a body while it streams in (--expect image, --min-size): the first bytes are
// compared with the signatures of the image formats, so an HTML error page that a server answers
// with 200 under a .jpg URL fails with reason `content` after its first chunk, and nothing is
// stored under the final name. Pure functions and a small state machine, unit-tested without a
// network.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace trawl::downloader {

enum class Expect { any, image };

// "any" or "image"; nullopt otherwise.
std::optional<Expect> parse_expect(std::string_view s);

struct ContentPolicy {
  Expect expect = Expect::any;
  std::uint64_t min_size = 0; // bodies shorter than this fail (placeholders); 0 = no check
};

// Bytes needed to recognise every supported signature.
inline constexpr std::size_t kSniffBytes = 32;

// The image format the bytes start with: "jpeg", "png", "gif", "webp", "avif", "heif"; "" when
// none. `complete` says the body ends here (a shorter prefix then cannot become an image).
// Returns nullopt when `head` is too short to tell yet and the body goes on.
std::optional<std::string_view> image_format(std::string_view head, bool complete);

// A short, printable description of what the bytes look like, for the failure's detail:
// "HTML", "JSON", "text", "MP4 video", or the first bytes in hex.
std::string describe_head(std::string_view head);

// Collects the first kSniffBytes of a body and decides once. One per transfer, reset per attempt.
class ContentSniffer {
public:
  void reset() {
    head_.clear();
    decided_ = false;
  }
  // No check of the first bytes for this body (they were checked when they were written).
  void skip() { decided_ = true; }
  // Feeds body bytes; returns a failure detail when the body is not acceptable, "" otherwise.
  std::string feed(const ContentPolicy& p, std::string_view data);
  // The body is complete with `bytes` bytes: the checks that need the whole body. Returns a
  // failure detail, or "".
  std::string finish(const ContentPolicy& p, std::uint64_t bytes);

private:
  std::string check(const ContentPolicy& p, bool complete);
  std::string head_;
  bool decided_ = false;
};

} // namespace trawl::downloader
