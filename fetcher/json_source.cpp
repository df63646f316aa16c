#include "fetcher/json_source.hpp"

#include <stdexcept>

namespace trawl::fetcher {

JsonPath::JsonPath(std::string_view spec) : text_(spec) {
  if (spec.empty()) throw std::invalid_argument("empty JSON path");
  std::size_t from = 0;
  for (;;) {
    const std::size_t dot = spec.find('.', from);
    std::string_view part = spec.substr(from, dot == std::string_view::npos ? spec.npos : dot - from);
    Step step;
    while (part.ends_with("[]")) {
      ++step.each;
      part.remove_suffix(2);
    }
    if (part.empty() && !(steps_.empty() && step.each > 0))
      throw std::invalid_argument("JSON path \"" + text_ + "\": empty field name");
    for (char c : part)
      if (c == '[' || c == ']' || static_cast<unsigned char>(c) <= 0x20)
        throw std::invalid_argument("JSON path \"" + text_ + "\": unexpected '" +
                                    std::string(1, c) + "' in \"" + std::string(part) +
                                    "\" (expected names and [], e.g. data[].link)");
    step.field = part;
    steps_.push_back(std::move(step));
    if (dot == std::string_view::npos) break;
    from = dot + 1;
  }
}

void JsonPath::each(const nlohmann::json& doc,
                    const std::function<void(const std::string&, const std::string&)>& found,
                    const std::function<void(const std::string&, const std::string&)>& problem) const {
  walk(doc, 0, -1, "", found, problem);
}

// `each_done` is -1 before the step's field was taken, then how many of its "[]" were applied.
void JsonPath::walk(const nlohmann::json& node, std::size_t step, int each_done,
                    const std::string& where,
                    const std::function<void(const std::string&, const std::string&)>& found,
                    const std::function<void(const std::string&, const std::string&)>& problem) const {
  if (step == steps_.size()) {
    if (node.is_string()) found(node.get<std::string>(), where);
    else if (node.is_null()) problem(where, "is null");
    else problem(where, std::string("is ") + node.type_name() + ", expected a string");
    return;
  }
  const Step& s = steps_[step];
  if (each_done < 0) {
    if (s.field.empty()) return walk(node, step, 0, where, found, problem);
    const std::string at = where.empty() ? s.field : where + "." + s.field;
    if (!node.is_object()) {
      problem(where.empty() ? "the document" : where,
              std::string("is ") + node.type_name() + ", expected an object with \"" + s.field + "\"");
      return;
    }
    const auto it = node.find(s.field);
    if (it == node.end() || it->is_null()) {
      problem(at, "missing");
      return;
    }
    return walk(*it, step, 0, at, found, problem);
  }
  if (each_done == s.each) return walk(node, step + 1, -1, where, found, problem);
  if (!node.is_array()) {
    problem(where.empty() ? "the document" : where,
            std::string("is ") + node.type_name() + ", expected an array");
    return;
  }
  for (std::size_t i = 0; i < node.size(); ++i)
    walk(node[i], step, each_done + 1, where + "[" + std::to_string(i) + "]", found, problem);
}

JsonSource::JsonSource(std::string_view json_text, const JsonPath& links, const JsonPath* next,
                       const std::string& name) {
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::exception& e) { // parse_error, or out_of_range for 1e400
    throw SourceError(name + ": JSON does not parse: " + e.what());
  }
  links.each(
      doc, [this](const std::string& url, const std::string& at) { links_.emplace_back(url, at); },
      [this, &links](const std::string& at, const std::string& why) {
        ++skipped_;
        warn_.warn("{} ({}): {}, skipped", at, links.text(), why);
      });
  if (next != nullptr) {
    next->each(
        doc,
        [this](const std::string& url, const std::string&) {
          if (!next_page_ && !url.empty()) next_page_ = url;
        },
        [](const std::string& at, const std::string& why) {
          spdlog::debug("{}: {}: no next page", at, why);
        });
  }
}

std::optional<std::string> JsonSource::next() {
  if (pos_ >= links_.size()) return std::nullopt;
  auto& [url, at] = links_[pos_++];
  where_ = std::move(at);
  return std::move(url);
}

} // namespace trawl::fetcher
