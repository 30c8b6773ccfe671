// The cache's read path (ReadPath::serve → ReadResult) over a fake S3 upstream
// (tests/support/fake_origin.hpp) and the memory block device + memory index: hits and
// misses, ranges and conditionals, bypass, revalidation, stale-if-error, objects that
// change or break while they are being filled, and many readers of one cold object.
//
// Every coroutine runs on one io_context, run in bounded slices (a test fails rather than
// hangs); upstream requests are counted so "exactly one upstream GET" is asserted, not
// assumed.
#include "tagd/cache/read_path.hpp"

#include <gtest/gtest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "support/fake_origin.hpp"
#include "support/test_bytes.hpp"
#include "tagd/cache/block_device.hpp"
#include "tagd/cache/eviction.hpp"
#include "tagd/core/clock.hpp"
#include "tagd/core/metrics.hpp"

namespace tagd::cache {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using namespace std::chrono_literals;
using tagd::testing::FakeOrigin;
using tagd::testing::OriginRequest;
using Action = ReadResult::Action;

constexpr std::uint32_t kBlock = 64 * 1024;
constexpr const char* kBucket = "b";

using tagd::testing::make_bytes;

bool is_prefix_of(const std::string& part, const std::string& whole) {
  return part.size() <= whole.size() && whole.compare(0, part.size(), part) == 0;
}

// The default part (max_fetch) holds every object these tests use whole, so a whole-object
// miss is one upstream GET; tests of parts, parallel fetch and read-ahead pass their own.
ObjectCacheOptions options(std::uint64_t max_fetch = 1024 * 1024, std::chrono::milliseconds ttl = 60s,
                           std::chrono::milliseconds stale_if_error = 300s) {
  return ObjectCacheOptions{kBlock, ttl, stale_if_error, max_fetch};
}

struct Request {
  bool head = false;
  std::string key = "k";
  std::vector<std::pair<std::string, std::string>> headers;
  std::vector<std::pair<std::string, std::string>> query;
};

enum class Drain { kNone, kNext, kRead };

// One request as the client saw it.
struct Served {
  bool served = false;  // serve() returned
  ReadResult result;
  bool drained = false;  // the body was read to its clean end (or there was none)
  Status body_error;     // the body read failed
  bool threw = false;
  std::string bytes;
  std::size_t pieces = 0;

  bool finished() const { return drained || !body_error.is_ok() || threw; }
  std::string header(http::field f) const { return std::string(result.head[f]); }
};

asio::awaitable<void> drain_into(std::shared_ptr<Served> out, Drain mode, std::shared_ptr<asio::steady_timer> pause) {
  if (!out->result.body) {
    out->drained = true;
    co_return;
  }
  std::vector<char> scratch(48 * 1024);
  for (;;) {
    std::size_t n = 0;
    const char* p = scratch.data();
    if (mode == Drain::kRead) {
      auto got = co_await out->result.body->read(std::span<char>(scratch));
      if (!got) {
        out->body_error = got.error();
        co_return;
      }
      n = got.value();
    } else {
      auto got = co_await out->result.body->next(std::span<char>(scratch));
      if (!got) {
        out->body_error = got.error();
        co_return;
      }
      n = got.value().size();
      p = got.value().data();
    }
    if (n == 0) break;
    out->bytes.append(p, n);
    ++out->pieces;
    if (pause && out->pieces == 1) co_await pause->async_wait(asio::as_tuple(asio::use_awaitable));
  }
  out->drained = true;
}

asio::awaitable<void> serve_into(ReadPath& path, Request req, std::shared_ptr<Served> out, Drain mode,
                                 std::shared_ptr<asio::steady_timer> pause) {
  http::fields fields;
  for (const auto& [name, value] : req.headers) fields.insert(name, value);
  const ReadRequest request{req.head, kBucket, req.key, &req.query, &fields};
  out->result = co_await path.serve(request);
  out->served = true;
  if (mode == Drain::kNone) co_return;
  co_await drain_into(out, mode, std::move(pause));
}

// A read path over the memory device and index, a fake origin and a manual clock.
// Members are destroyed in reverse order: the io_context (and with it any detached fill
// still pending) goes before the cache it refers to.
struct Harness {
  explicit Harness(ObjectCacheOptions o, std::chrono::milliseconds upstream_timeout = 5s,
                   std::uint64_t write_queue_bytes = kDefaultWriteQueueBytes)
      : cache(make_device(), make_memory_index(), make_fifo_eviction(), make_fill_budget(1 << 30, 8), 1 << 20,
              1 << 20, o),
        path(cache, origin, clock, io.get_executor(), upstream_timeout, write_queue_bytes) {}
  std::unique_ptr<BlockDevice> make_device() {
    auto d = std::make_unique<MemoryBlockDevice>(8 << 20, 4096);
    device = d.get();
    return d;
  }
  ~Harness() {
    origin.open_gate();
    io.restart();
    io.run_for(2s);
  }

  // Runs the loop until `done`, bounded by `limit`. False on timeout, or when the loop ran
  // out of work first (nothing could ever make `done` true).
  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds limit = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      io.restart();
      io.run_for(5ms);
      if (io.stopped() && !done()) return false;
    }
    return true;
  }
  // Runs until no work is left (detached fills finished), bounded.
  bool settle(std::chrono::milliseconds limit = 10s) {
    io.restart();
    io.run_for(limit);
    return io.stopped();
  }

  std::shared_ptr<Served> start(Request req, Drain mode = Drain::kNext,
                                std::shared_ptr<asio::steady_timer> pause = nullptr) {
    auto out = std::make_shared<Served>();
    asio::co_spawn(io, serve_into(path, std::move(req), out, mode, std::move(pause)), [out](std::exception_ptr e) {
      if (e) {
        out->threw = true;
        ADD_FAILURE() << "serve/drain threw";
      }
    });
    return out;
  }
  void start_drain(const std::shared_ptr<Served>& out, Drain mode = Drain::kNext) {
    asio::co_spawn(io, drain_into(out, mode, nullptr), [out](std::exception_ptr e) {
      if (e) {
        out->threw = true;
        ADD_FAILURE() << "drain threw";
      }
    });
  }
  // serve() and drain the body; fails the test on timeout.
  Served get(Request req, Drain mode = Drain::kNext) {
    auto out = start(std::move(req), mode);
    EXPECT_TRUE(run_until([&] { return out->finished() || (out->served && mode == Drain::kNone); }))
        << "request timed out";
    return std::move(*out);
  }

  ObjectKey key(const std::string& k = "k") const { return ObjectKey{kBucket, k, ""}; }

  FakeOrigin origin;
  ManualClock clock;
  MemoryBlockDevice* device = nullptr;  // the cache's (set while `cache` is built)
  ObjectCache cache;
  asio::io_context io;
  ReadPath path;
};

Request with(std::vector<std::pair<std::string, std::string>> headers, std::string key = "k") {
  Request r;
  r.headers = std::move(headers);
  r.key = std::move(key);
  return r;
}

class ReadPathTest : public ::testing::Test {
 protected:
  Harness& use(ObjectCacheOptions o, std::chrono::milliseconds upstream_timeout = 5s,
               std::uint64_t write_queue_bytes = kDefaultWriteQueueBytes) {
    h_ = std::make_unique<Harness>(o, upstream_timeout, write_queue_bytes);
    return *h_;
  }
  // A cold GET of `key` (expected a miss with `bytes`), then every fill finished.
  void populate(Harness& h, const std::string& bytes, const std::string& key = "k") {
    Served s = h.get(with({}, key));
    ASSERT_EQ(s.result.action, Action::kRespond);
    ASSERT_EQ(s.result.outcome, CacheOutcome::kMiss);
    ASSERT_TRUE(s.drained) << s.body_error.message();
    ASSERT_EQ(s.bytes, bytes);
    ASSERT_TRUE(h.settle());
  }
  std::unique_ptr<Harness> h_;
};

// ---------------------------------------------------------------------------------------
// Miss, hit, HEAD

TEST_F(ReadPathTest, MissThenHitServesTheSameBytesWithOneUpstreamGet) {
  auto& h = use(options());
  const std::string data = make_bytes(300 * 1024, 1);
  const std::string etag =
      h.origin.put(kBucket, "k", data, {{"Content-Type", "text/plain"}, {"x-amz-meta-color", "blue"}});

  Served miss = h.get({});
  ASSERT_TRUE(miss.served);
  EXPECT_EQ(miss.result.action, Action::kRespond);
  EXPECT_EQ(miss.result.outcome, CacheOutcome::kMiss);
  EXPECT_TRUE(miss.result.error.is_ok());
  EXPECT_EQ(miss.result.head.result_int(), 200);
  EXPECT_EQ(miss.header(http::field::content_length), std::to_string(data.size()));
  EXPECT_EQ(miss.header(http::field::etag), etag);
  ASSERT_TRUE(miss.drained) << miss.body_error.message();
  EXPECT_EQ(miss.bytes.size(), data.size());
  EXPECT_TRUE(miss.bytes == data);
  EXPECT_EQ(h.origin.gets(), 1u);
  ASSERT_TRUE(h.settle());

  Served hit = h.get({}, Drain::kRead);
  EXPECT_EQ(hit.result.action, Action::kRespond);
  EXPECT_EQ(hit.result.outcome, CacheOutcome::kHit);
  EXPECT_EQ(hit.result.head.result_int(), 200);
  EXPECT_EQ(hit.header(http::field::etag), etag);
  EXPECT_EQ(hit.header(http::field::content_type), "text/plain");
  EXPECT_EQ(std::string(hit.result.head["x-amz-meta-color"]), "blue");
  ASSERT_TRUE(hit.drained) << hit.body_error.message();
  EXPECT_TRUE(hit.bytes == data);
  EXPECT_EQ(h.origin.gets(), 1u) << "a hit must not go upstream";
  EXPECT_EQ(h.origin.requests().size(), 1u);
}

