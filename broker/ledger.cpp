#include "broker/ledger.hpp"

#include <algorithm>
#include <filesystem>
#include <sqlite3.h>
#include <stdexcept>

#include "broker/names.hpp"
#include "broker/scheduler.hpp"

namespace trawl::broker {
namespace {

// SQLite counts every allocation in its memory statistics, under a global mutex, unless told
// not to before it is initialised (it refuses the setting afterwards): so here, before main, in
// every process that links the ledger. Nothing reads the figures. A 300,000-link --bench-null job
// (2 x 64, 10 alternating runs): the ventilator's CPU median 4.15 s against 4.38, the job 4.14 s
// against 4.41.
[[maybe_unused]] const int kNoMemoryStatistics = sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);

} // namespace

// A prepared statement, reset before each use.
class Ledger::Stmt {
public:
  Stmt(sqlite3* db, const char* sql) {
    if (sqlite3_prepare_v2(db, sql, -1, &s_, nullptr) != SQLITE_OK)
      throw std::runtime_error(std::string("ledger: cannot prepare '") + sql + "': " + sqlite3_errmsg(db));
  }
  Stmt(Stmt&& o) noexcept : s_(o.s_) { o.s_ = nullptr; }
  Stmt& operator=(Stmt&&) = delete;
  ~Stmt() { sqlite3_finalize(s_); }

  Stmt& reset() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
    return *this;
  }
  // Ends the statement's read of the database (bindings kept): see Ledger::commit().
  void end_read() { sqlite3_reset(s_); }
  Stmt& bind(int i, std::int64_t v) {
    sqlite3_bind_int64(s_, i, v);
    return *this;
  }
  Stmt& bind(int i, std::string_view v) {
    // SQLITE_STATIC: no copy. Every statement is bound and stepped within one Ledger call, while
    // the caller's string lives, and reset (bindings cleared) before its next use.
    sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
    return *this;
  }
  // Steps once: true when a row is available.
  bool step() {
    const int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    throw std::runtime_error(std::string("ledger: ") + sqlite3_errmsg(sqlite3_db_handle(s_)));
  }
  std::int64_t i64(int col) const { return sqlite3_column_int64(s_, col); }
  std::string text(int col) const {
    const auto* p = sqlite3_column_text(s_, col);
    return p ? std::string(reinterpret_cast<const char*>(p), static_cast<std::size_t>(sqlite3_column_bytes(s_, col))) : std::string();
  }

private:
  sqlite3_stmt* s_ = nullptr;
};

