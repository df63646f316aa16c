// The output directory as a tree the downloader writes into without ever following a symbolic
// link it did not make: subdirectories of --shard layouts are created and opened relative to the
// output directory's descriptor (mkdirat, then openat with O_DIRECTORY | O_NOFOLLOW), so a link
// planted in place of "0000" is refused rather than written through.
//
// --dedupe-content: identical bodies are stored once. The first file with a given SHA-256 is
// recorded in OUT/.trawl/objects/XX/<sha256>, a symbolic link (never followed by us; read with
// readlinkat) whose target is that file's path relative to OUT. A later file with the same SHA-256
// is replaced, atomically (link to a temporary name, then rename over it), by a hard link to the
// first. Creating the index entry (symlinkat) is atomic, so two downloaders sharing OUT agree on
// which file is first.
#pragma once

#include <cstdint>
#include <string>

namespace trawl::downloader {

class OutputTree {
public:
  // Opens `out`, an existing directory. Throws std::system_error naming it.
  explicit OutputTree(const std::string& out);
  ~OutputTree();
  OutputTree(const OutputTree&) = delete;
  OutputTree& operator=(const OutputTree&) = delete;

  int root() const noexcept { return root_; }

  // A new descriptor for the subdirectory `dir` (one safe name) of the output directory, created
  // when missing; the caller closes it. -1 with errno set when it cannot be made or opened (ELOOP
  // or ENOTDIR: something that is not a directory is in the way).
  int open_subdir(const std::string& dir) const;

  struct Dedupe {
    bool linked = false;   // the file is now a hard link to `first`
    std::string first;     // path relative to the output directory of the first copy
    std::string error;     // why nothing was done, when something failed (the file is kept)
  };
  // After the file `rel` (relative to the output directory: "cat.jpg" or "0000/cat.jpg", in the
  // directory `dir_fd` as `name`) of `bytes` bytes and SHA-256 `sha256` landed: records it as the
  // first of its content, or replaces it by a hard link to the first. `temp_name` is a fresh
  // name in the output directory for the link before it is renamed into place.
  Dedupe dedupe(int dir_fd, const std::string& name, const std::string& rel, std::uint64_t bytes,
                const std::string& sha256, const std::string& temp_name) const;

private:
  int open_dir_at(int at, const char* name) const; // mkdirat + openat, O_NOFOLLOW
  int root_ = -1;
};

} // namespace trawl::downloader