TEST_F(ReadPathTest, StartAnswersAFreshCachedHitWithoutWaitingAndHandsTheRestOn) {
  auto& h = use(options(1024 * 1024, 60s));
  const std::string data = make_bytes(200 * 1024, 3);
  h.origin.put(kBucket, "k", data);
  http::fields none;
  std::vector<std::pair<std::string, std::string>> query;
  const ReadRequest get{false, kBucket, "k", &query, &none};

  // Not cached: start() stops at the miss, resume() fills and answers.
  ReadPath::Started cold = h.path.start(get);
  ASSERT_TRUE(cold.rest) << "a miss has to wait for the upstream";
  auto out = std::make_shared<Served>();
  asio::co_spawn(h.io, [&h, out, rest = std::move(cold.rest)]() mutable -> asio::awaitable<void> {
    out->result = co_await h.path.resume(std::move(rest));
    out->served = true;
    co_await drain_into(out, Drain::kNext, nullptr);
  }, [](std::exception_ptr e) { EXPECT_FALSE(e) << "resume threw"; });
  ASSERT_TRUE(h.run_until([&] { return out->finished(); }));
  EXPECT_EQ(out->result.outcome, CacheOutcome::kMiss);
  EXPECT_TRUE(out->bytes == data);
  ASSERT_TRUE(h.settle());

  // Cached and fresh: the whole answer from start(), body included, nothing upstream.
  ReadPath::Started hit = h.path.start(get);
  ASSERT_FALSE(hit.rest);
  EXPECT_EQ(hit.result.action, Action::kRespond);
  EXPECT_EQ(hit.result.outcome, CacheOutcome::kHit);
  ASSERT_TRUE(hit.result.body);
  auto served = std::make_shared<Served>();
  served->result = std::move(hit.result);
  h.start_drain(served);
  ASSERT_TRUE(h.run_until([&] { return served->finished(); }));
  EXPECT_TRUE(served->bytes == data);

  // A range and a failed condition are decided there too.
  http::fields range;
  range.insert(http::field::range, "bytes=10-19");
  ReadPath::Started ranged = h.path.start(ReadRequest{false, kBucket, "k", &query, &range});
  ASSERT_FALSE(ranged.rest);
  EXPECT_EQ(ranged.result.body_length, 10u);
  http::fields if_match;
  if_match.insert(http::field::if_match, "\"other\"");
  ReadPath::Started failed = h.path.start(ReadRequest{false, kBucket, "k", &query, &if_match});
  ASSERT_FALSE(failed.rest);
  EXPECT_EQ(failed.result.error.code(), ErrorCode::kPreconditionFailed);

  // Stale: the revalidation waits for the upstream.
  h.clock.advance(61s);
  ReadPath::Started stale = h.path.start(get);
  EXPECT_TRUE(stale.rest);
  EXPECT_EQ(h.origin.requests().size(), 1u) << "start() sends nothing upstream";
}

TEST_F(ReadPathTest, TryNextLendsBlocksInMemoryAndLeavesTheRestToNext) {
  // 33 blocks of 64 KiB filled in order by one GET through a 1 MiB (16-block) DRAM tier,
  // its body not read (a reader would mark the blocks it reads from the tier as used, and
  // which ones those are depends on timing): the last 16 stay in memory, the first ones
  // are on disk only.
  auto& h = use(options(4 * 1024 * 1024));
  const std::string data = make_bytes(2 * 1024 * 1024 + 100, 5);
  h.origin.put(kBucket, "k", data);
  {
    Served fill = h.get({}, Drain::kNone);
    ASSERT_EQ(fill.result.outcome, CacheOutcome::kMiss);
  }
  ASSERT_TRUE(h.settle());
  const auto gets_after_fill = h.origin.gets();
  struct Tally {
    std::string bytes;
    int ready = 0, waited = 0;
    bool ended = false;
    Status error;
  };
  // Drains a ranged hit the way the response writer does: try_next(), else next().
  auto drain = [&h](std::uint64_t first, std::uint64_t last) {
    http::fields range;
    range.insert(http::field::range, "bytes=" + std::to_string(first) + "-" + std::to_string(last));
    std::vector<std::pair<std::string, std::string>> query;
    ReadPath::Started hit = h.path.start(ReadRequest{false, kBucket, "k", &query, &range});
    auto tally = std::make_shared<Tally>();
    EXPECT_FALSE(hit.rest);
    if (hit.rest || !hit.result.body) return tally;
    asio::co_spawn(
        h.io,
        [tally, body = std::move(hit.result.body)]() -> asio::awaitable<void> {
          std::vector<char> scratch(16 * 1024);
          for (;;) {
            std::optional<Result<std::span<const char>>> got = body->try_next(std::span<char>(scratch));
            if (got) {
              ++tally->ready;
            } else {
              ++tally->waited;
              got = co_await body->next(std::span<char>(scratch));
            }
            if (!*got) {
              tally->error = got->error();
              co_return;
            }
            if ((*got)->empty()) break;
            tally->bytes.append((*got)->data(), (*got)->size());
          }
          tally->ended = true;
        },
        [](std::exception_ptr e) { EXPECT_FALSE(e); });
    EXPECT_TRUE(h.run_until([&] { return tally->ended || !tally->error.is_ok(); }));
    EXPECT_TRUE(tally->error.is_ok()) << tally->error.message();
    return tally;
  };
  const std::uint64_t b = kBlock;
  auto in_memory = drain(24 * b, 32 * b - 1);
  EXPECT_TRUE(in_memory->bytes == data.substr(24 * b, 8 * b));
  EXPECT_EQ(in_memory->waited, 0) << "blocks in the DRAM tier are lent by try_next()";
  EXPECT_EQ(in_memory->ready, 9) << "eight whole blocks, then the end";
  auto on_disk = drain(0, 4 * b - 1);
  EXPECT_TRUE(on_disk->bytes == data.substr(0, 4 * b));
  EXPECT_EQ(on_disk->waited, 4) << "each block on disk only is read by next()";
  EXPECT_EQ(h.origin.gets(), gets_after_fill) << "a hit must not go upstream";
}

TEST_F(ReadPathTest, HeadOnACachedObjectIsAHitWithContentLengthAndNoBody) {
  auto& h = use(options());
  const std::string data = make_bytes(200 * 1024, 2);
  const std::string etag = h.origin.put(kBucket, "k", data);
  populate(h, data);

  Request req;
  req.head = true;
  Served head = h.get(req);
  EXPECT_EQ(head.result.action, Action::kRespond);
  EXPECT_EQ(head.result.outcome, CacheOutcome::kHit);
  EXPECT_EQ(head.result.head.result_int(), 200);
  EXPECT_EQ(head.header(http::field::content_length), std::to_string(data.size()));
  EXPECT_EQ(head.header(http::field::etag), etag);
  EXPECT_EQ(head.result.body, nullptr);
  EXPECT_EQ(head.result.body_length, std::optional<std::uint64_t>(data.size()));
  EXPECT_EQ(h.origin.requests().size(), 1u);
}

TEST_F(ReadPathTest, HeadMissFillsTheMetadataOnlyAndAGetThenFetchesTheBlocks) {
  auto& h = use(options());
  const std::string data = make_bytes(200 * 1024, 3);
  const std::string etag = h.origin.put(kBucket, "k", data, {{"Content-Type", "text/csv"}});
  const auto head_fills = metrics().fill_cause_head.get();

  Request req;
  req.head = true;
  Served head = h.get(req);
  EXPECT_EQ(head.result.action, Action::kRespond);
  EXPECT_EQ(head.result.outcome, CacheOutcome::kMiss);
  EXPECT_EQ(head.result.head.result_int(), 200);
  EXPECT_EQ(head.header(http::field::content_length), std::to_string(data.size()));
  EXPECT_EQ(head.header(http::field::etag), etag);
  EXPECT_EQ(head.header(http::field::content_type), "text/csv");
  EXPECT_EQ(head.result.body, nullptr);
  ASSERT_EQ(h.origin.requests().size(), 1u);
  EXPECT_EQ(h.origin.requests()[0].method, http::verb::head) << "a HEAD miss never downloads the object";
  EXPECT_EQ(metrics().fill_cause_head.get(), head_fills + 1);
  ASSERT_TRUE(h.cache.lookup(h.key()).has_value());

  Served again = h.get(req);
  EXPECT_EQ(again.result.outcome, CacheOutcome::kHit);
  EXPECT_EQ(h.origin.requests().size(), 1u) << "the second HEAD is answered from the metadata";

  // The metadata alone is not a hit for a GET: its blocks come from upstream (If-Match).
  Served get = h.get({});
  EXPECT_EQ(get.result.outcome, CacheOutcome::kMiss);
  ASSERT_TRUE(get.drained) << get.body_error.message();
  EXPECT_TRUE(get.bytes == data);
  ASSERT_EQ(h.origin.gets(), 1u);
  EXPECT_EQ(h.origin.gets_of("k")[0].if_match, etag);
  ASSERT_TRUE(h.settle());
  Served hit = h.get({});
  EXPECT_EQ(hit.result.outcome, CacheOutcome::kHit);
  EXPECT_TRUE(hit.bytes == data);
  EXPECT_EQ(h.origin.gets(), 1u);
}

TEST_F(ReadPathTest, HeadMissOfAMissingKeyRelaysTheUpstreamAnswer) {
  auto& h = use(options());
  Request req;
  req.head = true;
  req.key = "missing";
  Served head = h.get(req);
  EXPECT_EQ(head.result.action, Action::kRespond);
  EXPECT_EQ(head.result.outcome, CacheOutcome::kMiss);
  EXPECT_EQ(head.result.head.result_int(), 404);
  EXPECT_EQ(h.origin.requests().size(), 1u) << "relayed, not asked twice";
  EXPECT_FALSE(h.cache.lookup(h.key("missing")).has_value());
}

