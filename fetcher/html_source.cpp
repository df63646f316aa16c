#include "fetcher/html_source.hpp"

#include <curl/curl.h>
#include <gumbo.h>
#include <memory>
#include <spdlog/spdlog.h>

namespace trawl::fetcher {
namespace {

bool is_ascii_space(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && is_ascii_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ascii_space(s.back())) s.remove_suffix(1);
  return s;
}

struct UrlDeleter {
  void operator()(CURLU* u) const noexcept { curl_url_cleanup(u); }
};
using Url = std::unique_ptr<CURLU, UrlDeleter>;

struct OutputDeleter {
  void operator()(char* p) const noexcept { curl_free(p); }
};

const char* attr(const GumboElement& el, const char* name) {
  const GumboAttribute* a = gumbo_get_attribute(&el.attributes, name);
  return a ? a->value : nullptr;
}

// The scheme of an absolute reference ("mailto" of "mailto:x"), lower case; empty for a relative one.
std::string scheme_of(std::string_view ref) {
  std::string out;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const char c = ref[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (c == ':') return i > 0 ? out : std::string();
    if (!(alpha || (i > 0 && ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.'))))
      return {};
    out.push_back(static_cast<char>(alpha && c < 'a' ? c - 'A' + 'a' : c));
  }
  return {};
}

struct OutputFree {
  void operator()(GumboOutput* o) const noexcept { gumbo_destroy_output(&kGumboDefaultOptions, o); }
};

} // namespace

std::optional<std::string> resolve_url(std::string_view base, std::string_view ref) {
  ref = trim(ref);
  const std::string ref_s(ref);
  const std::string base_s(base);
  Url u(curl_url());
  if (!u) return std::nullopt;
  // CURLU_NON_SUPPORT_SCHEME: resolve any scheme (a mailto: link is then dropped by the filter
  // with the rest); CURLU_ALLOW_SPACE + CURLU_URLENCODE: a space in an href becomes %20, as a
  // browser does.
  const unsigned flags = CURLU_NON_SUPPORT_SCHEME | CURLU_ALLOW_SPACE | CURLU_URLENCODE;
  if (!base_s.empty() && curl_url_set(u.get(), CURLUPART_URL, base_s.c_str(), flags) != CURLUE_OK)
    return std::nullopt;
  if (curl_url_set(u.get(), CURLUPART_URL, ref_s.c_str(), flags) != CURLUE_OK) return std::nullopt;
  curl_url_set(u.get(), CURLUPART_FRAGMENT, nullptr, 0);
  char* out = nullptr;
  if (curl_url_get(u.get(), CURLUPART_URL, &out, 0) != CURLUE_OK || out == nullptr)
    return std::nullopt;
  std::unique_ptr<char, OutputDeleter> owned(out);
  return std::string(out);
}

std::vector<std::string> parse_srcset(std::string_view s) {
  // The candidate-string grammar of the HTML standard: a URL (no whitespace; trailing commas are
  // separators), optional descriptors up to the next comma outside parentheses.
  std::vector<std::string> urls;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (is_ascii_space(s[i]) || s[i] == ',')) ++i;
    if (i >= s.size()) break;
    std::size_t start = i;
    while (i < s.size() && !is_ascii_space(s[i])) ++i;
    std::string_view url = s.substr(start, i - start);
    bool had_comma = false;
    while (url.ends_with(',')) {
      url.remove_suffix(1);
      had_comma = true;
    }
    if (!url.empty()) urls.emplace_back(url);
    if (had_comma) continue;
    int depth = 0;
    while (i < s.size()) {
      const char c = s[i++];
      if (c == '(') ++depth;
      else if (c == ')' && depth > 0) --depth;
      else if (c == ',' && depth == 0) break;
    }
  }
  return urls;
}

HtmlSource::HtmlSource(std::string_view html, const std::string& page_url) : base_(page_url) {
  GumboOptions opt = kGumboDefaultOptions;
  opt.max_errors = 0; // the parse errors are not wanted, only the recovered tree
  std::unique_ptr<GumboOutput, OutputFree> out(
      gumbo_parse_with_options(&opt, html.data(), html.size()));
  if (!out) throw SourceError("the HTML parser failed (out of memory?)");

  // Elements in document order, iteratively (a hostile page may nest deeply).
  std::vector<const GumboNode*> order;
  std::vector<const GumboNode*> stack{out->root};
  while (!stack.empty()) {
    const GumboNode* n = stack.back();
    stack.pop_back();
    if (n->type != GUMBO_NODE_ELEMENT && n->type != GUMBO_NODE_TEMPLATE) continue;
    order.push_back(n);
    const GumboVector& kids = n->v.element.children;
    for (unsigned i = kids.length; i > 0; --i)
      stack.push_back(static_cast<const GumboNode*>(kids.data[i - 1]));
  }

  // The first <base href> sets the base for every link of the page, wherever it is.
  for (const GumboNode* n : order) {
    if (n->v.element.tag != GUMBO_TAG_BASE) continue;
    const char* href = attr(n->v.element, "href");
    if (href == nullptr) continue;
    if (auto b = resolve_url(page_url, href)) base_ = *b;
    else warn_.warn("line {}: <base href> \"{}\" cannot be resolved, ignored",
                    n->v.element.start_pos.line, std::string(trim(href)).substr(0, 120));
    break;
  }

  auto add = [this](const GumboElement& el, const char* what, std::string_view ref) {
    const std::string at = "line " + std::to_string(el.start_pos.line) + " " + what;
    // Nothing, or a place in this same page ("#top"): not a resource.
    if (trim(ref).empty() || trim(ref).starts_with('#')) return;
    // mailto:, javascript:, data: and the like are part of any page: dropped quietly.
    if (const std::string scheme = scheme_of(trim(ref));
        !scheme.empty() && scheme != "http" && scheme != "https") {
      ++other_schemes_;
      spdlog::debug("{}: a {}: link, ignored", at, scheme);
      return;
    }
    if (auto url = resolve_url(base_, ref)) {
      if (url->compare(0, 7, "http://") != 0 && url->compare(0, 8, "https://") != 0) {
        ++other_schemes_;
        spdlog::debug("{}: not an http(s) link, ignored: {}", at, url->substr(0, 120));
        return;
      }
      links_.emplace_back(std::move(*url), at);
      return;
    }
    ++skipped_;
    if (base_.empty())
      warn_.warn("{}: relative link \"{}\" and no base URL (give --base-url), skipped", at,
                 std::string(trim(ref)).substr(0, 120));
    else
      warn_.warn("{}: \"{}\" is not a URL, skipped", at, std::string(trim(ref)).substr(0, 120));
  };
  for (const GumboNode* n : order) {
    const GumboElement& el = n->v.element;
    switch (el.tag) {
    case GUMBO_TAG_A:
    case GUMBO_TAG_AREA:
      if (const char* href = attr(el, "href")) add(el, el.tag == GUMBO_TAG_A ? "<a href>" : "<area href>", href);
      break;
    case GUMBO_TAG_IMG:
      if (const char* src = attr(el, "src")) add(el, "<img src>", src);
      [[fallthrough]];
    case GUMBO_TAG_SOURCE:
      if (const char* set = attr(el, "srcset"))
        for (const auto& u : parse_srcset(set))
          add(el, el.tag == GUMBO_TAG_IMG ? "<img srcset>" : "<source srcset>", u);
      break;
    default:
      break;
    }
  }
}

std::optional<std::string> HtmlSource::next() {
  if (pos_ >= links_.size()) return std::nullopt;
  auto& [url, at] = links_[pos_++];
  where_ = std::move(at);
  return std::move(url);
}

} // namespace trawl::fetcher