namespace {

enum StmtIndex {
  kFindUrl,
  kInsert,
  kInsertOrIgnore,
  kPendingAfter,
  kTask,
  kRecord,
  kLease,
  kRelease,
  kState,
  kFinish,
  kFail,
  kGetMeta,
  kSetMeta,
  kIdsInState,
  kNames,
  kPendingOfHost,
  kPendingHosts,
  kHostOf,
  kLeasedHosts,
  kPendingTask,
  kStmtCount
};

const char* const kSql[kStmtCount] = {
    "SELECT id, state FROM links WHERE url = ?1",
    "INSERT INTO links(id, url, name, state, attempts, host, meta) "
    "VALUES(?1, ?2, ?3, 0, 0, ?4, ?5)",
    "INSERT OR IGNORE INTO links(id, url, name, state, attempts, host, meta) "
    "VALUES(?1, ?2, ?3, 0, 0, ?4, ?5)",
    "SELECT id, url, name, attempts, meta FROM links WHERE state = 0 AND id > ?1 "
    "ORDER BY id LIMIT ?2",
    "SELECT id, url, name, attempts, meta FROM links WHERE id = ?1",
    "SELECT state, attempts, bytes, sha256, node, reason, detail FROM links WHERE id = ?1",
    "UPDATE links SET state = 1, attempts = attempts + 1, lease_until = ?2, node = ?3 "
    "WHERE id = ?1 AND state = 0",
    "UPDATE links SET state = 0, lease_until = NULL WHERE id = ?1 AND state = 1",
    "SELECT state FROM links WHERE id = ?1",
    "UPDATE links SET state = ?2, bytes = ?3, sha256 = ?4, node = ?5, reason = ?6, detail = ?7, "
    "path = ?8, http_code = ?9, lease_until = NULL, attempts = attempts + ?10 "
    "WHERE id = ?1 AND state < 2",
    "UPDATE links SET state = 3, reason = ?2, detail = ?3, lease_until = NULL WHERE id = ?1",
    "SELECT value FROM meta WHERE key = ?1",
    "INSERT INTO meta(key, value) VALUES(?1, ?2) ON CONFLICT(key) DO UPDATE SET value = ?2",
    "SELECT id FROM links WHERE state = ?1 ORDER BY id",
    "SELECT name FROM links ORDER BY id",
    "SELECT id, url, name, attempts, meta FROM links WHERE host = ?1 AND id > ?2 AND state = 0 "
    "ORDER BY id LIMIT ?3",
    "SELECT DISTINCT host FROM links WHERE state = 0",
    "SELECT host FROM links WHERE id = ?1",
    "SELECT id, host FROM links WHERE state = 1 ORDER BY id",
    "SELECT id, url, name, attempts, meta FROM links WHERE id = ?1 AND state = 0",
};

// host_key(url) as an SQL function, to fill the host column of a ledger written before it existed.
void sql_host_key(sqlite3_context* ctx, int, sqlite3_value** argv) {
  const auto* p = sqlite3_value_text(argv[0]);
  const std::string key =
      p ? host_key(std::string_view(reinterpret_cast<const char*>(p),
                                    static_cast<std::size_t>(sqlite3_value_bytes(argv[0]))))
        : std::string();
  sqlite3_result_text(ctx, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
}

} // namespace

Ledger::Ledger(const std::string& dir, bool fresh) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw std::runtime_error("cannot create state directory " + dir + ": " + ec.message());
  path_ = (fs::path(dir) / "ledger.sqlite").string();
  if (fresh)
    for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(path_ + suffix, ec);
  // A ledger created now holds nothing a crash could lose: it is made without fsync (six of them,
  // 3.1 ms under strace, on the job's start-up path), and synced as usual from its first link on.
  const bool creating = !fs::exists(path_, ec);
  // NOMUTEX: one thread uses a Ledger (its connection) at a time, so SQLite's per-call mutex
  // is pure cost (perf of the ventilator in a 300,000-link --bench-null job: pthread mutex
  // lock/unlock 4.5 % of its samples with it, 2.0 % without).
  if (sqlite3_open_v2(path_.c_str(), &db_,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                      nullptr) != SQLITE_OK)
    fail_sql("cannot open");
  sqlite3_busy_timeout(db_, 5000);
  if (creating) exec("PRAGMA synchronous=OFF");
  // A new database's switch to WAL is a write (the header's format bytes): in the default mode,
  // through a rollback journal created and removed for it, one more file on the start-up path (an
  // inode costs 0.4-1.4 ms of kernel time on ext4 right after many deletions). In memory instead.
  if (creating) exec("PRAGMA journal_mode=MEMORY");
  exec("PRAGMA journal_mode=WAL");
  if (!creating) exec("PRAGMA synchronous=NORMAL");
  // The working set of a million-link job (the url index, the rows being leased and finished)
  // stays in memory instead of being read back through the page cache one page at a time.
  exec("PRAGMA cache_size=-32768");
  // The WAL is copied into the database once it holds 4,000 pages (16 MB) instead of SQLite's
  // 1,000: fewer copies of the pages a job changes again and again, and fewer fdatasync calls
  // (a checkpoint syncs twice) on the ventilator's thread while it dispatches. Closing the ledger
  // copies what is left, up to that much: sqlite3_close took 15.9 and 18.5 ms at the end of a
  // 20,000-link job against 6.1 and 9.5 with 1,000 (uprobes, 2 jobs each).
  exec("PRAGMA wal_autocheckpoint=4000");
  // The schema in one transaction: one commit instead of one per statement that writes, on the
  // job's start-up path (the ventilator dispatches once its ledger is open).
  exec("BEGIN IMMEDIATE");
  exec("CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)");
  exec("CREATE TABLE IF NOT EXISTS links("
       " id INTEGER PRIMARY KEY,"
       " url TEXT NOT NULL UNIQUE,"
       " name TEXT NOT NULL,"
       " state INTEGER NOT NULL,"    // 0 pending, 1 leased, 2 done, 3 failed
       " attempts INTEGER NOT NULL," // dispatches
       " lease_until INTEGER,"       // unix ms
       " node TEXT, path TEXT, http_code INTEGER, bytes INTEGER, sha256 TEXT,"
       " reason INTEGER, detail TEXT, host TEXT, meta TEXT)");
  // No index on state: every state change would update it (three b-tree writes instead of one
  // per change, measured as the ventilator's largest cost). Pending links are found by walking
  // the ids from a cursor, which the ventilator does once per pass over the ledger.
  exec("DROP INDEX IF EXISTS links_state");
  // Politeness (broker/scheduler.hpp): each link's host, and an index on (host, id) to walk one
  // host's links from a cursor. Host and id never change, so a state change does not touch it;
  // it costs one b-tree insert per new link. A ledger of an earlier version gets the column and
  // has it filled.
  bool has_host = false;
  {
    Stmt cols(db_, "SELECT 1 FROM pragma_table_info('links') WHERE name = 'host'");
    has_host = cols.step();
  }
  if (!has_host) {
    exec("ALTER TABLE links ADD COLUMN host TEXT");
    if (sqlite3_create_function(db_, "trawl_host_key", 1, SQLITE_UTF8 | SQLITE_DETERMINISTIC,
                                nullptr, &sql_host_key, nullptr, nullptr) != SQLITE_OK)
      fail_sql("cannot register trawl_host_key");
    exec("UPDATE links SET host = trawl_host_key(url)");
  }
  exec("CREATE INDEX IF NOT EXISTS links_host_id ON links(host, id)");
  {
    Stmt max_id(db_, "SELECT coalesce(max(id), 0) FROM links");
    max_id.step();
    next_id_ = static_cast<std::uint64_t>(max_id.i64(0)) + 1;
  }
  add_column_if_missing("links", "meta", "TEXT"); // a link's meta (proto::Link::meta); NULL = none
  exec("COMMIT");
  if (creating) exec("PRAGMA synchronous=NORMAL");
  for (int i = 0; i < kStmtCount; ++i) stmts_.emplace_back(db_, kSql[i]);
  // A job that starts from an empty ledger has no known URL to look up first: a link is
  // inserted at once, and only a rare duplicate costs a second statement.
  Stmt any(db_, "SELECT 1 FROM links LIMIT 1");
  insert_first_ = !any.step();
}