TEST_F(ReadPathTest, ConditionalMissesFillAndAreAnsweredAsS3Would) {
  auto& h = use(options());
  const std::string data = make_bytes(100 * 1024, 30);
  const std::string etag = h.origin.put(kBucket, "k", data);
  const auto conditional_fills = metrics().fill_cause_conditional.get();

  // If-Match that holds (what s3transfer sends on every ranged GET): filled and answered.
  Served matching = h.get(with({{"If-Match", etag}, {"Range", "bytes=0-99"}}));
  EXPECT_EQ(matching.result.outcome, CacheOutcome::kMiss);
  EXPECT_EQ(matching.result.head.result_int(), 206);
  EXPECT_TRUE(matching.bytes == data.substr(0, 100));
  ASSERT_TRUE(h.settle());
  EXPECT_TRUE(h.origin.requests().back().if_match.empty()) << "the fill asks without the client's condition";
  Served cached = h.get(with({{"If-Match", etag}, {"Range", "bytes=100-199"}}));
  EXPECT_EQ(cached.result.outcome, CacheOutcome::kHit);
  EXPECT_TRUE(cached.bytes == data.substr(100, 100));

  // Whole-object If-Match on another key: a conditional fill.
  const std::string other = h.origin.put(kBucket, "other", data);
  Served whole = h.get(with({{"If-Match", other}}, "other"));
  EXPECT_EQ(whole.result.outcome, CacheOutcome::kMiss);
  EXPECT_EQ(whole.result.head.result_int(), 200);
  EXPECT_TRUE(whole.bytes == data);
  EXPECT_EQ(metrics().fill_cause_conditional.get(), conditional_fills + 1);

  // If-Match that fails: 412 from the metadata the fill brought back.
  const std::string third = h.origin.put(kBucket, "third", data);
  Served failed = h.get(with({{"If-Match", "\"nope\""}}, "third"));
  EXPECT_EQ(failed.result.action, Action::kRespond);
  EXPECT_EQ(failed.result.error.code(), ErrorCode::kPreconditionFailed);
  ASSERT_TRUE(h.settle());
  EXPECT_TRUE(h.cache.lookup(h.key("third")).has_value()) << "filled all the same";

  // If-None-Match with the current ETag on a cold key: the metadata only, then a 304.
  const std::string fourth = h.origin.put(kBucket, "fourth", data);
  const std::size_t before = h.origin.requests().size();
  Served not_modified = h.get(with({{"If-None-Match", fourth}}, "fourth"));
  EXPECT_EQ(not_modified.result.outcome, CacheOutcome::kMiss);
  EXPECT_EQ(not_modified.result.head.result_int(), 304);
  ASSERT_EQ(h.origin.requests().size(), before + 1);
  EXPECT_EQ(h.origin.requests().back().method, http::verb::head) << "a 304 needs no body";

  // If-None-Match with another ETag: 200 with the body.
  const std::string fifth = h.origin.put(kBucket, "fifth", data);
  Served modified = h.get(with({{"If-None-Match", "\"old\""}}, "fifth"));
  EXPECT_EQ(modified.result.head.result_int(), 200);
  ASSERT_TRUE(modified.drained) << modified.body_error.message();
  EXPECT_TRUE(modified.bytes == data);

  // Dates: If-Modified-Since after Last-Modified → 304; If-Unmodified-Since before → 412.
  h.origin.put(kBucket, "dated", data);
  Served ims = h.get(with({{"If-Modified-Since", "Fri, 01 Jan 2100 00:00:00 GMT"}}, "dated"));
  EXPECT_EQ(ims.result.head.result_int(), 304);
  h.origin.put(kBucket, "dated2", data);
  Served ius = h.get(with({{"If-Unmodified-Since", "Sat, 01 Jan 2000 00:00:00 GMT"}}, "dated2"));
  EXPECT_EQ(ius.result.error.code(), ErrorCode::kPreconditionFailed);
}

TEST_F(ReadPathTest, SuffixRangeMissFillsInOneRequestFromABlockBoundary) {
  auto& h = use(options());
  const std::string data = make_bytes(300 * 1024, 31);  // blocks 0-4, the last one 44 KiB
  h.origin.put(kBucket, "k", data);
  const auto suffix_fills = metrics().fill_cause_suffix.get();

  Served footer = h.get(with({{"Range", "bytes=-100"}}));
  EXPECT_EQ(footer.result.outcome, CacheOutcome::kMiss);
  EXPECT_EQ(footer.result.head.result_int(), 206);
  EXPECT_EQ(footer.header(http::field::content_range),
            "bytes " + std::to_string(data.size() - 100) + "-" + std::to_string(data.size() - 1) + "/" +
                std::to_string(data.size()));
  ASSERT_TRUE(footer.drained) << footer.body_error.message();
  EXPECT_TRUE(footer.bytes == data.substr(data.size() - 100));
  ASSERT_EQ(h.origin.gets(), 1u);
  EXPECT_EQ(h.origin.requests()[0].suffix_length, std::optional<std::uint64_t>(100 + kBlock))
      << "one block more than asked, so a block boundary lies inside the answer";
  EXPECT_EQ(metrics().fill_cause_suffix.get(), suffix_fills + 1);
  ASSERT_TRUE(h.settle());
  const std::uint64_t kh = h.key().hash();
  const std::string etag = h.cache.lookup(h.key())->etag;
  EXPECT_TRUE(h.cache.block_cached(kh, etag, 4));
  EXPECT_FALSE(h.cache.block_cached(kh, etag, 3)) << "the partial block before the boundary is not stored";

  // The footer's length, then the footer: both from the cache now.
  Served again = h.get(with({{"Range", "bytes=-8"}}));
  EXPECT_EQ(again.result.outcome, CacheOutcome::kHit);
  EXPECT_TRUE(again.bytes == data.substr(data.size() - 8));
  EXPECT_EQ(h.origin.gets(), 1u);

  // A suffix longer than a small object: all of it.
  const std::string small = make_bytes(1000, 32);
  h.origin.put(kBucket, "small", small);
  Served all = h.get(with({{"Range", "bytes=-5000"}}, "small"));
  EXPECT_EQ(all.result.head.result_int(), 206);
  EXPECT_EQ(all.header(http::field::content_range), "bytes 0-999/1000");
  EXPECT_TRUE(all.bytes == small);
}

TEST_F(ReadPathTest, WholeObjectMissFetchesItsPartsInParallelAheadOfTheReader) {
  ObjectCacheOptions o = options(/*max_fetch=*/128 * 1024);
  o.fetch_parallelism = 4;
  auto& h = use(o);
  const std::string data = make_bytes(1024 * 1024, 33);  // 8 parts of 2 blocks
  h.origin.put(kBucket, "k", data);
  const auto parallel = metrics().fill_cause_parallel.get();
  h.origin.close_gate();

  auto reader = h.start({});
  // The first part, then three more ahead of the reader (4 in flight), all held.
  ASSERT_TRUE(h.run_until([&] { return reader->served && h.origin.blocked_reads() == 4; }));
  EXPECT_EQ(h.origin.gets(), 4u);
  EXPECT_EQ(metrics().fill_cause_parallel.get(), parallel + 3);
  h.origin.open_gate();
  ASSERT_TRUE(h.run_until([&] { return reader->finished(); }));
  ASSERT_TRUE(reader->drained) << reader->body_error.message();
  EXPECT_TRUE(reader->bytes == data);
  ASSERT_TRUE(h.settle());
  EXPECT_EQ(h.origin.gets(), 8u);
  EXPECT_EQ(h.origin.body_bytes_sent(), data.size()) << "each byte fetched once";
  EXPECT_EQ(h.origin.max_open_bodies(), 4u) << "cache.fetch_parallelism parts in flight, never more";
  for (const auto& r : h.origin.requests()) {
    ASSERT_TRUE(r.range.has_value());
    EXPECT_EQ(r.range->length(), 128u * 1024);
  }
}

TEST_F(ReadPathTest, PrefetchBudgetSpentLeavesTheReaderFetchingBlocksItself) {
  ObjectCacheOptions o = options(/*max_fetch=*/128 * 1024);
  o.fetch_parallelism = 4;
  o.prefetch_budget = 0;
  auto& h = use(o);
  const std::string data = make_bytes(512 * 1024, 34);
  h.origin.put(kBucket, "k", data);
  const auto spent = metrics().cache_prefetch_budget_spent.get();
  Served s = h.get({});
  ASSERT_TRUE(s.drained) << s.body_error.message();
  EXPECT_TRUE(s.bytes == data);
  EXPECT_GT(metrics().cache_prefetch_budget_spent.get(), spent);
  EXPECT_EQ(h.origin.body_bytes_sent(), data.size());
}

TEST_F(ReadPathTest, ReadAheadFollowsSequentialRangesGrowsAndStopsAtTheEnd) {
  ObjectCacheOptions o = options(/*max_fetch=*/128 * 1024);
  o.read_ahead.initial_window = kBlock;
  o.read_ahead.max_window = 4 * kBlock;
  auto& h = use(o);
  const std::string data = make_bytes(16 * kBlock, 35);
  h.origin.put(kBucket, "k", data);
  const auto readahead = metrics().fill_cause_readahead.get();
  const auto prefetched = metrics().cache_prefetch_bytes.get();
  const auto used = metrics().cache_prefetch_used_bytes.get();

  std::size_t misses = 0;
  for (std::uint64_t first = 0; first < data.size(); first += kBlock) {
    Served s = h.get(with({{"Range", "bytes=" + std::to_string(first) + "-" + std::to_string(first + kBlock - 1)}}));
    ASSERT_TRUE(s.drained) << s.body_error.message();
    ASSERT_TRUE(s.bytes == data.substr(first, kBlock));
    misses += s.result.outcome == CacheOutcome::kMiss;
    ASSERT_TRUE(h.settle());
  }
  // The first two reads miss; from then on read-ahead runs in front of the reader.
  EXPECT_LE(misses, 3u);
  EXPECT_GT(metrics().fill_cause_readahead.get(), readahead);
  EXPECT_EQ(h.origin.body_bytes_sent(), data.size()) << "nothing fetched twice, nothing past the end";
  for (const auto& r : h.origin.requests()) {
    ASSERT_TRUE(r.range.has_value());
    EXPECT_LT(r.range->last, data.size());
  }
  const auto fetched_ahead = metrics().cache_prefetch_bytes.get() - prefetched;
  EXPECT_GT(fetched_ahead, 0u);
  EXPECT_EQ(metrics().cache_prefetch_used_bytes.get() - used, fetched_ahead) << "a sequential reader wastes none";
}

TEST_F(ReadPathTest, ReadAheadStopsOnAJump) {
  // Parts of 4 blocks: a small read still fetches only the block it needs.
  ObjectCacheOptions o = options(/*max_fetch=*/4 * kBlock);
  o.read_ahead.initial_window = kBlock;
  o.read_ahead.max_window = 4 * kBlock;
  auto& h = use(o);
  const std::string data = make_bytes(64 * kBlock, 36);
  h.origin.put(kBucket, "k", data);
  auto read = [&](std::uint64_t block) {
    const std::uint64_t first = block * kBlock;
    Served s = h.get(with({{"Range", "bytes=" + std::to_string(first) + "-" + std::to_string(first + 99)}}));
    ASSERT_TRUE(s.bytes == data.substr(first, 100));
    ASSERT_TRUE(h.settle());
  };
  read(0);
  read(1);  // a stream: one block ahead
  const std::size_t after_stream = h.origin.gets();
  EXPECT_EQ(after_stream, 3u);
  read(40);  // a jump: just the block it needs
  EXPECT_EQ(h.origin.gets(), after_stream + 1);
  read(20);  // and another, backwards
  EXPECT_EQ(h.origin.gets(), after_stream + 2);
}

