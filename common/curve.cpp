#include "common/curve.hpp"

#include <CLI/CLI.hpp>
#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <netinet/in.h>
#include <stdexcept>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

namespace trawl {
namespace fs = std::filesystem;

namespace {

std::string trim(std::string_view s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return "";
  const auto e = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(b, e - b + 1));
}

// The key lines of a key file: "name = value" or a bare value; comments and blanks skipped.
struct KeyLine {
  std::string name; // "" for a bare key
  std::string value;
  int line = 0;
};

std::vector<KeyLine> read_key_lines(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read key file " + path + ": " + std::strerror(errno));
  std::vector<KeyLine> out;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (n > 10000) throw std::runtime_error("key file " + path + " is too long");
    std::string t = trim(line);
    // '#' is also a Z85 character: a line that is exactly a key is a key, not a comment.
    if (t.empty() || (t[0] == '#' && !is_z85_key(t))) continue;
    KeyLine k;
    k.line = n;
    if (const auto eq = t.find('='); eq != std::string::npos && eq < 20 && eq + 1 < t.size()) {
      // Z85 has '=' in its alphabet, but never as a key's last character only: a "name =" prefix
      // is recognised by its name.
      const std::string name = trim(std::string_view(t).substr(0, eq));
      if (name == "public-key" || name == "secret-key") {
        k.name = name;
        t = trim(std::string_view(t).substr(eq + 1));
      }
    }
    k.value = t;
    out.push_back(std::move(k));
  }
  return out;
}

void require_key(const KeyLine& k, const std::string& path) {
  if (!is_z85_key(k.value))
    throw std::runtime_error(path + ":" + std::to_string(k.line) +
                             ": not a CurveZMQ key (40 Z85 characters expected)");
}

} // namespace

void add_curve_options(CLI::App& cmd, CurveOptions& o, CurveRole role) {
  cmd.add_option("--curve-secret", o.secret_file,
                 "CurveZMQ: this process's key pair (a NAME.key file from `trawl keygen`); with "
                 "it, every connection is authenticated and encrypted")
      ->type_name("FILE");
  if (role == CurveRole::server) {
    cmd.add_option("--curve-authorized", o.authorized,
                   "CurveZMQ: public keys of the clients allowed in: a file with one Z85 key per "
                   "line, or a directory of *.pub files (re-read when an unknown key knocks, so a "
                   "key added there is accepted without a restart). This process's own key is "
                   "always allowed. Needed with --curve-secret")
        ->type_name("FILE|DIR");
    cmd.add_option("--curve-server", o.server_file,
                   "CurveZMQ: public key of the peer this server connects to (the sink's for the "
                   "ventilator, the ventilator's for the sink); default: our own public key (one "
                   "pair shared by vent and sink)")
        ->type_name("FILE");
    cmd.add_flag("--insecure", o.insecure,
                 "Allow binding endpoints other hosts can reach (tcp://*, 0.0.0.0, a non-loopback "
                 "address or interface) without CurveZMQ keys: anyone who reaches them can take "
                 "tasks and send results. Without keys and without this flag only ipc:// and "
                 "loopback tcp:// may be bound");
  } else {
    cmd.add_option("--curve-server", o.server_file,
                   role == CurveRole::downloader
                       ? "CurveZMQ: the ventilator's public key (NAME.pub), also used for the "
                         "sink unless --curve-sink-server is given; needed with --curve-secret"
                       : "CurveZMQ: the ventilator's public key (NAME.pub); needed with "
                         "--curve-secret")
        ->type_name("FILE");
  }
  if (role == CurveRole::downloader)
    cmd.add_option("--curve-sink-server", o.sink_server_file,
                   "CurveZMQ: the sink's public key when the sink has its own pair (default: "
                   "--curve-server)")
        ->type_name("FILE");
}

bool curve_available() { return zmq_has("curve") != 0; }

CurveKeyPair generate_keypair() {
  if (!curve_available())
    throw std::runtime_error("this libzmq was built without CURVE support (zmq_has(\"curve\") is "
                             "false): install a libzmq built with libsodium");
  char pub[41] = {};
  char sec[41] = {};
  if (zmq_curve_keypair(pub, sec) != 0)
    throw std::runtime_error(std::string("zmq_curve_keypair failed: ") + zmq_strerror(zmq_errno()));
  return {pub, sec};
}

