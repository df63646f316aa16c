// File names derived from URLs: the one place that turns an untrusted URL into a name that is
// safe to create inside the output directory (no '/', no '..', no control bytes, valid UTF-8,
// bounded length), plus the URL pieces the filters need (extension) and a 64-bit URL hash.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace trawl {

inline constexpr std::size_t kMaxFileNameBytes = 200;

// The last segment of the URL's path (query and fragment removed), percent-decoded.
// "" when the path is empty or ends in '/'.
std::string url_basename(std::string_view url);

// Lower-case extension of url_basename(url), with its dot (".jpg"), or "" when there is none.
std::string url_extension(std::string_view url);

// A name that is safe to create in a directory, also on a Windows (SMB) share: bytes that are
// unsafe (control bytes, / \ : * ? " < > |) or not valid UTF-8 become '_', leading/trailing dots
// and spaces are dropped, length is bounded (the extension is kept), an empty result becomes
// "file", and a Windows device name (CON, PRN, AUX, NUL, COM0-9, LPT0-9, CONIN$, CONOUT$, any
// case, any extension) gets a '_' in front: "nul.txt" -> "_nul.txt".
std::string sanitize_name(std::string_view raw);

// True when `name` is exactly what sanitize_name would produce for it and not empty: the check a
// downloader applies to a name received from the network before it creates any file.
bool is_safe_name(std::string_view name);

// The name that a URL gets: sanitize_name(url_basename(url)), or "file" when that is empty.
std::string name_for_url(std::string_view url);

// `name` with "-XXXXXXXX" (8 hex digits of the URL's hash) before its extension: the distinct name
// a URL gets when another URL of the job already has its plain name.
std::string disambiguated_name(std::string_view name, std::string_view url);

// Length of the valid UTF-8 sequence starting at s[i] (1 for ASCII), or 0 when it is not valid
// (overlong forms, surrogates, values past U+10FFFF and cut sequences are not).
std::size_t utf8_sequence_length(std::string_view s, std::size_t i) noexcept;

// A well-mixed 64-bit hash (FNV-1a followed by a splitmix64 finaliser); never returns 0.
std::uint64_t hash64(std::string_view s) noexcept;

} // namespace trawl