TEST_F(ReadPathTest, SequentialReaderIsFetchedInWholeAlignedPartsWithinFetchParallelism) {
  // 1-block reads over 64 blocks in parts of 4 blocks: read-ahead (windows of 1 block
  // doubling to 16) asks whole aligned parts, not 1-, 2- and 4-block runs, and never more
  // than fetch_parallelism fetches of the object are in flight.
  constexpr std::uint64_t kPart = 4;
  ObjectCacheOptions o = options(/*max_fetch=*/kPart * kBlock);
  o.fetch_parallelism = 3;
  o.read_ahead.initial_window = kBlock;
  o.read_ahead.max_window = 16 * kBlock;
  auto& h = use(o);
  const std::string data = make_bytes(64 * kBlock, 40);
  h.origin.put(kBucket, "k", data);
  h.origin.read_delay = 1ms;  // fetches overlap the reader
  const auto prefetched = metrics().cache_prefetch_bytes.get();
  const auto used = metrics().cache_prefetch_used_bytes.get();
  const auto held = metrics().cache_prefetch_held.get();

  for (std::uint64_t first = 0; first < data.size(); first += kBlock) {
    Served s = h.get(with({{"Range", "bytes=" + std::to_string(first) + "-" + std::to_string(first + kBlock - 1)}}));
    ASSERT_TRUE(s.drained) << s.body_error.message();
    ASSERT_TRUE(s.bytes == data.substr(first, kBlock)) << "at " << first;
    ASSERT_LE(h.cache.sequential_detector().fetches_in_flight(h.key().hash()), 3u);
  }
  ASSERT_TRUE(h.settle());
  EXPECT_EQ(h.origin.body_bytes_sent(), data.size()) << "nothing fetched twice, nothing past the end";
  EXPECT_LE(h.origin.max_open_bodies(), 3u) << "fetches of the object in flight held to fetch_parallelism";
  EXPECT_GT(metrics().cache_prefetch_held.get(), held) << "the window wanted more than the limit allowed";
  // The first two reads fetch their own blocks (0, 1), and read-ahead the rest of the
  // first part (2-3); after that, one request per whole, aligned part.
  const auto gets = h.origin.gets_of("k");
  EXPECT_EQ(gets.size(), 3u + 64 / kPart - 1);
  std::size_t whole_parts = 0;
  for (const auto& r : gets) {
    ASSERT_TRUE(r.range.has_value());
    if (r.range->first < kPart * kBlock) continue;
    EXPECT_EQ(r.range->first % (kPart * kBlock), 0u) << "part-aligned: " << r.range->first;
    EXPECT_EQ(r.range->length(), kPart * kBlock) << "a whole part at " << r.range->first;
    ++whole_parts;
  }
  EXPECT_EQ(whole_parts, 64 / kPart - 1);
  const auto fetched_ahead = metrics().cache_prefetch_bytes.get() - prefetched;
  EXPECT_GT(fetched_ahead, 0u);
  EXPECT_EQ(metrics().cache_prefetch_used_bytes.get() - used, fetched_ahead) << "a sequential reader wastes none";
}

TEST_F(ReadPathTest, ClientReadingInParallelGetsNoReadAheadStackedOnItsOwnParts) {
  // s3transfer's download_file: a HEAD, then whole parts as ranged GETs with If-Match,
  // several in flight, each thread asking the next part when its part is done. Its own
  // requests keep the upstream busy: tagd adds no read-ahead, and every upstream request
  // is one of the client's parts.
  constexpr std::uint64_t kPart = 4 * kBlock;
  constexpr int kThreads = 3;
  ObjectCacheOptions o = options(/*max_fetch=*/kPart);
  o.fetch_parallelism = 8;
  o.read_ahead.initial_window = kBlock;
  o.read_ahead.max_window = 32 * kBlock;
  auto& h = use(o);
  const std::string data = make_bytes(12 * kPart, 41);
  const std::string etag = h.origin.put(kBucket, "k", data);
  h.origin.read_delay = 1ms;
  Served head = h.get([] {
    Request r;
    r.head = true;
    return r;
  }());
  ASSERT_EQ(head.result.outcome, CacheOutcome::kMiss);
  const auto readahead = metrics().fill_cause_readahead.get();
  const auto parallel_reads = metrics().cache_readahead_parallel_reads.get();

  std::vector<std::shared_ptr<Served>> parts(12);
  std::size_t next = 0;
  auto start_next = [&] {
    const std::uint64_t first = next * kPart;
    parts[next++] = h.start(with({{"Range", "bytes=" + std::to_string(first) + "-" + std::to_string(first + kPart - 1)},
                                  {"If-Match", etag}}));
  };
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  for (;;) {
    std::size_t running = 0;
    for (std::size_t i = 0; i < next; ++i) {
      // The gateway drops a body once it is written: this request is no longer in flight.
      if (parts[i]->finished()) parts[i]->result.body.reset();
      running += !parts[i]->finished();
    }
    while (running < kThreads && next < parts.size()) {
      start_next();
      ++running;
    }
    if (running == 0) break;
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the download timed out";
    h.io.restart();
    h.io.run_for(5ms);
  }
  for (std::size_t i = 0; i < parts.size(); ++i) {
    ASSERT_TRUE(parts[i]->drained) << "part " << i << ": " << parts[i]->body_error.message();
    ASSERT_EQ(parts[i]->result.body, nullptr) << "dropped when it was read, as the gateway does";
    ASSERT_TRUE(parts[i]->bytes == data.substr(i * kPart, kPart)) << "part " << i;
  }
  ASSERT_TRUE(h.settle());
  EXPECT_EQ(metrics().fill_cause_readahead.get(), readahead) << "no read-ahead on top of a parallel client";
  EXPECT_GT(metrics().cache_readahead_parallel_reads.get(), parallel_reads);
  EXPECT_LE(h.origin.max_open_bodies(), static_cast<std::size_t>(kThreads));
  EXPECT_EQ(h.origin.body_bytes_sent(), data.size());
  const auto gets = h.origin.gets_of("k");
  EXPECT_EQ(gets.size(), parts.size()) << "one upstream request per part";
  for (const auto& r : gets) {
    ASSERT_TRUE(r.range.has_value());
    EXPECT_EQ(r.range->first % kPart, 0u);
    EXPECT_EQ(r.range->length(), kPart);
  }
}

TEST_F(ReadPathTest, MissReaderGetsItsFirstBytesBeforeTheBlockIsComplete) {
  // A one-block object: the response does not wait for the whole block (nor its write);
  // the first bytes the upstream sends are the reader's at once. The origin's reads return
  // what has arrived (a quarter block), as the upstream client's do (one socket read each;
  // tests/cache/fill_engine_streaming_test.cpp proves it over the real client).
  auto& h = use(options());
  const std::string data = make_bytes(kBlock, 42);
  const std::string etag = h.origin.put(kBucket, "k", data);
  h.origin.piece_size = kBlock / 4;
  h.origin.close_gate();
  h.origin.allow_reads(1);  // the fill's first read, then the gate holds

  auto reader = h.start({});
  ASSERT_TRUE(h.run_until([&] { return reader->pieces >= 1 && h.origin.blocked_reads() == 1; }));
  EXPECT_EQ(reader->result.outcome, CacheOutcome::kMiss);
  EXPECT_EQ(reader->header(http::field::content_length), std::to_string(kBlock));
  EXPECT_LT(reader->bytes.size(), data.size());
  EXPECT_TRUE(is_prefix_of(reader->bytes, data));
  EXPECT_FALSE(h.cache.block_cached(h.key().hash(), etag, 0)) << "the block is not complete yet";
  EXPECT_FALSE(reader->finished());

  h.origin.open_gate();
  ASSERT_TRUE(h.run_until([&] { return reader->finished(); }));
  ASSERT_TRUE(reader->drained) << reader->body_error.message();
  EXPECT_TRUE(reader->bytes == data);
  ASSERT_TRUE(h.settle());
  EXPECT_TRUE(h.cache.block_cached(h.key().hash(), etag, 0)) << "written once the loop settled";
  Served again = h.get({});
  EXPECT_EQ(again.result.outcome, CacheOutcome::kHit);
  EXPECT_TRUE(again.bytes == data);
  EXPECT_EQ(h.origin.gets(), 1u);
}

TEST_F(ReadPathTest, FullWriteQueueWritesBlocksOnTheLoopAndStillCachesThem) {
  // No room in the writer's queue: each block is written by the loop itself, counted.
  auto& h = use(options(), 5s, /*write_queue_bytes=*/0);
  const std::string data = make_bytes(3 * kBlock + 100, 43);
  const std::string etag = h.origin.put(kBucket, "k", data);
  const auto inline_writes = metrics().cache_fill_writes_inline.get();
  populate(h, data);
  EXPECT_EQ(metrics().cache_fill_writes_inline.get(), inline_writes + 4);
  for (std::uint64_t b = 0; b < 4; ++b) EXPECT_TRUE(h.cache.block_cached(h.key().hash(), etag, b)) << b;
  Served again = h.get({});
  EXPECT_EQ(again.result.outcome, CacheOutcome::kHit);
  EXPECT_TRUE(again.bytes == data);
  EXPECT_EQ(h.origin.gets(), 1u);
}

TEST_F(ReadPathTest, FailedBlockWritePublishesNothingAndIsCounted) {
  // The writer thread's device write fails (disk full): the reader already had the bytes
  // from memory; no block is indexed, the failure is counted, the next read refetches.
  auto& h = use(options());
  const std::string data = make_bytes(2 * kBlock, 44);
  const std::string etag = h.origin.put(kBucket, "k", data);
  h.device->fail_writes_after(0);
  const auto errors = metrics().cache_write_errors.get();
  const auto inline_writes = metrics().cache_fill_writes_inline.get();
  populate(h, data);
  // (A block whose write failed before the reader reached it is fetched again for it.)
  EXPECT_GE(metrics().cache_write_errors.get(), errors + 2);
  EXPECT_EQ(metrics().cache_fill_writes_inline.get(), inline_writes) << "written off the loop";
  EXPECT_FALSE(h.cache.block_cached(h.key().hash(), etag, 0));
  EXPECT_FALSE(h.cache.block_cached(h.key().hash(), etag, 1));
  EXPECT_EQ(h.cache.find(h.key().hash(), etag, 0), nullptr) << "out of the in-flight registry";
  EXPECT_EQ(h.cache.find(h.key().hash(), etag, 1), nullptr);
  const std::size_t gets = h.origin.gets();
  Served again = h.get({});
  ASSERT_TRUE(again.drained) << again.body_error.message();
  EXPECT_EQ(again.result.outcome, CacheOutcome::kMiss) << "nothing was cached";
  EXPECT_TRUE(again.bytes == data);
  EXPECT_GT(h.origin.gets(), gets) << "fetched again";
}