Ledger::~Ledger() {
  try {
    commit();
  } catch (...) {
  }
  stmts_.clear();
  // Closing checkpoints the WAL into the database. With synchronous=NORMAL that took three
  // fdatasync calls, 6.0 ms of sqlite3_close at the end of a classic job on this disk (uprobes;
  // 0.3 ms without), which the user waits for. Without them the ledger is exactly as safe as every
  // commit of the job was: whole after the process exits or is killed, and what the page cache
  // had not written yet lost only with the machine (links then done again on resume, like the
  // files of the job, which are not synced either).
  sqlite3_exec(db_, "PRAGMA synchronous=OFF", nullptr, nullptr, nullptr);
  sqlite3_close(db_);
}

void Ledger::fail_sql(const char* what) {
  std::string msg = std::string("ledger ") + path_ + ": " + what + ": " + (db_ ? sqlite3_errmsg(db_) : "out of memory");
  throw std::runtime_error(msg);
}

void Ledger::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = std::string("ledger ") + path_ + ": " + sql + ": " + (err ? err : "?");
    sqlite3_free(err);
    throw std::runtime_error(msg);
  }
}

void Ledger::add_column_if_missing(const char* table, const char* column, const char* type) {
  // A ledger written by an older build lacks the column: add it (existing rows get NULL).
  Stmt info(db_, (std::string("SELECT 1 FROM pragma_table_info('") + table + "') WHERE name = '" + column + "'").c_str());
  if (!info.step()) exec((std::string("ALTER TABLE ") + table + " ADD COLUMN " + column + " " + type).c_str());
}

Ledger::Stmt& Ledger::stmt(int index) { return stmts_[static_cast<std::size_t>(index)].reset(); }

void Ledger::begin() {
  if (!in_tx_) {
    exec("BEGIN");
    in_tx_ = true;
  }
}

void Ledger::commit() {
  // A statement that returned a row and was not stepped to its end (a lookup of one row) keeps
  // its read transaction open after the COMMIT, and SQLite never checkpoints the WAL of a
  // connection that has one: the WAL then grew by every page written in the whole job (some
  // 30,000 frames for 300,000 links), and closing the ledger copied them all back at exit
  // (2.4 s of the ventilator's exit). Ended here, the automatic checkpoint keeps the WAL small.
  write_leases();
  for (auto& s : stmts_) s.end_read();
  if (in_tx_) {
    exec("COMMIT");
    in_tx_ = false;
  }
}

