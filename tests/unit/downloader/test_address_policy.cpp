// The --deny-private address classifier: every range at its edges, the IPv6 forms that carry an
// IPv4 address, and a sweep of the whole IPv4 space in steps against an independent reference.
#include <catch2/catch.hpp>

#include <algorithm>
#include <arpa/inet.h>
#include <cstddef>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <netinet/in.h>
#include <string>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "downloader/address_policy.hpp"

using trawl::downloader::non_public_range;
using trawl::downloader::non_public_range_v4;

namespace {

std::string range_of(const std::string& text) {
  const auto r = non_public_range(std::string_view(text));
  REQUIRE(r.has_value());
  return std::string(*r);
}

bool refused(const std::string& text) { return !range_of(text).empty(); }

std::uint32_t parse_v4(const std::string& text) {
  in_addr a{};
  REQUIRE(::inet_pton(AF_INET, text.c_str(), &a) == 1);
  return ntohl(a.s_addr);
}

std::string v4_text(std::uint32_t addr) {
  in_addr a{};
  a.s_addr = htonl(addr);
  char buf[INET_ADDRSTRLEN] = {};
  REQUIRE(::inet_ntop(AF_INET, &a, buf, sizeof buf) != nullptr);
  return buf;
}

// A second, deliberately different statement of the refused IPv4 ranges: dotted-quad prefixes
// compared octet by octet.
bool reference_refuses_v4(std::uint32_t addr) {
  const unsigned a = addr >> 24, b = (addr >> 16) & 0xFF, c = (addr >> 8) & 0xFF;
  if (a == 0 || a == 10 || a == 127) return true;
  if (a == 100 && b >= 64 && b <= 127) return true;
  if (a == 169 && b == 254) return true;
  if (a == 172 && b >= 16 && b <= 31) return true;
  if (a == 192 && b == 0 && (c == 0 || c == 2)) return true;
  if (a == 192 && b == 168) return true;
  if (a == 198 && (b == 18 || b == 19)) return true;
  if (a == 198 && b == 51 && c == 100) return true;
  if (a == 203 && b == 0 && c == 113) return true;
  return a >= 224;
}

} // namespace

TEST_CASE("deny-private: IPv4 ranges at their edges", "[downloader][address]") {
  struct Edge {
    const char *below, *first, *last, *above, *name;
  };
  const Edge edges[] = {
      {nullptr, "0.0.0.0", "0.255.255.255", "1.0.0.0", "this network"},
      {"9.255.255.255", "10.0.0.0", "10.255.255.255", "11.0.0.0", "private (RFC 1918)"},
      {"100.63.255.255", "100.64.0.0", "100.127.255.255", "100.128.0.0",
       "shared address space (CGNAT)"},
      {"126.255.255.255", "127.0.0.0", "127.255.255.255", "128.0.0.0", "loopback"},
      {"169.253.255.255", "169.254.0.0", "169.254.255.255", "169.255.0.0", "link-local"},
      {"172.15.255.255", "172.16.0.0", "172.31.255.255", "172.32.0.0", "private (RFC 1918)"},
      {"191.255.255.255", "192.0.0.0", "192.0.0.255", "192.0.1.0", "IETF protocol assignments"},
      {"192.0.1.255", "192.0.2.0", "192.0.2.255", "192.0.3.0", "documentation"},
      {"192.167.255.255", "192.168.0.0", "192.168.255.255", "192.169.0.0", "private (RFC 1918)"},
      {"198.17.255.255", "198.18.0.0", "198.19.255.255", "198.20.0.0", "benchmarking"},
      {"198.51.99.255", "198.51.100.0", "198.51.100.255", "198.51.101.0", "documentation"},
      {"203.0.112.255", "203.0.113.0", "203.0.113.255", "203.0.114.0", "documentation"},
      {"223.255.255.255", "224.0.0.0", "239.255.255.255", nullptr, "multicast"},
      {nullptr, "240.0.0.0", "255.255.255.255", nullptr, "reserved"},
  };
  for (const auto& e : edges) {
    INFO(e.first << " - " << e.last);
    CHECK(range_of(e.first) == e.name);
    CHECK(range_of(e.last) == e.name);
    if (e.below) CHECK_FALSE(refused(e.below));
    if (e.above) CHECK_FALSE(refused(e.above));
  }
  CHECK(range_of("169.254.169.254") == "cloud metadata");
  CHECK(range_of("169.254.169.253") == "link-local");
  CHECK(range_of("192.0.0.192") == "IETF protocol assignments"); // Oracle Cloud's metadata
  CHECK(range_of("100.100.100.200") == "shared address space (CGNAT)"); // Alibaba's metadata
  CHECK(range_of("127.0.0.1") == "loopback");
  CHECK(range_of("127.1.2.3") == "loopback");
  CHECK(range_of("0.0.0.0") == "this network");
  for (const char* pub : {"1.1.1.1", "8.8.8.8", "93.184.216.34", "151.101.1.69", "223.255.255.255",
                          "172.15.0.1", "172.32.0.1", "11.0.0.1", "192.169.0.1", "100.128.0.1"})
    CHECK_FALSE(refused(pub));
}