// ---------------------------------------------------------------------------------------
// Ranges and conditionals

TEST_F(ReadPathTest, RangesOnAHit) {
  auto& h = use(options());
  const std::string data = make_bytes(300 * 1024, 4);
  h.origin.put(kBucket, "k", data);
  populate(h, data);

  Served r = h.get(with({{"Range", "bytes=100-70000"}}));
  EXPECT_EQ(r.result.action, Action::kRespond);
  EXPECT_EQ(r.result.outcome, CacheOutcome::kHit);
  EXPECT_EQ(r.result.head.result_int(), 206);
  EXPECT_EQ(r.header(http::field::content_range), "bytes 100-70000/" + std::to_string(data.size()));
  EXPECT_EQ(r.header(http::field::content_length), "69901");
  ASSERT_TRUE(r.drained);
  EXPECT_TRUE(r.bytes == data.substr(100, 69901));

  Served suffix = h.get(with({{"Range", "bytes=-100"}}), Drain::kRead);
  EXPECT_EQ(suffix.result.head.result_int(), 206);
  EXPECT_EQ(suffix.header(http::field::content_range),
            "bytes " + std::to_string(data.size() - 100) + "-" + std::to_string(data.size() - 1) + "/" +
                std::to_string(data.size()));
  EXPECT_TRUE(suffix.bytes == data.substr(data.size() - 100));

  Served open = h.get(with({{"Range", "bytes=200000-"}}));
  EXPECT_EQ(open.result.head.result_int(), 206);
  EXPECT_TRUE(open.bytes == data.substr(200000));

  Served clipped = h.get(with({{"Range", "bytes=307000-999999"}}));
  EXPECT_EQ(clipped.result.head.result_int(), 206);
  EXPECT_EQ(clipped.header(http::field::content_range), "bytes 307000-307199/307200");
  EXPECT_TRUE(clipped.bytes == data.substr(307000));

  Served unsatisfiable = h.get(with({{"Range", "bytes=307200-"}}));
  EXPECT_EQ(unsatisfiable.result.action, Action::kRespond);
  EXPECT_EQ(unsatisfiable.result.outcome, CacheOutcome::kHit);
  EXPECT_EQ(unsatisfiable.result.error.code(), ErrorCode::kInvalidRange);
  EXPECT_EQ(unsatisfiable.result.body, nullptr);

  EXPECT_EQ(h.origin.requests().size(), 1u) << "ranges of a cached object are answered from blocks";
}

TEST_F(ReadPathTest, ConditionalsOnAHit) {
  auto& h = use(options());
  const std::string data = make_bytes(100 * 1024, 5);
  const std::string etag = h.origin.put(kBucket, "k", data);
  populate(h, data);

  Served not_modified = h.get(with({{"If-None-Match", etag}}));
  EXPECT_EQ(not_modified.result.action, Action::kRespond);
  EXPECT_EQ(not_modified.result.outcome, CacheOutcome::kHit);
  EXPECT_TRUE(not_modified.result.error.is_ok());
  EXPECT_EQ(not_modified.result.head.result_int(), 304);
  EXPECT_EQ(not_modified.header(http::field::etag), etag);
  EXPECT_EQ(not_modified.result.body, nullptr);
  EXPECT_TRUE(not_modified.bytes.empty());

  Served other = h.get(with({{"If-None-Match", "\"something-else\""}}));
  EXPECT_EQ(other.result.head.result_int(), 200);
  EXPECT_TRUE(other.bytes == data);

  Served failed = h.get(with({{"If-Match", "\"something-else\""}}));
  EXPECT_EQ(failed.result.action, Action::kRespond);
  EXPECT_EQ(failed.result.outcome, CacheOutcome::kHit);
  EXPECT_EQ(failed.result.error.code(), ErrorCode::kPreconditionFailed);
  EXPECT_EQ(failed.result.body, nullptr);

  Served matched = h.get(with({{"If-Match", etag}, {"Range", "bytes=10-19"}}));
  EXPECT_TRUE(matched.result.error.is_ok());
  EXPECT_EQ(matched.result.head.result_int(), 206);
  EXPECT_TRUE(matched.bytes == data.substr(10, 10));

  EXPECT_EQ(h.origin.requests().size(), 1u);
}

TEST_F(ReadPathTest, ColdRangeMissFetchesTheCoveringBlockThenTheRestOnceEach) {
  auto& h = use(options(/*max_fetch=*/128 * 1024));
  const std::string data = make_bytes(300 * 1024, 6);
  h.origin.put(kBucket, "k", data);

  Served r = h.get(with({{"Range", "bytes=70000-70099"}}));
  EXPECT_EQ(r.result.outcome, CacheOutcome::kMiss);
  EXPECT_EQ(r.result.head.result_int(), 206);
  EXPECT_EQ(r.header(http::field::content_range), "bytes 70000-70099/307200");
  EXPECT_TRUE(r.bytes == data.substr(70000, 100));
  ASSERT_EQ(h.origin.gets(), 1u);
  ASSERT_TRUE(h.origin.requests()[0].range.has_value());
  EXPECT_EQ(h.origin.requests()[0].range->first, 65536u) << "one block covers the range";
  EXPECT_EQ(h.origin.requests()[0].range->last, 131071u);
  ASSERT_TRUE(h.settle());

  Served whole = h.get({});
  EXPECT_EQ(whole.result.outcome, CacheOutcome::kMiss) << "it fetched blocks: not served from the cache";
  ASSERT_TRUE(whole.drained) << whole.body_error.message();
  EXPECT_TRUE(whole.bytes == data);
  ASSERT_TRUE(h.settle());
  // Every byte of the object was asked of the upstream exactly once, with If-Match on the
  // cached ETag for the fills of the later blocks.
  std::vector<int> fetched(data.size() / kBlock + 1, 0);
  for (const auto& req : h.origin.requests()) {
    ASSERT_EQ(req.method, http::verb::get);
    ASSERT_TRUE(req.range.has_value());
    for (std::uint64_t b = req.range->first / kBlock; b <= req.range->last / kBlock; ++b) ++fetched[b];
  }
  for (std::size_t b = 0; b < fetched.size(); ++b) EXPECT_EQ(fetched[b], 1) << "block " << b;
  for (std::size_t i = 1; i < h.origin.requests().size(); ++i) {
    EXPECT_EQ(h.origin.requests()[i].if_match, h.origin.object(kBucket, "k")->etag);
  }
}

// ---------------------------------------------------------------------------------------
// Bypass and uncacheable answers

TEST_F(ReadPathTest, UnlistedHeaderParameterOrNoStoreBypasses) {
  auto& h = use(options());
  const std::string data = make_bytes(10 * 1024, 7);
  h.origin.put(kBucket, "k", data);
  populate(h, data);
  const auto before = h.origin.requests().size();

  Served ssec = h.get(with({{"x-amz-server-side-encryption-customer-algorithm", "AES256"}}));
  EXPECT_EQ(ssec.result.action, Action::kForward);
  EXPECT_EQ(ssec.result.outcome, CacheOutcome::kBypass);

  Served no_store = h.get(with({{"Cache-Control", "no-store"}}));
  EXPECT_EQ(no_store.result.action, Action::kForward);
  EXPECT_EQ(no_store.result.outcome, CacheOutcome::kBypass);

  Served unknown = h.get(with({{"x-some-vendor-header", "1"}}));
  EXPECT_EQ(unknown.result.action, Action::kForward);
  EXPECT_EQ(unknown.result.outcome, CacheOutcome::kBypass);

  Request part;
  part.query = {{"partNumber", "1"}};
  Served by_part = h.get(part);
  EXPECT_EQ(by_part.result.action, Action::kForward);
  EXPECT_EQ(by_part.result.outcome, CacheOutcome::kBypass);

  Served cold = h.get(with({{"x-amz-server-side-encryption-customer-algorithm", "AES256"}}, "cold"));
  EXPECT_EQ(cold.result.outcome, CacheOutcome::kBypass);

  EXPECT_EQ(h.origin.requests().size(), before) << "a bypass never asks the upstream itself";
  EXPECT_FALSE(h.cache.lookup(h.key("cold")).has_value());
}

TEST_F(ReadPathTest, UncacheableUpstreamAnswerIsRelayedAndNotStored) {
  auto& h = use(options());
  const std::string data = make_bytes(50 * 1024, 8);
  h.origin.put(kBucket, "k", data, {{"Cache-Control", "no-store"}});

  for (int i = 0; i < 2; ++i) {
    Served s = h.get({});
    EXPECT_EQ(s.result.action, Action::kRespond);
    EXPECT_EQ(s.result.outcome, CacheOutcome::kMiss);
    EXPECT_EQ(s.result.head.result_int(), 200);
    ASSERT_TRUE(s.drained) << s.body_error.message();
    EXPECT_TRUE(s.bytes == data);
    ASSERT_TRUE(h.settle());
  }
  EXPECT_EQ(h.origin.gets(), 2u) << "no-store from the upstream: every read goes upstream";
  EXPECT_FALSE(h.cache.lookup(h.key()).has_value());

  Served missing = h.get(with({}, "missing"));
  EXPECT_EQ(missing.result.action, Action::kRespond);
  EXPECT_EQ(missing.result.outcome, CacheOutcome::kMiss);
  EXPECT_EQ(missing.result.head.result_int(), 404);
  EXPECT_NE(missing.bytes.find("NoSuchKey"), std::string::npos);
  EXPECT_FALSE(h.cache.lookup(h.key("missing")).has_value());
}

// ---------------------------------------------------------------------------------------
// Revalidation and stale-if-error

