// libFuzzer target: the URL-list source (fetcher::ListSource) on arbitrary bytes, checked against
// a separate model of its documented rules: one URL a line, blanks (space, \t, \r, \v, \f)
// trimmed, blank lines and '#' comments skipped, a UTF-8 BOM at the start ignored, and a line
// whose trimmed content is longer than proto::kMaxUrlBytes skipped and counted. The input reaches
// the source through a stream buffer that hands it out in pieces whose sizes come from the input,
// so line and chunk boundaries fall everywhere.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <spdlog/spdlog.h>
#include <sstream>
#include <streambuf>
#include <string>
#include <string_view>
#include <vector>

#include "fetcher/source.hpp"
#include "proto/messages.hpp"

namespace {

void require(bool ok) {
  if (!ok) std::abort();
}

bool blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && blank(s.back())) s.remove_suffix(1);
  return s;
}

struct Expected {
  std::vector<std::string> urls;
  std::uint64_t skipped = 0;
};

Expected model(std::string_view in) {
  constexpr std::string_view kBom = "\xEF\xBB\xBF";
  Expected e;
  std::size_t line_no = 0;
  while (!in.empty()) {
    const auto nl = in.find('\n');
    std::string_view line = in.substr(0, nl);
    in = nl == std::string_view::npos ? std::string_view{} : in.substr(nl + 1);
    ++line_no;
    std::string_view t = trim(line);
    if (t.empty() || t.front() == '#') continue;
    if (t.size() > trawl::proto::kMaxUrlBytes) {
      ++e.skipped;
      continue;
    }
    if (line_no == 1 && t.starts_with(kBom)) {
      t = trim(t.substr(kBom.size()));
      if (t.empty() || t.front() == '#') continue;
    }
    e.urls.emplace_back(t);
  }
  return e;
}

// Hands out the input in pieces of 1..64 bytes, sizes taken in turn from `sizes`.
class PieceBuf final : public std::streambuf {
public:
  PieceBuf(std::string_view data, std::string_view sizes) : data_(data), sizes_(sizes) {}

protected:
  int_type underflow() override {
    if (gptr() < egptr()) return traits_type::to_int_type(*gptr());
    if (pos_ >= data_.size()) return traits_type::eof();
    std::size_t n = 1;
    if (!sizes_.empty()) n = 1 + static_cast<unsigned char>(sizes_[turn_++ % sizes_.size()]) % 64;
    n = std::min(n, data_.size() - pos_);
    char* p = const_cast<char*>(data_.data() + pos_);
    setg(p, p, p + n);
    pos_ += n;
    return traits_type::to_int_type(*gptr());
  }

private:
  std::string_view data_;
  std::string_view sizes_;
  std::size_t pos_ = 0;
  std::size_t turn_ = 0;
};

} // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(bytes), size);
  // The first byte (if any) picks the chunking; the rest is the list.
  std::string_view sizes;
  if (!in.empty()) {
    sizes = in.substr(0, 1 + static_cast<unsigned char>(in[0]) % 4);
    in.remove_prefix(sizes.size());
  }
  // Long lines matter (the length cap); stretch a short input by repeating its last line's byte.
  std::string data(in);
  if (!data.empty() && static_cast<unsigned char>(data.back()) == 0xFF) {
    data.pop_back();
    const char fill = data.empty() ? 'a' : data.back();
    data.append(trawl::proto::kMaxUrlBytes - 2 + (size % 5), fill);
  }

  const Expected want = model(data);
  PieceBuf buf(data, sizes);
  std::istream stream(&buf);
  trawl::fetcher::ListSource source(stream);
  std::vector<std::string> got;
  while (auto url = source.next()) {
    require(got.size() < want.urls.size() + 1);
    require(!url->empty() && url->size() <= trawl::proto::kMaxUrlBytes);
    require(url->find('\n') == std::string::npos);
    got.push_back(std::move(*url));
  }
  require(!source.next()); // stays exhausted
  require(got == want.urls);
  require(source.skipped() == want.skipped);
  return 0;
}
