// Shared by the hostile-input end-to-end tests: running launch/pipeline, reading the job's
// ledger, listing the output directory, and a small tmpfs mounted for a test.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tests/support/process.hpp"

namespace trawl::e2e {

struct PipelineRun {
  int status = -1;
  std::string out; // stdout: the summary
  std::string err; // stderr: every process's log
};

// Runs launch/pipeline with `args` (plus --trawl, --run-dir DIR/run, --progress none) and the
// list at `list_path` on stdin, waiting up to `timeout`; FAILs the test when it does not finish.
PipelineRun run_pipeline(const testsupport::TempDir& dir, const std::string& tag,
                         std::vector<std::string> args, const std::string& list_path,
                         std::chrono::seconds timeout);

// Starts it without waiting (same arguments); stdout/stderr go to DIR/TAG.out and DIR/TAG.err.
testsupport::Child start_pipeline(const testsupport::TempDir& dir, const std::string& tag,
                                  std::vector<std::string> args, const std::string& list_path);

// One row of the ledger (STATE/ledger.sqlite).
struct LedgerRow {
  std::string name;
  int state = -1; // 0 pending, 1 leased, 2 done, 3 failed
  int reason = 0;
  std::string detail;
  std::string path;
  std::string sha256;
  std::uint64_t bytes = 0;
};

// url -> row; empty when the ledger does not exist yet.
std::map<std::string, LedgerRow> read_ledger(const std::string& state_dir);

// Every entry under `root`, recursively: relative path -> "f <sha256>", "d", "l <target>" or
// "o" (other). Never follows symbolic links.
std::map<std::string, std::string> tree(const std::string& root);

// A tmpfs of `size` ("2m") mounted at `path` (created), unmounted by the destructor. mounted()
// is false, and why() says why, when mount(2) is not permitted here.
class Tmpfs {
public:
  Tmpfs(const std::string& path, const std::string& size);
  ~Tmpfs();
  Tmpfs(const Tmpfs&) = delete;
  Tmpfs& operator=(const Tmpfs&) = delete;
  bool mounted() const noexcept { return mounted_; }
  const std::string& why() const noexcept { return why_; }

private:
  std::string path_;
  bool mounted_ = false;
  std::string why_;
};

} // namespace trawl::e2e
