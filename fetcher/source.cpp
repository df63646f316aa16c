#include "fetcher/source.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include "common/signals.hpp"
#include "proto/messages.hpp"

namespace trawl::fetcher {
namespace {

constexpr std::string_view kBom = "\xEF\xBB\xBF";

bool is_blank(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

const char* json_type(const nlohmann::json& j) noexcept { return j.type_name(); }

} // namespace

class FdStream::Buf final : public std::streambuf {
public:
  Buf(int fd, std::string name, bool owned) : fd_(fd), name_(std::move(name)), owned_(owned) {}
  ~Buf() override {
    if (owned_) ::close(fd_);
  }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;

  std::string_view peek(std::size_t n) {
    n = std::min(n, sizeof buf_);
    if (egptr() - gptr() < static_cast<std::ptrdiff_t>(n)) {
      // Move what is unread to the front, then read until n bytes are there or the input ends.
      const std::size_t have = static_cast<std::size_t>(egptr() - gptr());
      if (have > 0 && gptr() != buf_) std::memmove(buf_, gptr(), have);
      std::size_t end = have;
      while (end < n) {
        const std::size_t got = read_some(buf_ + end, sizeof buf_ - end);
        if (got == 0) break;
        end += got;
      }
      setg(buf_, buf_, buf_ + end);
    }
    return {gptr(), std::min(n, static_cast<std::size_t>(egptr() - gptr()))};
  }

protected:
  int_type underflow() override {
    if (gptr() < egptr()) return traits_type::to_int_type(*gptr());
    const std::size_t got = read_some(buf_, sizeof buf_);
    if (got == 0) return traits_type::eof();
    setg(buf_, buf_, buf_ + got);
    return traits_type::to_int_type(*gptr());
  }

private:
  // Bytes read into dst (0 at the end of the input or when a stop interrupted the read).
  std::size_t read_some(char* dst, std::size_t cap) {
    for (;;) {
      const ssize_t n = ::read(fd_, dst, cap);
      if (n >= 0) return static_cast<std::size_t>(n);
      if (errno == EINTR) {
        if (stop_requested()) return 0;
        continue;
      }
      throw SourceError("cannot read " + name_ + ": " + std::strerror(errno));
    }
  }

