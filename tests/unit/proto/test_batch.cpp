// The batch messages "tasks" and "results": round trips, every bound of the decoder (count,
// a bad item, wrong types, an empty array, nesting) and the sender's size rule (BatchSize with
// batch_item_bound) keeping any batch under the frame limit.
#include <catch2/catch.hpp>
#include <msgpack.hpp>

#include <string>
#include <variant>

#include "proto/messages.hpp"
#include "proto/version.hpp"

using namespace trawl::proto;

namespace {

using Packer = msgpack::packer<msgpack::sbuffer>;

Task task_n(std::uint64_t id) {
  Task t{id, "http://h.test/" + std::to_string(id) + ".jpg", std::to_string(id) + ".jpg", 1};
  if (id % 3 == 0) t.dir = "0001";
  if (id % 2 == 0) t.meta = R"({"k":"v"})";
  return t;
}

Result result_n(std::uint64_t id) {
  Result r;
  r.id = id;
  r.url = "http://h.test/" + std::to_string(id) + ".jpg";
  r.node = "n1";
  r.attempt = 1;
  if (id % 2 == 0) {
    r.status = Status::done;
    r.reason = Reason::none;
    r.path = "/out/" + std::to_string(id) + ".jpg";
    r.sha256 = std::string(64, 'b');
    r.bytes = id * 1000;
    r.http_code = 200;
  } else {
    r.status = Status::failed;
    r.reason = Reason::http_client;
    r.http_code = 404;
    r.detail = "HTTP 404";
    r.meta = R"({"row":1})";
  }
  return r;
}

std::string error_of(std::string_view frame) {
  auto d = decode(frame);
  REQUIRE(std::holds_alternative<DecodeError>(d));
  return std::get<DecodeError>(d).what;
}

void put(Packer& pk, std::string_view s) {
  pk.pack_str(static_cast<std::uint32_t>(s.size()));
  pk.pack_str_body(s.data(), static_cast<std::uint32_t>(s.size()));
}

// A frame by hand: a map of our version, type `type` and `more` entries that `rest(pk)` writes.
template <class F> std::string frame_by_hand(std::string_view type, std::uint32_t more, F&& rest) {
  msgpack::sbuffer buf;
  Packer pk(buf);
  pk.pack_map(2 + more);
  put(pk, "v");
  pk.pack_uint32(kProtocolVersion);
  put(pk, "t");
  put(pk, type);
  rest(pk);
  return std::string(buf.data(), buf.size());
}

// A batch frame by hand: "items" with `n` elements written by `item(pk, i)`.
template <class F> std::string batch_frame(std::string_view type, std::uint32_t n, F&& item) {
  return frame_by_hand(type, 1, [&](Packer& pk) {
    put(pk, "items");
    pk.pack_array(n);
    for (std::uint32_t i = 0; i < n; ++i) item(pk, i);
  });
}

// A valid task item (id, url, name, att), or with field `bad_key` made bad in way `bad_kind`:
// 1 wrong type, 2 over its bound, 3 empty, 4 given twice (the same value again, at the end).
void task_item(Packer& pk, std::uint64_t id, std::string_view bad_key = {}, int bad_kind = 0) {
  pk.pack_map(bad_kind == 4 ? 5 : 4);
  put(pk, "id");
  if (bad_key == "id" && bad_kind == 1) put(pk, "seven");
  else pk.pack_uint64(id);
  put(pk, "url");
  if (bad_key == "url" && bad_kind == 1) pk.pack_uint64(5);
  else if (bad_key == "url" && bad_kind == 2) put(pk, std::string(kMaxUrlBytes + 1, 'u'));
  else put(pk, "http://h.test/a");
  put(pk, "name");
  if (bad_key == "name" && bad_kind == 2) put(pk, std::string(kMaxNameBytes + 1, 'n'));
  else if (bad_key == "name" && bad_kind == 3) put(pk, "");
  else put(pk, "a");
  put(pk, "att");
  if (bad_key == "att" && bad_kind == 2) pk.pack_uint64(std::uint64_t{1} << 33);
  else pk.pack_uint32(1);
  if (bad_kind == 4) {
    put(pk, bad_key);
    put(pk, "a");
  }
}

} // namespace

