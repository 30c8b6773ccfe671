#include "tagd/cache/object_cache.hpp"

#include "support/run_sync.hpp"
#include "tagd/core/metrics.hpp"

#include <gtest/gtest.h>

namespace tagd::cache {
namespace {

class ObjectCacheTest : public ::testing::Test {
 protected:
  ObjectCache cache_{std::make_unique<MemoryBlockDevice>(8 << 20, 4096), make_memory_index(), make_fifo_eviction(),
                     make_fill_budget(1 << 30, 8), 1 << 20, 1 << 20, ObjectCacheOptions{64 * 1024}};
  ObjectKey key_{"b", "k", ""};
  ObjectMeta meta_{100, "\"e\"", "", {}, 0, 0, 64 * 1024};
};

TEST_F(ObjectCacheTest, AFillThatRacedAWriteDoesNotPublish) {
  std::uint64_t before_write = cache_.epoch();
  cache_.invalidate("b", "k");  // a PutObject through tagd
  EXPECT_FALSE(cache_.publish(key_, meta_, before_write));
  EXPECT_FALSE(cache_.lookup(key_).has_value());
  std::uint64_t after_write = cache_.epoch();
  EXPECT_TRUE(cache_.publish(key_, meta_, after_write));
  EXPECT_TRUE(cache_.lookup(key_).has_value());
  cache_.invalidate("b", "k");
  EXPECT_FALSE(cache_.lookup(key_).has_value());
}

TEST_F(ObjectCacheTest, InvalidateErasesEveryVariantOfTheKey) {
  // DELETE ?versionId=, PUT over versionId=null, and snapshot reads: every variant goes.
  const std::vector<ObjectKey> variants = {{"b", "k", ""},
                                           {"b", "k", "versionId=v1"},
                                           {"b", "k", "versionId=null"},
                                           {"b", "k", "snapshot=1733000000"},
                                           {"b", "k", "versionId=v1&snapshot=2"}};
  const ObjectKey neighbour{"b", "k2", "versionId=v1"};
  std::uint64_t e = cache_.epoch();
  for (const auto& k : variants) ASSERT_TRUE(cache_.publish(k, meta_, e));
  ASSERT_TRUE(cache_.publish(neighbour, meta_, e));
  cache_.invalidate("b", "k");
  for (const auto& k : variants) EXPECT_FALSE(cache_.lookup(k).has_value()) << k.variant;
  EXPECT_TRUE(cache_.lookup(neighbour).has_value());
  // A fill of any variant that started before the write does not publish afterwards.
  for (const auto& k : variants) EXPECT_FALSE(cache_.publish(k, meta_, e)) << k.variant;
  std::uint64_t after = cache_.epoch();
  for (const auto& k : variants) EXPECT_TRUE(cache_.publish(k, meta_, after)) << k.variant;
}

TEST_F(ObjectCacheTest, InflightBlocksCarryValidationAndChange) {
  auto [block, owner] = cache_.find_or_start(9, "\"e\"", 0, 10);
  ASSERT_TRUE(owner);
  EXPECT_FALSE(block->validated());
  block->mark_validated();
  EXPECT_TRUE(block->validated());
  EXPECT_FALSE(block->changed());
  block->fail(/*changed=*/true);
  EXPECT_TRUE(block->failed());
  EXPECT_TRUE(block->changed());
  cache_.finish(9, "\"e\"", 0);
  auto [other, owner2] = cache_.find_or_start(9, "\"e\"", 1, 10);
  ASSERT_TRUE(owner2);
  other->fail();
  EXPECT_FALSE(other->changed());
  cache_.finish(9, "\"e\"", 1);
  EXPECT_FALSE(cache_.block_cached(9, "\"e\"", 1));
}

TEST_F(ObjectCacheTest, OtherKeysAreNotAffected) {
  std::uint64_t e = cache_.epoch();
  cache_.invalidate("b", "other");
  EXPECT_TRUE(cache_.publish(key_, meta_, e));
}

TEST_F(ObjectCacheTest, BlocksRoundTripThroughBothTiers) {
  auto bytes = make_block_bytes(100, std::byte{7});
  cache_.store_block(key_.hash(), meta_.etag, 0, bytes);
  BlockRead r = tagd::testing::run_sync(cache_.read_block(key_.hash(), meta_.etag, 0));
  ASSERT_EQ(r.outcome, ReadOutcome::kHit);
  EXPECT_TRUE(std::equal(r.bytes->data(), r.bytes->data() + r.bytes->size(), bytes->data(), bytes->data() + 100));
  r = tagd::testing::run_sync(cache_.read_block_range(key_.hash(), meta_.etag, 0, 10, 20));
  ASSERT_EQ(r.outcome, ReadOutcome::kHit);
  EXPECT_LE(r.first, 10u);
  EXPECT_GE(r.first + r.bytes->size(), 30u);
  EXPECT_NE(tagd::testing::run_sync(cache_.read_block(key_.hash(), "\"other\"", 0)).outcome, ReadOutcome::kHit);
  EXPECT_TRUE(cache_.present_or_inflight(key_.hash(), meta_.etag, 0));
  EXPECT_FALSE(cache_.present_or_inflight(key_.hash(), meta_.etag, 1));
}

TEST_F(ObjectCacheTest, OneFillPerBlockAndWaitersSeeProgress) {
  auto [first, owner] = cache_.find_or_start(1, "\"e\"", 0, 10);
  auto [second, owner2] = cache_.find_or_start(1, "\"e\"", 0, 10);
  EXPECT_TRUE(owner);
  EXPECT_FALSE(owner2);
  EXPECT_EQ(first, second);
  std::byte buf[10];
  bool done = false;
  EXPECT_EQ(first->read(0, buf, 10, done), 0u);
  EXPECT_FALSE(done);
  std::byte data[4] = {std::byte{1}, std::byte{2}, std::byte{3}, std::byte{4}};
  first->append(data, 4);
  EXPECT_EQ(first->read(1, buf, 10, done), 3u);
  EXPECT_EQ(buf[0], std::byte{2});
  first->fail();
  EXPECT_EQ(first->read(4, buf, 10, done), 0u);
  EXPECT_TRUE(done);
  EXPECT_TRUE(first->failed());
  cache_.finish(1, "\"e\"", 0);
  EXPECT_EQ(cache_.find(1, "\"e\"", 0), nullptr);
}

}  // namespace
}  // namespace tagd::cache

namespace tagd::cache {
namespace {

TEST(ObjectCacheDegradedTest, DiskFullIsCountedAndTheBlockSimplyNotCached) {
  auto device = std::make_unique<MemoryBlockDevice>(8 << 20, 4096);
  MemoryBlockDevice* raw = device.get();
  ObjectCache cache(std::move(device), make_memory_index(), make_fifo_eviction(), make_fill_budget(1 << 30, 8),
                    /*memory_bytes=*/0, 1 << 20, ObjectCacheOptions{64 * 1024});
  raw->fail_writes_after(0);  // ENOSPC from now on
  const auto before = metrics().cache_write_errors.get();
  cache.store_block(42, "\"e\"", 0, make_block_bytes(100, std::byte{1}));
  EXPECT_EQ(metrics().cache_write_errors.get(), before + 1);
  EXPECT_EQ(tagd::testing::run_sync(cache.read_block(42, "\"e\"", 0)).outcome, ReadOutcome::kMissing);
}

}  // namespace
}  // namespace tagd::cache
