#include "tagd/cache/block_store.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <random>

#include "support/run_sync.hpp"

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

std::vector<std::byte> to_vector(const BlockBytes& b) { return b ? std::vector<std::byte>(b->data(), b->data() + b->size()) : std::vector<std::byte>(); }

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

  // Whole-block read, synchronously.
  ReadOutcome get(const BlockIdentity& id, std::vector<std::byte>& out) {
    BlockRead r = tagd::testing::run_sync(store_->read(id));
    out = to_vector(r.bytes);
    return r.outcome;
  }
  BlockRead get_range(const BlockIdentity& id, std::uint32_t offset, std::uint32_t length) {
    return tagd::testing::run_sync(store_->read_range(id, offset, length));
  }
};

TEST_F(BlockStoreTest, PutThenGet) {
  auto p = payload(kBlock, 1);
  ASSERT_TRUE(store_->put(block(0), p).is_ok());
  std::vector<std::byte> out;
  EXPECT_EQ(get(block(0), out), ReadOutcome::kHit);
  EXPECT_EQ(out, p);
  EXPECT_EQ(get(block(1), out), ReadOutcome::kMissing);
  EXPECT_EQ(get(block(0, "\"other-etag\""), out), ReadOutcome::kMissing);
}

TEST_F(BlockStoreTest, SmallBlocksTakeOnlyTheirAlignedLength) {
  ASSERT_TRUE(store_->put(block(0), payload(100, 2)).is_ok());
  EXPECT_EQ(store_->stats().bytes_written, 4096u);
  std::vector<std::byte> out;
  EXPECT_EQ(get(block(0), out), ReadOutcome::kHit);
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
    auto r = get(block(n), out);
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
  device_.corrupt((*loc)->offset + block_payload_offset(kBlock) + 500);  // one payload byte
  std::vector<std::byte> out;
  EXPECT_EQ(get(block(0), out), ReadOutcome::kCorrupt);
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(store_->stats().corrupt_blocks, 1u);
  EXPECT_EQ(get(block(0), out), ReadOutcome::kMissing);  // dropped from the index
  ASSERT_TRUE(store_->put(block(0), p).is_ok());                 // refetched
  EXPECT_EQ(get(block(0), out), ReadOutcome::kHit);
  EXPECT_EQ(out, p);
}

TEST_F(BlockStoreTest, CorruptHeaderIsDetected) {
  ASSERT_TRUE(store_->put(block(0), payload(kBlock, 4)).is_ok());
  auto loc = index_->get_block(1234, "\"e1\"", 0);
  device_.corrupt((*loc)->offset + 9);  // key hash byte
  std::vector<std::byte> out;
  EXPECT_EQ(get(block(0), out), ReadOutcome::kCorrupt);
}

TEST_F(BlockStoreTest, FailedWritesAreNotIndexed) {
  device_.fail_writes_after(0);
  EXPECT_FALSE(store_->put(block(0), payload(kBlock, 5)).is_ok());
  std::vector<std::byte> out;
  EXPECT_EQ(get(block(0), out), ReadOutcome::kMissing);
}

TEST_F(BlockStoreTest, RestartKeepsBlocksAndResumesFifoOrder) {
  for (std::uint64_t n = 0; n < 6; ++n) ASSERT_TRUE(store_->put(block(n), payload(kBlock, n)).is_ok());
  reopen();
  std::vector<std::byte> out;
  for (std::uint64_t n = 0; n < 6; ++n) {
    ASSERT_EQ(get(block(n), out), ReadOutcome::kHit) << n;
    EXPECT_EQ(out, payload(kBlock, n));
  }
  // New writes fill free regions first, then evict the oldest: block 0's region.
  for (std::uint64_t n = 6; n < 14; ++n) ASSERT_TRUE(store_->put(block(n), payload(kBlock, n)).is_ok());
  EXPECT_NE(get(block(0), out), ReadOutcome::kHit);
  EXPECT_EQ(get(block(13), out), ReadOutcome::kHit);
}

TEST_F(BlockStoreTest, RejectsBadGeometry) {
  MemoryBlockDevice tiny(kRegion, 4096);
  EXPECT_FALSE(BlockStore::open(tiny, *index_, make_fifo_eviction(), {kRegion, kBlock}).has_value());
  EXPECT_FALSE(BlockStore::open(device_, *index_, make_fifo_eviction(), {8192, kBlock}).has_value());
  EXPECT_FALSE(store_->put(block(0), payload(kBlock + 1, 6)).is_ok());
}

