// CurveZMQ for trawl: key pairs (`trawl keygen`), the key files every actor reads, the flags that
// name them, and the socket options that make a socket a CURVE server or client.
//
// Who is server and who is client follows who binds: the ventilator's links, tasks and acks
// sockets and the sink's results socket are servers; the fetcher, the downloaders, the
// ventilator's PUSH to the sink and the sink's PUSH to the ventilator are clients. A server accepts
// only the clients whose public key is authorised (checked by the ZAP handler, common/zap.hpp);
// libzmq encrypts every frame once the handshake is done.
//
// Files: a secret file holds "public-key = Z85" and "secret-key = Z85" lines (mode 0600); a
// public file holds the 40-character Z85 public key; an authorised-keys file holds one public key
// per line ('#' comments and blank lines skipped), and an authorised-keys directory holds one
// public key per `*.pub` file.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>
#include <zmq.hpp>

namespace CLI {
class App;
}

namespace trawl {

struct CurveKeyPair {
  std::string public_z85; // 40 characters
  std::string secret_z85; // 40 characters
};

// The CurveZMQ flags of one actor. Servers (vent, sink) use all of them; clients (download,
// fetch) only secret_file, server_file (and sink_server_file for the downloader).
struct CurveOptions {
  std::string secret_file;      // --curve-secret: this process's key pair
  std::string server_file;      // --curve-server: the public key of the server we connect to
  std::string sink_server_file; // --curve-sink-server: the sink's key when it differs (download)
  std::string authorized;       // --curve-authorized: FILE or DIR of client public keys
  bool insecure = false;        // --insecure: bind beyond loopback without keys
};

// Which flags an actor offers.
enum class CurveRole {
  server,     // vent, sink: secret, authorized, server (for their own PUSH), insecure
  client,     // fetch: secret, server
  downloader, // download: secret, server, sink-server
};

// Registers the --curve-* (and for servers --insecure) flags on `cmd`.
void add_curve_options(CLI::App& cmd, CurveOptions& o, CurveRole role);

// True when this libzmq was built with CURVE support (zmq_has("curve")).
bool curve_available();

// A fresh key pair. Throws std::runtime_error when libzmq has no CURVE support.
CurveKeyPair generate_keypair();

// True for a 40-character string of the Z85 alphabet that decodes to 32 bytes.
bool is_z85_key(std::string_view s);

// The public key that belongs to a Z85 secret key. Throws std::runtime_error on a bad key.
std::string public_from_secret(const std::string& secret_z85);

// Writes BASE.key (the pair, mode 0600, created exclusively) and BASE.pub. Refuses to replace
// existing files unless `force`. Throws std::runtime_error with the path on any failure.
void write_keypair(const CurveKeyPair& pair, const std::string& base, bool force);

// Reads a secret file (also accepts a bare Z85 secret key on its first key line); checks that a
// public key, when present, matches the secret. Throws std::runtime_error naming the file.
CurveKeyPair read_secret_file(const std::string& path);

// Reads the first key of a public-key file (a secret file is accepted too: its public key is
// used). Throws std::runtime_error naming the file.
std::string read_public_file(const std::string& path);

// Public keys from a file (one per line) or a directory (every *.pub file). Throws
// std::runtime_error naming the file and line of a malformed key, or when `path` is missing.
std::vector<std::string> read_authorized(const std::string& path);

// What an actor's flags amount to, loaded once at start.
class CurveSetup {
public:
  // Disabled (no keys) when no --curve-* flag is set. Throws std::runtime_error for unreadable
  // or malformed key files, a missing counterpart flag (e.g. --curve-secret without
  // --curve-authorized on a server) or a libzmq without CURVE.
  CurveSetup(const CurveOptions& o, CurveRole role);

  bool enabled() const { return enabled_; }
  bool insecure() const { return insecure_; }
  const CurveKeyPair& own() const { return own_; }
  const std::string& authorized_source() const { return authorized_; }

  // Makes `s` a CURVE server with our key pair and the "trawl" ZAP domain. Call before bind.
  void make_server(zmq::socket_t& s) const;
  // Makes `s` a CURVE client of the server with public key --curve-server (or, for a server
  // actor without that flag, our own public key: vent and sink may share one pair).
  void make_client(zmq::socket_t& s) const;
  // The same for the downloader's connection to the sink (--curve-sink-server, else
  // --curve-server).
  void make_sink_client(zmq::socket_t& s) const;

  // Refuses (std::runtime_error) to bind an endpoint that other hosts can reach when there are
  // no keys and --insecure was not given. ipc://, inproc:// and loopback tcp:// are allowed.
  void check_bind(const std::vector<std::string>& endpoints) const;

private:
  bool enabled_ = false;
  bool insecure_ = false;
  CurveKeyPair own_;
  std::string server_public_;
  std::string sink_server_public_;
  std::string authorized_;
};

// True when binding `endpoint` exposes it to loopback only: ipc://, inproc://, and tcp:// on
// 127.0.0.0/8, ::1, localhost or the interface "lo". False for wildcards (*, 0.0.0.0, ::), other
// addresses and interfaces, and other transports.
bool is_local_endpoint(const std::string& endpoint);

} // namespace trawl