TEST_CASE("tasks and results batches survive a round trip", "[proto][batch]") {
  for (std::size_t n : {std::size_t{1}, std::size_t{2}, std::size_t{64}, kMaxBatchItems}) {
    Tasks tasks;
    Results results;
    for (std::size_t i = 1; i <= n; ++i) {
      tasks.items.push_back(task_n(i));
      results.items.push_back(result_n(i));
    }
    for (const Message& m : {Message{tasks}, Message{results}}) {
      const std::string frame = encode(m);
      CHECK(frame.size() <= kMaxFrameBytes);
      auto d = decode(frame);
      if (auto* err = std::get_if<DecodeError>(&d)) FAIL("n=" << n << ": " << err->what);
      CHECK(std::get<Message>(d) == m);
    }
  }
  CHECK(type_name(Tasks{{task_n(1)}}) == "tasks");
  CHECK(type_name(Results{{result_n(1)}}) == "results");
}

TEST_CASE("a batch item is encoded as the single message's fields", "[proto][batch]") {
  // The single "task" frame is {v, t, fields...}; a batch is {v, t, items: [{fields...}]}: the
  // bytes of the fields are the same.
  const Task t = task_n(6);
  const std::string single = encode(t);
  const std::string batch = encode(Tasks{{t}});
  const std::string header_single = "\xa1t\xa4task";
  const auto fields = single.substr(single.find(header_single) + header_single.size());
  CHECK(batch.ends_with(fields));
  const Result r = result_n(3);
  const std::string rsingle = encode(r);
  const std::string rheader = "\xa1t\xa6result";
  CHECK(encode(Results{{r}}).ends_with(rsingle.substr(rsingle.find(rheader) + rheader.size())));
}

TEST_CASE("decode refuses a batch with no items, too many, or items of the wrong type",
          "[proto][batch]") {
  CHECK_THAT(error_of(batch_frame("tasks", 0, [](Packer&, std::uint32_t) {})),
             Catch::Contains("'items': empty"));
  CHECK_THAT(error_of(batch_frame("results", 0, [](Packer&, std::uint32_t) {})),
             Catch::Contains("'items': empty"));
  const auto over = static_cast<std::uint32_t>(kMaxBatchItems + 1);
  CHECK_THAT(error_of(batch_frame("tasks", over,
                                  [](Packer& pk, std::uint32_t i) { task_item(pk, i + 1); })),
             Catch::Contains("more than 256"));
  // Exactly at the bound: accepted.
  auto at = decode(batch_frame("tasks", static_cast<std::uint32_t>(kMaxBatchItems),
                               [](Packer& pk, std::uint32_t i) { task_item(pk, i + 1); }));
  REQUIRE(std::holds_alternative<Message>(at));
  CHECK(std::get<Tasks>(std::get<Message>(at)).items.size() == kMaxBatchItems);
  // Items that are not maps, and "items" that is not an array or is missing.
  CHECK_THAT(
      error_of(batch_frame("tasks", 1, [](Packer& pk, std::uint32_t) { pk.pack_uint32(7); })),
      Catch::Contains("item 0: not a map"));
  CHECK_THAT(error_of(frame_by_hand("results", 1,
                                    [](Packer& pk) {
                                      put(pk, "items");
                                      put(pk, "not an array");
                                    })),
             Catch::Contains("'items': not an array"));
  CHECK_THAT(error_of(frame_by_hand("tasks", 0, [](Packer&) {})),
             Catch::Contains("'items': missing"));
}