TEST_F(ReadPathTest, StaleEntryRevalidatedWith304IsServedFromBlocks) {
  auto& h = use(options(1024 * 1024, /*ttl=*/60s));
  const std::string data = make_bytes(200 * 1024, 9);
  const std::string etag = h.origin.put(kBucket, "k", data);
  populate(h, data);

  h.clock.advance(59s);
  Served fresh = h.get({});
  EXPECT_EQ(fresh.result.outcome, CacheOutcome::kHit);
  EXPECT_EQ(h.origin.heads(), 0u);

  h.clock.advance(2s);  // past the TTL
  Served revalidated = h.get({});
  EXPECT_EQ(revalidated.result.action, Action::kRespond);
  EXPECT_EQ(revalidated.result.outcome, CacheOutcome::kRevalidated);
  EXPECT_EQ(revalidated.result.head.result_int(), 200);
  ASSERT_TRUE(revalidated.drained) << revalidated.body_error.message();
  EXPECT_TRUE(revalidated.bytes == data);
  ASSERT_EQ(h.origin.heads(), 1u);
  const OriginRequest& head = h.origin.requests().back();
  EXPECT_EQ(head.method, http::verb::head);
  EXPECT_EQ(head.if_none_match, etag);
  EXPECT_EQ(head.status, 304);
  EXPECT_EQ(h.origin.gets(), 1u) << "a 304 is answered from the cached blocks";

  // Fresh again for another TTL.
  h.clock.advance(30s);
  Served again = h.get({});
  EXPECT_EQ(again.result.outcome, CacheOutcome::kHit);
  EXPECT_EQ(h.origin.heads(), 1u);
  EXPECT_EQ(h.origin.gets(), 1u);
}

TEST_F(ReadPathTest, ClientNoCacheAndUpstreamMaxAgeRevalidate) {
  auto& h = use(options(128 * 1024, /*ttl=*/3600s));
  const std::string data = make_bytes(20 * 1024, 10);
  h.origin.put(kBucket, "k", data, {{"Cache-Control", "max-age=5"}});
  populate(h, data);

  Served fresh = h.get({});
  EXPECT_EQ(fresh.result.outcome, CacheOutcome::kHit);
  EXPECT_EQ(fresh.header(http::field::cache_control), "max-age=5");
  EXPECT_EQ(h.origin.heads(), 0u);

  Served forced = h.get(with({{"Cache-Control", "no-cache"}}));
  EXPECT_EQ(forced.result.outcome, CacheOutcome::kRevalidated);
  EXPECT_TRUE(forced.bytes == data);
  EXPECT_EQ(h.origin.heads(), 1u);

  h.clock.advance(6s);  // past max-age, well within the TTL
  Served expired = h.get({});
  EXPECT_EQ(expired.result.outcome, CacheOutcome::kRevalidated);
  EXPECT_TRUE(expired.bytes == data);
  EXPECT_EQ(h.origin.heads(), 2u);
  EXPECT_EQ(h.origin.gets(), 1u);
}

TEST_F(ReadPathTest, ChangedObjectOnRevalidationIsAMissWithTheNewBytes) {
  auto& h = use(options(1024 * 1024, /*ttl=*/60s));
  const std::string v1 = make_bytes(200 * 1024, 11);
  const std::string v2 = make_bytes(150 * 1024, 12);
  const std::string e1 = h.origin.put(kBucket, "k", v1);
  populate(h, v1);
  const std::string e2 = h.origin.put(kBucket, "k", v2);

  h.clock.advance(61s);
  Served changed = h.get({});
  EXPECT_EQ(changed.result.action, Action::kRespond);
  EXPECT_EQ(changed.result.outcome, CacheOutcome::kMiss);
  EXPECT_EQ(changed.header(http::field::etag), e2);
  ASSERT_TRUE(changed.drained) << changed.body_error.message();
  EXPECT_TRUE(changed.bytes == v2);
  ASSERT_EQ(h.origin.requests().size(), 3u);
  EXPECT_EQ(h.origin.requests()[1].method, http::verb::head);
  EXPECT_EQ(h.origin.requests()[1].if_none_match, e1);
  EXPECT_EQ(h.origin.requests()[1].status, 200);
  EXPECT_EQ(h.origin.requests()[2].method, http::verb::get);
  ASSERT_TRUE(h.settle());

  auto meta = h.cache.lookup(h.key());
  ASSERT_TRUE(meta.has_value());
  EXPECT_EQ(meta->etag, e2);
  Served hit = h.get({});
  EXPECT_EQ(hit.result.outcome, CacheOutcome::kHit);
  EXPECT_TRUE(hit.bytes == v2);
  EXPECT_EQ(h.origin.requests().size(), 3u);
}

TEST_F(ReadPathTest, DeletedObjectOnRevalidationIsRelayedAsNotFound) {
  auto& h = use(options(128 * 1024, /*ttl=*/60s));
  const std::string data = make_bytes(10 * 1024, 13);
  h.origin.put(kBucket, "k", data);
  populate(h, data);
  h.origin.remove(kBucket, "k");

  h.clock.advance(61s);
  Served gone = h.get({});
  EXPECT_EQ(gone.result.action, Action::kRespond);
  EXPECT_EQ(gone.result.outcome, CacheOutcome::kMiss);
  EXPECT_EQ(gone.result.head.result_int(), 404);
  EXPECT_EQ(gone.bytes.find(data.substr(0, 16)), std::string::npos);
  EXPECT_FALSE(h.cache.lookup(h.key()).has_value());
}

TEST_F(ReadPathTest, StaleIfErrorServesTheStaleCopyWithAWarning) {
  auto& h = use(options(1024 * 1024, /*ttl=*/60s, /*stale_if_error=*/300s));
  const std::string data = make_bytes(200 * 1024, 14);
  const std::string etag = h.origin.put(kBucket, "k", data);
  populate(h, data);
  const auto stale_before = metrics().cache_stale_served.get();

  h.clock.advance(61s);
  h.origin.unavailable = true;
  Served stale = h.get({});
  EXPECT_EQ(stale.result.action, Action::kRespond);
  EXPECT_EQ(stale.result.outcome, CacheOutcome::kHit);
  EXPECT_EQ(stale.result.head.result_int(), 200);
  EXPECT_NE(stale.header(http::field::warning).find("110"), std::string::npos) << stale.header(http::field::warning);
  ASSERT_TRUE(stale.drained) << stale.body_error.message();
  EXPECT_TRUE(stale.bytes == data);
  EXPECT_EQ(h.origin.heads(), 1u) << "revalidation was attempted";
  EXPECT_EQ(h.origin.gets(), 1u);

  // A 5xx answer counts as the upstream failing too.
  h.origin.unavailable = false;
  h.origin.fail_with_status = 503;
  h.clock.advance(200s);  // 261 s after the fill: still within 60 + 300
  Served stale503 = h.get({});
  EXPECT_EQ(stale503.result.outcome, CacheOutcome::kHit);
  EXPECT_FALSE(stale503.header(http::field::warning).empty());
  EXPECT_TRUE(stale503.bytes == data);
  EXPECT_GE(metrics().cache_stale_served.get(), stale_before + 2);

  // The entry is kept (the upstream did not say it changed).
  auto meta = h.cache.lookup(h.key());
  ASSERT_TRUE(meta.has_value());
  EXPECT_EQ(meta->etag, etag);
}

TEST_F(ReadPathTest, BeyondStaleIfErrorTheRequestIsForwarded) {
  auto& h = use(options(128 * 1024, /*ttl=*/60s, /*stale_if_error=*/300s));
  const std::string data = make_bytes(20 * 1024, 15);
  h.origin.put(kBucket, "k", data);
  populate(h, data);

  h.clock.advance(361s);  // 60 s of TTL + 300 s of stale-if-error + 1
  h.origin.unavailable = true;
  Served s = h.get({});
  EXPECT_EQ(s.result.action, Action::kForward);
  EXPECT_EQ(s.result.outcome, CacheOutcome::kMiss);
  EXPECT_EQ(s.result.body, nullptr);
  EXPECT_EQ(h.origin.heads(), 1u);
}

// Readers started together, all served and their bodies drained (or failed).
std::vector<std::shared_ptr<Served>> run_herd(Harness& h, int readers, const Request& request) {
  std::vector<std::shared_ptr<Served>> herd;
  for (int i = 0; i < readers; ++i) herd.push_back(h.start(request));
  EXPECT_TRUE(h.run_until([&] {
    for (const auto& r : herd) {
      if (!r->finished()) return false;
    }
    return true;
  }));
  return herd;
}

TEST_F(ReadPathTest, AHerdOnAStaleObjectSendsOneConditionalHead) {
  auto& h = use(options(1024 * 1024, /*ttl=*/60s));
  const std::string data = make_bytes(200 * 1024, 31);
  h.origin.put(kBucket, "k", data);
  populate(h, data);
  const auto joined_before = metrics().cache_revalidations_joined.get();

  h.clock.advance(61s);
  constexpr int kReaders = 8;
  auto herd = run_herd(h, kReaders, {});
  int revalidated = 0, hits = 0;
  for (int i = 0; i < kReaders; ++i) {
    const Served& r = *herd[i];
    ASSERT_TRUE(r.drained) << "reader " << i << ": " << r.body_error.message();
    EXPECT_TRUE(r.bytes == data) << "reader " << i;
    revalidated += r.result.outcome == CacheOutcome::kRevalidated;
    hits += r.result.outcome == CacheOutcome::kHit;
  }
  EXPECT_EQ(revalidated, 1);
  EXPECT_EQ(hits, kReaders - 1) << "the others read the copy the one revalidation refreshed";
  EXPECT_EQ(h.origin.heads(), 1u) << "one conditional HEAD for the whole herd";
  EXPECT_EQ(h.origin.gets(), 1u);
  EXPECT_EQ(metrics().cache_revalidations_joined.get(), joined_before + kReaders - 1);
}

TEST_F(ReadPathTest, AHerdOnAStaleObjectThatChangedCostsOneHeadAndOneFill) {
  auto& h = use(options(1024 * 1024, /*ttl=*/60s));
  const std::string v1 = make_bytes(200 * 1024, 32);
  const std::string v2 = make_bytes(180 * 1024, 33);
  h.origin.put(kBucket, "k", v1);
  populate(h, v1);
  const std::string e2 = h.origin.put(kBucket, "k", v2);

  h.clock.advance(61s);
  auto herd = run_herd(h, 8, {});
  for (std::size_t i = 0; i < herd.size(); ++i) {
    const Served& r = *herd[i];
    ASSERT_TRUE(r.drained) << "reader " << i << ": " << r.body_error.message();
    EXPECT_TRUE(r.bytes == v2) << "reader " << i << " got " << r.bytes.size() << " bytes";
    EXPECT_EQ(r.header(http::field::etag), e2) << "reader " << i;
  }
  EXPECT_EQ(h.origin.heads(), 1u);
  EXPECT_EQ(h.origin.gets(), 2u) << "the first fill, then one fill of the new version";
}