TEST_CASE("deny-private: every /24 of the IPv4 space agrees with a reference", "[downloader][address]") {
  // Every refused range is a /24 or wider (the /32 metadata address lies inside link-local), so
  // probing each of the 2^24 /24 blocks at its first and last address lands on both sides of
  // every edge.
  std::uint64_t checked = 0, mismatches = 0;
  for (std::uint64_t a = 0; a <= 0xFFFFFFFFull; a += 0x100) {
    for (std::uint32_t off : {0u, 0xFFu}) {
      const auto addr = static_cast<std::uint32_t>(a + off);
      const bool got = !non_public_range_v4(addr).empty();
      if (got != reference_refuses_v4(addr)) {
        ++mismatches;
        if (mismatches < 5) FAIL_CHECK(v4_text(addr) << " classifier says " << got);
      }
      ++checked;
    }
  }
  CHECK(checked == 2ull * (1ull << 24));
  CHECK(mismatches == 0);
}

TEST_CASE("deny-private: IPv6 ranges and the forms that carry IPv4", "[downloader][address]") {
  CHECK(range_of("::") == "unspecified");
  CHECK(range_of("::1") == "loopback");
  CHECK(range_of("::2") == "IPv4-compatible (deprecated)");
  CHECK(range_of("::127.0.0.1") == "IPv4-compatible (deprecated)");
  CHECK(range_of("::8.8.8.8") == "IPv4-compatible (deprecated)");
  // IPv4-mapped: judged by the IPv4 address.
  CHECK(range_of("::ffff:127.0.0.1") == "loopback");
  CHECK(range_of("::ffff:7f00:1") == "loopback");
  CHECK(range_of("::ffff:10.1.2.3") == "private (RFC 1918)");
  CHECK(range_of("::ffff:169.254.169.254") == "cloud metadata");
  CHECK(range_of("::ffff:0.0.0.0") == "this network");
  CHECK_FALSE(refused("::ffff:8.8.8.8"));
  // IPv4-translated (RFC 2765).
  CHECK(range_of("::ffff:0:192.168.1.1") == "private (RFC 1918)");
  CHECK_FALSE(refused("::ffff:0:8.8.8.8"));
  // NAT64 well-known prefix and local use.
  CHECK(range_of("64:ff9b::127.0.0.1") == "loopback");
  CHECK(range_of("64:ff9b::a9fe:a9fe") == "cloud metadata");
  CHECK_FALSE(refused("64:ff9b::8.8.8.8"));
  CHECK(range_of("64:ff9b:1::1") == "NAT64 local use");
  // 6to4 carries the IPv4 address in bits 16..47.
  CHECK(range_of("2002:7f00:1::") == "loopback");
  CHECK(range_of("2002:c0a8:0101::1") == "private (RFC 1918)");
  CHECK_FALSE(refused("2002:0808:0808::1"));
  CHECK(range_of("100::") == "discard-only");
  CHECK(range_of("100::ffff:ffff:ffff:ffff") == "discard-only");
  CHECK_FALSE(refused("100:0:0:1::"));
  CHECK(range_of("2001:db8::1") == "documentation");
  // Unique local, link-local, site-local and multicast at their edges.
  CHECK_FALSE(refused("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
  CHECK(range_of("fc00::") == "unique local");
  CHECK(range_of("fd00:ec2::254") == "unique local"); // AWS's IPv6 metadata
  CHECK(range_of("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff") == "unique local");
  CHECK_FALSE(refused("fe00::1"));
  CHECK_FALSE(refused("fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
  CHECK(range_of("fe80::") == "link-local");
  CHECK(range_of("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff") == "link-local");
  CHECK(range_of("fec0::1") == "site-local");
  CHECK(range_of("feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff") == "site-local");
  CHECK(range_of("ff02::1") == "multicast");
  CHECK(range_of("ff00::") == "multicast");
  for (const char* pub : {"2001:4860:4860::8888", "2606:4700:4700::1111", "2a00:1450:4001:82a::200e",
                          "2001:db9::1", "2003::1", "64:ff9b:2::1"})
    CHECK_FALSE(refused(pub));
  CHECK_FALSE(non_public_range(std::string_view("not an address")).has_value());
  CHECK_FALSE(non_public_range(std::string_view("localhost")).has_value());
  CHECK_FALSE(non_public_range(std::string_view("127.1")).has_value()); // inet_pton is strict
}

TEST_CASE("deny-private: socket addresses, families and text", "[downloader][address]") {
  using trawl::downloader::address_text;
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_addr.s_addr = htonl(parse_v4("127.0.0.1"));
  const auto* sa = reinterpret_cast<const sockaddr*>(&in);
  CHECK(non_public_range(sa, sizeof in) == "loopback");
  CHECK(address_text(sa, sizeof in) == "127.0.0.1");
  CHECK(non_public_range(sa, sizeof in - 1) == "not an IP address"); // short: not trusted

  in.sin_addr.s_addr = htonl(parse_v4("8.8.4.4"));
  CHECK(non_public_range(sa, sizeof in).empty());

  sockaddr_in6 in6{};
  in6.sin6_family = AF_INET6;
  REQUIRE(::inet_pton(AF_INET6, "::ffff:10.0.0.1", &in6.sin6_addr) == 1);
  const auto* sa6 = reinterpret_cast<const sockaddr*>(&in6);
  CHECK(non_public_range(sa6, sizeof in6) == "private (RFC 1918)");
  CHECK(address_text(sa6, sizeof in6) == "::ffff:10.0.0.1");

  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  std::strcpy(un.sun_path, "/tmp/x");
  CHECK(non_public_range(reinterpret_cast<const sockaddr*>(&un), sizeof un) == "not an IP address");
  CHECK(address_text(reinterpret_cast<const sockaddr*>(&un), sizeof un) == "?");
  CHECK(non_public_range(nullptr, 0) == "not an IP address");
}

TEST_CASE("open_gated_socket: a loopback connection gets its own receive buffer, others the "
          "kernel's autotuned default",
          "[downloader][address]") {
  using trawl::downloader::kLoopbackRecvBuffer;
  using trawl::downloader::open_gated_socket;
  using trawl::downloader::SocketGate;
  auto rcvbuf = [](int fd) {
    int v = 0;
    socklen_t len = sizeof v;
    REQUIRE(::getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, &len) == 0);
    return v;
  };
  // The kernel doubles what is asked (its bookkeeping), up to net.core.rmem_max.
  long rmem_max = 0;
  std::ifstream("/proc/sys/net/core/rmem_max") >> rmem_max;
  REQUIRE(rmem_max > 0);
  const long want = 2L * std::min<long>(kLoopbackRecvBuffer, rmem_max);

  const int plain = ::socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
  REQUIRE(plain >= 0);
  const int default_size = rcvbuf(plain);
  ::close(plain);
  REQUIRE(default_size != want); // else this test could not tell the two apart

  // As libcurl passes it: the address stored from `addr` on, in room for any family (an IPv6
  // address is longer than the struct's own sockaddr).
  auto open = [](const sockaddr* sa, socklen_t len, int family, SocketGate* gate) {
    alignas(curl_sockaddr) unsigned char buf[sizeof(curl_sockaddr) + sizeof(sockaddr_storage)] = {};
    auto* addr = reinterpret_cast<curl_sockaddr*>(buf);
    addr->family = family;
    addr->socktype = SOCK_STREAM;
    addr->protocol = IPPROTO_TCP;
    addr->addrlen = len;
    std::memcpy(buf + offsetof(curl_sockaddr, addr), sa, len);
    return open_gated_socket(gate, CURLSOCKTYPE_IPCXN, addr);
  };
  SocketGate no_filter;
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_port = htons(80);
  for (const char* loopback : {"127.0.0.1", "127.1.2.3"}) {
    INFO(loopback);
    in.sin_addr.s_addr = htonl(parse_v4(loopback));
    const int fd = open(reinterpret_cast<const sockaddr*>(&in), sizeof in, AF_INET, &no_filter);
    REQUIRE(fd >= 0);
    CHECK(rcvbuf(fd) == want);
    CHECK((::fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
    ::close(fd);
  }
  sockaddr_in6 in6{};
  in6.sin6_family = AF_INET6;
  in6.sin6_port = htons(80);
  REQUIRE(::inet_pton(AF_INET6, "::1", &in6.sin6_addr) == 1);
  if (const int fd =
          open(reinterpret_cast<const sockaddr*>(&in6), sizeof in6, AF_INET6, &no_filter);
      fd >= 0) { // a host without IPv6 refuses the socket: nothing to check then
    CHECK(rcvbuf(fd) == want);
    ::close(fd);
  }
  for (const char* other : {"8.8.4.4", "10.0.0.1", "192.0.2.1"}) {
    INFO(other);
    in.sin_addr.s_addr = htonl(parse_v4(other));
    const int fd = open(reinterpret_cast<const sockaddr*>(&in), sizeof in, AF_INET, &no_filter);
    REQUIRE(fd >= 0);
    CHECK(rcvbuf(fd) == default_size);
    ::close(fd);
  }
  // With --deny-private the loopback address is refused before any socket is made.
  SocketGate deny;
  deny.filter = &non_public_range;
  in.sin_addr.s_addr = htonl(parse_v4("127.0.0.1"));
  CHECK(open(reinterpret_cast<const sockaddr*>(&in), sizeof in, AF_INET, &deny) == CURL_SOCKET_BAD);
  CHECK(deny.refused == "127.0.0.1 (loopback)");
}