TEST_CASE("one bad item refuses the whole batch", "[proto][batch]") {
  struct Case {
    const char* key;
    int kind;
    const char* why;
  };
  for (const auto& c :
       {Case{"id", 1, "'id': not an unsigned integer"}, Case{"url", 1, "'url': not a string"},
        Case{"url", 2, "'url': too long"}, Case{"name", 2, "'name': too long"},
        Case{"name", 3, "empty url or name"}, Case{"att", 2, "'att': out of range"},
        Case{"name", 4, "'name': given twice"}}) {
    // The bad item is the last of three: the first two are valid and still not taken.
    const std::string frame = batch_frame("tasks", 3, [&](Packer& pk, std::uint32_t i) {
      if (i == 2) task_item(pk, i + 1, c.key, c.kind);
      else task_item(pk, i + 1);
    });
    auto d = decode(frame);
    REQUIRE(std::holds_alternative<DecodeError>(d));
    const auto& err = std::get<DecodeError>(d);
    INFO(err.what);
    if (std::string_view(c.why) == "'url': too long") {
      // Longer than any string the decoder reads: msgpack refuses it before any item is read.
      CHECK_THAT(err.what, Catch::Contains("str size overflow"));
      continue;
    }
    CHECK_THAT(err.what, Catch::Contains("tasks: item 2: ") && Catch::Contains(c.why));
    CHECK(err.items == 3); // the downloader still counts three tasks received
  }
  // A result item checked like a single result: done without a digest, failed without a reason.
  Result done = result_n(2);
  done.sha256 = "xyz";
  Result failed = result_n(3);
  failed.reason = Reason::none;
  Result long_node = result_n(5);
  long_node.node = std::string(kMaxNodeBytes + 1, 'n');
  for (const Result& bad : {done, failed, long_node}) {
    const std::string frame = encode(Results{{result_n(1), bad}});
    auto d = decode(frame);
    REQUIRE(std::holds_alternative<DecodeError>(d));
    CHECK_THAT(std::get<DecodeError>(d).what, Catch::StartsWith("results: item 1: "));
    CHECK(std::get<DecodeError>(d).items == 0); // counted for tasks only
  }
  // The same fields are refused in the single message too (same rules).
  CHECK(std::holds_alternative<DecodeError>(decode(encode(done))));
  CHECK(std::holds_alternative<DecodeError>(decode(encode(long_node))));
}

TEST_CASE("decode refuses nesting beyond a batch's items", "[proto][batch]") {
  // A map inside an item: deeper than msgpack is allowed to read.
  CHECK_THAT(error_of(batch_frame("tasks", 1,
                                  [](Packer& pk, std::uint32_t) {
                                    pk.pack_map(5);
                                    put(pk, "id");
                                    pk.pack_uint32(1);
                                    put(pk, "url");
                                    put(pk, "http://h.test/a");
                                    put(pk, "name");
                                    put(pk, "a");
                                    put(pk, "att");
                                    pk.pack_uint32(1);
                                    put(pk, "x");
                                    pk.pack_map(0);
                                  })),
             Catch::Contains("depth size overflow"));
  // An array inside an item.
  CHECK_THAT(error_of(batch_frame("results", 1,
                                  [](Packer& pk, std::uint32_t) {
                                    pk.pack_map(1);
                                    put(pk, "x");
                                    pk.pack_array(0);
                                  })),
             Catch::Contains("depth size overflow"));
  // Maps in an array under any other key than "items" (a ready's ids, an unknown key).
  for (const char* key : {"ids", "other"}) {
    CHECK_THAT(error_of(frame_by_hand("ready", 1,
                                      [&](Packer& pk) {
                                        put(pk, key);
                                        pk.pack_array(1);
                                        pk.pack_map(0);
                                      })),
               Catch::Contains("nested"));
  }
  // A map directly in the frame, as before.
  CHECK_THAT(error_of(frame_by_hand("tasks", 1,
                                    [](Packer& pk) {
                                      put(pk, "items");
                                      pk.pack_map(0);
                                    })),
             Catch::Contains("nested map"));
}