// Blocks of four 64 KiB pieces, so reads of part of a block can be seen to read less.
class BlockStoreRangeTest : public ::testing::Test {
 protected:
  static constexpr std::uint32_t kBig = 4 * kBlockPieceSize;
  void SetUp() override {
    auto s = BlockStore::open(device_, *index_, make_fifo_eviction(), BlockStoreOptions{1 << 20, kBig});
    ASSERT_TRUE(s.has_value()) << s.error().message();
    store_ = std::move(s.value());
    ASSERT_TRUE(store_->put(block(0), data_).is_ok());
  }
  BlockRead get_range(std::uint32_t offset, std::uint32_t length) {
    return tagd::testing::run_sync(store_->read_range(block(0), offset, length));
  }
  std::uint64_t payload_device_offset() {
    auto loc = index_->get_block(1234, "\"e1\"", 0);
    return (*loc)->offset + block_payload_offset(kBig);
  }
  MemoryBlockDevice device_{4 << 20, 4096};
  std::unique_ptr<CacheIndex> index_ = make_memory_index();
  std::unique_ptr<BlockStore> store_;
  std::vector<std::byte> data_ = payload(kBig, 9);
};

TEST_F(BlockStoreRangeTest, APartialReadReadsOnlyThePiecesItNeeds) {
  const auto before = device_.stats().bytes_read;
  BlockRead r = get_range(70000, 1000);  // inside piece 1
  ASSERT_EQ(r.outcome, ReadOutcome::kHit);
  EXPECT_EQ(r.first, 70000u);
  EXPECT_EQ(to_vector(r.bytes), std::vector<std::byte>(data_.begin() + 70000, data_.begin() + 71000));
  // One piece plus alignment slack, not the 256 KiB block.
  EXPECT_LE(device_.stats().bytes_read - before, kBlockPieceSize + 8192u);
  // A range across pieces 0..2 and one that ends the block.
  r = get_range(100, 2 * kBlockPieceSize);
  ASSERT_EQ(r.outcome, ReadOutcome::kHit);
  EXPECT_EQ(to_vector(r.bytes), std::vector<std::byte>(data_.begin() + 100, data_.begin() + 100 + 2 * kBlockPieceSize));
  r = get_range(kBig - 10, 10);
  ASSERT_EQ(r.outcome, ReadOutcome::kHit);
  EXPECT_EQ(to_vector(r.bytes), std::vector<std::byte>(data_.end() - 10, data_.end()));
}

TEST_F(BlockStoreRangeTest, AFlippedByteInsideTheRangeIsDetectedAndTheBlockDropped) {
  device_.corrupt(payload_device_offset() + 3 * kBlockPieceSize + 5);  // piece 3
  // Pieces 0..2 are intact: a range there is served.
  EXPECT_EQ(get_range(0, 3 * kBlockPieceSize).outcome, ReadOutcome::kHit);
  // The range that covers the flipped byte is not.
  EXPECT_EQ(get_range(3 * kBlockPieceSize, 100).outcome, ReadOutcome::kCorrupt);
  EXPECT_EQ(store_->stats().corrupt_blocks, 1u);
  EXPECT_EQ(get_range(0, 100).outcome, ReadOutcome::kMissing);  // dropped: the next read refetches
}

TEST_F(BlockStoreRangeTest, ARangeBeyondTheStoredBlockIsRefused) {
  EXPECT_EQ(get_range(kBig - 10, 11).outcome, ReadOutcome::kCorrupt);
}

TEST_F(BlockStoreRangeTest, ARegionRecycledDuringTheReadIsStaleNotData) {
  device_.async_delay(std::chrono::milliseconds(20));
  boost::asio::io_context ctx;
  BlockRead seen;
  boost::asio::co_spawn(ctx, [&]() -> boost::asio::awaitable<void> { seen = co_await store_->read(block(0)); },
                        boost::asio::detached);
  // While the read waits on the device, enough writes to wrap around and reuse block 0's
  // region (4 regions of 1 MiB, 3 blocks of 260 KiB each).
  boost::asio::post(ctx, [&] {
    for (std::uint64_t n = 1; n < 16; ++n) ASSERT_TRUE(store_->put(block(n), payload(kBig, n)).is_ok());
  });
  ctx.run();
  EXPECT_EQ(seen.outcome, ReadOutcome::kStale);
  EXPECT_EQ(seen.bytes, nullptr);
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
