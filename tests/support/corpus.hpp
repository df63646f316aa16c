// Deterministic generated corpora for tests, the demo and benchmarks: the items of a gallery
// (single files and albums), the bytes of each file, the Imgur-shaped JSON that lists them, the
// plain URL list and the manifest (name, size, SHA-256) that a finished download must match.
// Everything here is a pure function of its arguments: the same call gives the same bytes on
// every host, so a test can compute what the fixture server serves without asking it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace trawl::testsupport {

struct Item {
  std::string id;          // 7 alphanumeric characters, unique within a corpus
  std::string name;        // file name with extension ("aB3dE5f.jpg"); empty for an album
  std::uint64_t size = 0;  // bytes of the file; 0 for an album
  bool is_album = false;
  std::vector<Item> images;  // an album's files (never albums themselves)
  std::string type;          // MIME type ("image/jpeg"); empty for an album
};

// Bounds of the classic gallery's 91 single .jpg files.
inline constexpr std::uint64_t kClassicJpgMin = 30 * 1000;
inline constexpr std::uint64_t kClassicJpgMax = 1500 * 1000;
inline constexpr std::size_t kClassicJpgCount = 91;
// No file of the classic gallery (of any type, album children included) is larger than this.
inline constexpr std::uint64_t kClassicMaxFileSize = 2500 * 1000;

// The gallery the classic job runs on: exactly 91 single .jpg images (kClassicJpgMin..Max bytes),
// 4 animated .gif, 2 .png, 1 .mp4, and 3 albums of 2-4 images each (their children include .jpg
// files, which a job that does not expand albums must skip). Always the same items in the same
// order.
std::vector<Item> classic_gallery();

// `count` single .jpg items of approx_size bytes +-20% (never below 1 byte), ids unique, for
// benchmarks. Different seeds give different ids and sizes.
std::vector<Item> uniform_corpus(std::size_t count, std::uint64_t approx_size, std::uint64_t seed);

// The files of a corpus in order: single items, and each album's children (in place of the
// album) when include_album_children. Albums themselves are never files.
std::vector<Item> files_of(const std::vector<Item>& items, bool include_album_children);

// The MIME type for a file name's extension (".jpg" -> "image/jpeg"); application/octet-stream
// for anything unknown.
std::string mime_type_for(std::string_view name);

// The content of file `name`: exactly `size` bytes, a pseudo-random stream seeded by the name,
// starting with the magic number of its extension (JPEG, PNG, GIF89a, MP4 ftyp) when it fits.
// Fast: about 1 ms per MB.
std::string file_bytes(const std::string& name, std::uint64_t size);

// A page of Imgur's API v3 gallery ({"data":[...],"success":true,"status":200}) listing `items`,
// with direct links base_url + "/i/" + name and album links base_url + "/a/" + id.
// base_url has no trailing slash ("http://127.0.0.1:8080").
std::string gallery_json(const std::vector<Item>& items, const std::string& base_url);

// One URL per line (each line ends in '\n'): the direct link of every single file, and with
// include_album_children the direct links of the albums' files. Album pages are never listed.
std::string url_list(const std::vector<Item>& items, const std::string& base_url,
                     bool include_album_children);

// "name\tsize\tsha256\n" for every downloadable file: singles and album children.
std::string manifest_tsv(const std::vector<Item>& items);

// SHA-256 as 64 lower-case hex digits. sha256_file streams the file; it throws
// std::runtime_error when the file cannot be read.
std::string sha256_hex(std::string_view bytes);
std::string sha256_file(const std::string& path);

} // namespace trawl::testsupport
