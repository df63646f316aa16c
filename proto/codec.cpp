// msgpack encoding of the messages in messages.hpp. See docs/PROTOCOL.md for the wire format.
#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <limits>
#include <msgpack.hpp>
#include <optional>

#include "proto/frame_reader.hpp"
#include "proto/messages.hpp"
#include "proto/version.hpp"

namespace trawl::proto {
namespace {

using Packer = msgpack::packer<msgpack::sbuffer>;

void put_str(Packer& pk, std::string_view s) {
  pk.pack_str(static_cast<std::uint32_t>(s.size()));
  pk.pack_str_body(s.data(), static_cast<std::uint32_t>(s.size()));
}

void put_header(Packer& pk, std::uint32_t fields, std::string_view type) {
  pk.pack_map(fields + 2);
  put_str(pk, "v");
  pk.pack_uint32(kProtocolVersion);
  put_str(pk, "t");
  put_str(pk, type);
}

// The optional "meta" field: written only when there is one, so frames without it are
// byte-for-byte those of a build that predates it.
void put_meta(Packer& pk, std::string_view meta) {
  if (meta.empty()) return;
  put_str(pk, "meta");
  put_str(pk, meta);
}

// The fields of a task (a "task" frame's, after its header, or one item of a "tasks" frame).
std::uint32_t task_field_count(const Task& t) {
  return 4 + (t.dir.empty() ? 0 : 1) + (t.meta.empty() ? 0 : 1);
}

void put_task(Packer& pk, const Task& t) {
  put_str(pk, "id");
  pk.pack_uint64(t.id);
  put_str(pk, "url");
  put_str(pk, t.url);
  put_str(pk, "name");
  put_str(pk, t.name);
  put_str(pk, "att");
  pk.pack_uint32(t.attempt);
  if (!t.dir.empty()) {
    put_str(pk, "dir");
    put_str(pk, t.dir);
  }
  put_meta(pk, t.meta);
}

std::uint32_t result_field_count(const Result& r) { return r.meta.empty() ? 13 : 14; }

void put_result(Packer& pk, const Result& r) {
  put_str(pk, "id");
  pk.pack_uint64(r.id);
  put_str(pk, "url");
  put_str(pk, r.url);
  put_str(pk, "path");
  put_str(pk, r.path);
  put_str(pk, "st");
  pk.pack_uint8(static_cast<std::uint8_t>(r.status));
  put_str(pk, "code");
  pk.pack_uint32(r.http_code);
  put_str(pk, "bytes");
  pk.pack_uint64(r.bytes);
  put_str(pk, "sha");
  put_str(pk, r.sha256);
  put_str(pk, "ms");
  pk.pack_uint32(r.ms);
  put_str(pk, "ttfb");
  pk.pack_uint32(r.ttfb_ms);
  put_str(pk, "node");
  put_str(pk, r.node);
  put_str(pk, "why");
  pk.pack_uint8(static_cast<std::uint8_t>(r.reason));
  put_str(pk, "err");
  put_str(pk, r.detail);
  put_str(pk, "att");
  pk.pack_uint32(r.attempt);
  put_meta(pk, r.meta);
}

template <class... Ts> struct Overload : Ts... { using Ts::operator()...; };
template <class... Ts> Overload(Ts...) -> Overload<Ts...>;

// Reads one map of the frame: the decoder looks each field up by name. A key is found by an
// 8-byte fingerprint (its length and first 7 bytes: the whole key for every key of this protocol),
// and the search starts after the last key found: the decoders ask for the fields in the order
// the encoder writes them, so a field is found at the first place tried instead of after all the
// ones before it. A key given twice would make the result depend on that order: such a frame is
// refused (unique() is false), which the decoders check before reading a field.
class Fields {
public:
  explicit Fields(const msgpack::object_map& map) : map_(map) {
    // msgpack::unpack refuses a map of more than kMaxMapEntries (see decode()); should it not,
    // the map is refused here rather than read past fp_.
    if (map_.size > fp_.size()) {
      error_ = "a map of more than " + std::to_string(fp_.size()) + " keys";
      unique_ = false;
      return;
    }
    // A key is compared with the ones before it only when its fingerprint's bit (one of 128) was
    // set by one of them: most keys are compared with none.
    std::uint64_t seen[2] = {0, 0};
    for (std::uint32_t i = 0; i < map_.size; ++i) {
      const auto& k = map_.ptr[i].key;
      if (k.type != msgpack::type::STR) {
        fp_[i] = kNotAString; // never looked up
        continue;
      }
      const std::uint64_t fp = fp_[i] = fingerprint(key_at(i));
      const unsigned bit = static_cast<unsigned>((fp * 0x9E3779B97F4A7C15u) >> 57); // 0..127
      std::uint64_t& word = seen[bit >> 6];
      const std::uint64_t mask = std::uint64_t{1} << (bit & 63);
      if (word & mask) {
        for (std::uint32_t j = 0; j < i; ++j)
          if (fp_[j] == fp && (k.via.str.size <= kFingerprintBytes || key_at(j) == key_at(i))) {
            fail(key_at(i).substr(0, 32), "given twice");
            unique_ = false;
            return;
          }
      }
      word |= mask;
    }
  }