bool is_z85_key(std::string_view s) {
  if (s.size() != 40) return false;
  std::string copy(s);
  std::uint8_t out[32];
  return zmq_z85_decode(out, copy.c_str()) != nullptr;
}

std::string public_from_secret(const std::string& secret_z85) {
  if (!is_z85_key(secret_z85)) throw std::runtime_error("not a CurveZMQ secret key");
  char pub[41] = {};
  if (zmq_curve_public(pub, secret_z85.c_str()) != 0)
    throw std::runtime_error(std::string("cannot derive the public key: ") +
                             zmq_strerror(zmq_errno()));
  return pub;
}

void write_keypair(const CurveKeyPair& pair, const std::string& base, bool force) {
  const std::string key_path = base + ".key";
  const std::string pub_path = base + ".pub";
  if (!force)
    for (const auto& p : {key_path, pub_path})
      if (std::error_code ec; fs::exists(p, ec))
        throw std::runtime_error(p + " exists (use --force to replace it)");
  if (force) {
    ::unlink(key_path.c_str()); // a fresh inode: an old file's wider mode is not kept
  }
  const int fd = ::open(key_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("cannot create " + key_path + ": " + std::strerror(errno));
  const std::string secret_text =
      "# trawl CurveZMQ key pair: keep this file secret (mode 0600)\npublic-key = " +
      pair.public_z85 + "\nsecret-key = " + pair.secret_z85 + "\n";
  const bool ok = ::fchmod(fd, 0600) == 0 &&
                  ::write(fd, secret_text.data(), secret_text.size()) ==
                      static_cast<ssize_t>(secret_text.size()) &&
                  ::fsync(fd) == 0;
  const int saved = errno;
  ::close(fd);
  if (!ok) throw std::runtime_error("cannot write " + key_path + ": " + std::strerror(saved));
  std::ofstream pub(pub_path, std::ios::trunc);
  pub << pair.public_z85 << '\n';
  if (!pub.flush()) throw std::runtime_error("cannot write " + pub_path);
}

CurveKeyPair read_secret_file(const std::string& path) {
  CurveKeyPair pair;
  for (const auto& k : read_key_lines(path)) {
    require_key(k, path);
    if (k.name == "public-key") pair.public_z85 = k.value;
    else if (k.name == "secret-key" || (k.name.empty() && pair.secret_z85.empty()))
      pair.secret_z85 = k.value;
  }
  if (pair.secret_z85.empty())
    throw std::runtime_error(path + ": no secret key (expected a NAME.key file from trawl keygen)");
  const std::string derived = public_from_secret(pair.secret_z85);
  if (!pair.public_z85.empty() && pair.public_z85 != derived)
    throw std::runtime_error(path + ": its public key does not belong to its secret key");
  pair.public_z85 = derived;
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && (st.st_mode & 0077) != 0)
    throw std::runtime_error(path + ": a secret key must not be readable by others (chmod 600)");
  return pair;
}

std::string read_public_file(const std::string& path) {
  const auto lines = read_key_lines(path);
  for (const auto& k : lines) {
    require_key(k, path);
    if (k.name.empty() || k.name == "public-key") return k.value;
  }
  for (const auto& k : lines)
    if (k.name == "secret-key") return public_from_secret(k.value);
  throw std::runtime_error(path + ": no public key");
}

std::vector<std::string> read_authorized(const std::string& path) {
  std::error_code ec;
  std::vector<std::string> files;
  if (fs::is_directory(path, ec)) {
    for (const auto& e : fs::directory_iterator(path, ec))
      if (e.path().extension() == ".pub" && e.is_regular_file(ec)) files.push_back(e.path());
    if (ec) throw std::runtime_error("cannot list " + path + ": " + ec.message());
  } else if (fs::is_regular_file(path, ec)) {
    files.push_back(path);
  } else {
    throw std::runtime_error("authorised keys " + path + ": no such file or directory");
  }
  std::vector<std::string> keys;
  for (const auto& f : files)
    for (const auto& k : read_key_lines(f)) {
      require_key(k, f);
      if (k.name == "secret-key")
        throw std::runtime_error(f + ": a secret key in the authorised keys (use the .pub file)");
      keys.push_back(k.value);
    }
  return keys;
}