  int fd_;
  std::string name_;
  bool owned_;
  char buf_[64 * 1024];
};

FdStream::FdStream(int fd, std::string name, bool owned)
    : std::istream(nullptr), buf_(std::make_unique<Buf>(fd, std::move(name), owned)) {
  rdbuf(buf_.get());
}

FdStream::~FdStream() = default;

std::string_view FdStream::peek(std::size_t n) { return buf_->peek(n); }

bool looks_like_json(std::string_view head) noexcept {
  if (head.starts_with(kBom)) head.remove_prefix(kBom.size());
  for (char c : head) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') continue;
    return c == '{';
  }
  return false;
}

std::string read_bounded(std::istream& in, std::uint64_t max_bytes, const std::string& what) {
  std::string out;
  char chunk[64 * 1024];
  std::streambuf* buf = in.rdbuf();
  for (;;) {
    const std::streamsize n = buf->sgetn(chunk, sizeof chunk);
    if (n <= 0) break;
    if (out.size() + static_cast<std::uint64_t>(n) > max_bytes)
      throw SourceError(what + " is larger than " + std::to_string(max_bytes) + " bytes");
    out.append(chunk, static_cast<std::size_t>(n));
  }
  return out;
}

// ---- ListSource -------------------------------------------------------------------------------

ListSource::ListSource(std::istream& in) : buf_(in.rdbuf()) {
  if (buf_ == nullptr) throw SourceError("the URL list stream has no buffer");
  line_.reserve(256);
}

ListSource::ListSource(std::unique_ptr<std::istream> in) : ListSource(*in) {
  owned_ = std::move(in);
}

std::string ListSource::where() const { return "line " + std::to_string(line_no_); }

std::optional<std::string> ListSource::next() {
  constexpr std::size_t kMax = proto::kMaxUrlBytes;
  enum class State { start, content, comment, too_long };
  std::string blanks; // blanks seen after content, appended only if more content follows
  while (!done_) {
    line_.clear();
    blanks.clear();
    bool blanks_overflow = false;
    State state = State::start;
    bool got_any = false;
    ++line_no_;
    for (;;) {
      const int c = buf_->sbumpc();
      if (c == std::char_traits<char>::eof()) {
        done_ = true;
        break;
      }
      got_any = true;
      if (c == '\n') break;
      if (state == State::comment || state == State::too_long) continue;
      const char ch = static_cast<char>(c);
      const bool blank = is_blank(ch);
      if (state == State::start) {
        if (blank) continue;
        if (ch == '#') {
          state = State::comment;
          continue;
        }
        state = State::content;
      }
      if (blank) {
        // Trailing blanks are trimmed, so they are held aside; once content plus blanks reach the
        // limit, any further content makes the line too long, so the blanks need not be kept.
        if (line_.size() + blanks.size() < kMax) blanks.push_back(ch);
        else blanks_overflow = true;
        continue;
      }
      if (blanks_overflow) {
        state = State::too_long;
        line_.clear();
        continue;
      }
      line_.append(blanks);
      blanks.clear();
      line_.push_back(ch);
      if (line_.size() > kMax) {
        state = State::too_long;
        line_.clear();
      }
    }
    if (!got_any) break; // end of input right after the last newline
    if (state == State::too_long) {
      ++skipped_;
      warn_.warn("line {}: longer than {} bytes, skipped", line_no_, kMax);
      continue;
    }
    if (line_no_ == 1 && std::string_view(line_).starts_with(kBom)) {
      std::size_t from = kBom.size();
      while (from < line_.size() && is_blank(line_[from])) ++from;
      line_.erase(0, from);
      if (!line_.empty() && line_[0] == '#') continue;
    }
    if (state != State::content || line_.empty()) continue; // blank or comment
    return line_;
  }
  return std::nullopt;
}

// ---- GallerySource ----------------------------------------------------------------------------

namespace {

// The members check_shape, next and take_single read; the parser drops every other one as it goes
// (with its value), so an item of bench/run's Imgur-shaped page (34 members) becomes a node or
// three instead of a map of 34.
// A number out of a double's range still fails the parse wherever it is.
bool read_member(const std::string& key) noexcept {
  return key == "data" || key == "link" || key == "is_album" || key == "images" ||
         key == "success" || key == "status" || key == "error";
}

} // namespace

GallerySource::GallerySource(std::string_view json_text, GalleryOptions opt) : opt_(opt) {
  try {
    doc_ = nlohmann::json::parse(
        json_text, [](int, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
          return event != nlohmann::json::parse_event_t::key ||
                 read_member(parsed.get_ref<const std::string&>());
        });
  } catch (const nlohmann::json::exception& e) {
    // parse_error, and also out_of_range for a number that overflows a double ("1e400"): found
    // by tests/fuzz/fuzz_gallery.
    throw SourceError(std::string("gallery JSON does not parse: ") + e.what());
  }
  check_shape();
}

void GallerySource::check_shape() {
  if (!doc_.is_object())
    throw SourceError(std::string("gallery JSON: the document is ") + json_type(doc_) +
                      ", expected an object with a \"data\" array");
  const auto success = doc_.find("success");
  if (success != doc_.end() && success->is_boolean() && !success->get<bool>()) {
    std::string msg = "the gallery API answered success=false";
    long status = 0;
    const auto st = doc_.find("status");
    if (st != doc_.end() && st->is_number_integer()) {
      status = st->get<long>();
      msg += " (status " + std::to_string(status) + ")";
    }
    const auto data = doc_.find("data");
    if (data != doc_.end() && data->is_object()) {
      const auto err = data->find("error");
      if (err != data->end() && err->is_string()) msg += ": " + err->get<std::string>();
    }
    if (status == 401 || status == 403) msg += "; set IMGUR_CLIENT_ID to a valid Client-ID";
    throw SourceError(msg);
  }
  const auto data = doc_.find("data");
  if (data == doc_.end()) throw SourceError("gallery JSON: no \"data\" field");
  if (!data->is_array())
    throw SourceError(std::string("gallery JSON: \"data\" is ") + json_type(*data) +
                      ", expected an array");
}

std::string GallerySource::where() const { return where_; }

std::optional<std::string> GallerySource::take_single(const nlohmann::json& entry,
                                                      const std::string& at) {
  if (!entry.is_object()) {
    ++skipped_;
    warn_.warn("{}: is {}, expected an object, skipped", at, json_type(entry));
    return std::nullopt;
  }
  const auto link = entry.find("link");
  if (link == entry.end() || !link->is_string()) {
    ++skipped_;
    warn_.warn("{}: no string \"link\", skipped", at);
    return std::nullopt;
  }
  where_ = at;
  return link->get<std::string>();
}

std::optional<std::string> GallerySource::next() {
  const auto& data = doc_.at("data");
  for (;;) {
    if (in_album_) {
      const auto& images = data[item_].at("images");
      if (image_ < images.size()) {
        const std::size_t j = image_++;
        const std::string at =
            "data[" + std::to_string(item_) + "].images[" + std::to_string(j) + "]";
        if (auto url = take_single(images[j], at)) return url;
        continue;
      }
      in_album_ = false;
      ++item_;
      continue;
    }
    if (item_ >= data.size()) return std::nullopt;
    const std::size_t i = item_;
    const auto& item = data[i];
    const std::string at = "data[" + std::to_string(i) + "]";
    bool album = false;
    if (item.is_object()) {
      const auto flag = item.find("is_album");
      if (flag != item.end() && !flag->is_null()) {
        if (!flag->is_boolean()) {
          ++skipped_;
          warn_.warn("{}: \"is_album\" is {}, expected a boolean, skipped", at, json_type(*flag));
          ++item_;
          continue;
        }
        album = flag->get<bool>();
      }
    }
    if (album) {
      ++albums_;
      if (!opt_.expand_albums) {
        spdlog::debug("{}: album skipped", at);
        ++item_;
        continue;
      }
      const auto images = item.find("images");
      if (images == item.end() || !images->is_array()) {
        ++skipped_;
        warn_.warn("{}: album without an \"images\" array, skipped", at);
        ++item_;
        continue;
      }
      in_album_ = true;
      image_ = 0;
      continue;
    }
    ++item_;
    if (auto url = take_single(item, at)) return url;
  }
}

} // namespace trawl::fetcher