TEST_CASE("batch_item_bound is at least what an item adds to a frame", "[proto][batch]") {
  // Worst cases: every field at its limit and the largest integers.
  Task t{~std::uint64_t{0}, std::string(kMaxUrlBytes, 'u'),  std::string(kMaxNameBytes, 'n'),
         ~std::uint32_t{0}, std::string(kMaxNameBytes, 'd'), std::string(kMaxMetaBytes, 'm')};
  Result r;
  r.id = ~std::uint64_t{0};
  r.url = std::string(kMaxUrlBytes, 'u');
  r.path = std::string(kMaxPathBytes, 'p');
  r.status = Status::failed;
  r.http_code = ~std::uint32_t{0};
  r.bytes = ~std::uint64_t{0};
  r.sha256 = std::string(64, 'a');
  r.ms = r.ttfb_ms = r.attempt = ~std::uint32_t{0};
  r.node = std::string(kMaxNodeBytes, 'n');
  r.reason = Reason::other;
  r.detail = std::string(kMaxDetailBytes, 'e');
  r.meta = std::string(kMaxMetaBytes, 'm');
  const Task small_t{1, "u", "n", 1};
  Result small_r = result_n(1);
  small_r.meta.clear();
  for (const Task& x : {t, small_t}) {
    const auto one = encode(Tasks{{x}}).size(), two = encode(Tasks{{x, x}}).size();
    CHECK(two - one <= batch_item_bound(x));
    CHECK(one <= batch_item_bound(x) + 32); // the frame's own header is small
  }
  for (const Result& x : {r, small_r}) {
    const auto one = encode(Results{{x}}).size(), two = encode(Results{{x, x}}).size();
    CHECK(two - one <= batch_item_bound(x));
    CHECK(one <= batch_item_bound(x) + 32);
  }
}

TEST_CASE("a batch filled by BatchSize stays under the frame limit and decodes", "[proto][batch]") {
  // The worst items the protocol allows: a sender that adds items while BatchSize::add says so
  // never builds a frame the decoder refuses.
  Task big{1, std::string(kMaxUrlBytes, 'u'),  std::string(kMaxNameBytes, 'n'),
           1, std::string(kMaxNameBytes, 'd'), std::string(kMaxMetaBytes, 'm')};
  Result rbig = result_n(2);
  rbig.url = std::string(kMaxUrlBytes, 'u');
  rbig.path = std::string(kMaxPathBytes, 'p');
  rbig.node = std::string(kMaxNodeBytes, 'n');
  rbig.detail = std::string(kMaxDetailBytes, 'e');
  rbig.meta = std::string(kMaxMetaBytes, 'm');
  Tasks tasks;
  BatchSize ts;
  for (std::uint64_t i = 1; i <= 1000 && ts.add(batch_item_bound(big)); ++i) {
    big.id = i;
    tasks.items.push_back(big);
  }
  Results results;
  BatchSize rs;
  for (std::uint64_t i = 1; i <= 1000 && rs.add(batch_item_bound(rbig)); ++i) {
    rbig.id = i;
    results.items.push_back(rbig);
  }
  CHECK(tasks.items.size() >= 2);
  CHECK(tasks.items.size() < 10); // the size rule split it, not the count
  CHECK(results.items.size() >= 2);
  for (const Message& m : {Message{tasks}, Message{results}}) {
    const std::string frame = encode(m);
    CHECK(frame.size() <= kBatchBudgetBytes + 64);
    CHECK(frame.size() < kMaxFrameBytes);
    CHECK(std::holds_alternative<Message>(decode(frame)));
  }
  // Small items: the count bound splits them.
  BatchSize small;
  std::size_t n = 0;
  while (n < 1000 && small.add(batch_item_bound(task_n(1)))) ++n;
  CHECK(n == kMaxBatchItems);
  // The first item always joins.
  BatchSize first;
  CHECK(first.add(kBatchBudgetBytes * 4));
  CHECK_FALSE(first.add(1));
}
