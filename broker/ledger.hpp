// The ventilator's durable ledger: every link of the job with its state (pending, leased, done,
// failed), attempts, lease deadline, final size and SHA-256, in SQLite (WAL mode) under --state.
// Task ids are the rows' ids, so they are stable across restarts. Writes are batched: one
// transaction is open at a time and commit() (called every few ms by the ventilator) closes it,
// so there is never one fsync per link (WAL with synchronous=NORMAL syncs at checkpoints).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "proto/messages.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace trawl::broker {

class NameAssigner;

enum class LinkState : int { pending = 0, leased = 1, done = 2, failed = 3 };

struct LedgerCounts {
  std::uint64_t pending = 0, leased = 0, done = 0, failed = 0;
  std::uint64_t total() const { return pending + leased + done + failed; }
};

struct TaskRow {
  std::uint64_t id = 0;
  std::string url;
  std::string name;
  std::uint32_t attempts = 0; // dispatches so far
  std::string meta;           // the link's meta (proto::Link::meta), empty when none
};

struct LinkRecord {
  LinkState state = LinkState::pending;
  std::uint32_t attempts = 0;
  std::uint64_t bytes = 0;
  std::string sha256;
  std::string node;
  int reason = 0;
  std::string detail;
};

class Ledger {
public:
  // Opens or creates <dir>/ledger.sqlite; `fresh` deletes an existing ledger first.
  // Throws std::runtime_error naming the file on any SQLite error.
  Ledger(const std::string& dir, bool fresh);
  ~Ledger();
  Ledger(const Ledger&) = delete;
  Ledger& operator=(const Ledger&) = delete;

  const std::string& path() const { return path_; }

  struct Added {
    std::uint64_t id;
    bool is_new;
    LinkState state;
    std::string host; // host_key(url)
  };
  // Adds a link (its file name chosen by `names`) unless the URL is known already. `meta` (the
  // link's proto meta, stored as given) is kept with a new link; a known URL keeps its own.
  Added add_link(std::string_view url, NameAssigner& names, std::string_view meta = {});

  // Feeds every name in the ledger to `names`, so new links never take an existing one.
  void load_names(NameAssigner& names);

  // Up to `n` pending links with id > after, in id order.
  std::vector<TaskRow> pending_after(std::uint64_t after, std::size_t n);
  std::optional<TaskRow> task(std::uint64_t id);
  // The link as a task if it is still pending (one lookup), else nothing.
  std::optional<TaskRow> pending_task(std::uint64_t id);
  // Up to `n` pending links of `host` (host_key of their URL) with id > after, in id order: one
  // lookup in the (state, host, id) index.
  std::vector<TaskRow> pending_of_host(const std::string& host, std::uint64_t after, std::size_t n);
  // Every host that has pending links.
  std::vector<std::string> pending_hosts();
  // The host of link `id` ("" when unknown).
  std::string host_of(std::uint64_t id);
  // (id, host) of every leased link.
  std::vector<std::pair<std::uint64_t, std::string>> leased_hosts();
  std::optional<LinkRecord> record(std::uint64_t id);
  std::vector<std::uint64_t> ids_in_state(LinkState s);

  // pending -> leased. Returns false (and changes nothing) when the link is not pending.
  bool lease(std::uint64_t id, std::string_view node, std::int64_t until_unix_ms);
  // The same lease of a link the caller knows to be pending (it has no way to return false), kept
  // in memory and written at the next commit(), or never when the link's result comes first:
  // finish() then counts the dispatch in the same statement. The committed ledger is the same as
  // with lease(); a transfer shorter than the commit interval costs one statement less. Every
  // read below sees the lease (pending_task() and pending_of_host() without writing it when they
  // can). A lease of a link that is not pending is not written.
  void lease_later(std::uint64_t id, std::string_view node, std::int64_t until_unix_ms);
  void release(std::uint64_t id); // leased -> pending
  // Records a final result of a pending or leased link (one statement). Returns false when the
  // link was already final (a late duplicate) or is unknown; then nothing changes.
  bool finish(const proto::Result& r);
  // Marks a link failed without a result (e.g. lost too many times).
  void fail(std::uint64_t id, proto::Reason reason, std::string_view detail);

  // A new run of the same job: failed links get another chance, leases of a dead run go back.
  void reset_for_new_run();

  LedgerCounts counts();

  std::string meta(std::string_view key, std::string_view fallback = "");
  void set_meta(std::string_view key, std::string_view value);

  // Commits the open transaction, if any.
  void commit();

private:
  class Stmt;
  void exec(const char* sql);
  void add_column_if_missing(const char* table, const char* column, const char* type);
  void begin();
  [[noreturn]] void fail_sql(const char* what);
  Stmt& stmt(int index);
  // Writes the leases lease_later() kept (before a read that could see them, and at commit()).
  void write_leases();

  std::string path_;
  sqlite3* db_ = nullptr;
  std::vector<Stmt> stmts_;
  bool in_tx_ = false;
  bool insert_first_ = false; // the ledger was empty when opened: insert links without a lookup
  std::uint64_t next_id_ = 1; // the id of the next link added: its position in the job
  struct KeptLease {
    std::uint32_t node = 0; // in kept_nodes_
    std::int64_t until_unix_ms = 0;
  };
  std::unordered_map<std::uint64_t, KeptLease> kept_leases_; // lease_later(), not written yet
  // The nodes kept leases name, each once (a few downloaders): no copy of a name per lease.
  std::vector<std::string> kept_nodes_;
};

} // namespace trawl::broker
