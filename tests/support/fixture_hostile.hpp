// Hostile routes of trawl-fixture, under /h/: the misbehaving server of the hostile-input tests
// (tests/e2e/test_hostile_gallery.cpp, test_disk_full.cpp). Every route is deterministic, so a
// test computes what a correct client stores without asking the server:
//   /h/f/<any path>?k=KEY&n=N  N bytes of file_bytes(KEY, N) (N <= 64 MiB); also served at
//                              /etc/passwd, where a client lands that removes the dot segments of
//                              /h/../../etc/passwd
//   /h/redirect?to=URL         302 to URL, verbatim (file:, ftp:, gopher: ... included)
//   /h/chunked?k=KEY&n=N       the same bytes, chunked: no Content-Length
//   /h/short?k=KEY&n=N&send=S  announces N bytes, sends the first S < N, closes the connection
//   /h/long?k=KEY&n=N&send=S   announces N bytes, sends S > N
//   /h/stall?k=KEY&n=N&after=A announces N, sends A bytes, then nothing until ms=MS (10000) pass
//   /h/silent?ms=MS            accepts the request and answers nothing for MS ms (10000)
//   /h/bomb.gz                 Content-Encoding: gzip, 64 MiB of zeros compressed (~64 KiB)
//   /h/bomb.gz.sha256          "SHA256 SIZE" of that exact body (SHA-256 as hex, bytes)
#pragma once

#include <httplib.h>

namespace trawl::testsupport {

void install_hostile_routes(httplib::Server& svr);

// Ends every stalled and silent answer at once (the server is stopping).
void stop_hostile_routes();

} // namespace trawl::testsupport