CurveSetup::CurveSetup(const CurveOptions& o, CurveRole role) : insecure_(o.insecure) {
  const bool any = !o.secret_file.empty() || !o.server_file.empty() ||
                   !o.sink_server_file.empty() || !o.authorized.empty();
  if (!any) return;
  if (!curve_available())
    throw std::runtime_error("--curve-* given, but this libzmq was built without CURVE support "
                             "(zmq_has(\"curve\") is false)");
  if (o.secret_file.empty())
    throw std::runtime_error("--curve-server/--curve-authorized need --curve-secret (this "
                             "process's key pair, from trawl keygen)");
  own_ = read_secret_file(o.secret_file);
  if (role == CurveRole::server) {
    if (o.authorized.empty())
      throw std::runtime_error("--curve-secret on a server needs --curve-authorized (the public "
                               "keys of the nodes allowed in)");
    (void)read_authorized(o.authorized); // fail now, at start, on a bad file
    authorized_ = o.authorized;
    server_public_ = o.server_file.empty() ? own_.public_z85 : read_public_file(o.server_file);
  } else {
    if (o.server_file.empty())
      throw std::runtime_error("--curve-secret needs --curve-server (the ventilator's public key)");
    server_public_ = read_public_file(o.server_file);
  }
  sink_server_public_ =
      o.sink_server_file.empty() ? server_public_ : read_public_file(o.sink_server_file);
  enabled_ = true;
}

void CurveSetup::make_server(zmq::socket_t& s) const {
  if (!enabled_) return;
  s.set(zmq::sockopt::curve_server, 1);
  s.set(zmq::sockopt::curve_secretkey, own_.secret_z85);
  // With a domain set, libzmq asks the ZAP handler about every connection.
  s.set(zmq::sockopt::zap_domain, "trawl");
}

namespace {
void make_client_of(zmq::socket_t& s, const CurveKeyPair& own, const std::string& server) {
  s.set(zmq::sockopt::curve_serverkey, server);
  s.set(zmq::sockopt::curve_publickey, own.public_z85);
  s.set(zmq::sockopt::curve_secretkey, own.secret_z85);
}
} // namespace

void CurveSetup::make_client(zmq::socket_t& s) const {
  if (enabled_) make_client_of(s, own_, server_public_);
}

void CurveSetup::make_sink_client(zmq::socket_t& s) const {
  if (enabled_) make_client_of(s, own_, sink_server_public_);
}

void CurveSetup::check_bind(const std::vector<std::string>& endpoints) const {
  if (enabled_ || insecure_) return;
  for (const auto& ep : endpoints)
    if (!is_local_endpoint(ep))
      throw std::runtime_error(
          "refusing to bind " + ep +
          " without CurveZMQ keys: other hosts could take tasks and send results. Give "
          "--curve-secret and --curve-authorized (see trawl keygen), bind loopback or ipc://, or "
          "pass --insecure on a trusted network");
}

bool is_local_endpoint(const std::string& endpoint) {
  if (endpoint.starts_with("ipc://") || endpoint.starts_with("inproc://")) return true;
  if (!endpoint.starts_with("tcp://")) return false;
  std::string host = endpoint.substr(6);
  if (const auto colon = host.rfind(':'); colon != std::string::npos) host.resize(colon);
  // "tcp://src;dst" names a source address on connect; for a bind, the whole is the interface.
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  if (host == "localhost" || host == "lo") return true;
  in_addr a4{};
  if (::inet_pton(AF_INET, host.c_str(), &a4) == 1)
    return (ntohl(a4.s_addr) >> 24) == 127;
  in6_addr a6{};
  if (::inet_pton(AF_INET6, host.c_str(), &a6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&a6)) return true;
    return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
  }
  return false;
}

} // namespace trawl
