// The failure mapping and the retry delay of the downloader: pure functions, no network.
#include <catch2/catch.hpp>

#include "downloader/outcome.hpp"
#include "proto/messages.hpp"

using trawl::downloader::bounded;
using trawl::downloader::classify;
using trawl::downloader::describe;
using trawl::downloader::Outcome;
using trawl::downloader::reason_for_curl;
using trawl::downloader::retry_delay;
using trawl::proto::Reason;

namespace {
Outcome curl_failed(CURLcode code, long status = 0) {
  Outcome o;
  o.code = code;
  o.http_status = status;
  return o;
}
} // namespace

TEST_CASE("curl codes map to reasons", "[downloader]") {
  struct Row {
    CURLcode code;
    Reason reason;
  };
  const Row table[] = {
      {CURLE_OK, Reason::none},
      {CURLE_OPERATION_TIMEDOUT, Reason::timeout},
      {CURLE_COULDNT_CONNECT, Reason::connect},
      {CURLE_COULDNT_RESOLVE_HOST, Reason::dns},
      {CURLE_COULDNT_RESOLVE_PROXY, Reason::dns},
      {CURLE_SSL_CONNECT_ERROR, Reason::tls},
      {CURLE_PEER_FAILED_VERIFICATION, Reason::tls},
      {CURLE_SSL_CACERT_BADFILE, Reason::tls},
      {CURLE_PARTIAL_FILE, Reason::truncated},
      {CURLE_RECV_ERROR, Reason::truncated},
      {CURLE_GOT_NOTHING, Reason::truncated},
      {CURLE_HTTP2_STREAM, Reason::truncated},
      {CURLE_FILESIZE_EXCEEDED, Reason::too_large},
      {CURLE_UNSUPPORTED_PROTOCOL, Reason::scheme},
      {CURLE_TOO_MANY_REDIRECTS, Reason::redirects},
      {CURLE_WRITE_ERROR, Reason::io},
      {CURLE_URL_MALFORMAT, Reason::bad_url},
      {CURLE_OUT_OF_MEMORY, Reason::other},
      {CURLE_SEND_ERROR, Reason::other},
  };
  for (const auto& row : table) {
    INFO("curl code " << row.code << " " << curl_easy_strerror(row.code));
    CHECK(reason_for_curl(row.code) == row.reason);
    if (row.code != CURLE_OK) CHECK(classify(curl_failed(row.code)) == row.reason);
  }
}

TEST_CASE("HTTP statuses map to reasons through proto::reason_for_http", "[downloader]") {
  struct Row {
    long status;
    Reason reason;
  };
  const Row table[] = {
      {200, Reason::none},         {204, Reason::none},        {404, Reason::http_client},
      {403, Reason::http_client},  {408, Reason::timeout},     {429, Reason::rate_limited},
      {500, Reason::http_server},  {503, Reason::http_server}, {304, Reason::http_client},
  };
  for (const auto& row : table) {
    INFO("HTTP " << row.status);
    Outcome o;
    o.http_status = row.status;
    CHECK(classify(o) == row.reason);
  }
}

TEST_CASE("classify: precedence of local aborts, statuses, curl codes and lengths", "[downloader]") {
  SECTION("the write callback's own abort wins over the WRITE_ERROR it causes") {
    Outcome o = curl_failed(CURLE_WRITE_ERROR, 200);
    o.local = Reason::too_large;
    o.local_detail = "body exceeds --max-size 10 bytes";
    CHECK(classify(o) == Reason::too_large);
    CHECK(describe(o, Reason::too_large, "Failure writing output") ==
          "body exceeds --max-size 10 bytes");
    o.local = Reason::io;
    CHECK(classify(o) == Reason::io);
  }
  SECTION("an error status wins over what happened to its body") {
    CHECK(classify(curl_failed(CURLE_PARTIAL_FILE, 503)) == Reason::http_server);
    CHECK(classify(curl_failed(CURLE_WRITE_ERROR, 404)) == Reason::http_client);
    CHECK(describe(curl_failed(CURLE_OK, 404), Reason::http_client, "") == "HTTP 404");
  }
  SECTION("a redirect status does not hide the curl code of the redirect that failed") {
    CHECK(classify(curl_failed(CURLE_TOO_MANY_REDIRECTS, 302)) == Reason::redirects);
    CHECK(classify(curl_failed(CURLE_UNSUPPORTED_PROTOCOL, 302)) == Reason::scheme);
  }
  SECTION("a 2xx body must match its Content-Length") {
    Outcome o;
    o.http_status = 200;
    o.content_length = 10;
    o.bytes = 10;
    CHECK(classify(o) == Reason::none);
    o.bytes = 9;
    CHECK(classify(o) == Reason::truncated);
    CHECK(describe(o, Reason::truncated, "") == "got 9 of 10 announced bytes");
    o.content_length = -1; // not announced: any length is complete
    CHECK(classify(o) == Reason::none);
  }
  SECTION("no status at all is not success") {
    Outcome garbled;
    garbled.code = CURLE_UNSUPPORTED_PROTOCOL;
    CHECK(classify(garbled) == Reason::scheme); // a refused scheme stays one
    garbled.http_url = true; // an http URL answered with something not HTTP: retried
    CHECK(classify(garbled) == Reason::truncated);
    CHECK(trawl::proto::is_retryable(classify(garbled)));
    CHECK(classify(Outcome{}) == Reason::other);
  }
  SECTION("the curl error buffer is the detail when it says something") {
    CHECK(describe(curl_failed(CURLE_COULDNT_CONNECT), Reason::connect, "Connection refused") ==
          "Connection refused");
    CHECK(describe(curl_failed(CURLE_COULDNT_CONNECT), Reason::connect, "") ==
          curl_easy_strerror(CURLE_COULDNT_CONNECT));
  }
}

TEST_CASE("details are bounded without splitting UTF-8", "[downloader]") {
  const std::string big(5000, 'x');
  CHECK(describe(curl_failed(CURLE_RECV_ERROR), Reason::truncated, big).size() ==
        trawl::proto::kMaxDetailBytes);
  CHECK(bounded("ab\xC3\xA9", 3) == "ab"); // 'é' is two bytes: cut before it, not inside
  CHECK(bounded("ab\xC3\xA9", 4) == "ab\xC3\xA9");
  CHECK(bounded("abc", 10) == "abc");
}

TEST_CASE("retry delay: exponential, jittered, capped, Retry-After as a floor", "[downloader]") {
  using std::chrono::milliseconds;
  CHECK(retry_delay(1, 0.0, 0) == milliseconds(250));
  CHECK(retry_delay(1, 1.0, 0) == milliseconds(500));
  CHECK(retry_delay(2, 1.0, 0) == milliseconds(1000));
  CHECK(retry_delay(3, 1.0, 0) == milliseconds(2000));
  CHECK(retry_delay(40, 1.0, 0) == milliseconds(30000)); // capped
  CHECK(retry_delay(1000000, 0.0, 0) == milliseconds(15000));
  for (double j = 0.0; j < 1.0; j += 0.1) {
    const auto d = retry_delay(2, j, 0);
    CHECK(d >= milliseconds(500));
    CHECK(d <= milliseconds(1000));
  }
  CHECK(retry_delay(1, 1.0, 3) == milliseconds(3000));    // the server asked for 3 s
  CHECK(retry_delay(1, 1.0, 3600) == milliseconds(60000)); // but not for an hour
  CHECK(retry_delay(5, 1.0, 1) == milliseconds(8000));     // a shorter Retry-After is no ceiling
}