Ledger::Added Ledger::add_link(std::string_view url, NameAssigner& names, std::string_view meta) {
  begin();
  // One row with the next id; kInsertOrIgnore says whether the URL was new (one statement per
  // link while the ledger was empty at open), kInsert follows a lookup that found nothing.
  auto insert = [&](StmtIndex which) {
    const std::uint64_t id = next_id_;
    std::string host = host_key(url);
    const std::string name = names.assign(url, id); // bound without a copy: must outlive step()
    auto& ins = stmt(which)
                    .bind(1, static_cast<std::int64_t>(id))
                    .bind(2, url)
                    .bind(3, name)
                    .bind(4, host);
    if (!meta.empty()) ins.bind(5, meta); // unbound (reset clears bindings) is NULL
    ins.step();
    return Added{id, true, LinkState::pending, std::move(host)};
  };
  if (insert_first_) {
    // (The name of a duplicate is spent: harmless, and duplicates are rare past the fetcher.)
    auto added = insert(kInsertOrIgnore);
    if (sqlite3_changes(db_) == 1) {
      ++next_id_;
      return added;
    }
  }
  auto& find = stmt(kFindUrl).bind(1, url);
  if (find.step()) return {static_cast<std::uint64_t>(find.i64(0)), false, static_cast<LinkState>(find.i64(1)), {}};
  auto added = insert(kInsert);
  ++next_id_;
  return added;
}

std::vector<TaskRow> Ledger::pending_of_host(const std::string& host, std::uint64_t after,
                                             std::size_t n) {
  const auto read = [&] {
    std::vector<TaskRow> rows;
    auto& s = stmt(kPendingOfHost)
                  .bind(1, host)
                  .bind(2, static_cast<std::int64_t>(after))
                  .bind(3, static_cast<std::int64_t>(n));
    while (s.step())
      rows.push_back({static_cast<std::uint64_t>(s.i64(0)), s.text(1), s.text(2),
                      static_cast<std::uint32_t>(s.i64(3)), s.text(4)});
    return rows;
  };
  auto rows = read();
  // A kept lease still reads as pending: then the leases are written and the rows read again. A
  // host's cursor passes each link once, so only a read from before it (a rescan) finds one.
  if (!kept_leases_.empty() && std::any_of(rows.begin(), rows.end(), [this](const TaskRow& r) {
        return kept_leases_.count(r.id) > 0;
      })) {
    write_leases();
    rows = read();
  }
  return rows;
}

std::vector<std::string> Ledger::pending_hosts() {
  write_leases();
  std::vector<std::string> hosts;
  auto& s = stmt(kPendingHosts);
  while (s.step()) hosts.push_back(s.text(0));
  return hosts;
}

std::string Ledger::host_of(std::uint64_t id) {
  auto& s = stmt(kHostOf).bind(1, static_cast<std::int64_t>(id));
  return s.step() ? s.text(0) : std::string();
}

std::vector<std::pair<std::uint64_t, std::string>> Ledger::leased_hosts() {
  write_leases();
  std::vector<std::pair<std::uint64_t, std::string>> out;
  auto& s = stmt(kLeasedHosts);
  while (s.step()) out.emplace_back(static_cast<std::uint64_t>(s.i64(0)), s.text(1));
  return out;
}

void Ledger::load_names(NameAssigner& names) {
  auto& s = stmt(kNames);
  while (s.step()) names.reserve_name(s.text(0));
}

std::vector<TaskRow> Ledger::pending_after(std::uint64_t after, std::size_t n) {
  write_leases();
  std::vector<TaskRow> rows;
  auto& s = stmt(kPendingAfter).bind(1, static_cast<std::int64_t>(after)).bind(2, static_cast<std::int64_t>(n));
  while (s.step())
    rows.push_back({static_cast<std::uint64_t>(s.i64(0)), s.text(1), s.text(2), static_cast<std::uint32_t>(s.i64(3)),
                    s.text(4)});
  return rows;
}

std::optional<TaskRow> Ledger::task(std::uint64_t id) {
  write_leases();
  auto& s = stmt(kTask).bind(1, static_cast<std::int64_t>(id));
  if (!s.step()) return std::nullopt;
  return TaskRow{id, s.text(1), s.text(2), static_cast<std::uint32_t>(s.i64(3)), s.text(4)};
}

std::optional<TaskRow> Ledger::pending_task(std::uint64_t id) {
  if (kept_leases_.count(id)) return std::nullopt; // leased
  auto& s = stmt(kPendingTask).bind(1, static_cast<std::int64_t>(id));
  if (!s.step()) return std::nullopt;
  return TaskRow{id, s.text(1), s.text(2), static_cast<std::uint32_t>(s.i64(3)), s.text(4)};
}

std::optional<LinkRecord> Ledger::record(std::uint64_t id) {
  write_leases();
  auto& s = stmt(kRecord).bind(1, static_cast<std::int64_t>(id));
  if (!s.step()) return std::nullopt;
  return LinkRecord{static_cast<LinkState>(s.i64(0)), static_cast<std::uint32_t>(s.i64(1)),
                    static_cast<std::uint64_t>(s.i64(2)), s.text(3), s.text(4), static_cast<int>(s.i64(5)),
                    s.text(6)};
}

