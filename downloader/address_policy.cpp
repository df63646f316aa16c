#include "downloader/address_policy.hpp"

#include <arpa/inet.h>
#include <cstring>
#include <netinet/in.h>
#include <new>
#include <sys/socket.h>

namespace trawl::downloader {
namespace {

struct RangeV4 {
  std::uint32_t base;
  int prefix;
  std::string_view name;
};

constexpr std::uint32_t v4(unsigned a, unsigned b, unsigned c, unsigned d) {
  return (a << 24) | (b << 16) | (c << 8) | d;
}

// IANA's special-purpose IPv4 registry, less what is routable on the internet. Order matters
// only where ranges nest: the metadata address comes before link-local.
constexpr RangeV4 kRangesV4[] = {
    {v4(169, 254, 169, 254), 32, "cloud metadata"},
    {v4(0, 0, 0, 0), 8, "this network"}, // connecting to 0.0.0.0 reaches the local host
    {v4(10, 0, 0, 0), 8, "private (RFC 1918)"},
    {v4(100, 64, 0, 0), 10, "shared address space (CGNAT)"},
    {v4(127, 0, 0, 0), 8, "loopback"},
    {v4(169, 254, 0, 0), 16, "link-local"},
    {v4(172, 16, 0, 0), 12, "private (RFC 1918)"},
    {v4(192, 0, 0, 0), 24, "IETF protocol assignments"}, // holds 192.0.0.192, a metadata address
    {v4(192, 0, 2, 0), 24, "documentation"},
    {v4(192, 168, 0, 0), 16, "private (RFC 1918)"},
    {v4(198, 18, 0, 0), 15, "benchmarking"},
    {v4(198, 51, 100, 0), 24, "documentation"},
    {v4(203, 0, 113, 0), 24, "documentation"},
    {v4(224, 0, 0, 0), 4, "multicast"},
    {v4(240, 0, 0, 0), 4, "reserved"}, // includes 255.255.255.255, broadcast
};

bool in_v4(std::uint32_t addr, const RangeV4& r) {
  const std::uint32_t mask = r.prefix == 0 ? 0 : ~std::uint32_t{0} << (32 - r.prefix);
  return (addr & mask) == (r.base & mask);
}

std::uint32_t v4_at(const std::array<std::uint8_t, 16>& a, std::size_t i) {
  return (std::uint32_t{a[i]} << 24) | (std::uint32_t{a[i + 1]} << 16) |
         (std::uint32_t{a[i + 2]} << 8) | std::uint32_t{a[i + 3]};
}

bool all_zero(const std::array<std::uint8_t, 16>& a, std::size_t from, std::size_t to) {
  for (std::size_t i = from; i < to; ++i)
    if (a[i] != 0) return false;
  return true;
}

} // namespace

std::string_view non_public_range_v4(std::uint32_t addr) noexcept {
  for (const auto& r : kRangesV4)
    if (in_v4(addr, r)) return r.name;
  return {};
}

std::string_view non_public_range_v6(const std::array<std::uint8_t, 16>& a) noexcept {
  if (all_zero(a, 0, 12)) {
    if (all_zero(a, 12, 15) && a[15] == 0) return "unspecified";
    if (all_zero(a, 12, 15) && a[15] == 1) return "loopback";
    return "IPv4-compatible (deprecated)"; // ::a.b.c.d, never routed
  }
  // ::ffff:a.b.c.d (IPv4-mapped) and ::ffff:0:a.b.c.d (IPv4-translated): the IPv4 address decides.
  if (all_zero(a, 0, 10) && a[10] == 0xff && a[11] == 0xff) return non_public_range_v4(v4_at(a, 12));
  if (all_zero(a, 0, 8) && a[8] == 0xff && a[9] == 0xff && a[10] == 0 && a[11] == 0)
    return non_public_range_v4(v4_at(a, 12));
  // 64:ff9b::/96, the well-known NAT64 prefix: a NAT64 gateway connects to the IPv4 address.
  if (a[0] == 0x00 && a[1] == 0x64 && a[2] == 0xff && a[3] == 0x9b && all_zero(a, 4, 12))
    return non_public_range_v4(v4_at(a, 12));
  // 64:ff9b:1::/48, NAT64 for local use.
  if (a[0] == 0x00 && a[1] == 0x64 && a[2] == 0xff && a[3] == 0x9b && a[4] == 0x00 && a[5] == 0x01)
    return "NAT64 local use";
  // 100::/64, discard only.
  if (a[0] == 0x01 && a[1] == 0x00 && all_zero(a, 2, 8)) return "discard-only";
  // 2001:db8::/32, documentation.
  if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0d && a[3] == 0xb8) return "documentation";
  // 2002::/16, 6to4: the relay delivers to the IPv4 address in bits 16..47.
  if (a[0] == 0x20 && a[1] == 0x02) return non_public_range_v4(v4_at(a, 2));
  if ((a[0] & 0xfe) == 0xfc) return "unique local"; // fc00::/7 (holds fd00:ec2::254, metadata)
  if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) return "link-local"; // fe80::/10
  if (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0) return "site-local";  // fec0::/10, deprecated
  if (a[0] == 0xff) return "multicast";                            // ff00::/8
  return {};
}