  // False when a key is given twice, or the map has more keys than a frame may (error() says
  // which).
  bool unique() const { return unique_; }

  const msgpack::object* find(std::string_view key) {
    const std::uint64_t want = fingerprint(key);
    const std::uint32_t n = map_.size;
    for (std::uint32_t tried = 0, i = next_; tried < n; ++tried, i = i + 1 == n ? 0 : i + 1) {
      if (fp_[i] != want || (key.size() > kFingerprintBytes && key_at(i) != key)) continue;
      next_ = i + 1 == n ? 0 : i + 1;
      return &map_.ptr[i].val;
    }
    return nullptr;
  }

  // Each getter returns false (and records why) when the field is missing or malformed.
  bool uint(std::string_view key, std::uint64_t max, std::uint64_t& out, bool required = true) {
    const auto* o = find(key);
    if (!o) return !required || fail(key, "missing");
    if (o->type != msgpack::type::POSITIVE_INTEGER) return fail(key, "not an unsigned integer");
    if (o->via.u64 > max) return fail(key, "out of range");
    out = o->via.u64;
    return true;
  }

  bool sint(std::string_view key, std::int64_t min, std::int64_t max, std::int64_t& out) {
    const auto* o = find(key);
    if (!o) return fail(key, "missing");
    std::int64_t v = 0;
    if (o->type == msgpack::type::POSITIVE_INTEGER) {
      if (o->via.u64 > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        return fail(key, "out of range");
      v = static_cast<std::int64_t>(o->via.u64);
    } else if (o->type == msgpack::type::NEGATIVE_INTEGER) {
      v = o->via.i64;
    } else {
      return fail(key, "not an integer");
    }
    if (v < min || v > max) return fail(key, "out of range");
    out = v;
    return true;
  }

  bool str(std::string_view key, std::size_t max, std::string& out, bool required = true) {
    const auto* o = find(key);
    if (!o) return !required || fail(key, "missing");
    if (o->type != msgpack::type::STR) return fail(key, "not a string");
    if (o->via.str.size > max) return fail(key, "too long");
    out.assign(o->via.str.ptr, o->via.str.size);
    return true;
  }

  bool boolean(std::string_view key, bool& out) {
    const auto* o = find(key);
    if (!o) return fail(key, "missing");
    if (o->type != msgpack::type::BOOLEAN) return fail(key, "not a boolean");
    out = o->via.boolean;
    return true;
  }

  bool uint_array(std::string_view key, std::size_t max, std::vector<std::uint64_t>& out,
                  bool required = true) {
    bool ok = false;
    const auto* a = array(key, max, required, ok);
    if (!a) return ok;
    out.clear();
    out.reserve(a->size);
    for (std::uint32_t i = 0; i < a->size; ++i) {
      const auto& e = a->ptr[i];
      if (e.type != msgpack::type::POSITIVE_INTEGER) return fail(key, "element not an unsigned integer");
      out.push_back(e.via.u64);
    }
    return true;
  }

  bool str_array(std::string_view key, std::size_t max, std::size_t max_len,
                 std::vector<std::string>& out, bool required = true) {
    bool ok = false;
    const auto* a = array(key, max, required, ok);
    if (!a) return ok;
    out.clear();
    out.reserve(a->size);
    for (std::uint32_t i = 0; i < a->size; ++i) {
      const auto& e = a->ptr[i];
      if (e.type != msgpack::type::STR) return fail(key, "element not a string");
      if (e.via.str.size > max_len) return fail(key, "element too long");
      out.emplace_back(e.via.str.ptr, e.via.str.size);
    }
    return true;
  }

  template <class T> bool u32(std::string_view key, T& out, bool required = true) {
    std::uint64_t v = out;
    if (!uint(key, std::numeric_limits<std::uint32_t>::max(), v, required)) return false;
    out = static_cast<T>(v);
    return true;
  }

  const std::string& error() const { return error_; }

private:
  // The array under `key` once its type and size are checked, or nullptr: then `ok` says whether
  // the frame is still acceptable (an optional key that is absent).
  const msgpack::object_array* array(std::string_view key, std::size_t max, bool required, bool& ok) {
    ok = false;
    const auto* o = find(key);
    if (!o) {
      ok = !required || fail(key, "missing");
      return nullptr;
    }
    if (o->type != msgpack::type::ARRAY)
      fail(key, "not an array");
    else if (o->via.array.size > max)
      fail(key, "too many elements");
    else
      return &o->via.array;
    return nullptr;
  }

  bool fail(std::string_view key, std::string_view why) {
    error_ = "field '" + std::string(key) + "': " + std::string(why);
    return false;
  }

  static constexpr std::size_t kFingerprintBytes = 7;
  // Never the fingerprint of a key of 7 bytes or fewer (their length byte is at most 7); a longer
  // key that has it is compared in full, and a key that is not a string never matches.
  static constexpr std::uint64_t kNotAString = ~std::uint64_t{0};

  static std::uint64_t fingerprint(std::string_view key) {
    const std::size_t n = std::min(key.size(), kFingerprintBytes);
    std::uint64_t bytes = 0;
    if (n == 0) {
      // (An empty key's data may be a null pointer, which memcpy must not get.)
    } else if constexpr (std::endian::native == std::endian::little) {
      std::memcpy(&bytes, key.data(), n); // the low n bytes
    } else {
      for (std::size_t i = 0; i < n; ++i)
        bytes |= std::uint64_t{static_cast<unsigned char>(key[i])} << (8 * i);
    }
    return bytes | std::uint64_t{std::min<std::size_t>(key.size(), 255)} << 56;
  }

  // The key of entry i, which is a string (a map's keys that are not have kNotAString).
  std::string_view key_at(std::uint32_t i) const {
    const auto& k = map_.ptr[i].key;
    return k.type == msgpack::type::STR ? std::string_view(k.via.str.ptr, k.via.str.size)
                                        : std::string_view();
  }

  const msgpack::object_map& map_;
  std::string error_;
  std::array<std::uint64_t, kMaxMapEntries> fp_{};
  std::uint32_t next_ = 0; // where the next find() starts
  bool unique_ = true;
};

bool is_hex_digest(std::string_view s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// The fields of a task, in a "task" frame or as one item of a "tasks" frame: an error message, or
// nothing when `m` is complete and valid.
std::optional<std::string> task_fields(Fields& f, Task& m) {
  if (!f.uint("id", std::numeric_limits<std::uint64_t>::max(), m.id) ||
      !f.str("url", kMaxUrlBytes, m.url) || !f.str("name", kMaxNameBytes, m.name) ||
      !f.u32("att", m.attempt) || !f.str("dir", kMaxNameBytes, m.dir, false) ||
      !f.str("meta", kMaxMetaBytes, m.meta, false))
    return f.error();
  if (m.url.empty() || m.name.empty()) return "empty url or name";
  return std::nullopt;
}

// The fields of a result, in a "result" frame or as one item of a "results" frame.
std::optional<std::string> result_fields(Fields& f, Result& m) {
  std::uint64_t status = 0, reason = 0;
  if (!f.uint("id", std::numeric_limits<std::uint64_t>::max(), m.id) ||
      !f.str("url", kMaxUrlBytes, m.url) || !f.str("path", kMaxPathBytes, m.path, false) ||
      !f.uint("st", 1, status) || !f.u32("code", m.http_code, false) ||
      !f.uint("bytes", std::numeric_limits<std::int64_t>::max(), m.bytes, false) ||
      !f.str("sha", 64, m.sha256, false) || !f.u32("ms", m.ms, false) ||
      !f.u32("ttfb", m.ttfb_ms, false) || !f.str("node", kMaxNodeBytes, m.node, false) ||
      !f.uint("why", kReasonMax, reason, false) ||
      !f.str("err", kMaxDetailBytes, m.detail, false) || !f.u32("att", m.attempt, false) ||
      !f.str("meta", kMaxMetaBytes, m.meta, false))
    return f.error();
  m.status = static_cast<Status>(status);
  m.reason = static_cast<Reason>(reason);
  // A done result's digest is 64 hex digits, or absent when the downloader ran with --digest none.
  if (m.status == Status::done &&
      ((!m.sha256.empty() && !is_hex_digest(m.sha256)) || m.reason != Reason::none))
    return "done with an invalid sha256, or with a failure reason";
  if (m.status == Status::failed && m.reason == Reason::none) return "failed without a reason";
  return std::nullopt;
}

// The "items" array of a batch: 1..kMaxBatchItems maps, each read by `one` exactly like the single
// message; one bad item refuses the whole frame (never a part of it).
template <class T, class Read>
std::optional<std::string> batch_items(Fields& f, std::vector<T>& out, Read one) {
  const auto* o = f.find("items");
  if (!o) return "field 'items': missing";
  if (o->type != msgpack::type::ARRAY) return "field 'items': not an array";
  const auto& a = o->via.array;
  if (a.size == 0) return "field 'items': empty";
  if (a.size > kMaxBatchItems) return "field 'items': more than " + std::to_string(kMaxBatchItems);
  out.reserve(a.size);
  for (std::uint32_t i = 0; i < a.size; ++i) {
    if (a.ptr[i].type != msgpack::type::MAP) return "item " + std::to_string(i) + ": not a map";
    Fields item(a.ptr[i].via.map);
    if (!item.unique()) return "item " + std::to_string(i) + ": " + item.error();
    T m;
    if (auto err = one(item, m)) return "item " + std::to_string(i) + ": " + *err;
    out.push_back(std::move(m));
  }
  return std::nullopt;
}

// No nesting beyond what a message has: a map holds no map, and an array holds scalars, except a
// batch's "items", which holds maps of scalars.
std::optional<std::string> check_shape(const msgpack::object_map& root) {
  auto container = [](const msgpack::object& o) {
    return o.type == msgpack::type::MAP || o.type == msgpack::type::ARRAY;
  };
  for (std::uint32_t i = 0; i < root.size; ++i) {
    const auto& kv = root.ptr[i];
    if (container(kv.key)) return "a key that is an array or map";
    if (kv.val.type == msgpack::type::MAP) return "a nested map";
    if (kv.val.type != msgpack::type::ARRAY) continue;
    const bool items = kv.key.type == msgpack::type::STR &&
                       std::string_view(kv.key.via.str.ptr, kv.key.via.str.size) == "items";
    const auto& a = kv.val.via.array;
    // (Inside an item's map, msgpack's depth limit of 3 already refuses any array or map.)
    for (std::uint32_t j = 0; j < a.size; ++j)
      if (container(a.ptr[j]) && !(items && a.ptr[j].type == msgpack::type::MAP))
        return "a nested array or map";
  }
  return std::nullopt;
}

std::variant<Message, DecodeError> decode_fields(std::string_view type, Fields& f) {
  auto bad = [&f](std::string_view t) {
    return DecodeError{std::string(t) + ": " + f.error()};
  };
  if (type == "link") {
    Link m;
    if (!f.str("url", kMaxUrlBytes, m.url) || !f.str("meta", kMaxMetaBytes, m.meta, false))
      return bad(type);
    if (m.url.empty()) return DecodeError{"link: empty url"};
    return m;
  }
  if (type == "end") {
    LinksEnd m;
    if (!f.uint("count", std::numeric_limits<std::int64_t>::max(), m.count)) return bad(type);
    return m;
  }
  if (type == "task") {
    Task m;
    if (auto err = task_fields(f, m)) return DecodeError{"task: " + *err};
    return m;
  }
  if (type == "result") {
    Result m;
    if (auto err = result_fields(f, m)) return DecodeError{"result: " + *err};
    return m;
  }
  if (type == "tasks") {
    Tasks m;
    if (auto err = batch_items(f, m.items, task_fields)) {
      DecodeError e{"tasks: " + *err};
      if (const auto* a = f.find("items"); a && a->type == msgpack::type::ARRAY)
        e.items = a->via.array.size;
      return e;
    }
    return m;
  }
  if (type == "results") {
    Results m;
    if (auto err = batch_items(f, m.items, result_fields)) return DecodeError{"results: " + *err};
    return m;
  }
  if (type == "job") {
    Job m;
    if (!f.sint("start", 0, std::numeric_limits<std::int64_t>::max(), m.started_unix_ms) ||
        !f.sint("total", -1, std::numeric_limits<std::int64_t>::max(), m.total) ||
        !f.uint("done", std::numeric_limits<std::int64_t>::max(), m.done) ||
        !f.uint("failed", std::numeric_limits<std::int64_t>::max(), m.failed) ||
        !f.uint("skipped", std::numeric_limits<std::int64_t>::max(), m.skipped) ||
        !f.boolean("complete", m.complete) ||
        !f.uint("active", std::numeric_limits<std::int64_t>::max(), m.active, false) ||
        !f.uint("nodes", std::numeric_limits<std::int64_t>::max(), m.nodes, false) ||
        !f.uint("rq", std::numeric_limits<std::int64_t>::max(), m.requeued, false) ||
        !f.str_array("rq_node", kMaxJobNodes, kMaxNodeBytes, m.requeued_nodes, false) ||
        !f.uint_array("rq_count", kMaxJobNodes, m.requeued_counts, false))
      return bad(type);
    if (m.requeued_nodes.size() != m.requeued_counts.size())
      return DecodeError{"job: rq_node and rq_count differ in length"};
    return m;
  }
  if (type == "ready") {
    Ready m;
    if (!f.str("node", kMaxNodeBytes, m.node) || !f.u32("cap", m.capacity) ||
        !f.u32("held", m.held) ||
        !f.uint("recv", std::numeric_limits<std::uint64_t>::max(), m.received) ||
        !f.uint_array("ids", kMaxReadyIds, m.ids))
      return bad(type);
    return m;
  }
  if (type == "throttle") {
    Throttle m;
    if (!f.uint("id", std::numeric_limits<std::uint64_t>::max(), m.id) || !f.u32("ms", m.wait_ms))
      return bad(type);
    return m;
  }
  return DecodeError{"unknown message type '" + std::string(type.substr(0, 32)) + "'"};
}

} // namespace

std::string_view type_name(const Message& m) noexcept {
  static constexpr std::string_view names[] = {"link",  "end",      "task",  "result", "job",
                                               "ready", "throttle", "tasks", "results"};
  return names[m.index()];
}

// Keys, type bytes and the largest integer encodings of every field: a task item has 6 keys of at
// most 5 bytes, 2 integers of at most 9 bytes and 4 string headers of at most 5 bytes (62 bytes);
// a result item 14 keys and headers (133 bytes). The unit tests check these bounds.
std::size_t batch_item_bound(const Task& t) noexcept {
  return 64 + t.url.size() + t.name.size() + t.dir.size() + t.meta.size();
}

std::size_t batch_item_bound(const Result& r) noexcept {
  return 160 + r.url.size() + r.path.size() + r.sha256.size() + r.node.size() + r.detail.size() +
         r.meta.size();
}

std::string encode(const Message& m) {
  msgpack::sbuffer buf(128);
  Packer pk(buf);
  std::visit(Overload{
                 [&](const Link& l) {
                   put_header(pk, l.meta.empty() ? 1 : 2, "link");
                   put_str(pk, "url");
                   put_str(pk, l.url);
                   put_meta(pk, l.meta);
                 },
                 [&](const LinksEnd& e) {
                   put_header(pk, 1, "end");
                   put_str(pk, "count");
                   pk.pack_uint64(e.count);
                 },
                 [&](const Task& t) {
                   put_header(pk, task_field_count(t), "task");
                   put_task(pk, t);
                 },
                 [&](const Result& r) {
                   put_header(pk, result_field_count(r), "result");
                   put_result(pk, r);
                 },
                 [&](const Job& j) {
                   // The optional figures only when set: an idle job's frame stays as before.
                   const bool extra = j.active || j.nodes || j.requeued || !j.requeued_nodes.empty();
                   put_header(pk, extra ? 11 : 6, "job");
                   put_str(pk, "start");
                   pk.pack_int64(j.started_unix_ms);
                   put_str(pk, "total");
                   pk.pack_int64(j.total);
                   put_str(pk, "done");
                   pk.pack_uint64(j.done);
                   put_str(pk, "failed");
                   pk.pack_uint64(j.failed);
                   put_str(pk, "skipped");
                   pk.pack_uint64(j.skipped);
                   put_str(pk, "complete");
                   pk.pack(j.complete);
                   if (!extra) return;
                   put_str(pk, "active");
                   pk.pack_uint64(j.active);
                   put_str(pk, "nodes");
                   pk.pack_uint64(j.nodes);
                   put_str(pk, "rq");
                   pk.pack_uint64(j.requeued);
                   const std::size_t n = std::min({j.requeued_nodes.size(), j.requeued_counts.size(), kMaxJobNodes});
                   put_str(pk, "rq_node");
                   pk.pack_array(static_cast<std::uint32_t>(n));
                   for (std::size_t i = 0; i < n; ++i) put_str(pk, j.requeued_nodes[i]);
                   put_str(pk, "rq_count");
                   pk.pack_array(static_cast<std::uint32_t>(n));
                   for (std::size_t i = 0; i < n; ++i) pk.pack_uint64(j.requeued_counts[i]);
                 },
                 [&](const Ready& r) {
                   put_header(pk, 5, "ready");
                   put_str(pk, "node");
                   put_str(pk, r.node);
                   put_str(pk, "cap");
                   pk.pack_uint32(r.capacity);
                   put_str(pk, "held");
                   pk.pack_uint32(r.held);
                   put_str(pk, "recv");
                   pk.pack_uint64(r.received);
                   put_str(pk, "ids");
                   pk.pack_array(static_cast<std::uint32_t>(r.ids.size()));
                   for (auto id : r.ids) pk.pack_uint64(id);
                 },
                 [&](const Throttle& t) {
                   put_header(pk, 2, "throttle");
                   put_str(pk, "id");
                   pk.pack_uint64(t.id);
                   put_str(pk, "ms");
                   pk.pack_uint32(t.wait_ms);
                 },
                 [&](const Tasks& b) {
                   put_header(pk, 1, "tasks");
                   put_str(pk, "items");
                   pk.pack_array(static_cast<std::uint32_t>(b.items.size()));
                   for (const auto& t : b.items) {
                     pk.pack_map(task_field_count(t));
                     put_task(pk, t);
                   }
                 },
                 [&](const Results& b) {
                   put_header(pk, 1, "results");
                   put_str(pk, "items");
                   pk.pack_array(static_cast<std::uint32_t>(b.items.size()));
                   for (const auto& r : b.items) {
                     pk.pack_map(result_field_count(r));
                     put_result(pk, r);
                   }
                 },
             },
             m);
  return std::string(buf.data(), buf.size());
}

std::string encode_version_notice() {
  msgpack::sbuffer buf;
  Packer pk(buf);
  put_header(pk, 0, "version");
  return std::string(buf.data(), buf.size());
}

std::variant<Message, DecodeError> decode(std::string_view frame) noexcept {
  if (frame.empty()) return DecodeError{"empty frame"};
  if (frame.size() > kMaxFrameBytes) return DecodeError{"frame of " + std::to_string(frame.size()) + " bytes exceeds the limit"};
  try {
    // Arrays only as long as a ready message's ids, no bin, no ext, a map with two levels of
    // nesting below it (a batch's items: an array of maps): a hostile header cannot ask for more.
    // check_shape() then allows that second level in "items" alone.
    // (msgpack::unpack with these limits accepts and refuses the same frames: FrameReader.)
    static constexpr ReadLimits kLimits{/*array=*/kMaxReadyIds,
                                        /*map=*/kMaxMapEntries,
                                        /*str=*/kMaxUrlBytes,
                                        /*bin=*/0,
                                        /*ext=*/0,
                                        /*depth=*/3};
    thread_local FrameReader reader;
    std::size_t offset = 0;
    const msgpack::object* parsed = reader.read(frame, kLimits, offset);
    if (parsed == nullptr) return DecodeError{std::string("malformed msgpack: ") + reader.error()};
    if (offset != frame.size()) return DecodeError{"trailing bytes after the message"};
    const msgpack::object& root = *parsed;
    if (root.type != msgpack::type::MAP) return DecodeError{"frame is not a map"};
    if (auto err = check_shape(root.via.map)) return DecodeError{"frame holds " + *err};
    Fields f(root.via.map);
    if (!f.unique()) return DecodeError{f.error()};
    std::uint64_t version = 0;
    if (!f.uint("v", std::numeric_limits<std::uint32_t>::max(), version))
      return DecodeError{"header: " + f.error()};
    if (version != kProtocolVersion)
      return DecodeError{"protocol version " + std::to_string(version) + " (this build speaks " +
                         std::to_string(kProtocolVersion) + ")"};
    std::string type;
    if (!f.str("t", 16, type)) return DecodeError{"header: " + f.error()};
    return decode_fields(type, f);
  } catch (const std::exception& e) {
    return DecodeError{std::string("malformed msgpack: ") + e.what()};
  } catch (...) {
    return DecodeError{"malformed msgpack"};
  }
}

std::variant<Message, DecodeError> decode(std::span<const std::byte> frame) noexcept {
  return decode(std::string_view(reinterpret_cast<const char*>(frame.data()), frame.size()));
}

} // namespace trawl::proto
