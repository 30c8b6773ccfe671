#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "tagd/cache/admission.hpp"
#include "tagd/cache/memory_tier.hpp"
#include "tagd/cache/second_read_gate.hpp"
#include "tagd/core/metrics.hpp"

namespace tagd::cache {
namespace {

BlockBytes bytes(std::size_t n) { return make_block_bytes(n); }

TEST(MemoryTierTest, BoundedInBytes) {
  MemoryTier tier(10'000);
  for (int i = 0; i < 100; ++i) tier.put(MemoryTier::key(1, "e", i), bytes(1000));
  EXPECT_LE(tier.bytes(), 10'000u);
  EXPECT_EQ(tier.bytes(), 10'000u);
  EXPECT_NE(tier.get(MemoryTier::key(1, "e", 99)), nullptr);
  EXPECT_EQ(tier.get(MemoryTier::key(1, "e", 0)), nullptr);
}

TEST(MemoryTierTest, SieveKeepsReReadBlocksThroughAScan) {
  MemoryTier tier(5'000);
  for (int i = 0; i < 5; ++i) tier.put(MemoryTier::key(1, "e", i), bytes(1000));
  ASSERT_NE(tier.get(MemoryTier::key(1, "e", 0)), nullptr);  // hot
  ASSERT_NE(tier.get(MemoryTier::key(1, "e", 1)), nullptr);  // hot
  for (int i = 100; i < 103; ++i) tier.put(MemoryTier::key(1, "e", i), bytes(1000));  // a scan
  EXPECT_NE(tier.get(MemoryTier::key(1, "e", 0)), nullptr);
  EXPECT_NE(tier.get(MemoryTier::key(1, "e", 1)), nullptr);
  EXPECT_EQ(tier.get(MemoryTier::key(1, "e", 2)), nullptr);  // cold ones went
  EXPECT_LE(tier.bytes(), 5'000u);
}

TEST(MemoryTierTest, ContainsDoesNotCountAsAUse) {
  MemoryTier tier(2'000);
  tier.put(MemoryTier::key(1, "e", 0), bytes(1000));
  tier.put(MemoryTier::key(1, "e", 1), bytes(1000));
  EXPECT_TRUE(tier.contains(MemoryTier::key(1, "e", 0)));  // not a hit
  tier.put(MemoryTier::key(1, "e", 2), bytes(1000));       // evicts the oldest unvisited: block 0
  EXPECT_FALSE(tier.contains(MemoryTier::key(1, "e", 0)));
  EXPECT_TRUE(tier.contains(MemoryTier::key(1, "e", 2)));
}

TEST(MemoryTierTest, KeysSeparateEtagsAndReaderKeepsEvictedBlock) {
  MemoryTier tier(1'000);
  tier.put(MemoryTier::key(1, "\"a\"", 0), bytes(600));
  EXPECT_EQ(tier.get(MemoryTier::key(1, "\"b\"", 0)), nullptr);
  auto held = tier.get(MemoryTier::key(1, "\"a\"", 0));
  tier.erase(MemoryTier::key(1, "\"a\"", 0));  // evicted (or erased) while a reader holds it
  ASSERT_NE(held, nullptr);
  EXPECT_EQ(held->size(), 600u);
  EXPECT_EQ(tier.bytes(), 0u);
  tier.put(MemoryTier::key(1, "\"a\"", 0), bytes(600));
  ASSERT_NE(tier.get(MemoryTier::key(1, "\"a\"", 0)), nullptr);  // visited
  tier.put(MemoryTier::key(2, "\"a\"", 0), bytes(600));           // over capacity: SIEVE spares the visited one
  EXPECT_NE(tier.get(MemoryTier::key(1, "\"a\"", 0)), nullptr);
  EXPECT_EQ(tier.get(MemoryTier::key(2, "\"a\"", 0)), nullptr);
  EXPECT_EQ(tier.bytes(), 600u);
  tier.erase(MemoryTier::key(1, "\"a\"", 0));
  EXPECT_EQ(tier.bytes(), 0u);
  tier.put(MemoryTier::key(3, "x", 0), bytes(2'000));  // larger than the tier: not kept
  EXPECT_EQ(tier.bytes(), 0u);
}

// Epoch 0 fills the tier (put, as a fill does); then every epoch reads each of
// `dataset` blocks once in a new order, a miss in the tier being a disk read that
// `read_from_disk` offers back to the tier. Returns each later epoch's tier hit fraction.
template <typename ReadFromDisk>
std::vector<double> shuffled_epochs(MemoryTier& tier, int dataset, int epochs, ReadFromDisk read_from_disk) {
  std::vector<int> order(dataset);
  for (int i = 0; i < dataset; ++i) {
    order[i] = i;
    tier.put(MemoryTier::key(7, "e", i), bytes(1000));
  }
  std::mt19937 rng(42);
  std::vector<double> hit_fractions;
  for (int e = 0; e < epochs; ++e) {
    std::shuffle(order.begin(), order.end(), rng);
    int hits = 0;
    for (int i : order) {
      if (tier.get(MemoryTier::key(7, "e", i))) {
        ++hits;
      } else {
        read_from_disk(tier, MemoryTier::key(7, "e", i));
      }
    }
    hit_fractions.push_back(static_cast<double>(hits) / dataset);
  }
  return hit_fractions;
}

TEST(MemoryTierTest, ShuffledEpochsOverFourTimesTheTierKeepAQuarterHit) {
  MemoryTier tier(250'000);  // 250 of 1,000 blocks
  const auto fractions = shuffled_epochs(tier, 1000, 4, [](MemoryTier& t, const BlockKey& k) {
    (void)t.promote(k, bytes(1000));
  });
  for (double f : fractions) EXPECT_GE(f, 0.20);  // a stable quarter; 0.25 at best
  EXPECT_LE(tier.bytes(), 250'000u);

  // The rule it replaced: every block read from disk kept, evicting blocks not yet read
  // this epoch for ones not needed until the next.
  MemoryTier keeping_all(250'000);
  const auto churned = shuffled_epochs(keeping_all, 1000, 4, [](MemoryTier& t, const BlockKey& k) {
    t.put(k, bytes(1000));
  });
  for (std::size_t e = 1; e < churned.size(); ++e) EXPECT_LT(churned[e], 0.15);
}

TEST(MemoryTierTest, PromoteKeepsABlockReadTwiceFromDiskAndUsesRoomFreely) {
  MemoryTier tier(5'000);
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(tier.promote(MemoryTier::key(1, "e", i), bytes(1000)));  // room
  EXPECT_TRUE(tier.promote(MemoryTier::key(1, "e", 4), bytes(1000)));
  const auto declined = metrics().cache_memory_promotions_declined.get();
  EXPECT_FALSE(tier.promote(MemoryTier::key(1, "e", 9), bytes(1000)));  // full: first read declined
  EXPECT_FALSE(tier.contains(MemoryTier::key(1, "e", 9)));
  EXPECT_EQ(metrics().cache_memory_promotions_declined.get() - declined, 1u);
  EXPECT_TRUE(tier.promote(MemoryTier::key(1, "e", 9), bytes(1000)));  // read again soon: kept
  EXPECT_TRUE(tier.contains(MemoryTier::key(1, "e", 9)));
  EXPECT_EQ(tier.bytes(), 5'000u);
  EXPECT_TRUE(tier.promote(MemoryTier::key(1, "e", 9), bytes(1000)));  // already there: replaced
}

TEST(MemoryTierTest, PromotionWindowForgetsOldDeclines) {
  constexpr std::size_t kBlock = 8192;
  MemoryTier tier(4 * kBlock);  // window: 2 blocks of declines
  for (int i = 0; i < 4; ++i) tier.put(MemoryTier::key(1, "e", i), bytes(kBlock));
  EXPECT_FALSE(tier.promote(MemoryTier::key(2, "e", 0), bytes(kBlock)));
  for (int i = 1; i <= 2; ++i) EXPECT_FALSE(tier.promote(MemoryTier::key(2, "e", i), bytes(kBlock)));
  EXPECT_FALSE(tier.promote(MemoryTier::key(2, "e", 0), bytes(kBlock)));  // aged out: a first read again
  EXPECT_TRUE(tier.promote(MemoryTier::key(2, "e", 0), bytes(kBlock)));
}

TEST(MemoryTierTest, ABlockKeptFromDiskMovesIntoABufferOfItsSize) {
  auto pool = BlockBufferPool::create(8 << 20, 1 << 20);  // memfd slots, as tagd runs
  auto read_block = [](std::size_t size, std::byte fill) {
    AlignedBuffer read(size + 4096, 4096);  // the payload at an offset, as a disk read leaves it
    std::memset(read.data(), 0, read.capacity());
    std::memset(read.data() + 4096, static_cast<int>(fill), size);
    return std::make_shared<const BlockData>(std::move(read), 4096, size);
  };
  MemoryTier tier(8 << 20);
  tier.right_size_promotions_with(pool);
  // 1 KiB in a 160 KiB read buffer: kept in 4 KiB (the smallest kept buffer); 200 KiB in
  // 1.125 MiB: kept in 224 KiB (the pool's class, in a memfd slot). Bytes unchanged.
  const struct {
    std::size_t size;
    std::size_t held;
  } cases[] = {{1024, MemoryTier::kMinKeptBuffer}, {200 * 1024, 224 * 1024}};
  std::uint64_t expected = 0;
  for (std::size_t i = 0; i < std::size(cases); ++i) {
    auto block = read_block(cases[i].size, std::byte{0x5a});
    ASSERT_GT(block->footprint(), cases[i].held * 4 / 3);
    const BlockKey key = MemoryTier::key(7, "e", i);
    ASSERT_TRUE(tier.promote(key, block));
    expected += cases[i].held;
    EXPECT_EQ(tier.bytes(), expected);
    BlockBytes kept = tier.get(key);
    ASSERT_NE(kept, nullptr);
    EXPECT_NE(kept.get(), block.get());
    EXPECT_EQ(kept->footprint(), cases[i].held);
    ASSERT_EQ(kept->size(), cases[i].size);
    EXPECT_TRUE(std::all_of(kept->bytes().begin(), kept->bytes().end(), [](std::byte b) { return b == std::byte{0x5a}; }));
  }
  EXPECT_GE(tier.get(MemoryTier::key(7, "e", 1))->file_descriptor(), 0);  // pooled: sendfile can serve it
  // A 1 MiB block in its 1.125 MiB read buffer: a copy would save less than a quarter, so
  // the block stays where it was read.
  auto large = read_block(1 << 20, std::byte{1});
  ASSERT_TRUE(tier.promote(MemoryTier::key(7, "e", 9), large));
  EXPECT_EQ(tier.get(MemoryTier::key(7, "e", 9)).get(), large.get());
  // Room and the window count what a block will hold once kept: a 300 KiB tier takes a
  // 200 KiB block read into 1.125 MiB (224 KiB kept), which by its read buffer would not fit.
  MemoryTier small_tier(300 * 1024);
  small_tier.right_size_promotions_with(pool);
  EXPECT_TRUE(small_tier.promote(MemoryTier::key(8, "e", 0), read_block(200 * 1024, std::byte{3})));
  EXPECT_EQ(small_tier.bytes(), 224u * 1024);
  // Without a pool (the old behaviour), the read buffer is what the tier holds.
  MemoryTier plain(8 << 20);
  auto small = read_block(1024, std::byte{2});
  ASSERT_TRUE(plain.promote(MemoryTier::key(7, "e", 0), small));
  EXPECT_EQ(plain.bytes(), small->footprint());
}

TEST(MemoryTierTest, ABlockReadFromDiskCountsTheBufferItHolds) {
  // A 100 KiB read lands in a pooled read buffer larger than itself; the tier must count
  // that buffer, or a tier filled from disk holds more memory than its size says.
  AlignedBuffer read(100 * 1024, 4096);
  const std::size_t held = read.capacity();
  EXPECT_GE(held, 100u * 1024);
  auto block = std::make_shared<const BlockData>(std::move(read), 0, 100 * 1024);
  EXPECT_EQ(block->size(), 100u * 1024);
  EXPECT_EQ(block->footprint(), held);
  MemoryTier tier(2 * held);
  EXPECT_TRUE(tier.promote(MemoryTier::key(1, "e", 0), block));
  EXPECT_EQ(tier.bytes(), held);
  EXPECT_EQ(AlignedBuffer(3 << 20, 4096).capacity(), 3u << 20);  // beyond the pool: as asked
  EXPECT_EQ(AlignedBuffer(5000, 4096).capacity() % 4096, 0u);
}

TEST(SecondReadGateTest, AdmitsEveryOtherReadWithinTheWindow) {
  constexpr std::uint64_t kB = 8192;
  SecondReadGate gate(3 * kB);
  EXPECT_FALSE(gate.admit(11, kB));
  EXPECT_TRUE(gate.admit(11, kB));
  EXPECT_FALSE(gate.admit(11, kB));  // admitted once; a later decline starts over
  EXPECT_TRUE(gate.admit(11, kB));
  EXPECT_FALSE(gate.admit(12, 9 * kB));  // larger than the window: remembered alone
  EXPECT_EQ(gate.remembered_bytes(), 9 * kB);
  EXPECT_TRUE(gate.admit(12, 9 * kB));
  EXPECT_FALSE(gate.admit(13, 9 * kB));
  EXPECT_FALSE(gate.admit(14, 9 * kB));  // pushes 13 out
  EXPECT_FALSE(gate.admit(13, 9 * kB));
  // Tiny blocks are charged 4 KiB each: the bookkeeping stays bounded by the window.
  SecondReadGate tiny(64 * 1024);
  for (std::uint64_t i = 0; i < 100'000; ++i) EXPECT_FALSE(tiny.admit(1'000 + i, 1));
  EXPECT_EQ(tiny.remembered_bytes(), 64u * 1024);
  EXPECT_FALSE(tiny.admit(1'000, 1));  // long forgotten
  EXPECT_TRUE(tiny.admit(100'999, 0));  // among the last 16: still remembered
  // An old entry of a re-declined block ageing out does not forget the new decline.
  SecondReadGate g2(3 * kB);
  EXPECT_FALSE(g2.admit(1, kB));
  EXPECT_TRUE(g2.admit(1, kB));
  EXPECT_FALSE(g2.admit(2, kB));
  EXPECT_FALSE(g2.admit(1, kB));  // 3 entries remembered: 1 (admitted), 2, 1
  EXPECT_FALSE(g2.admit(3, kB));  // the first entry of 1 ages out
  EXPECT_TRUE(g2.admit(1, kB));
}

TEST(FillBudgetTest, BytesAndCount) {
  auto budget = make_fill_budget(100, 2);
  EXPECT_TRUE(budget->try_admit(60));
  EXPECT_FALSE(budget->try_admit(50));  // bytes
  EXPECT_TRUE(budget->try_admit(40));
  EXPECT_FALSE(budget->try_admit(0));  // count
  budget->release(60);
  {
    ASSERT_TRUE(budget->try_admit(10));
    Admission a(budget.get(), 10);
    EXPECT_TRUE(a);
    EXPECT_FALSE(budget->try_admit(1));
  }
  EXPECT_TRUE(budget->try_admit(1));
}

}  // namespace
}  // namespace tagd::cache
