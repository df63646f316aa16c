// CurveZMQ: key files, the bind policy without keys, and the ZAP handler refusing unauthorised,
// keyless and wrong-server-key clients on a real ROUTER in this process (tcp on loopback).
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

#include "common/curve.hpp"
#include "common/zap.hpp"
#include "tests/support/process.hpp"

using namespace trawl;
using trawl::testsupport::TempDir;

namespace {

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::trunc) << text;
}

std::string make_keys(const TempDir& dir, const std::string& name) {
  write_keypair(generate_keypair(), dir / name, false);
  return dir / name;
}

// Sends `text` from `client` and reports whether `server` (a ROUTER) received it within `wait`.
bool delivered(zmq::socket_t& client, zmq::socket_t& server, const std::string& text,
               std::chrono::milliseconds wait = std::chrono::milliseconds(1500)) {
  (void)client.send(zmq::buffer(text), zmq::send_flags::dontwait);
  const auto deadline = std::chrono::steady_clock::now() + wait;
  while (std::chrono::steady_clock::now() < deadline) {
    zmq::pollitem_t item{server.handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, std::chrono::milliseconds(50));
    if (item.revents & ZMQ_POLLIN) {
      zmq::message_t id, body;
      (void)server.recv(id);
      (void)server.recv(body);
      if (body.to_string() == text) return true;
    }
  }
  return false;
}

zmq::socket_t client_socket(zmq::context_t& ctx) {
  zmq::socket_t s(ctx, zmq::socket_type::dealer);
  s.set(zmq::sockopt::linger, 0);
  s.set(zmq::sockopt::reconnect_ivl, 10);
  return s;
}

} // namespace