std::string_view non_public_range(const sockaddr* sa, socklen_t len) noexcept {
  if (sa == nullptr) return "not an IP address";
  if (sa->sa_family == AF_INET && len >= static_cast<socklen_t>(sizeof(sockaddr_in))) {
    sockaddr_in in{};
    std::memcpy(&in, sa, sizeof in);
    return non_public_range_v4(ntohl(in.sin_addr.s_addr));
  }
  if (sa->sa_family == AF_INET6 && len >= static_cast<socklen_t>(sizeof(sockaddr_in6))) {
    sockaddr_in6 in6{};
    std::memcpy(&in6, sa, sizeof in6);
    std::array<std::uint8_t, 16> a{};
    std::memcpy(a.data(), &in6.sin6_addr, a.size());
    return non_public_range_v6(a);
  }
  return "not an IP address";
}

std::optional<std::string_view> non_public_range(std::string_view numeric) {
  const std::string text(numeric);
  in_addr a4{};
  if (::inet_pton(AF_INET, text.c_str(), &a4) == 1) return non_public_range_v4(ntohl(a4.s_addr));
  in6_addr a6{};
  if (::inet_pton(AF_INET6, text.c_str(), &a6) == 1) {
    std::array<std::uint8_t, 16> a{};
    std::memcpy(a.data(), &a6, a.size());
    return non_public_range_v6(a);
  }
  return std::nullopt;
}

std::string address_text(const sockaddr* sa, socklen_t len) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (sa != nullptr && sa->sa_family == AF_INET &&
      len >= static_cast<socklen_t>(sizeof(sockaddr_in))) {
    sockaddr_in in{};
    std::memcpy(&in, sa, sizeof in);
    if (::inet_ntop(AF_INET, &in.sin_addr, buf, sizeof buf)) return buf;
  } else if (sa != nullptr && sa->sa_family == AF_INET6 &&
             len >= static_cast<socklen_t>(sizeof(sockaddr_in6))) {
    sockaddr_in6 in6{};
    std::memcpy(&in6, sa, sizeof in6);
    if (::inet_ntop(AF_INET6, &in6.sin6_addr, buf, sizeof buf)) return buf;
  }
  return "?";
}

curl_socket_t open_gated_socket(void* gate_ptr, curlsocktype purpose, curl_sockaddr* addr) {
  auto* gate = static_cast<SocketGate*>(gate_ptr);
  if (purpose != CURLSOCKTYPE_IPCXN) return CURL_SOCKET_BAD; // only outgoing connections
  if (gate != nullptr && gate->filter != nullptr) {
    const std::string_view why = gate->filter(&addr->addr, addr->addrlen);
    if (!why.empty()) {
      // Keep the first refusal: with several addresses (IPv6 and IPv4) it names the one the
      // host name resolved to first.
      if (gate->refused.empty())
        gate->refused = address_text(&addr->addr, addr->addrlen) + " (" + std::string(why) + ")";
      return CURL_SOCKET_BAD;
    }
  }
  const curl_socket_t fd = ::socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
  // Loopback only (its MSS is 64 KiB and its round trip microseconds): a receive buffer of its
  // own, so that the window is never one or two segments (see kLoopbackRecvBuffer). Elsewhere
  // the kernel's autotuning stays, which a fixed size would turn off. A refusal changes nothing.
  if (fd != CURL_SOCKET_BAD && non_public_range(&addr->addr, addr->addrlen) == "loopback") {
    const int size = kLoopbackRecvBuffer;
    (void)::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  }
  if (fd != CURL_SOCKET_BAD && gate != nullptr && gate->book != nullptr) {
    try {
      gate->book->opened(fd);
    } catch (const std::bad_alloc&) { // not booked: a socket like any other, never parked
    }
  }
  return fd;
}

} // namespace trawl::downloader
