#include <gtest/gtest.h>

#include "tagd/cache/admission.hpp"
#include "tagd/cache/memory_tier.hpp"

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
