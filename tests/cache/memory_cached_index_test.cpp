// What the in-memory copy adds over the durable index: hits that do not reach it, and
// erasures that a slower reader cannot undo.
#include <gtest/gtest.h>

#include <functional>
#include <utility>

#include "tagd/cache/block_format.hpp"
#include "tagd/cache/http_semantics.hpp"
#include "tagd/cache/index.hpp"

namespace tagd::cache {
namespace {

// The durable index, counting its lookups; `before_get` runs inside get_object (to
// interleave an erase with a lookup in flight).
class CountingIndex final : public CacheIndex {
 public:
  int object_gets = 0;
  int block_gets = 0;
  std::function<void()> before_get_result;

  Result<std::optional<ObjectMeta>> get_object(const ObjectKey& key) override {
    ++object_gets;
    auto r = inner_->get_object(key);
    if (before_get_result) std::exchange(before_get_result, nullptr)();
    return r;
  }
  Status put_object(const ObjectKey& key, const ObjectMeta& meta) override { return inner_->put_object(key, meta); }
  Status erase_object(const ObjectKey& key) override { return inner_->erase_object(key); }
  Status erase_object_variants(const std::string& b, const std::string& k) override {
    return inner_->erase_object_variants(b, k);
  }
  Result<std::optional<BlockLocation>> get_block(std::uint64_t h, const std::string& e, std::uint64_t b) override {
    ++block_gets;
    return inner_->get_block(h, e, b);
  }
  Status put_block(std::uint64_t h, const std::string& e, std::uint64_t b, const BlockLocation& l) override {
    return inner_->put_block(h, e, b, l);
  }
  Status erase_block(std::uint64_t h, const std::string& e, std::uint64_t b) override {
    return inner_->erase_block(h, e, b);
  }
  Status put_region_generation(std::uint32_t r, std::uint64_t g) override { return inner_->put_region_generation(r, g); }
  Result<std::vector<std::uint64_t>> region_generations(std::uint32_t n) override {
    return inner_->region_generations(n);
  }

 private:
  std::unique_ptr<CacheIndex> inner_ = make_memory_index();
};

ObjectMeta meta(std::string etag) {
  ObjectMeta m;
  m.size = 10;
  m.etag = std::move(etag);
  m.block_size = 1 << 20;
  return m;
}

class MemoryCachedIndexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto durable = std::make_unique<CountingIndex>();
    durable_ = durable.get();
    index_ = make_memory_cached_index(std::move(durable), 1024);
  }
  CountingIndex* durable_ = nullptr;
  std::unique_ptr<CacheIndex> index_;
};

TEST_F(MemoryCachedIndexTest, HitsDoNotReachTheDurableIndex) {
  const ObjectKey key{"b", "k", ""};
  ASSERT_TRUE(index_->put_object(key, meta("\"1\"")).is_ok());
  BlockLocation loc{1, 2, 4096, 10, {7}};
  ASSERT_TRUE(index_->put_block(key.hash(), "\"1\"", 0, loc).is_ok());
  for (int i = 0; i < 100; ++i) {
    auto m = index_->get_object(key);
    ASSERT_TRUE(m.has_value() && m->has_value());
    EXPECT_EQ((*m)->etag, "\"1\"");
    auto l = index_->get_block(key.hash(), "\"1\"", 0);
    ASSERT_TRUE(l.has_value() && l->has_value());
    EXPECT_EQ((*l)->piece_crc32c, std::vector<std::uint32_t>{7});
  }
  EXPECT_EQ(durable_->object_gets, 0);
  EXPECT_EQ(durable_->block_gets, 0);
}

TEST_F(MemoryCachedIndexTest, HitsShareTheVersionHeldAndANewVersionReplacesIt) {
  const ObjectKey key{"b", "k", ""};
  ASSERT_TRUE(index_->put_object(key, meta("\"1\"")).is_ok());
  auto first = index_->get_object_shared(key);
  auto again = index_->get_object_shared(key);
  ASSERT_TRUE(first.has_value() && *first && again.has_value());
  EXPECT_EQ(first->get(), again->get()) << "a hit shares the held version, it does not copy it";
  EXPECT_EQ((*first)->etag, "\"1\"");
  ASSERT_TRUE(index_->put_object(key, meta("\"2\"")).is_ok());
  auto second = index_->get_object_shared(key);
  ASSERT_TRUE(second.has_value() && *second);
  EXPECT_EQ((*second)->etag, "\"2\"");
  EXPECT_EQ((*first)->etag, "\"1\"") << "a reader keeps the version it was given";
  EXPECT_EQ(durable_->object_gets, 0);
  auto missing = index_->get_object_shared(ObjectKey{"b", "nothing", ""});
  ASSERT_TRUE(missing.has_value());
  EXPECT_FALSE(*missing);
}