TEST_CASE("keygen writes a key pair that reads back, the secret 0600", "[curve]") {
  REQUIRE(curve_available()); // Debian's libzmq5 is built with libsodium
  TempDir dir;
  const auto pair = generate_keypair();
  CHECK(is_z85_key(pair.public_z85));
  CHECK(is_z85_key(pair.secret_z85));
  write_keypair(pair, dir / "node", false);
  struct stat st {};
  REQUIRE(::stat((dir / "node.key").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  const auto back = read_secret_file(dir / "node.key");
  CHECK(back.public_z85 == pair.public_z85);
  CHECK(back.secret_z85 == pair.secret_z85);
  CHECK(read_public_file(dir / "node.pub") == pair.public_z85);
  CHECK(read_public_file(dir / "node.key") == pair.public_z85); // derived from the secret
  CHECK(public_from_secret(pair.secret_z85) == pair.public_z85);
  // Never replaced silently.
  CHECK_THROWS_WITH(write_keypair(generate_keypair(), dir / "node", false),
                    Catch::Contains("exists"));
  const auto other = generate_keypair();
  write_keypair(other, dir / "node", true);
  CHECK(read_secret_file(dir / "node.key").public_z85 == other.public_z85);
}

TEST_CASE("bad key files are refused with the file and line named", "[curve]") {
  REQUIRE(curve_available()); // Debian's libzmq5 is built with libsodium
  TempDir dir;
  const auto pair = generate_keypair();
  write_text(dir / "short.pub", "abc\n");
  CHECK_THROWS_WITH(read_public_file(dir / "short.pub"), Catch::Contains("short.pub:1"));
  write_text(dir / "auth", "# nodes\n" + pair.public_z85 + "\n\n" + std::string(40, '"') + "\n");
  CHECK_THROWS_WITH(read_authorized(dir / "auth"), Catch::Contains("auth:4"));
  write_text(dir / "secret-in-auth", "secret-key = " + pair.secret_z85 + "\n");
  CHECK_THROWS_WITH(read_authorized(dir / "secret-in-auth"), Catch::Contains("secret key"));
  CHECK_THROWS_WITH(read_authorized(dir / "missing"), Catch::Contains("no such file"));
  // A public key that does not belong to the secret.
  write_text(dir / "mixed.key", "public-key = " + generate_keypair().public_z85 +
                                    "\nsecret-key = " + pair.secret_z85 + "\n");
  ::chmod((dir / "mixed.key").c_str(), 0600);
  CHECK_THROWS_WITH(read_secret_file(dir / "mixed.key"), Catch::Contains("does not belong"));
  // A secret readable by others.
  write_keypair(pair, dir / "open", false);
  ::chmod((dir / "open.key").c_str(), 0644);
  CHECK_THROWS_WITH(read_secret_file(dir / "open.key"), Catch::Contains("chmod 600"));
}

TEST_CASE("authorised keys from a file or a directory of .pub files", "[curve]") {
  REQUIRE(curve_available()); // Debian's libzmq5 is built with libsodium
  TempDir dir;
  const auto a = generate_keypair(), b = generate_keypair();
  write_text(dir / "list", "# allowed\n" + a.public_z85 + "\n  " + b.public_z85 + "  \n");
  CHECK(read_authorized(dir / "list") == std::vector<std::string>{a.public_z85, b.public_z85});
  std::filesystem::create_directory(dir / "keys");
  write_text(dir / "keys/a.pub", a.public_z85 + "\n");
  write_text(dir / "keys/notes.txt", "not a key\n"); // ignored: not *.pub
  CHECK(read_authorized(dir / "keys") == std::vector<std::string>{a.public_z85});
}

TEST_CASE("without keys only loopback and ipc may be bound, unless --insecure", "[curve]") {
  for (const char* ep : {"ipc:///tmp/x", "inproc://x", "tcp://127.0.0.1:5558", "tcp://127.9.8.7:*",
                         "tcp://localhost:1", "tcp://lo:5558", "tcp://[::1]:5558", "tcp://::1:5"})
    CHECK(is_local_endpoint(ep));
  for (const char* ep : {"tcp://*:5558", "tcp://0.0.0.0:5558", "tcp://10.1.2.3:5558",
                         "tcp://eth0:5558", "tcp://[::]:5558", "tcp://128.0.0.1:1",
                         "tcp://192.168.1.1:*", "pgm://eth0;239.1.1.1:5555", "ws://0.0.0.0:1"})
    CHECK_FALSE(is_local_endpoint(ep));

  CurveOptions none;
  const CurveSetup plain(none, CurveRole::server);
  CHECK_FALSE(plain.enabled());
  CHECK_NOTHROW(plain.check_bind({"tcp://127.0.0.1:*", "ipc:///tmp/trawl-x"}));
  CHECK_THROWS_WITH(plain.check_bind({"tcp://127.0.0.1:*", "tcp://0.0.0.0:5558"}),
                    Catch::Contains("refusing to bind tcp://0.0.0.0:5558") &&
                        Catch::Contains("--insecure"));
  CurveOptions insecure;
  insecure.insecure = true;
  CHECK_NOTHROW(CurveSetup(insecure, CurveRole::server).check_bind({"tcp://*:5558"}));
}

TEST_CASE("curve flags must come in working combinations", "[curve]") {
  REQUIRE(curve_available()); // Debian's libzmq5 is built with libsodium
  TempDir dir;
  const auto server = make_keys(dir, "server");
  CurveOptions o;
  o.secret_file = server + ".key";
  CHECK_THROWS_WITH(CurveSetup(o, CurveRole::server), Catch::Contains("--curve-authorized"));
  CHECK_THROWS_WITH(CurveSetup(o, CurveRole::downloader), Catch::Contains("--curve-server"));
  CurveOptions only_server;
  only_server.server_file = server + ".pub";
  CHECK_THROWS_WITH(CurveSetup(only_server, CurveRole::client), Catch::Contains("--curve-secret"));
  o.authorized = server + ".pub";
  const CurveSetup ok(o, CurveRole::server);
  CHECK(ok.enabled());
  CHECK_NOTHROW(ok.check_bind({"tcp://0.0.0.0:5558"})); // keys: any address
}

TEST_CASE("the ZAP handler admits authorised keys only", "[curve]") {
  REQUIRE(curve_available()); // Debian's libzmq5 is built with libsodium
  TempDir dir;
  const auto server = make_keys(dir, "server");
  const auto good = make_keys(dir, "good");
  const auto bad = make_keys(dir, "bad");
  const auto late = make_keys(dir, "late");
  std::filesystem::create_directory(dir / "authorized");
  std::filesystem::copy_file(good + ".pub", dir / "authorized/good.pub");

  CurveOptions so;
  so.secret_file = server + ".key";
  so.authorized = dir / "authorized";
  const CurveSetup server_setup(so, CurveRole::server);

  zmq::context_t ctx(1);
  std::optional<ZapHandler> zap;
  zmq::socket_t router(ctx, zmq::socket_type::router);
  router.set(zmq::sockopt::linger, 0);
  server_setup.make_server(router);
  zap.emplace(ctx, server_setup,
              std::vector<std::pair<zmq::socket_t*, std::string>>{{&router, "test"}});
  router.bind("tcp://127.0.0.1:*");
  const std::string ep = router.get(zmq::sockopt::last_endpoint);

  const auto client_setup = [&](const std::string& base, const std::string& server_pub) {
    CurveOptions co;
    co.secret_file = base + ".key";
    co.server_file = server_pub;
    return CurveSetup(co, CurveRole::client);
  };

  zmq::context_t cctx(1);
  SECTION("an authorised client is heard") {
    auto c = client_socket(cctx);
    client_setup(good, server + ".pub").make_client(c);
    c.connect(ep);
    CHECK(delivered(c, router, "hello"));
    CHECK(zap->accepted() >= 1);
  }
  SECTION("an unknown key, no key, or a wrong server key is not") {
    auto wrong_key = client_socket(cctx);
    client_setup(bad, server + ".pub").make_client(wrong_key);
    wrong_key.connect(ep);
    auto no_key = client_socket(cctx);
    no_key.connect(ep);
    auto wrong_server = client_socket(cctx);
    client_setup(good, bad + ".pub").make_client(wrong_server);
    wrong_server.connect(ep);
    CHECK_FALSE(delivered(wrong_key, router, "from a stranger"));
    CHECK_FALSE(delivered(no_key, router, "in the clear"));
    CHECK_FALSE(delivered(wrong_server, router, "to the wrong server"));
    CHECK(zap->refused() >= 1);
    CHECK(zap->accepted() == 0);
  }
  SECTION("a key added to the authorised directory is accepted without a server restart") {
    // libzmq does not retry a handshake the server refused: the refused node must reconnect
    // (restart) once its key is authorised.
    auto early = client_socket(cctx);
    client_setup(late, server + ".pub").make_client(early);
    early.connect(ep);
    CHECK_FALSE(delivered(early, router, "too early", std::chrono::milliseconds(500)));
    std::filesystem::copy_file(late + ".pub", dir / "authorized/late.pub");
    auto again = client_socket(cctx);
    client_setup(late, server + ".pub").make_client(again);
    again.connect(ep);
    CHECK(delivered(again, router, "now"));
  }
}

TEST_CASE("a CURVE server announces CURVE in its ZMTP greeting", "[curve]") {
  REQUIRE(curve_available()); // Debian's libzmq5 is built with libsodium
  TempDir dir;
  const auto server = make_keys(dir, "server");
  CurveOptions so;
  so.secret_file = server + ".key";
  so.authorized = server + ".pub";
  const CurveSetup setup(so, CurveRole::server);
  zmq::context_t ctx(1);
  std::optional<ZapHandler> zap;
  zmq::socket_t pull(ctx, zmq::socket_type::pull);
  pull.set(zmq::sockopt::linger, 0);
  setup.make_server(pull);
  zap.emplace(ctx, setup, std::vector<std::pair<zmq::socket_t*, std::string>>{});
  pull.bind("tcp://127.0.0.1:*");
  const std::string ep = pull.get(zmq::sockopt::last_endpoint);
  const int port = std::stoi(ep.substr(ep.rfind(':') + 1));

  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  timeval tv{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  // The start of a ZMTP 3 greeting: signature and major version. The server answers with its whole
  // greeting, mechanism included, before it needs ours (sending ours with a NULL mechanism would
  // make it close at once, and the reset could discard its greeting before we read it).
  const unsigned char greeting[11] = {0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 3};
  REQUIRE(::write(fd, greeting, sizeof greeting) == 11);
  unsigned char got[64] = {};
  std::size_t have = 0;
  while (have < sizeof got) {
    const auto n = ::read(fd, got + have, sizeof got - have);
    if (n <= 0) break;
    have += static_cast<std::size_t>(n);
  }
  ::close(fd);
  REQUIRE(have == 64);
  CHECK(got[0] == 0xff);
  CHECK(got[10] == 3);
  CHECK(std::string(reinterpret_cast<char*>(got + 12), 5) == "CURVE");
}
