// Extra request headers (-H 'Name: value', e.g. an API token): checked once at start, so a value
// with CR or LF can never split a request, and kept in one curl_slist that every transfer of the
// process points at (libcurl does not copy CURLOPT_HTTPHEADER lists).
#pragma once

#include <curl/curl.h>
#include <string>
#include <string_view>
#include <vector>

namespace trawl::downloader {

// "" when `h` is a usable header line: a field name of token characters, a colon, then a value
// without CR, LF or NUL (an empty value asks libcurl to leave that header out). Else why not.
std::string check_header(std::string_view h);

// An owned curl_slist. Throws CurlError when libcurl cannot allocate.
class HeaderList {
public:
  HeaderList() = default;
  explicit HeaderList(const std::vector<std::string>& lines);
  ~HeaderList();
  HeaderList(const HeaderList&) = delete;
  HeaderList& operator=(const HeaderList&) = delete;
  curl_slist* get() const noexcept { return list_; }

private:
  curl_slist* list_ = nullptr;
};

} // namespace trawl::downloader
