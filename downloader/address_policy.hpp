// Where a transfer may connect: the address classifier behind `trawl download --deny-private`,
// and the libcurl open-socket callback that applies it. The check runs on the address libcurl is
// about to connect to, after DNS resolution and for every connection of a transfer (redirects
// included), so neither a hostile DNS answer (rebinding) nor a redirect to an internal host gets
// past it. Pure functions plus one callback; no state of its own.
#pragma once

#include <array>
#include <cstdint>
#include <curl/curl.h>
#include <optional>
#include <string>
#include <string_view>
#include <sys/socket.h>

#include "downloader/socket_book.hpp"

namespace trawl::downloader {

// The name of the non-public range that holds an IPv4 address (in host byte order), e.g.
// "loopback" or "private (RFC 1918)"; "" when the address is public.
std::string_view non_public_range_v4(std::uint32_t addr) noexcept;

// The same for IPv6 (16 bytes in network order). IPv4-mapped (::ffff:a.b.c.d), IPv4-translated
// (::ffff:0:a.b.c.d), NAT64 (64:ff9b::a.b.c.d) and 6to4 (2002:aabb:ccdd::) forms are judged by
// the IPv4 address they carry; the deprecated IPv4-compatible form (::a.b.c.d) is refused.
std::string_view non_public_range_v6(const std::array<std::uint8_t, 16>& addr) noexcept;

// For a socket address: AF_INET and AF_INET6 as above; any other family is refused ("not an IP
// address"). `len` is the size of the structure behind `sa`.
std::string_view non_public_range(const sockaddr* sa, socklen_t len) noexcept;

// For a numeric address in text ("10.1.2.3", "::1"); nullopt when the text is not one.
std::optional<std::string_view> non_public_range(std::string_view numeric);

// The address as text ("127.0.0.1", "::1"), or "?" when it is not an IP address.
std::string address_text(const sockaddr* sa, socklen_t len);

// Decides whether a connection to an address may be made: the reason it may not (a range name),
// or "" when it may. --deny-private uses non_public_range; tests may pass their own.
using AddressFilter = std::string_view (*)(const sockaddr* sa, socklen_t len) noexcept;

// What the open-socket callback needs and what it reports: set `filter`, point
// CURLOPT_OPENSOCKETDATA at this, read `refused` after the transfer.
struct SocketGate {
  AddressFilter filter = nullptr; // nullptr: every address is allowed
  std::string refused;            // "127.0.0.1 (loopback)" for the last address refused
  SocketBook* book = nullptr;     // told of every socket opened (see SocketBook); may be null
};

// The receive buffer of a connection to a loopback address. The kernel starts every socket at
// tcp_rmem's 128 KiB and grows it as the reader keeps up; over loopback, whose MSS is 64 KiB,
// that is a window of one or two segments, and a response that waits on it is ACK-clocked at the
// pace of delayed ACKs. Classic against nginx on 127.0.0.1, one downloader of 64: in 5 of 6
// probed jobs the loop sat 37-40 ms in epoll_wait with the last response unread although nginx
// had sent it; the job's last completion came 444-505 ms into it in 12 jobs without the buffer,
// 434-452 ms in 12 with 512 KiB or 1 MiB.
inline constexpr int kLoopbackRecvBuffer = 1 << 20;

// CURLOPT_OPENSOCKETFUNCTION: opens the socket libcurl asks for unless gate->filter refuses the
// address, in which case it records why and returns CURL_SOCKET_BAD (libcurl then tries the
// next address, or ends the transfer with CURLE_COULDNT_CONNECT). `gate` may have no filter.
// A socket to a loopback address gets kLoopbackRecvBuffer. gate->book, if any, books the socket
// as opened: the handle must then close its sockets with close_booked_socket on that book.
curl_socket_t open_gated_socket(void* gate, curlsocktype purpose, curl_sockaddr* addr);

} // namespace trawl::downloader
