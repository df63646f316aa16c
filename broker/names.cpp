#include "broker/names.hpp"

#include "common/names.hpp"

namespace trawl::broker {

bool NameAssigner::take(const std::string& name) {
  std::string key = name;
  for (auto& c : key)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return taken_.insert(hash64(key));
}

std::string NameAssigner::assign(std::string_view url) {
  std::string name = name_for_url(url);
  if (take(name)) return name;
  std::string alt = disambiguated_name(name, url);
  // Two URLs whose hashes share 32 bits and whose names collide: extremely rare; add a counter.
  for (int i = 2; !take(alt); ++i) alt = disambiguated_name(name, std::string(url) + "#" + std::to_string(i));
  return alt;
}

} // namespace trawl::broker
