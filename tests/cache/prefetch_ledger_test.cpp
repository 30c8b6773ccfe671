#include "tagd/cache/prefetch_ledger.hpp"

#include <gtest/gtest.h>

#include "tagd/core/metrics.hpp"

namespace tagd::cache {
namespace {

BlockKey block(std::uint64_t n) { return BlockKey{7, 9, n}; }

TEST(PrefetchLedgerTest, AReadBlockCountsAsUsedOnce) {
  PrefetchLedger ledger;
  auto& m = metrics();
  const auto fetched = m.cache_prefetch_bytes.get(), used = m.cache_prefetch_used_bytes.get();
  ledger.add(block(1), 1000);
  ledger.add(block(2), 500);
  ledger.add(block(2), 500);  // the same block again: one entry
  EXPECT_EQ(m.cache_prefetch_bytes.get() - fetched, 1500u);
  ledger.on_read(block(1));
  ledger.on_read(block(1));
  ledger.on_read(block(3));  // never prefetched
  EXPECT_EQ(m.cache_prefetch_used_bytes.get() - used, 1000u);
  EXPECT_EQ(ledger.size(), 1u);
}

TEST(PrefetchLedgerTest, BeyondItsBoundTheOldestUnreadAreCountedUnused) {
  PrefetchLedger ledger(/*max_entries=*/4);
  auto& m = metrics();
  const auto unused = m.cache_prefetch_unused_bytes.get();
  const auto unread = m.cache_prefetch_unread_bytes.get();
  for (std::uint64_t b = 0; b < 6; ++b) ledger.add(block(b), 100);
  EXPECT_EQ(ledger.size(), 4u);
  EXPECT_EQ(m.cache_prefetch_unused_bytes.get() - unused, 200u) << "blocks 0 and 1 dropped unread";
  EXPECT_EQ(m.cache_prefetch_unread_bytes.get() - unread, 400);
  ledger.on_read(block(0));  // gone already: not counted as used
  EXPECT_EQ(ledger.size(), 4u);
}

TEST(PrefetchLedgerTest, ReadEntriesDoNotKeepTheOrderQueueGrowing) {
  PrefetchLedger ledger(/*max_entries=*/4);
  auto& m = metrics();
  const auto unused = m.cache_prefetch_unused_bytes.get();
  ledger.add(block(1000), 10);  // stays unread at the front
  for (std::uint64_t b = 0; b < 1000; ++b) {
    ledger.add(block(b), 10);
    ledger.on_read(block(b));
  }
  EXPECT_EQ(ledger.size(), 0u) << "the old unread block was eventually dropped";
  EXPECT_EQ(m.cache_prefetch_unused_bytes.get() - unused, 10u);
  // Prefetched again after it was dropped: a new entry, read normally.
  ledger.add(block(1000), 10);
  ledger.on_read(block(1000));
  EXPECT_EQ(ledger.size(), 0u);
}

}  // namespace
}  // namespace tagd::cache
