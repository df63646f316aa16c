#include "downloader/request_headers.hpp"

#include "downloader/curl_handles.hpp"

namespace trawl::downloader {

namespace {

// RFC 9110 token characters.
bool is_tchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  switch (c) {
  case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+': case '-':
  case '.': case '^': case '_': case '`': case '|': case '~':
    return true;
  default:
    return false;
  }
}

} // namespace

std::string check_header(std::string_view h) {
  const auto colon = h.find(':');
  if (colon == std::string_view::npos) return "no ':' (the form is 'Name: value')";
  if (colon == 0) return "empty header name";
  for (char c : h.substr(0, colon))
    if (!is_tchar(c)) return "the header name has a character that is not allowed in it";
  for (char c : h.substr(colon + 1)) {
    if (c == '\r' || c == '\n') return "CR or LF in the value";
    if (c == '\0') return "NUL in the value";
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 && c != '\t') return "a control character in the value";
    if (u == 0x7F) return "DEL in the value";
  }
  return "";
}

HeaderList::HeaderList(const std::vector<std::string>& lines) {
  for (const auto& l : lines) {
    curl_slist* next = curl_slist_append(list_, l.c_str());
    if (next == nullptr) {
      curl_slist_free_all(list_);
      throw CurlError("curl_slist_append failed");
    }
    list_ = next;
  }
}

HeaderList::~HeaderList() { curl_slist_free_all(list_); }

} // namespace trawl::downloader