TEST_F(ReadPathTest, AHerdOnAStaleObjectWithTheUpstreamDownTriesItOnceAndServesStale) {
  auto& h = use(options(1024 * 1024, /*ttl=*/60s, /*stale_if_error=*/300s));
  const std::string data = make_bytes(100 * 1024, 34);
  h.origin.put(kBucket, "k", data);
  populate(h, data);
  const auto stale_before = metrics().cache_stale_served.get();

  h.clock.advance(61s);
  h.origin.unavailable = true;
  auto herd = run_herd(h, 8, {});
  for (std::size_t i = 0; i < herd.size(); ++i) {
    const Served& r = *herd[i];
    ASSERT_TRUE(r.drained) << "reader " << i << ": " << r.body_error.message();
    EXPECT_TRUE(r.bytes == data) << "reader " << i;
    EXPECT_EQ(r.result.outcome, CacheOutcome::kHit) << "reader " << i;
    EXPECT_NE(r.header(http::field::warning).find("110"), std::string::npos) << "reader " << i;
  }
  EXPECT_EQ(h.origin.heads(), 1u) << "the waiters did not each try the unreachable upstream";
  EXPECT_EQ(metrics().cache_stale_served.get(), stale_before + 8);

  // Past stale-if-error, the herd is forwarded (forwarding reports the failure).
  h.clock.advance(300s);
  auto late = run_herd(h, 4, {});
  for (const auto& r : late) {
    EXPECT_TRUE(r->served);
    EXPECT_EQ(r->result.action, Action::kForward);
  }
  EXPECT_EQ(h.origin.heads(), 2u);
}

TEST_F(ReadPathTest, ClientsAskingNoCacheTogetherShareOneRevalidation) {
  auto& h = use(options(1024 * 1024, /*ttl=*/3600s));
  const std::string data = make_bytes(50 * 1024, 35);
  h.origin.put(kBucket, "k", data);
  populate(h, data);

  auto herd = run_herd(h, 6, with({{"Cache-Control", "no-cache"}}));
  for (const auto& r : herd) {
    ASSERT_TRUE(r->drained) << r->body_error.message();
    EXPECT_TRUE(r->bytes == data);
    EXPECT_NE(r->result.outcome, CacheOutcome::kMiss);
  }
  EXPECT_EQ(h.origin.heads(), 1u);

  // A later no-cache request is not satisfied by an earlier revalidation.
  Served later = h.get(with({{"Cache-Control", "no-cache"}}));
  EXPECT_EQ(later.result.outcome, CacheOutcome::kRevalidated);
  EXPECT_EQ(h.origin.heads(), 2u);
}

// ---------------------------------------------------------------------------------------
// The object changes upstream while it is being filled (412 on If-Match)

// The client got either one clean answer of the new object, or a prefix of the old one
// cut by an error: never a body mixed from two versions, never a short success.
void expect_one_version(const Served& s, const std::string& v1, const std::string& v2) {
  ASSERT_TRUE(s.served);
  if (s.drained) {
    EXPECT_TRUE(s.bytes == v2 || s.bytes == v1) << "a complete body of neither version (" << s.bytes.size()
                                                << " bytes)";
    if (s.result.body_length) {
      EXPECT_EQ(*s.result.body_length, s.bytes.size());
    }
  } else {
    EXPECT_FALSE(s.body_error.is_ok());
    EXPECT_TRUE(is_prefix_of(s.bytes, v1) || is_prefix_of(s.bytes, v2)) << "bytes mixed from two versions";
    if (s.result.body_length) {
      EXPECT_LT(s.bytes.size(), *s.result.body_length);
    }
  }
}

TEST_F(ReadPathTest, ChangeFoundBeforeTheHeadIsACleanMissOfTheNewObject) {
  auto& h = use(options(/*max_fetch=*/128 * 1024));
  const std::string v1 = make_bytes(300 * 1024, 16);
  const std::string v2 = make_bytes(300 * 1024, 17);
  const std::string e1 = h.origin.put(kBucket, "k", v1);

  // Only the first block gets cached.
  Served first = h.get(with({{"Range", "bytes=0-99"}}));
  ASSERT_EQ(first.result.outcome, CacheOutcome::kMiss);
  ASSERT_TRUE(first.bytes == v1.substr(0, 100));
  ASSERT_TRUE(h.settle());
  ASSERT_TRUE(h.cache.block_cached(h.key().hash(), e1, 0));
  ASSERT_FALSE(h.cache.block_cached(h.key().hash(), e1, 1));

  const std::string e2 = h.origin.put(kBucket, "k", v2);
  const auto resets = metrics().cache_changed_resets.get();
  const auto invalidations = metrics().cache_invalidations.get();
  Served whole = h.get({});
  expect_one_version(whole, v1, v2);
  // prepare() fetched the first missing block with If-Match before any head went out,
  // got a 412, and the request went round again as a miss of the new object.
  EXPECT_EQ(whole.result.action, Action::kRespond);
  EXPECT_EQ(whole.result.outcome, CacheOutcome::kMiss);
  EXPECT_EQ(whole.header(http::field::etag), e2);
  ASSERT_TRUE(whole.drained) << whole.body_error.message();
  EXPECT_TRUE(whole.bytes == v2);
  EXPECT_EQ(metrics().cache_changed_resets.get(), resets) << "nothing was cut";
  EXPECT_GE(metrics().cache_invalidations.get(), invalidations + 1);

  const auto& reqs = h.origin.requests();
  ASSERT_GE(reqs.size(), 3u);
  EXPECT_EQ(reqs[1].if_match, e1);
  EXPECT_EQ(reqs[1].status, 412);
  // The miss of the new object: its first part without conditions, the rest with its ETag.
  EXPECT_EQ(reqs[2].range, std::optional<ByteRange>(ByteRange{0, 128 * 1024 - 1}));
  EXPECT_TRUE(reqs[2].if_match.empty());
  EXPECT_EQ(reqs[2].status, 206);
  for (std::size_t i = 3; i < reqs.size(); ++i) EXPECT_EQ(reqs[i].if_match, e2) << "request " << i;
  ASSERT_TRUE(h.settle());
  auto meta = h.cache.lookup(h.key());
  ASSERT_TRUE(meta.has_value());
  EXPECT_EQ(meta->etag, e2);
}

TEST_F(ReadPathTest, ChangeFoundMidBodyFailsTheReadAndInvalidates) {
  // Runs of one block: prepare() validates only block 1; the change is found at block 2,
  // after the head (and blocks 0-1 of the old version) went out.
  auto& h = use(options(/*max_fetch=*/kBlock));
  const std::string v1 = make_bytes(300 * 1024, 18);
  const std::string v2 = make_bytes(300 * 1024, 19);
  const std::string e1 = h.origin.put(kBucket, "k", v1);
  Served first = h.get(with({{"Range", "bytes=0-99"}}));
  ASSERT_EQ(first.result.outcome, CacheOutcome::kMiss);
  ASSERT_TRUE(h.settle());
  ASSERT_TRUE(h.cache.block_cached(h.key().hash(), e1, 0));

  auto whole = h.start({}, Drain::kNone);
  ASSERT_TRUE(h.run_until([&] { return whole->served; }));
  ASSERT_EQ(whole->result.action, Action::kRespond);
  ASSERT_EQ(whole->result.outcome, CacheOutcome::kMiss);  // blocks 1-4 come from upstream
  ASSERT_NE(whole->result.body, nullptr);
  EXPECT_EQ(whole->header(http::field::etag), e1);

  const std::string e2 = h.origin.put(kBucket, "k", v2);  // after the head was decided
  const auto resets = metrics().cache_changed_resets.get();
  h.start_drain(whole, Drain::kRead);
  ASSERT_TRUE(h.run_until([&] { return whole->finished(); }));
  expect_one_version(*whole, v1, v2);
  ASSERT_FALSE(whole->drained) << "a body of the old version must not end cleanly after the object changed";
  EXPECT_EQ(whole->body_error.code(), ErrorCode::kPreconditionFailed) << whole->body_error.message();
  EXPECT_TRUE(is_prefix_of(whole->bytes, v1));
  EXPECT_EQ(whole->bytes.size(), 2u * kBlock) << "blocks 0 and 1 of the old version, then the error";
  EXPECT_EQ(metrics().cache_changed_resets.get(), resets + 1);
  EXPECT_FALSE(h.cache.lookup(h.key()).has_value()) << "the entry is invalidated";
  ASSERT_TRUE(h.settle());

  // The next read is a clean miss of the new object.
  Served next = h.get({});
  EXPECT_EQ(next.result.outcome, CacheOutcome::kMiss);
  EXPECT_TRUE(next.bytes == v2);
  EXPECT_EQ(next.header(http::field::etag), e2);
}

// ---------------------------------------------------------------------------------------
// The upstream breaks during a fill

TEST_F(ReadPathTest, UpstreamResetMidFillFailsTheBodyAndPublishesNothingPartial) {
  auto& h = use(options(/*max_fetch=*/512 * 1024));
  const std::string data = make_bytes(300 * 1024, 20);
  const std::string etag = h.origin.put(kBucket, "k", data);
  h.origin.read_delay = 1ms;  // the reader keeps up with the fill
  h.origin.reset_after_bytes = 150'000;  // inside block 2

  auto s = h.start({}, Drain::kRead);
  ASSERT_TRUE(h.run_until([&] { return s->finished(); }));
  h.origin.reset_after_bytes.reset();
  h.origin.read_delay = 0ms;
  EXPECT_EQ(s->result.outcome, CacheOutcome::kMiss);
  EXPECT_EQ(s->header(http::field::content_length), std::to_string(data.size()));
  ASSERT_FALSE(s->drained) << "a broken upstream body must not end as a short success";
  EXPECT_EQ(s->body_error.code(), ErrorCode::kBadGateway) << s->body_error.message();
  EXPECT_TRUE(is_prefix_of(s->bytes, data));
  EXPECT_LT(s->bytes.size(), data.size());
  EXPECT_EQ(h.origin.gets(), 1u);
  ASSERT_TRUE(h.settle());

  // Whole blocks before the break are kept; the broken one and those after it are not.
  const auto kh = h.key().hash();
  EXPECT_TRUE(h.cache.block_cached(kh, etag, 0));
  EXPECT_TRUE(h.cache.block_cached(kh, etag, 1));
  for (std::uint64_t b = 2; b <= 4; ++b) EXPECT_FALSE(h.cache.block_cached(kh, etag, b)) << "block " << b;

  // A later read refetches what is missing and gets the right bytes.
  Served again = h.get({});
  EXPECT_EQ(again.result.action, Action::kRespond);
  ASSERT_TRUE(again.drained) << again.body_error.message();
  EXPECT_TRUE(again.bytes == data);
  ASSERT_EQ(h.origin.gets(), 2u);
  const OriginRequest& refetch = h.origin.requests().back();
  ASSERT_TRUE(refetch.range.has_value());
  EXPECT_EQ(refetch.range->first, 2u * kBlock);
  EXPECT_EQ(refetch.range->last, data.size() - 1);
  EXPECT_EQ(refetch.if_match, etag);
}