std::vector<std::uint64_t> Ledger::ids_in_state(LinkState st) {
  write_leases();
  std::vector<std::uint64_t> ids;
  auto& s = stmt(kIdsInState).bind(1, static_cast<std::int64_t>(st));
  while (s.step()) ids.push_back(static_cast<std::uint64_t>(s.i64(0)));
  return ids;
}

bool Ledger::lease(std::uint64_t id, std::string_view node, std::int64_t until_unix_ms) {
  begin();
  stmt(kLease).bind(1, static_cast<std::int64_t>(id)).bind(2, until_unix_ms).bind(3, node).step();
  return sqlite3_changes(db_) > 0;
}

void Ledger::lease_later(std::uint64_t id, std::string_view node, std::int64_t until_unix_ms) {
  begin(); // the lease belongs to the open transaction, like one lease() writes
  // A batch of tasks goes to one node: the last name added is the likely one, searched first.
  const auto found = std::find(kept_nodes_.rbegin(), kept_nodes_.rend(), node);
  std::size_t index = kept_nodes_.size(); // a new name goes at the end
  if (found != kept_nodes_.rend())
    index = static_cast<std::size_t>(found.base() - kept_nodes_.begin()) - 1;
  else kept_nodes_.emplace_back(node);
  kept_leases_.insert_or_assign(id, KeptLease{static_cast<std::uint32_t>(index), until_unix_ms});
}

void Ledger::write_leases() {
  if (kept_leases_.empty()) {
    kept_nodes_.clear(); // every kept lease finished first
    return;
  }
  for (const auto& [id, l] : kept_leases_)
    stmt(kLease)
        .bind(1, static_cast<std::int64_t>(id))
        .bind(2, l.until_unix_ms)
        .bind(3, kept_nodes_[l.node])
        .step();
  kept_leases_.clear();
  kept_nodes_.clear();
}

void Ledger::release(std::uint64_t id) {
  if (kept_leases_.count(id)) write_leases(); // its dispatch counts
  begin();
  stmt(kRelease).bind(1, static_cast<std::int64_t>(id)).step();
}

bool Ledger::finish(const proto::Result& r) {
  begin();
  const bool done = r.status == proto::Status::done;
  // A lease not written yet: its dispatch is counted here, and it is never written.
  const bool kept = kept_leases_.erase(r.id) > 0;
  stmt(kFinish)
      .bind(1, static_cast<std::int64_t>(r.id))
      .bind(2, static_cast<std::int64_t>(done ? LinkState::done : LinkState::failed))
      .bind(3, static_cast<std::int64_t>(r.bytes))
      .bind(4, r.sha256)
      .bind(5, r.node)
      .bind(6, static_cast<std::int64_t>(r.reason))
      .bind(7, r.detail)
      .bind(8, r.path)
      .bind(9, static_cast<std::int64_t>(r.http_code))
      .bind(10, static_cast<std::int64_t>(kept ? 1 : 0))
      .step();
  return sqlite3_changes(db_) == 1;
}

void Ledger::fail(std::uint64_t id, proto::Reason reason, std::string_view detail) {
  if (kept_leases_.count(id)) write_leases(); // its dispatch counts
  begin();
  stmt(kFail).bind(1, static_cast<std::int64_t>(id)).bind(2, static_cast<std::int64_t>(reason)).bind(3, detail).step();
}

void Ledger::reset_for_new_run() {
  write_leases();
  begin();
  exec("UPDATE links SET state = 0, attempts = 0, lease_until = NULL WHERE state IN (1, 3)");
}

LedgerCounts Ledger::counts() {
  write_leases();
  LedgerCounts c;
  Stmt s(db_, "SELECT state, count(*) FROM links GROUP BY state");
  while (s.step()) {
    const auto n = static_cast<std::uint64_t>(s.i64(1));
    switch (static_cast<LinkState>(s.i64(0))) {
    case LinkState::pending: c.pending = n; break;
    case LinkState::leased: c.leased = n; break;
    case LinkState::done: c.done = n; break;
    case LinkState::failed: c.failed = n; break;
    }
  }
  return c;
}

std::string Ledger::meta(std::string_view key, std::string_view fallback) {
  auto& s = stmt(kGetMeta).bind(1, key);
  return s.step() ? s.text(0) : std::string(fallback);
}

void Ledger::set_meta(std::string_view key, std::string_view value) {
  begin();
  stmt(kSetMeta).bind(1, key).bind(2, value).step();
}

} // namespace trawl::broker
