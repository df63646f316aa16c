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
#include "tests/support/utf8_reference.hpp"

namespace {

void require(bool ok) {
  if (!ok) std::abort();
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
  require(trawl::testsupport::valid_utf8_reference(name));
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
