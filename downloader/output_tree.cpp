#include "downloader/output_tree.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>

#include "common/names.hpp"

namespace trawl::downloader {

namespace {

// A target read back from the index: a relative path of safe names, no "..".
bool is_safe_relative(const std::string& p) {
  if (p.empty() || p.front() == '/') return false;
  std::size_t start = 0;
  while (start <= p.size()) {
    const auto slash = p.find('/', start);
    const std::string part = p.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (!is_safe_name(part)) return false;
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return true;
}

class Fd {
public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

private:
  int fd_;
};

std::string err(const std::string& what) { return what + ": " + std::strerror(errno); }

} // namespace

OutputTree::OutputTree(const std::string& out) {
  root_ = ::open(out.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (root_ < 0) throw std::system_error(errno, std::generic_category(), "cannot open " + out);
}

OutputTree::~OutputTree() {
  if (root_ >= 0) ::close(root_);
}

int OutputTree::open_dir_at(int at, const char* name) const {
  if (::mkdirat(at, name, 0755) != 0 && errno != EEXIST) return -1;
  return ::openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

int OutputTree::open_subdir(const std::string& dir) const {
  if (!is_safe_name(dir)) {
    errno = EINVAL;
    return -1;
  }
  return open_dir_at(root_, dir.c_str());
}

OutputTree::Dedupe OutputTree::dedupe(int dir_fd, const std::string& name, const std::string& rel,
                                      std::uint64_t bytes, const std::string& sha256,
                                      const std::string& temp_name) const {
  Dedupe d;
  auto failed = [&d](std::string why) {
    d.error = std::move(why);
    return d;
  };
  if (sha256.size() != 64 || sha256.find_first_not_of("0123456789abcdef") != std::string::npos) {
    d.error = "not a SHA-256 digest";
    return d;
  }
  Fd state(open_dir_at(root_, ".trawl"));
  if (state.get() < 0) return failed(err("OUT/.trawl"));
  Fd objects(open_dir_at(state.get(), "objects"));
  if (objects.get() < 0) return failed(err("OUT/.trawl/objects"));
  Fd bucket(open_dir_at(objects.get(), sha256.substr(0, 2).c_str()));
  if (bucket.get() < 0) return failed(err("OUT/.trawl/objects/" + sha256.substr(0, 2)));

  for (int round = 0; round < 2; ++round) {
    if (::symlinkat(rel.c_str(), bucket.get(), sha256.c_str()) == 0) return d; // the first
    if (errno != EEXIST) return failed(err("index entry for " + rel));
    char target[4096];
    const ssize_t n = ::readlinkat(bucket.get(), sha256.c_str(), target, sizeof target - 1);
    if (n < 0) return failed(err("reading the index entry of " + sha256));
    const std::string first(target, static_cast<std::size_t>(n));
    if (first == rel) return d; // this very file (a task sent again)
    if (!is_safe_relative(first)) return failed("index entry of " + sha256 + " is not ours");
    if (::linkat(root_, first.c_str(), root_, temp_name.c_str(), 0) != 0) {
      if (errno == ENOENT) {
        // The first copy is gone (removed by hand): this file becomes the first.
        ::unlinkat(bucket.get(), sha256.c_str(), 0);
        continue;
      }
      return failed(err("hard link to " + first));
    }
    struct stat linked {}, ours {};
    const bool same_size = ::fstatat(root_, temp_name.c_str(), &linked, AT_SYMLINK_NOFOLLOW) == 0 &&
                           S_ISREG(linked.st_mode) && static_cast<std::uint64_t>(linked.st_size) == bytes;
    if (!same_size) {
      ::unlinkat(root_, temp_name.c_str(), 0);
      return failed(first + " changed since it was recorded");
    }
    if (::fstatat(dir_fd, name.c_str(), &ours, AT_SYMLINK_NOFOLLOW) == 0 && ours.st_ino == linked.st_ino &&
        ours.st_dev == linked.st_dev) {
      ::unlinkat(root_, temp_name.c_str(), 0); // already the same file
      d.linked = true;
      d.first = first;
      return d;
    }
    if (::renameat(root_, temp_name.c_str(), dir_fd, name.c_str()) != 0) {
      const std::string why = err("rename over " + rel);
      ::unlinkat(root_, temp_name.c_str(), 0);
      return failed(why);
    }
    d.linked = true;
    d.first = first;
    return d;
  }
  return failed("index entry of " + sha256 + " keeps changing");
}

} // namespace trawl::downloader
