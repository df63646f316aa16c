// The messages that travel between trawl's processes, and the only way in and out of a frame:
// encode() writes a msgpack map with named keys plus the protocol version "v" and type tag "t";
// decode() validates every type, size and range and returns an error value for anything else.
// Named keys let an older and a newer node understand each other: unknown keys are ignored.
// This header knows nothing of ZeroMQ or curl.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "proto/reason.hpp"

namespace trawl::proto {

// The protocol version, kProtocolVersion, is in the generated header proto/version.hpp.

// Hard bounds on what a decoder accepts; a frame or field beyond them is rejected, never allocated.
inline constexpr std::size_t kMaxFrameBytes = 256 * 1024;
inline constexpr std::size_t kMaxUrlBytes = 16 * 1024;
inline constexpr std::size_t kMaxNameBytes = 255;
inline constexpr std::size_t kMaxPathBytes = 4096;
inline constexpr std::size_t kMaxNodeBytes = 128;
inline constexpr std::size_t kMaxDetailBytes = 1024;
inline constexpr std::size_t kMaxMapEntries = 32;
inline constexpr std::size_t kMaxReadyIds = 4096;
inline constexpr std::size_t kMaxJobNodes = 256;
// Optional "meta" of link, task and result: what a source carried along with the URL (a CSV
// row's other columns), as the text of a small JSON object. Opaque to the protocol.
inline constexpr std::size_t kMaxMetaBytes = 4096;
// Batches ("tasks", "results"): at most this many items in one frame, and a sender adds items
// while the sum of their batch_item_bound()s stays within kBatchBudgetBytes (use BatchSize), so
// that a batch frame stays well under kMaxFrameBytes whatever its items hold.
inline constexpr std::size_t kMaxBatchItems = 256;
inline constexpr std::size_t kBatchBudgetBytes = 128 * 1024;

// fetcher -> ventilator: one link to download.
struct Link {
  std::string url;
  std::string meta; // optional, at most kMaxMetaBytes; encoded only when not empty
  friend bool operator==(const Link&, const Link&) = default;
};

// fetcher -> ventilator: the fetcher is done and sent `count` links before this frame.
struct LinksEnd {
  std::uint64_t count = 0;
  friend bool operator==(const LinksEnd&, const LinksEnd&) = default;
};

// ventilator -> downloader: fetch `url` into the file `name` (a safe base name chosen by the
// ventilator, unique within the job) inside the downloader's output directory, or inside its
// subdirectory `dir` (one safe name, e.g. "0000", with --shard; empty: none; key "dir", sent only
// when set).
struct Task {
  std::uint64_t id = 0;
  std::string url;
  std::string name;
  std::uint32_t attempt = 1;
  std::string dir{}; // a default initializer: older code that sets four fields stays warning-free
  std::string meta{}; // the link's meta, forwarded by the ventilator (optional)
  friend bool operator==(const Task&, const Task&) = default;
};

enum class Status : std::uint8_t { done = 0, failed = 1 };

// downloader -> sink: the outcome of one task.
struct Result {
  std::uint64_t id = 0;
  std::string url;
  std::string path;   // final path on the node that wrote it (empty when failed)
  Status status = Status::failed;
  std::uint32_t http_code = 0;
  std::uint64_t bytes = 0;
  std::string sha256; // 64 lowercase hex digits when done, empty otherwise
  std::uint32_t ms = 0;      // request start to last byte
  std::uint32_t ttfb_ms = 0; // request start to first byte
  std::string node;          // which downloader
  Reason reason = Reason::none;
  std::string detail;        // human-readable error, bounded
  std::uint32_t attempt = 1;
  std::string meta;          // the task's meta, copied by the downloader (optional)
  friend bool operator==(const Result&, const Result&) = default;
};

// ventilator -> sink, sent on every change and every second: the job as the ledger knows it.
// `total` is negative until the fetcher is done; `skipped` counts links that were already done
// before this run (included in `done`); `complete` is the ventilator's word that every link is
// done or failed. (sink -> ventilator acknowledgements are the Result frames, forwarded.)
struct Job {
  std::int64_t started_unix_ms = 0;
  std::int64_t total = -1;
  std::uint64_t done = 0;
  std::uint64_t failed = 0;
  std::uint64_t skipped = 0;
  bool complete = false;
  // Optional (absent from an older ventilator's frames, then zero/empty): tasks leased now (in
  // flight or queued at a node), downloaders connected, tasks dispatched again because their node
  // died or their result was lost, and that count per node the tasks were taken away from
  // (parallel arrays, at most kMaxJobNodes entries: the largest counts).
  std::uint64_t active = 0;
  std::uint64_t nodes = 0;
  std::uint64_t requeued = 0;
  std::vector<std::string> requeued_nodes;
  std::vector<std::uint64_t> requeued_counts;
  friend bool operator==(const Job&, const Job&) = default;
};

// downloader -> ventilator, on the task socket: credit and heartbeat in one. Absolute figures,
// so a lost or repeated frame does no harm: the ventilator may have at most
// capacity - held - (tasks it sent - received) more tasks in flight to this node.
struct Ready {
  std::string node;
  std::uint32_t capacity = 0; // concurrency + prefetch
  std::uint32_t held = 0;     // tasks the node holds now (running, queued, waiting for a retry)
  std::uint64_t received = 0; // tasks received on this connection since it was made
  std::vector<std::uint64_t> ids; // the ids of the tasks it holds (at most kMaxReadyIds)
  friend bool operator==(const Ready&, const Ready&) = default;
};

// downloader -> ventilator, on the task socket: the host of task `id` answered 429 or 503 with
// Retry-After; the ventilator gives that host no new task for `wait_ms` (politeness for the whole
// job: every node slows down, not only the one that was told).
struct Throttle {
  std::uint64_t id = 0;
  std::uint32_t wait_ms = 0;
  friend bool operator==(const Throttle&, const Throttle&) = default;
};

// ventilator -> downloader: several tasks in one frame (1..kMaxBatchItems). Each counts as one
// task for the credit (Ready::received counts tasks, not frames).
struct Tasks {
  std::vector<Task> items;
  friend bool operator==(const Tasks&, const Tasks&) = default;
};

// downloader -> sink, and sink -> ventilator as the acknowledgement: several results in one frame
// (1..kMaxBatchItems).
struct Results {
  std::vector<Result> items;
  friend bool operator==(const Results&, const Results&) = default;
};

using Message = std::variant<Link, LinksEnd, Task, Result, Job, Ready, Throttle, Tasks, Results>;

std::string_view type_name(const Message& m) noexcept;

// An upper bound of the bytes one item adds to a batch frame.
std::size_t batch_item_bound(const Task& t) noexcept;
std::size_t batch_item_bound(const Result& r) noexcept;

// A sender's running size of one batch: add() says whether an item of `bound` bytes
// (batch_item_bound) may join it, and counts it when so. The first item always joins.
struct BatchSize {
  std::size_t count = 0;
  std::size_t bytes = 0;
  bool add(std::size_t bound) noexcept {
    if (count > 0 && (count >= kMaxBatchItems || bytes + bound > kBatchBudgetBytes)) return false;
    ++count;
    bytes += bound;
    return true;
  }
};

// Encodes one message as a self-describing frame.
std::string encode(const Message& m);

struct DecodeError {
  std::string what;
  // A refused "tasks" frame: how many items its array held (0 otherwise), so that a downloader
  // still counts them as received (the ventilator's credit counts tasks).
  std::size_t items = 0;
};

// Decodes one frame. Never throws, never allocates more than a small multiple of the frame size.
std::variant<Message, DecodeError> decode(std::span<const std::byte> frame) noexcept;
std::variant<Message, DecodeError> decode(std::string_view frame) noexcept;

// The ventilator's answer to a frame of another protocol version: a header alone,
// {v: this build's version, t: "version"}. The peer cannot decode it either, so its log names both
// versions too ("protocol version 1 (this build speaks 2)"); a peer of the same version never
// gets one (decode() would reject the unknown type).
std::string encode_version_notice();

} // namespace trawl::proto