TEST_F(ReadPathTest, UpstreamTruncatedBodyFailsTheRead) {
  auto& h = use(options(/*max_fetch=*/512 * 1024));
  const std::string data = make_bytes(300 * 1024, 21);
  h.origin.put(kBucket, "k", data);
  h.origin.read_delay = 1ms;
  h.origin.truncate_after_bytes = 150'000;  // a clean end of body before Content-Length
  const auto truncated = metrics().upstream_truncated_bodies.get();

  Served s = h.get({});
  h.origin.truncate_after_bytes.reset();
  ASSERT_FALSE(s.drained) << "a truncated upstream body must not end as a short success";
  EXPECT_EQ(s.body_error.code(), ErrorCode::kBadGateway) << s.body_error.message();
  EXPECT_TRUE(is_prefix_of(s.bytes, data));
  EXPECT_EQ(metrics().upstream_truncated_bodies.get(), truncated + 1);
  ASSERT_TRUE(h.settle());

  h.origin.read_delay = 0ms;
  Served again = h.get({});
  ASSERT_TRUE(again.drained) << again.body_error.message();
  EXPECT_TRUE(again.bytes == data);
}

// ---------------------------------------------------------------------------------------
// Several readers of one cold object

TEST_F(ReadPathTest, SlowReaderDoesNotHoldBackAFastOne) {
  auto& h = use(options(/*max_fetch=*/512 * 1024));
  const std::string data = make_bytes(5 * kBlock, 22);
  const std::string etag = h.origin.put(kBucket, "k", data);
  h.origin.read_delay = 1ms;

  auto pause = std::make_shared<asio::steady_timer>(h.io, 60s);  // cancelled by the test
  auto fast = h.start({}, Drain::kNext);
  auto slow = h.start({}, Drain::kNext, pause);
  ASSERT_TRUE(h.run_until([&] { return fast->finished(); }));
  ASSERT_TRUE(fast->drained) << fast->body_error.message();
  EXPECT_EQ(fast->result.outcome, CacheOutcome::kMiss);
  EXPECT_TRUE(fast->bytes == data);
  // The slow reader took one piece and is still sitting on it.
  ASSERT_TRUE(slow->served);
  EXPECT_EQ(slow->result.outcome, CacheOutcome::kHit);
  EXPECT_EQ(slow->pieces, 1u);
  EXPECT_FALSE(slow->finished());
  // ... and the fill did not wait for it either.
  ASSERT_TRUE(h.run_until([&] {
    for (std::uint64_t b = 0; b < 5; ++b) {
      if (!h.cache.block_cached(h.key().hash(), etag, b)) return false;
    }
    return true;
  }, 5s));
  EXPECT_FALSE(slow->finished());

  pause->cancel();
  ASSERT_TRUE(h.run_until([&] { return slow->finished(); }));
  ASSERT_TRUE(slow->drained) << slow->body_error.message();
  EXPECT_TRUE(slow->bytes == data);
  EXPECT_EQ(h.origin.gets(), 1u);
}

TEST_F(ReadPathTest, ThirtyTwoConcurrentReadersOfAColdObjectShareOneFetchOfEachPart) {
  auto& h = use(options(/*max_fetch=*/128 * 1024));
  const std::string data = make_bytes(300 * 1024, 23);  // 5 blocks, the last one short
  h.origin.put(kBucket, "k", data);
  h.origin.close_gate();  // the body is held until every reader has its head

  constexpr int kReaders = 32;
  std::vector<std::shared_ptr<Served>> readers;
  for (int i = 0; i < kReaders; ++i) readers.push_back(h.start({}, i % 2 == 0 ? Drain::kNext : Drain::kRead));
  ASSERT_TRUE(h.run_until([&] {
    for (const auto& r : readers) {
      if (!r->served) return false;
    }
    return true;
  }));
  // 300 KiB in parts of 128 KiB: the first part, then the other two fetched ahead.
  EXPECT_EQ(h.origin.gets(), 3u);
  EXPECT_EQ(h.origin.blocked_reads(), 3u) << "one upstream body per part, held by the gate";

  h.origin.open_gate();
  ASSERT_TRUE(h.run_until([&] {
    for (const auto& r : readers) {
      if (!r->finished()) return false;
    }
    return true;
  }));
  int misses = 0, hits = 0;
  for (int i = 0; i < kReaders; ++i) {
    const Served& r = *readers[i];
    EXPECT_EQ(r.result.action, Action::kRespond) << "reader " << i;
    ASSERT_TRUE(r.drained) << "reader " << i << ": " << r.body_error.message();
    EXPECT_TRUE(r.bytes == data) << "reader " << i << " got " << r.bytes.size() << " bytes";
    misses += r.result.outcome == CacheOutcome::kMiss;
    hits += r.result.outcome == CacheOutcome::kHit;
  }
  EXPECT_EQ(misses, 1);
  EXPECT_EQ(hits, kReaders - 1);
  EXPECT_EQ(h.origin.gets(), 3u) << "exactly one upstream GET for each part";
  EXPECT_EQ(h.origin.heads(), 0u);
  EXPECT_EQ(h.origin.body_bytes_sent(), data.size()) << "the herd cost the upstream the object's bytes once";
}

// ---------------------------------------------------------------------------------------
// Checksum mode

TEST_F(ReadPathTest, ChecksumsAreReturnedOnlyInChecksumModeOnWholeObjectAnswers) {
  auto& h = use(options());
  const std::string data = make_bytes(100 * 1024, 24);
  h.origin.put(kBucket, "k", data, {{"x-amz-checksum-crc32", "AAAAAA=="}, {"x-amz-checksum-type", "FULL_OBJECT"}});

  // A range fill learns nothing about the whole object's checksums.
  Served range = h.get(with({{"Range", "bytes=0-9"}}));
  EXPECT_EQ(range.result.outcome, CacheOutcome::kMiss);
  EXPECT_EQ(std::string(range.result.head["x-amz-checksum-crc32"]), "");
  ASSERT_TRUE(h.settle());

  Served plain = h.get({});
  EXPECT_EQ(plain.result.outcome, CacheOutcome::kMiss);  // blocks 1 on came from upstream
  EXPECT_EQ(std::string(plain.result.head["x-amz-checksum-crc32"]), "") << "not asked for";
  EXPECT_TRUE(plain.bytes == data);
  ASSERT_TRUE(h.settle());
  const auto heads = h.origin.heads();

  // Checksum mode on an entry that does not know them: one HEAD learns them.
  Served asked = h.get(with({{"x-amz-checksum-mode", "ENABLED"}}));
  EXPECT_EQ(asked.result.outcome, CacheOutcome::kHit);
  EXPECT_EQ(std::string(asked.result.head["x-amz-checksum-crc32"]), "AAAAAA==");
  EXPECT_TRUE(asked.bytes == data);
  EXPECT_EQ(h.origin.heads(), heads + 1);

  Served again = h.get(with({{"x-amz-checksum-mode", "ENABLED"}}));
  EXPECT_EQ(std::string(again.result.head["x-amz-checksum-crc32"]), "AAAAAA==");
  EXPECT_EQ(h.origin.heads(), heads + 1) << "learnt once";

  Served partial = h.get(with({{"x-amz-checksum-mode", "ENABLED"}, {"Range", "bytes=0-9"}}));
  EXPECT_EQ(partial.result.head.result_int(), 206);
  EXPECT_EQ(std::string(partial.result.head["x-amz-checksum-crc32"]), "") << "never on a partial answer";
}

// ---------------------------------------------------------------------------------------
// Stall detection

// Found by this suite (fixed: a stall is now judged by the fill's progress). A reader waiting for a block that a whole-object fill has
// registered but not reached yet sees no progress on *that block* and fails with
// kGatewayTimeout ("cache fill stalled") after upstream_timeout, although the fill is
// streaming steadily. With the production default (60 s) this is a tail read (a parquet
// footer) beside a whole-object read of an object that takes more than 60 s to stream.
// Scaled down here: a 100 ms timeout, a fill that advances every 15 ms and reaches the
// last block after ~240 ms.
TEST_F(ReadPathTest, TailReaderBesideAProgressingWholeObjectFillDoesNotTimeOut) {
  auto& h = use(options(/*max_fetch=*/512 * 1024), /*upstream_timeout=*/100ms);
  const std::string data = make_bytes(5 * kBlock, 25);
  h.origin.put(kBucket, "k", data);
  h.origin.read_delay = 15ms;

  auto whole = h.start({});
  const std::uint64_t tail = 4 * kBlock;
  auto footer = h.start(with({{"Range", "bytes=" + std::to_string(tail) + "-" + std::to_string(tail + 99)}}));
  ASSERT_TRUE(h.run_until([&] { return whole->finished() && footer->finished(); }));
  ASSERT_TRUE(whole->drained) << whole->body_error.message();
  EXPECT_TRUE(whole->bytes == data);
  EXPECT_EQ(footer->result.head.result_int(), 206);
  EXPECT_TRUE(footer->drained) << "footer read failed although the fill was progressing: "
                               << footer->body_error.message();
  EXPECT_TRUE(footer->bytes == data.substr(tail, 100));
}

// The other side of the rule above: a fill that makes no progress at all is a stall, and
// the reader fails with kGatewayTimeout (never a short success).
TEST_F(ReadPathTest, AFillThatMakesNoProgressTimesOutItsReaders) {
  auto& h = use(options(/*max_fetch=*/512 * 1024), /*upstream_timeout=*/100ms);
  const std::string data = make_bytes(3 * kBlock, 26);
  h.origin.put(kBucket, "k", data);
  h.origin.close_gate();  // the upstream sends the head, then nothing

  auto reader = h.start({});
  ASSERT_TRUE(h.run_until([&] { return reader->finished(); }));
  EXPECT_FALSE(reader->drained);
  EXPECT_EQ(reader->body_error.code(), ErrorCode::kGatewayTimeout) << reader->body_error.message();
  h.origin.open_gate();
}

}  // namespace
}  // namespace tagd::cache
