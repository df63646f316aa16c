// libcurl's receive buffers noted and primed (downloader/recv_prefault.hpp): libcurl initialised
// with the noting allocation functions (curl_global_once), file:// transfers with a 64 KiB buffer,
// and the counts of blocks noted and bytes populated; blocks freed before or while the thread
// primes. Each test case runs in a process of its own (ctest), where this is libcurl's first
// initialisation.
#include <catch2/catch.hpp>

#include <curl/curl.h>
#include <fstream>
#include <string>
#include <vector>

#include "downloader/curl_handles.hpp"
#include "downloader/recv_prefault.hpp"
#include "tests/support/process.hpp"

using trawl::downloader::RecvPrefault;
using trawl::testsupport::TempDir;

namespace {

constexpr std::size_t kBuffer = 64 * 1024;

std::size_t discard(char*, std::size_t size, std::size_t count, void*) { return size * count; }

// One transfer of a local file with a receive buffer of `buffer` bytes; its handle stays open
// (libcurl keeps the buffer until the handle goes) until the caller cleans it up.
CURL* fetch_file(const std::string& path, long buffer) {
  CURL* e = curl_easy_init();
  REQUIRE(e != nullptr);
  const std::string url = "file://" + path;
  curl_easy_setopt(e, CURLOPT_URL, url.c_str());
  curl_easy_setopt(e, CURLOPT_BUFFERSIZE, buffer);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &discard);
  CHECK(curl_easy_perform(e) == CURLE_OK);
  return e;
}

std::string a_file(const TempDir& dir) {
  const std::string path = dir / "body";
  std::ofstream(path) << std::string(100000, 'x');
  return path;
}

} // namespace

TEST_CASE("RecvPrefault notes libcurl's receive buffers, then makes their pages present",
          "[recv_prefault]") {
  trawl::downloader::curl_global_once();
  TempDir dir("trawl-recv-prefault");
  const std::string path = a_file(dir);
  RecvPrefault prefault(kBuffer);
  CHECK(prefault.wait() == 0); // nothing before start()
  CURL* first = fetch_file(path, static_cast<long>(kBuffer));
  CURL* second = fetch_file(path, static_cast<long>(kBuffer));
  INFO("none noted: was libcurl initialised before this test, without the noting functions?");
  REQUIRE(prefault.noted() == 2);
  prefault.start();
  const std::size_t populated = prefault.wait();
  // Each buffer's pages, partial ones at either end included; 0 only where the kernel refuses
  // MADV_POPULATE_WRITE (older than Linux 5.14).
  if (populated == 0) WARN("the kernel refuses MADV_POPULATE_WRITE: nothing populated");
  else CHECK(populated >= 2 * (kBuffer + 4096));
  // Nothing is noted after start(), and a second start() does nothing.
  CURL* third = fetch_file(path, static_cast<long>(kBuffer));
  CHECK(prefault.noted() == 2);
  prefault.start();
  CHECK(prefault.wait() == populated);
  curl_easy_cleanup(first);
  curl_easy_cleanup(second);
  curl_easy_cleanup(third);
}

TEST_CASE("RecvPrefault notes no block of another size", "[recv_prefault]") {
  trawl::downloader::curl_global_once();
  TempDir dir("trawl-recv-prefault");
  const std::string path = a_file(dir);
  {
    RecvPrefault prefault(kBuffer);
    CURL* e = fetch_file(path, 32 * 1024); // libcurl's buffer is 32 KiB and a byte
    CHECK(prefault.noted() == 0);
    prefault.start();
    CHECK(prefault.wait() == 0);
    curl_easy_cleanup(e);
  }
  // Nor anything once the noting object is gone.
  CURL* e = fetch_file(path, static_cast<long>(kBuffer));
  RecvPrefault later(kBuffer);
  CHECK(later.noted() == 0);
  curl_easy_cleanup(e);
}

TEST_CASE("RecvPrefault primes no block that libcurl has freed", "[recv_prefault]") {
  trawl::downloader::curl_global_once();
  TempDir dir("trawl-recv-prefault");
  const std::string path = a_file(dir);
  RecvPrefault prefault(kBuffer);
  CURL* gone = fetch_file(path, static_cast<long>(kBuffer));
  CURL* kept = fetch_file(path, static_cast<long>(kBuffer));
  REQUIRE(prefault.noted() == 2);
  curl_easy_cleanup(gone); // its buffer is freed: the thread must not touch it
  prefault.start();
  const std::size_t populated = prefault.wait();
  if (populated == 0) WARN("the kernel refuses MADV_POPULATE_WRITE: nothing populated");
  else CHECK((populated >= kBuffer + 4096 && populated <= kBuffer + 2 * 4096)); // one buffer
  curl_easy_cleanup(kept);
}

// The thread primes while libcurl frees the buffers: each free waits for a prime under way on its
// block, and a block freed first is skipped. A read of a freed block is what a sanitizer build
// reports here (and what an allocator that unmaps freed memory would crash on).
TEST_CASE("RecvPrefault's thread and libcurl's frees of the buffers meet safely",
          "[recv_prefault]") {
  trawl::downloader::curl_global_once();
  TempDir dir("trawl-recv-prefault");
  const std::string path = a_file(dir);
  constexpr std::size_t kHandles = 48;
  for (int round = 0; round < 4; ++round) {
    RecvPrefault prefault(kBuffer);
    std::vector<CURL*> handles;
    for (std::size_t i = 0; i < kHandles; ++i)
      handles.push_back(fetch_file(path, static_cast<long>(kBuffer)));
    REQUIRE(prefault.noted() == kHandles);
    prefault.start();
    // Freed from the last, which the thread reaches last, so that some frees meet their prime.
    for (auto it = handles.rbegin(); it != handles.rend(); ++it) curl_easy_cleanup(*it);
    const std::size_t populated = prefault.wait();
    CHECK(populated <= kHandles * (kBuffer + 2 * 4096));
  }
}
