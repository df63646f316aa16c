#include "broker/names.hpp"

#include <cstdio>
#include <openssl/evp.h>
#include <stdexcept>

#include "common/names.hpp"

namespace trawl::broker {

namespace {

std::string sha256_hex(std::string_view s) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  if (EVP_Digest(s.data(), s.size(), md, &len, EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("SHA-256 of a URL failed");
  static constexpr char digits[] = "0123456789abcdef";
  std::string hex(2 * std::size_t{len}, '0');
  for (unsigned i = 0; i < len; ++i) {
    hex[2 * i] = digits[md[i] >> 4];
    hex[2 * i + 1] = digits[md[i] & 0x0F];
  }
  return hex;
}

std::string padded(std::uint64_t n, int width) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%0*llu", width, static_cast<unsigned long long>(n));
  return buf;
}

} // namespace

std::optional<NameLayout> parse_layout(std::string_view s) {
  if (s == "basename") return NameLayout::basename;
  if (s == "hash") return NameLayout::hash;
  if (s == "index") return NameLayout::index;
  return std::nullopt;
}

std::string plain_extension(std::string_view url) {
  const std::string ext = url_extension(url);
  if (ext.size() < 2 || ext.size() > 16) return "";
  for (std::size_t i = 1; i < ext.size(); ++i) {
    const char c = ext[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) return "";
  }
  return ext;
}

std::pair<std::string_view, std::string_view> split_name(std::string_view stored) {
  const auto slash = stored.rfind('/');
  if (slash == std::string_view::npos) return {std::string_view(), stored};
  return {stored.substr(0, slash), stored.substr(slash + 1)};
}

bool NameAssigner::take(const std::string& name) {
  std::string key = name;
  for (auto& c : key)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return taken_.insert(hash64(key));
}

std::string NameAssigner::assign(std::string_view url, std::uint64_t index) {
  if (index == 0) index = 1;
  std::string name;
  switch (opt_.layout) {
  case NameLayout::basename: name = name_for_url(url); break;
  case NameLayout::hash: name = sha256_hex(url) + plain_extension(url); break;
  case NameLayout::index: name = padded(index, 9) + plain_extension(url); break;
  }
  if (!take(name)) {
    std::string alt = disambiguated_name(name, url);
    // Two URLs whose hashes share 32 bits and whose names collide: extremely rare; add a counter.
    for (int i = 2; !take(alt); ++i)
      alt = disambiguated_name(name, std::string(url) + "#" + std::to_string(i));
    name = std::move(alt);
  }
  if (opt_.shard == 0) return name;
  return padded((index - 1) / opt_.shard, 4) + "/" + name;
}

} // namespace trawl::broker