// A hit appends the head the index prepared for the version it holds: a new version (an
// overwrite, learnt checksums) must come with its own head, never the old one's.
TEST_F(MemoryCachedIndexTest, EachInstalledVersionHasItsOwnPreparedHead) {
  const ObjectKey key{"b", "k", ""};
  ObjectMeta first = meta("\"1\"");
  first.headers = {{"Content-Type", "text/plain"}};
  ASSERT_TRUE(index_->put_object(key, first).is_ok());
  auto got = index_->get_object(key);
  ASSERT_TRUE(got.has_value() && got->has_value());
  ASSERT_NE((*got)->prepared, nullptr);
  EXPECT_EQ((*got)->prepared->fields, "ETag: \"1\"\r\nContent-Type: text/plain\r\n");
  EXPECT_EQ((*got)->prepared, (*index_->get_object(key))->prepared) << "prepared once, not per lookup";

  // A put with a stale head attached (a copy changed by its reader) gets a fresh one.
  ObjectMeta second = **got;
  second.etag = "\"2\"";
  second.checksums = {{"x-amz-checksum-crc32", "AAAAAA=="}};
  ASSERT_TRUE(index_->put_object(key, second).is_ok());
  auto now = index_->get_object(key);
  ASSERT_TRUE(now.has_value() && now->has_value());
  ASSERT_NE((*now)->prepared, nullptr);
  EXPECT_EQ((*now)->prepared->fields, "ETag: \"2\"\r\nContent-Type: text/plain\r\n");
  EXPECT_EQ((*now)->prepared->checksums, "x-amz-checksum-crc32: AAAAAA==\r\n");

  // Read back from the durable index (after a restart, or dropped from memory): prepared too.
  ASSERT_TRUE(index_->erase_object(key).is_ok());
  EXPECT_FALSE(index_->get_object(key)->has_value());
  ASSERT_TRUE(durable_->put_object(key, first).is_ok());
  auto reread = index_->get_object(key);
  ASSERT_TRUE(reread.has_value() && reread->has_value());
  ASSERT_NE((*reread)->prepared, nullptr);
  EXPECT_EQ((*reread)->prepared->fields, "ETag: \"1\"\r\nContent-Type: text/plain\r\n");
}

TEST_F(MemoryCachedIndexTest, AMissReadsTheDurableIndexOnceThenKeepsIt) {
  // Written straight to the durable index (as before a restart).
  const ObjectKey key{"b", "k", "versionId=3"};
  ASSERT_TRUE(durable_->put_object(key, meta("\"v3\"")).is_ok());
  ASSERT_TRUE(index_->get_object(key)->has_value());
  ASSERT_TRUE(index_->get_object(key)->has_value());
  EXPECT_EQ(durable_->object_gets, 1);
  // Absent objects are not remembered as absent: every miss asks (a miss goes upstream
  // anyway, and a negative entry would have to be invalidated too).
  EXPECT_FALSE(index_->get_object(ObjectKey{"b", "nope", ""})->has_value());
  EXPECT_FALSE(index_->get_object(ObjectKey{"b", "nope", ""})->has_value());
  EXPECT_EQ(durable_->object_gets, 3);
}

TEST_F(MemoryCachedIndexTest, EraseVariantsDropsEveryVariantFromMemoryToo) {
  for (const char* v : {"", "versionId=1", "snapshot=2"}) {
    ASSERT_TRUE(index_->put_object(ObjectKey{"b", "k", v}, meta("\"e\"")).is_ok());
  }
  ASSERT_TRUE(index_->put_object(ObjectKey{"b", "k2", ""}, meta("\"e\"")).is_ok());
  ASSERT_TRUE(index_->erase_object_variants("b", "k").is_ok());
  for (const char* v : {"", "versionId=1", "snapshot=2"}) {
    EXPECT_FALSE(index_->get_object(ObjectKey{"b", "k", v})->has_value()) << v;
  }
  EXPECT_TRUE(index_->get_object(ObjectKey{"b", "k2", ""})->has_value());
}

TEST_F(MemoryCachedIndexTest, AnEraseDuringASlowLookupIsNotUndone) {
  const ObjectKey key{"b", "k", ""};
  ASSERT_TRUE(durable_->put_object(key, meta("\"old\"")).is_ok());
  // The lookup has read the old entry from the durable index; before it installs it in
  // memory, a write through tagd invalidates the key.
  durable_->before_get_result = [&] { ASSERT_TRUE(index_->erase_object_variants("b", "k").is_ok()); };
  auto seen = index_->get_object(key);
  ASSERT_TRUE(seen.has_value() && seen->has_value());  // that reader raced the erase: fine
  // ... but nobody after it may see the erased entry.
  EXPECT_FALSE(index_->get_object(key)->has_value());
}

TEST_F(MemoryCachedIndexTest, MemoryIsBoundedAndDroppedEntriesComeBackFromDisk) {
  // 1024 entries of each kind across 16 shards: write far more.
  for (int i = 0; i < 5000; ++i) {
    ASSERT_TRUE(index_->put_object(ObjectKey{"b", "k" + std::to_string(i), ""}, meta("\"e\"")).is_ok());
  }
  // The newest writes are still in memory (at most 64 per shard are kept: the last 500
  // keys spread about 31 per shard) ...
  int before = durable_->object_gets;
  for (int i = 4500; i < 5000; ++i) {
    ASSERT_TRUE(index_->get_object(ObjectKey{"b", "k" + std::to_string(i), ""})->has_value()) << i;
  }
  EXPECT_EQ(durable_->object_gets - before, 0);
  // ... the oldest were dropped from memory, not lost: they come back from the durable index.
  before = durable_->object_gets;
  for (int i = 0; i < 500; ++i) {
    ASSERT_TRUE(index_->get_object(ObjectKey{"b", "k" + std::to_string(i), ""})->has_value()) << i;
  }
  EXPECT_EQ(durable_->object_gets - before, 500);
}

TEST_F(MemoryCachedIndexTest, ErasedBlocksAreGoneFromMemory) {
  BlockLocation loc{1, 2, 4096, 10, {7}};
  ASSERT_TRUE(index_->put_block(9, "\"e\"", 3, loc).is_ok());
  ASSERT_TRUE(index_->erase_block(9, "\"e\"", 3).is_ok());
  EXPECT_FALSE(index_->get_block(9, "\"e\"", 3)->has_value());
}

}  // namespace
}  // namespace tagd::cache
