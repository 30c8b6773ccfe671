#include "tagd/cache/block_store.hpp"

#include <gtest/gtest.h>

#include <random>

namespace tagd::cache {
namespace {

constexpr std::uint64_t kRegion = 64 * 1024;
constexpr std::uint32_t kBlock = 16 * 1024;

std::vector<std::byte> payload(std::size_t size, unsigned seed) {
  std::vector<std::byte> p(size);
  std::mt19937 rng(seed);
  for (auto& b : p) b = std::byte(rng() & 0xFF);
  return p;
}

BlockIdentity block(std::uint64_t n, std::string etag = "\"e1\"") { return BlockIdentity{1234, n, std::move(etag)}; }

class BlockStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { reopen(); }
  void reopen() {
    store_.reset();
    auto s = BlockStore::open(device_, *index_, make_fifo_eviction(), BlockStoreOptions{kRegion, kBlock});
    ASSERT_TRUE(s.has_value()) << s.error().message();
    store_ = std::move(s.value());
  }

  MemoryBlockDevice device_{4 * kRegion, 4096};
  std::unique_ptr<CacheIndex> index_ = make_memory_index();
  std::unique_ptr<BlockStore> store_;
};

TEST_F(BlockStoreTest, PutThenGet) {
  auto p = payload(kBlock, 1);
  ASSERT_TRUE(store_->put(block(0), p).is_ok());
  std::vector<std::byte> out;
  EXPECT_EQ(store_->get(block(0), out), ReadOutcome::kHit);
  EXPECT_EQ(out, p);
  EXPECT_EQ(store_->get(block(1), out), ReadOutcome::kMissing);
  EXPECT_EQ(store_->get(block(0, "\"other-etag\""), out), ReadOutcome::kMissing);
}

TEST_F(BlockStoreTest, SmallBlocksTakeOnlyTheirAlignedLength) {
  ASSERT_TRUE(store_->put(block(0), payload(100, 2)).is_ok());
  EXPECT_EQ(store_->stats().bytes_written, 4096u);
  std::vector<std::byte> out;
  EXPECT_EQ(store_->get(block(0), out), ReadOutcome::kHit);
  EXPECT_EQ(out.size(), 100u);
}

TEST_F(BlockStoreTest, CapacityIsExactAndFifoEvictsTheOldestRegion) {
  // Each 16 KiB block stores as 20 KiB: 3 per 64 KiB region, 4 regions → 12 blocks resident.
  for (std::uint64_t n = 0; n < 40; ++n) ASSERT_TRUE(store_->put(block(n), payload(kBlock, n)).is_ok());
  EXPECT_LE(store_->stats().bytes_written - 0, 40u * 20480u);
  EXPECT_EQ(store_->capacity_bytes(), 4 * kRegion);
  std::vector<std::byte> out;
  int resident = 0;
  for (std::uint64_t n = 0; n < 40; ++n) {
    auto r = store_->get(block(n), out);
    if (r == ReadOutcome::kHit) {
      ++resident;
      EXPECT_EQ(out, payload(kBlock, n));
      EXPECT_GE(n, 28u) << "an old block survived FIFO";
    }
  }
  EXPECT_LE(resident * 20480, static_cast<int>(4 * kRegion));
  EXPECT_GE(resident, 9);  // at least three full regions' worth
  EXPECT_GT(store_->stats().regions_evicted, 0u);
  EXPECT_GT(store_->stats().stale_lookups, 0u);
}

TEST_F(BlockStoreTest, CorruptionIsDetectedCountedAndDropped) {
  auto p = payload(kBlock, 3);
  ASSERT_TRUE(store_->put(block(0), p).is_ok());
  auto loc = index_->get_block(1234, "\"e1\"", 0);
  ASSERT_TRUE(loc.has_value() && loc->has_value());
  device_.corrupt((*loc)->offset + kBlockHeaderSize + 500);  // one payload byte
  std::vector<std::byte> out;
  EXPECT_EQ(store_->get(block(0), out), ReadOutcome::kCorrupt);
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(store_->stats().corrupt_blocks, 1u);
  EXPECT_EQ(store_->get(block(0), out), ReadOutcome::kMissing);  // dropped from the index
  ASSERT_TRUE(store_->put(block(0), p).is_ok());                 // refetched
  EXPECT_EQ(store_->get(block(0), out), ReadOutcome::kHit);
  EXPECT_EQ(out, p);
}

TEST_F(BlockStoreTest, CorruptHeaderIsDetected) {
  ASSERT_TRUE(store_->put(block(0), payload(kBlock, 4)).is_ok());
  auto loc = index_->get_block(1234, "\"e1\"", 0);
  device_.corrupt((*loc)->offset + 9);  // key hash byte
  std::vector<std::byte> out;
  EXPECT_EQ(store_->get(block(0), out), ReadOutcome::kCorrupt);
}

TEST_F(BlockStoreTest, FailedWritesAreNotIndexed) {
  device_.fail_writes_after(0);
  EXPECT_FALSE(store_->put(block(0), payload(kBlock, 5)).is_ok());
  std::vector<std::byte> out;
  EXPECT_EQ(store_->get(block(0), out), ReadOutcome::kMissing);
}

TEST_F(BlockStoreTest, RestartKeepsBlocksAndResumesFifoOrder) {
  for (std::uint64_t n = 0; n < 6; ++n) ASSERT_TRUE(store_->put(block(n), payload(kBlock, n)).is_ok());
  reopen();
  std::vector<std::byte> out;
  for (std::uint64_t n = 0; n < 6; ++n) {
    ASSERT_EQ(store_->get(block(n), out), ReadOutcome::kHit) << n;
    EXPECT_EQ(out, payload(kBlock, n));
  }
  // New writes fill free regions first, then evict the oldest: block 0's region.
  for (std::uint64_t n = 6; n < 14; ++n) ASSERT_TRUE(store_->put(block(n), payload(kBlock, n)).is_ok());
  EXPECT_NE(store_->get(block(0), out), ReadOutcome::kHit);
  EXPECT_EQ(store_->get(block(13), out), ReadOutcome::kHit);
}

TEST_F(BlockStoreTest, RejectsBadGeometry) {
  MemoryBlockDevice tiny(kRegion, 4096);
  EXPECT_FALSE(BlockStore::open(tiny, *index_, make_fifo_eviction(), {kRegion, kBlock}).has_value());
  EXPECT_FALSE(BlockStore::open(device_, *index_, make_fifo_eviction(), {8192, kBlock}).has_value());
  EXPECT_FALSE(store_->put(block(0), payload(kBlock + 1, 6)).is_ok());
}

TEST(FifoEvictionTest, OrderAndNames) {
  auto fifo = make_eviction_policy("fifo");
  ASSERT_NE(fifo, nullptr);
  fifo->on_sealed(3);
  fifo->on_sealed(1);
  fifo->on_hit(3);  // FIFO ignores hits
  fifo->on_sealed(2);
  EXPECT_EQ(fifo->pick_victim(), 3u);
  EXPECT_EQ(fifo->pick_victim(), 1u);
  EXPECT_EQ(fifo->pick_victim(), 2u);
  EXPECT_EQ(make_eviction_policy("lru-ish"), nullptr);
}

}  // namespace
}  // namespace tagd::cache
