// Pins (warm --pin): per-region pin counts in the block store, the quota, until-read pins,
// the eviction policies skipping pinned regions, and ObjectCache's persisted pin records.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <filesystem>
#include <random>
#include <thread>

#include "support/run_sync.hpp"
#include "tagd/cache/block_store.hpp"
#include "tagd/cache/object_cache.hpp"
#include "tagd/core/metrics.hpp"

namespace tagd::cache {
namespace {

constexpr std::uint64_t kRegion = 64 * 1024;
constexpr std::uint32_t kBlock = 16 * 1024;  // stored as 20 KiB: 3 blocks per region

std::vector<std::byte> payload(std::size_t size, unsigned seed) {
  std::vector<std::byte> p(size);
  std::mt19937 rng(seed);
  for (auto& b : p) b = std::byte(rng() & 0xFF);
  return p;
}

BlockIdentity block(std::uint64_t n, std::uint64_t key = 1234) {
  return BlockIdentity{key, n, "\"e1\""};
}

class PinStoreTest : public ::testing::Test {
 protected:
  void open(std::uint64_t quota, std::unique_ptr<EvictionPolicy> policy = make_fifo_eviction()) {
    store_.reset();
    auto s = BlockStore::open(device_, *index_, std::move(policy), BlockStoreOptions{kRegion, kBlock, quota});
    ASSERT_TRUE(s.has_value()) << s.error().message();
    store_ = std::move(s.value());
  }
  ReadOutcome get(const BlockIdentity& id) { return tagd::testing::run_sync(store_->read(id)).outcome; }
  // Writes `n` unpinned blocks of another object: more than the cache holds evicts every
  // evictable region at least once.
  void pressure(std::uint64_t n = 40, std::uint64_t key = 99) {
    for (std::uint64_t i = 0; i < n; ++i) ASSERT_TRUE(store_->put(block(i, key), payload(kBlock, 1000 + i)).is_ok());
  }

  MemoryBlockDevice device_{6 * kRegion, 4096};  // 6 regions
  std::unique_ptr<CacheIndex> index_ = make_memory_index();
  std::unique_ptr<BlockStore> store_;
};

TEST_F(PinStoreTest, PinnedFillsSurviveAStreamMuchLargerThanTheCache) {
  open(2 * kRegion);
  for (std::uint64_t b = 0; b < 5; ++b) ASSERT_TRUE(store_->put(block(b), payload(kBlock, b), true).is_ok());
  pressure(60);
  for (std::uint64_t b = 0; b < 5; ++b) EXPECT_EQ(get(block(b)), ReadOutcome::kHit) << b;
  // Five pinned blocks packed into two regions of their own, not spread among the others.
  EXPECT_EQ(store_->stats().pinned_regions, 2u);
  EXPECT_EQ(store_->pinned_bytes(), 2 * kRegion);
  EXPECT_EQ(metrics().cache_pinned_bytes.get(), static_cast<std::int64_t>(2 * kRegion));
  EXPECT_GT(store_->stats().regions_evicted, 6u);
  // The rest of the cache still works: the newest unpinned blocks are there.
  EXPECT_EQ(get(block(59, 99)), ReadOutcome::kHit);
}

TEST_F(PinStoreTest, TheQuotaIsWholeRegionsAndAPinBeyondItIsRefusedNotPaidForByAnother) {
  open(kRegion);
  EXPECT_EQ(store_->pin_quota_bytes(), kRegion);
  pressure(6, 7);  // blocks 0-2 in one region, 3-5 in the next
  EXPECT_EQ(store_->pin(block(0, 7), false), PinResult::kPinned);
  EXPECT_EQ(store_->pin(block(1, 7), false), PinResult::kPinned);  // same region: no more quota
  EXPECT_EQ(store_->pin(block(0, 7), false), PinResult::kAlreadyPinned);
  EXPECT_EQ(store_->pin(block(4, 7), false), PinResult::kQuotaExceeded);
  EXPECT_EQ(store_->pin(block(9, 7), false), PinResult::kMissing);
  EXPECT_EQ(store_->stats().pinned_regions, 1u);
  pressure(60);
  EXPECT_EQ(get(block(0, 7)), ReadOutcome::kHit);
  EXPECT_EQ(get(block(1, 7)), ReadOutcome::kHit);
  EXPECT_NE(get(block(4, 7)), ReadOutcome::kHit);
}

TEST_F(PinStoreTest, TheQuotaLeavesTwoRegionsUnpinned) {
  open(100 * kRegion);
  EXPECT_EQ(store_->stats().pin_quota_regions, 4u);  // 6 regions - 2
  for (std::uint64_t b = 0; b < 30; ++b) ASSERT_TRUE(store_->put(block(b), payload(kBlock, b), true).is_ok());
  EXPECT_EQ(store_->stats().pinned_regions, 4u);
  // Pinned writes beyond the quota are cached unpinned; unpinned fills keep working.
  pressure(60);
  EXPECT_EQ(store_->stats().blocked_writes, 0u);
  EXPECT_EQ(get(block(0)), ReadOutcome::kHit);
  EXPECT_EQ(get(block(59, 99)), ReadOutcome::kHit);
}

TEST_F(PinStoreTest, UnpinMakesTheRegionEvictableAgain) {
  open(2 * kRegion);
  ASSERT_TRUE(store_->put(block(0), payload(kBlock, 0), true).is_ok());
  EXPECT_EQ(store_->pin(block(0), false), PinResult::kConfirmed);
  pressure(60);
  EXPECT_EQ(get(block(0)), ReadOutcome::kHit);
  store_->unpin(block(0));
  EXPECT_FALSE(store_->pinned(block(0)));
  pressure(60, 98);
  EXPECT_EQ(get(block(0)), ReadOutcome::kStale);
  // The pin head held nothing else, so the unpin sealed it and gave its hold back.
  EXPECT_EQ(store_->stats().pinned_regions, 0u);
}

TEST_F(PinStoreTest, AnUntilReadPinIsReleasedByTheFirstReadAfterItIsConfirmed) {
  open(2 * kRegion);
  ASSERT_TRUE(store_->put(block(0), payload(kBlock, 0), true).is_ok());
  // The warm job reading its own fill does not release it: not confirmed yet.
  store_->note_read(block(0));
  EXPECT_TRUE(store_->pinned(block(0)));
  EXPECT_FALSE(store_->has_until_read_pins());
  EXPECT_EQ(store_->pin(block(0), true), PinResult::kConfirmed);
  EXPECT_TRUE(store_->has_until_read_pins());
  store_->note_read(block(0));
  EXPECT_FALSE(store_->pinned(block(0)));
  EXPECT_FALSE(store_->has_until_read_pins());
}

TEST_F(PinStoreTest, AHeldPinIsNeverWeakenedToUntilRead) {
  open(2 * kRegion);
  pressure(3, 7);
  EXPECT_EQ(store_->pin(block(0, 7), false), PinResult::kPinned);
  EXPECT_EQ(store_->pin(block(0, 7), true), PinResult::kAlreadyPinned);
  store_->note_read(block(0, 7));
  EXPECT_TRUE(store_->pinned(block(0, 7)));
}

TEST_F(PinStoreTest, AFailedPinnedFillGivesItsUnconfirmedPinsBack) {
  open(2 * kRegion);
  for (std::uint64_t b = 0; b < 4; ++b) ASSERT_TRUE(store_->put(block(b), payload(kBlock, b), true).is_ok());
  EXPECT_EQ(store_->pin(block(0), false), PinResult::kConfirmed);
  store_->unpin_unconfirmed(1234);
  EXPECT_TRUE(store_->pinned(block(0)));
  for (std::uint64_t b = 1; b < 4; ++b) EXPECT_FALSE(store_->pinned(block(b))) << b;
}

TEST_F(PinStoreTest, ARefilledPinnedBlockStaysPinned) {
  open(2 * kRegion);
  ASSERT_TRUE(store_->put(block(0), payload(kBlock, 0), true).is_ok());
  EXPECT_EQ(store_->pin(block(0), false), PinResult::kConfirmed);
  // The same block written again (a refill after a corrupt read): the pin follows it.
  ASSERT_TRUE(store_->put(block(0), payload(kBlock, 0)).is_ok());
  pressure(60);
  EXPECT_EQ(get(block(0)), ReadOutcome::kHit);
  EXPECT_EQ(store_->stats().pinned_blocks, 1u);
}

// A policy that, like a full cache of pins, has no victim to offer.
class NoVictim final : public EvictionPolicy {
 public:
  void on_sealed(std::uint32_t) override {}
  void on_hit(std::uint32_t) override {}
  void on_pinned(std::uint32_t, bool) override {}
  std::uint32_t pick_victim() override { return kNoVictim; }
  const char* name() const noexcept override { return "none"; }
};

TEST_F(PinStoreTest, WhenNothingCanBeEvictedWritesAreRefusedAndCountedAndTheCacheStaysReadable) {
  open(0, std::make_unique<NoVictim>());
  const auto blocked = metrics().cache_pin_blocked_writes.get();
  // 6 regions of 3 blocks fill; the 19th block finds no region.
  for (std::uint64_t b = 0; b < 18; ++b) ASSERT_TRUE(store_->put(block(b), payload(kBlock, b)).is_ok()) << b;
  Status s = store_->put(block(18), payload(kBlock, 18));
  EXPECT_EQ(s.code(), ErrorCode::kSlowDown);
  EXPECT_EQ(store_->put(block(19), payload(kBlock, 19)).code(), ErrorCode::kSlowDown);  // no double seal
  EXPECT_EQ(metrics().cache_pin_blocked_writes.get(), blocked + 2);
  EXPECT_EQ(store_->stats().blocked_writes, 2u);
  for (std::uint64_t b = 0; b < 18; ++b) EXPECT_EQ(get(block(b)), ReadOutcome::kHit) << b;
  EXPECT_EQ(get(block(18)), ReadOutcome::kMissing);
}

TEST(PinPolicyTest, FifoSkipsPinnedRegionsAndSaysWhenNoneIsLeft) {
  auto fifo = make_fifo_eviction();
  fifo->attach(4);
  for (std::uint32_t r : {3u, 1u, 2u}) fifo->on_sealed(r);
  fifo->on_pinned(3, true);
  EXPECT_EQ(fifo->pick_victim(), 1u);
  fifo->on_pinned(2, true);
  EXPECT_EQ(fifo->pick_victim(), kNoVictim);
  fifo->on_pinned(3, false);
  EXPECT_EQ(fifo->pick_victim(), 3u);  // kept its place in line while pinned
}

TEST(PinPolicyTest, HitGatedNeverPicksAPinnedRegionEvenTheColdest) {
  auto policy = make_hit_gated_eviction();
  auto& e = *policy.eviction;
  e.attach(4);
  for (std::uint32_t r = 0; r < 3; ++r) {
    e.on_written(r);
    e.on_sealed(r);
  }
  for (int i = 0; i < 50; ++i) {
    e.on_hit(1);
    e.on_hit(2);
  }
  e.on_pinned(0, true);  // the coldest
  const std::uint32_t victim = e.pick_victim();
  EXPECT_NE(victim, 0u);
  EXPECT_NE(victim, kNoVictim);
  e.on_pinned(victim == 1 ? 2 : 1, true);
  EXPECT_EQ(e.pick_victim(), kNoVictim);  // the one left unpinned was taken; the rest are pinned
}

// Pin record writes (put_pin, erase_pin) that fail on demand; everything else goes to the
// real index. `ok_writes` pin writes succeed, then every one fails until it is reset.
struct PinFaults {
  static constexpr int kNever = -1;
  int ok_writes = kNever;
  int failed = 0;
  bool fail() {
    if (ok_writes == kNever) return false;
    if (ok_writes > 0) {
      --ok_writes;
      return false;
    }
    ++failed;
    return true;
  }
};

class FaultyPinIndex : public CacheIndex {
 public:
  FaultyPinIndex(std::unique_ptr<CacheIndex> real, PinFaults& faults) : real_(std::move(real)), faults_(faults) {}
  Result<std::optional<ObjectMeta>> get_object(const ObjectKey& key) override { return real_->get_object(key); }
  Status put_object(const ObjectKey& key, const ObjectMeta& meta) override { return real_->put_object(key, meta); }
  Status erase_object(const ObjectKey& key) override { return real_->erase_object(key); }
  Status erase_object_variants(const std::string& bucket, const std::string& key) override {
    return real_->erase_object_variants(bucket, key);
  }
  Result<std::optional<BlockLocation>> get_block(std::uint64_t key_hash, const std::string& etag,
                                                 std::uint64_t block) override {
    return real_->get_block(key_hash, etag, block);
  }
  Status put_block(std::uint64_t key_hash, const std::string& etag, std::uint64_t block,
                   const BlockLocation& location) override {
    return real_->put_block(key_hash, etag, block, location);
  }
  Status erase_block(std::uint64_t key_hash, const std::string& etag, std::uint64_t block) override {
    return real_->erase_block(key_hash, etag, block);
  }
  Status put_region_generation(std::uint32_t region, std::uint64_t generation) override {
    return real_->put_region_generation(region, generation);
  }
  Result<std::vector<std::uint64_t>> region_generations(std::uint32_t region_count) override {
    return real_->region_generations(region_count);
  }
  Status put_pin(const ObjectKey& key, const PinRecord& pin) override {
    if (faults_.fail()) return Status(ErrorCode::kInternalError, "injected: pin record not written");
    return real_->put_pin(key, pin);
  }
  Status erase_pin(const ObjectKey& key) override {
    if (faults_.fail()) return Status(ErrorCode::kInternalError, "injected: pin record not erased");
    return real_->erase_pin(key);
  }
  Result<std::vector<std::pair<ObjectKey, PinRecord>>> pins(const std::string& bucket,
                                                            const std::string& prefix) override {
    return real_->pins(bucket, prefix);
  }

 private:
  std::unique_ptr<CacheIndex> real_;
  PinFaults& faults_;
};

// ObjectCache: objects pinned by a warm job, persisted across a reopen, unpinned by prefix.
class PinCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("tagd-pin-test-" + std::to_string(::getpid()) + "-" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    reopen();
  }
  void TearDown() override {
    cache_.reset();
    std::filesystem::remove_all(dir_);
  }
  void reopen(std::uint64_t quota = 3 * kRegion) {
    cache_.reset();
    auto device = open_pread_device(FileDeviceOptions{(dir_ / "blocks").string(), 8 * kRegion, false});
    ASSERT_TRUE(device.has_value()) << device.error().message();
    auto index = open_rocksdb_index((dir_ / "index").string());
    ASSERT_TRUE(index.has_value()) << index.error().message();
    ObjectCacheOptions options{kBlock};
    options.pin_quota = quota;
    cache_ = std::make_unique<ObjectCache>(std::move(device.value()),
                                           std::make_unique<FaultyPinIndex>(std::move(index.value()), faults_),
                                           make_fifo_eviction(), make_fill_budget(1 << 30, 8), 0, kRegion, options);
  }
  // An object of `blocks` full blocks, filled the way the fill engine does (meta, blocks).
  void fill(const ObjectKey& key, std::uint64_t blocks) {
    ASSERT_TRUE(
        cache_->publish(key, ObjectMeta{blocks * kBlock, "\"e\"", "", {}, 0, 1LL << 60, kBlock}, cache_->epoch()));
    for (std::uint64_t b = 0; b < blocks; ++b) {
      auto p = payload(kBlock, static_cast<unsigned>(b));
      cache_->store_block(key.hash(), "\"e\"", b,
                          std::make_shared<const BlockData>(std::make_shared<const std::vector<std::byte>>(p)));
    }
  }
  void pressure(int round) {
    for (int i = 0; i < 12; ++i) fill(ObjectKey{"other", "o" + std::to_string(round) + "-" + std::to_string(i), ""}, 3);
  }
  bool cached(const ObjectKey& key, std::uint64_t blocks) {
    for (std::uint64_t b = 0; b < blocks; ++b) {
      if (tagd::testing::run_sync(cache_->read_block(key.hash(), "\"e\"", b)).outcome != ReadOutcome::kHit)
        return false;
    }
    return true;
  }
  PinOutcome warm_pinned(const ObjectKey& key, std::uint64_t blocks, PinOwner owner = PinOwner::kKey,
                         std::string_view job = "w1") {
    cache_->begin_pin(key);
    fill(key, blocks);
    PinOutcome o = cache_->pin_object(key, owner, job);
    cache_->end_pin(key);
    return o;
  }

  std::filesystem::path dir_;
  PinFaults faults_;
  std::unique_ptr<ObjectCache> cache_;
};

TEST_F(PinCacheTest, PinsSurvivePressureAndARestartAndUnpinReleasesThem) {
  const ObjectKey a{"b", "set/a", ""}, c{"b", "set/c", ""}, other{"b", "zzz", ""};
  EXPECT_EQ(warm_pinned(a, 2), PinOutcome::kPinned);
  EXPECT_EQ(warm_pinned(c, 2), PinOutcome::kPinned);
  EXPECT_EQ(warm_pinned(other, 1), PinOutcome::kPinned);
  pressure(0);
  EXPECT_TRUE(cached(a, 2));
  EXPECT_TRUE(cached(c, 2));
  const std::uint64_t pinned = cache_->pinned_bytes();
  EXPECT_GT(pinned, 0u);

  reopen();
  EXPECT_EQ(cache_->pinned_bytes(), 2 * kRegion);  // 5 blocks over two regions; no head open yet
  pressure(1);
  EXPECT_TRUE(cached(a, 2));
  EXPECT_TRUE(cached(c, 2));
  auto listed = cache_->pins("b", "set/");
  ASSERT_TRUE(listed.has_value());
  EXPECT_EQ(listed->size(), 2u);

  auto released = cache_->unpin("b", "set/");
  ASSERT_TRUE(released.has_value());
  EXPECT_EQ(released->objects, 2u);
  EXPECT_EQ(released->bytes, 4u * kBlock);
  pressure(2);
  pressure(3);
  EXPECT_FALSE(cached(a, 2));
  EXPECT_TRUE(cached(other, 1));  // outside the prefix: still pinned
  reopen();
  EXPECT_EQ(cache_->pins("b", "")->size(), 1u);
}

TEST_F(PinCacheTest, AnObjectBeyondTheQuotaIsRefusedWholeAndOthersStayPinned) {
  const auto refused = metrics().cache_pins_refused.get();
  std::vector<PinOutcome> outcomes;
  for (int i = 0; i < 6; ++i) outcomes.push_back(warm_pinned(ObjectKey{"b", "q" + std::to_string(i), ""}, 2));
  // 3 regions of quota hold 4 objects of 2 blocks (3 blocks a region): the 5th does not fit.
  EXPECT_EQ(std::count(outcomes.begin(), outcomes.end(), PinOutcome::kPinned), 4);
  EXPECT_EQ(outcomes[5], PinOutcome::kQuotaExceeded);
  EXPECT_GT(metrics().cache_pins_refused.get(), refused);
  EXPECT_LE(cache_->pinned_bytes(), cache_->pin_quota_bytes());
  pressure(0);
  for (int i = 0; i < 6; ++i) {
    if (outcomes[i] == PinOutcome::kPinned) {
      EXPECT_TRUE(cached(ObjectKey{"b", "q" + std::to_string(i), ""}, 2)) << i;
    }
  }
  EXPECT_EQ(cache_->pins("b", "q")->size(), 4u);
}

TEST_F(PinCacheTest, UntilReadPinsHoldAcrossARestartUntilAClientReadsThem) {
  const ObjectKey k{"b", "next-epoch/1", ""};
  EXPECT_EQ(warm_pinned(k, 2, PinOwner::kUntilRead), PinOutcome::kPinned);
  EXPECT_EQ(cache_->pins("b", "")->size(), 1u);  // recorded, so a restart does not drop it
  reopen();
  EXPECT_GT(cache_->pinned_bytes(), 0u);
  pressure(0);
  EXPECT_TRUE(cached(k, 2));  // a client reads it: released, and its record with it
  EXPECT_EQ(cache_->pins("b", "")->size(), 0u);
  EXPECT_EQ(cache_->pinned_bytes(), 0u);
  pressure(1);
  pressure(2);
  EXPECT_FALSE(cached(k, 2));
  reopen();
  EXPECT_EQ(cache_->pins("b", "")->size(), 0u);
}

TEST_F(PinCacheTest, CancellingOneRunAheadKeepsWhatAnotherStillHolds) {
  const ObjectKey k{"b", "epoch/7", ""};
  EXPECT_EQ(warm_pinned(k, 2, PinOwner::kUntilRead, "w1"), PinOutcome::kPinned);
  EXPECT_EQ(cache_->pin_object(k, PinOwner::kUntilRead, "w2"), PinOutcome::kPinned);
  cache_->release_until_read(k, "w1");
  cache_->release_until_read(k, "w9");  // never pinned it: nothing happens
  EXPECT_EQ(cache_->pins("b", "")->size(), 1u);
  pressure(0);
  pressure(1);
  cache_->release_until_read(k, "w2");
  EXPECT_EQ(cache_->pins("b", "")->size(), 0u);
  EXPECT_EQ(cache_->pinned_bytes(), 0u);
  EXPECT_TRUE(cached(k, 2));  // the two runs ahead held it through the pressure
}

TEST_F(PinCacheTest, APinnedPrefixPinsObjectsFilledUnderItLaterAcrossARestart) {
  ASSERT_TRUE(cache_->pin_prefix("b", "set/").is_ok());
  const ObjectKey a{"b", "set/a", ""}, later{"b", "set/later", ""}, outside{"b", "other/x", ""};
  fill(a, 2);  // a client's miss: no warm job involved
  fill(outside, 1);
  EXPECT_EQ(cache_->pins("b", "")->size(), 1u);
  pressure(0);
  pressure(1);
  EXPECT_TRUE(cached(a, 2));
  EXPECT_FALSE(cached(outside, 1));

  reopen();
  EXPECT_EQ(cache_->pinned_prefixes("b", ""), std::vector<std::string>{"set/"});
  fill(later, 2);  // after the restart: the restored prefix still pins new fills
  // Only part of an object filled (a ranged read): its block is pinned, the record kept.
  const ObjectKey part{"b", "set/part", ""};
  ASSERT_TRUE(cache_->publish(part, ObjectMeta{3 * kBlock, "\"e\"", "", {}, 0, 1LL << 60, kBlock}, cache_->epoch()));
  auto p = payload(kBlock, 9);
  cache_->store_block(part.hash(), "\"e\"", 1,
                      std::make_shared<const BlockData>(std::make_shared<const std::vector<std::byte>>(p)));
  reopen();
  pressure(2);
  pressure(3);
  EXPECT_TRUE(cached(a, 2));
  EXPECT_TRUE(cached(later, 2));
  EXPECT_EQ(tagd::testing::run_sync(cache_->read_block(part.hash(), "\"e\"", 1)).outcome, ReadOutcome::kHit);
  EXPECT_EQ(cache_->pins("b", "set/")->size(), 3u);

  auto released = cache_->unpin("b", "set/");
  ASSERT_TRUE(released.has_value());
  EXPECT_EQ(released->prefixes, 1u);
  EXPECT_EQ(released->objects, 3u);
  EXPECT_EQ(released->objects_kept, 0u);
  EXPECT_EQ(cache_->pinned_bytes(), 0u);
  fill(ObjectKey{"b", "set/after-unpin", ""}, 1);
  EXPECT_EQ(cache_->pins("b", "")->size(), 0u);
  reopen();
  EXPECT_TRUE(cache_->pinned_prefixes("b", "").empty());
  pressure(4);
  pressure(5);
  EXPECT_FALSE(cached(a, 2));
}

TEST_F(PinCacheTest, UnpinningOneOfTwoOverlappingPrefixesReleasesOnlyWhatTheOtherDoesNotCover) {
  ASSERT_TRUE(cache_->pin_prefix("b", "a/").is_ok());
  ASSERT_TRUE(cache_->pin_prefix("b", "a/b/").is_ok());
  const ObjectKey wide{"b", "a/1", ""}, narrow{"b", "a/b/1", ""};
  fill(wide, 3);  // a region of its own (pins hold whole regions)
  fill(narrow, 1);

  // The narrow one goes: everything under it is still under the wide one.
  auto r = cache_->unpin("b", "a/b/");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->prefixes, 1u);
  EXPECT_EQ(r->objects, 0u);
  EXPECT_EQ(r->objects_kept, 1u);
  EXPECT_EQ(r->still_pinned_by, std::vector<std::string>{"a/"});
  pressure(0);
  pressure(1);
  EXPECT_TRUE(cached(wide, 3));
  EXPECT_TRUE(cached(narrow, 1));

  // Pinned again, and the wide one goes: only what the narrow one does not cover is released.
  ASSERT_TRUE(cache_->pin_prefix("b", "a/b/").is_ok());
  r = cache_->unpin("b", "a/");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->objects, 1u);
  EXPECT_EQ(r->objects_kept, 1u);
  EXPECT_EQ(r->still_pinned_by, std::vector<std::string>{"a/b/"});
  reopen();  // what is left is what is persisted
  pressure(2);
  pressure(3);
  EXPECT_FALSE(cached(wide, 3));
  EXPECT_TRUE(cached(narrow, 1));

  // Recursive: every pinned prefix under it goes too.
  r = cache_->unpin("b", "", true);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->prefixes, 1u);
  EXPECT_EQ(r->objects, 1u);
  EXPECT_TRUE(cache_->pinned_prefixes("b", "").empty());
  EXPECT_EQ(cache_->pinned_bytes(), 0u);
}

TEST_F(PinCacheTest, AKeysOwnPinGivesWayToAnUnpinCoveringItButNotTheOtherPrefixes) {
  ASSERT_TRUE(cache_->pin_prefix("b", "d/").is_ok());
  const ObjectKey k{"b", "d/k", ""};
  EXPECT_EQ(warm_pinned(k, 1, PinOwner::kKey), PinOutcome::kPinned);  // a key list --pin: the key holds it too
  auto r = cache_->unpin("b", "d/k");                                 // no prefix record there: the key's own pin goes
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->objects_kept, 1u);  // still under d/
  EXPECT_EQ(cache_->pins("b", "")->size(), 1u);
  r = cache_->unpin("b", "d/");
  EXPECT_EQ(r->objects, 1u);
  EXPECT_EQ(cache_->pins("b", "")->size(), 0u);
  // A prefix job's object whose prefix was unpinned meanwhile is not pinned.
  fill(k, 1);
  EXPECT_EQ(cache_->pin_object(k, PinOwner::kPrefix), PinOutcome::kUnpinned);
  EXPECT_EQ(cache_->pinned_bytes(), 0u);
}

TEST_F(PinCacheTest, ObjectsFilledUnderAPinnedPrefixBeyondTheQuotaAreRefusedWholeAndCounted) {
  const auto refused = metrics().cache_pins_refused.get();
  ASSERT_TRUE(cache_->pin_prefix("b", "big/").is_ok());
  for (int i = 0; i < 6; ++i) fill(ObjectKey{"b", "big/" + std::to_string(i), ""}, 2);
  // 3 regions of quota (3 blocks each) hold 4 objects of 2 blocks; the rest are refused,
  // each counted once.
  const auto pinned = cache_->pins("b", "big/");
  ASSERT_TRUE(pinned.has_value());
  EXPECT_EQ(pinned->size(), 4u);
  EXPECT_EQ(metrics().cache_pins_refused.get() - refused, 2);
  EXPECT_LE(cache_->pinned_bytes(), cache_->pin_quota_bytes());
  pressure(0);
  pressure(1);
  for (const auto& [key, record] : pinned.value()) EXPECT_TRUE(cached(key, 2)) << key.key;
}

TEST_F(PinCacheTest, AWriteUnderAPinnedPrefixPinsTheNewVersionWhenItIsFilled) {
  ASSERT_TRUE(cache_->pin_prefix("b", "w/").is_ok());
  const ObjectKey k{"b", "w/k", ""};
  fill(k, 2);
  cache_->invalidate("b", "w/k");
  EXPECT_EQ(cache_->pins("b", "")->size(), 0u);
  EXPECT_EQ(cache_->pinned_bytes(), 0u);
  fill(k, 2);  // the next read's miss
  EXPECT_EQ(cache_->pins("b", "")->size(), 1u);
  pressure(0);
  pressure(1);
  EXPECT_TRUE(cached(k, 2));
}

TEST_F(PinCacheTest, AWriteThroughTagdReleasesThePin) {
  const ObjectKey k{"b", "w", ""};
  EXPECT_EQ(warm_pinned(k, 2), PinOutcome::kPinned);
  cache_->invalidate("b", "w");
  EXPECT_EQ(cache_->pins("b", "")->size(), 0u);
}

// The pin of a warm job waits for its object's last blocks to leave the fill's writer
// queue by awaiting the registry (ObjectCache::finish), not by polling.
TEST_F(PinCacheTest, SettleFillWaitsForTheObjectsBlocksInFlightAndNoLonger) {
  const ObjectKey k{"b", "queued", ""};
  cache_->begin_pin(k);
  ASSERT_TRUE(cache_->publish(k, ObjectMeta{2 * kBlock, "\"e\"", "", {}, 0, 1LL << 60, kBlock}, cache_->epoch()));
  auto p0 = payload(kBlock, 0), p1 = payload(kBlock, 1);
  cache_->store_block(k.hash(), "\"e\"", 0,
                      std::make_shared<const BlockData>(std::make_shared<const std::vector<std::byte>>(p0)));
  auto [inflight, mine] = cache_->find_or_start(k.hash(), "\"e\"", 1, kBlock);
  ASSERT_TRUE(mine);
  EXPECT_EQ(cache_->pin_object(k, PinOwner::kKey), PinOutcome::kNotCached);

  boost::asio::io_context ctx;
  bool settled = false;
  const auto started = std::chrono::steady_clock::now();
  boost::asio::co_spawn(ctx, cache_->settle_fill(k, std::chrono::seconds(20)),
                        [&](std::exception_ptr) { settled = true; });
  // The writer finishes the block 100 ms later (on another thread, as the fill writer does).
  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    cache_->store_block(k.hash(), "\"e\"", 1,
                        std::make_shared<const BlockData>(std::make_shared<const std::vector<std::byte>>(p1)));
    cache_->finish(k.hash(), "\"e\"", 1);
  });
  ctx.run();
  writer.join();
  const auto waited = std::chrono::steady_clock::now() - started;
  EXPECT_TRUE(settled);
  EXPECT_GE(waited, std::chrono::milliseconds(100));
  EXPECT_LT(waited, std::chrono::seconds(5));  // woken by the finish, not by the 20 s limit
  EXPECT_EQ(cache_->pin_object(k, PinOwner::kKey), PinOutcome::kPinned);
  cache_->end_pin(k);

  // A block that never finishes: settle_fill gives up at its limit.
  const ObjectKey stuck{"b", "stuck", ""};
  ASSERT_TRUE(cache_->publish(stuck, ObjectMeta{kBlock, "\"e\"", "", {}, 0, 1LL << 60, kBlock}, cache_->epoch()));
  auto held = cache_->find_or_start(stuck.hash(), "\"e\"", 0, kBlock);
  // Its own context, alive until the finish below: the waiter it registered stays with
  // the block after the limit, and the finish posts its wake-up to that context.
  boost::asio::io_context stuck_ctx;
  bool gave_up = false;
  const auto before = std::chrono::steady_clock::now();
  boost::asio::co_spawn(stuck_ctx, cache_->settle_fill(stuck, std::chrono::milliseconds(150)),
                        [&](std::exception_ptr) { gave_up = true; });
  stuck_ctx.run();
  EXPECT_TRUE(gave_up);
  EXPECT_GE(std::chrono::steady_clock::now() - before, std::chrono::milliseconds(150));
  cache_->finish(stuck.hash(), "\"e\"", 0);
  stuck_ctx.restart();
  stuck_ctx.poll();  // runs the posted wake-up, which lets go of the waiter's timer
}

TEST_F(PinCacheTest, APinWhoseRecordTheIndexCannotWriteIsNotTakenAndTheJobIsTold) {
  const auto failures = metrics().cache_pin_records_failed.get();
  const ObjectKey k{"b", "k", ""};
  faults_.ok_writes = 0;
  // Pinned in memory only, a restart would silently drop it: the warm job hears it instead.
  EXPECT_EQ(warm_pinned(k, 2, PinOwner::kKey), PinOutcome::kNotRecorded);
  EXPECT_STREQ(pin_outcome_name(PinOutcome::kNotRecorded), "PinNotRecorded");
  EXPECT_EQ(faults_.failed, 1);
  EXPECT_EQ(metrics().cache_pin_records_failed.get() - failures, 1);
  EXPECT_EQ(cache_->pinned_bytes(), 0u);  // no quota held by a pin nobody recorded
  faults_.ok_writes = PinFaults::kNever;
  EXPECT_EQ(cache_->pins("b", "")->size(), 0u);
  pressure(0);
  pressure(1);
  EXPECT_FALSE(cached(k, 2));  // in memory as after a restart: not pinned

  // Nothing was left half-done: the same pin succeeds once the index writes again, and
  // holds across a restart.
  EXPECT_EQ(warm_pinned(k, 2, PinOwner::kKey), PinOutcome::kPinned);
  reopen();
  pressure(2);
  pressure(3);
  EXPECT_TRUE(cached(k, 2));
  EXPECT_EQ(metrics().cache_pin_records_failed.get() - failures, 1);
}

TEST_F(PinCacheTest, APrefixWhoseRecordsTheIndexCannotWritePinsNothingItCannotRestore) {
  const auto failures = metrics().cache_pin_records_failed.get();
  faults_.ok_writes = 0;
  EXPECT_FALSE(cache_->pin_prefix("b", "p/").is_ok());
  EXPECT_TRUE(cache_->pinned_prefixes("b", "").empty());
  faults_.ok_writes = PinFaults::kNever;
  ASSERT_TRUE(cache_->pin_prefix("b", "p/").is_ok());

  // The prefix is recorded, the object's record is not: a client's fill under it is not
  // pinned (as a restart would find it), and the prefix job's own pin reports it.
  const ObjectKey k{"b", "p/k", ""};
  faults_.ok_writes = 0;
  fill(k, 2);
  EXPECT_EQ(cache_->pin_object(k, PinOwner::kPrefix), PinOutcome::kNotRecorded);
  EXPECT_EQ(metrics().cache_pin_records_failed.get() - failures, 3);
  EXPECT_EQ(cache_->pinned_bytes(), 0u);
  faults_.ok_writes = PinFaults::kNever;
  EXPECT_EQ(cache_->pins("b", "")->size(), 0u);
  reopen();
  EXPECT_EQ(cache_->pinned_prefixes("b", ""), std::vector<std::string>{"p/"});
  EXPECT_EQ(cache_->pinned_bytes(), 0u);
  EXPECT_EQ(cache_->pin_object(k, PinOwner::kPrefix), PinOutcome::kPinned);
  EXPECT_EQ(cache_->pins("b", "")->size(), 1u);
}

TEST_F(PinCacheTest, AnUnpinTheIndexStopsHalfwayReleasesWhatItErasedAndReportsTheRest) {
  const ObjectKey a{"b", "set/a", ""}, c{"b", "set/c", ""};
  EXPECT_EQ(warm_pinned(a, 2), PinOutcome::kPinned);
  EXPECT_EQ(warm_pinned(c, 2), PinOutcome::kPinned);
  const auto failures = metrics().cache_pin_records_failed.get();
  faults_.ok_writes = 1;  // the first record goes, the second stays
  auto r = cache_->unpin("b", "set/");
  EXPECT_FALSE(r.has_value());
  EXPECT_EQ(metrics().cache_pin_records_failed.get() - failures, 1);
  faults_.ok_writes = PinFaults::kNever;
  EXPECT_EQ(cache_->pins("b", "")->size(), 1u);
  // Memory agrees with the index: unpinning again releases exactly the one left, and the
  // first one's blocks were given back (no region stays held by a pin nobody has).
  r = cache_->unpin("b", "set/");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->objects, 1u);
  EXPECT_EQ(cache_->pinned_bytes(), 0u);
  reopen();
  EXPECT_EQ(cache_->pinned_bytes(), 0u);
}

TEST_F(PinCacheTest, PinningOffWhenTheQuotaIsZero) {
  ASSERT_TRUE(cache_->pin_prefix("b", "p/").is_ok());
  reopen(0);
  EXPECT_FALSE(cache_->pinning_enabled());
  EXPECT_EQ(warm_pinned(ObjectKey{"b", "x", ""}, 1), PinOutcome::kDisabled);
  EXPECT_EQ(cache_->pin_prefix("b", "q/").code(), ErrorCode::kInvalidRequest);
  EXPECT_TRUE(cache_->pinned_prefixes("b", "").empty());  // dropped at start-up, with a warning
  EXPECT_EQ(metrics().cache_pin_quota_bytes.get(), 0);
}

TEST(PinIndexTest, RecordsRoundTripAndScanByBucketAndPrefix) {
  auto index = make_memory_index();
  ASSERT_TRUE(index->put_pin(ObjectKey{"b", "p/1", ""}, PinRecord{"\"x\"", 10, kBlock}).is_ok());
  ASSERT_TRUE(index->put_pin(ObjectKey{"b", "p/2", "versionId=3"}, PinRecord{"\"y\"", 20, kBlock}).is_ok());
  ASSERT_TRUE(index->put_pin(ObjectKey{"b", "q", ""}, PinRecord{"\"z\"", 30, kBlock}).is_ok());
  ASSERT_TRUE(index->put_pin(ObjectKey{"bb", "p/3", ""}, PinRecord{"\"w\"", 40, kBlock}).is_ok());
  auto p = index->pins("b", "p/");
  ASSERT_TRUE(p.has_value());
  ASSERT_EQ(p->size(), 2u);
  EXPECT_EQ((*p)[1].first.variant, "versionId=3");
  EXPECT_EQ((*p)[1].second.etag, "\"y\"");
  EXPECT_EQ((*p)[1].second.size, 20u);
  EXPECT_EQ((*p)[1].second.block_size, kBlock);
  EXPECT_EQ(index->pins("", "")->size(), 4u);
  ASSERT_TRUE(index->erase_pin(ObjectKey{"b", "q", ""}).is_ok());
  EXPECT_EQ(index->pins("b", "")->size(), 2u);
  // Pins are not objects: an object lookup never sees them.
  EXPECT_FALSE(index->get_object(ObjectKey{"b", "q", ""})->has_value());
  // Owners round-trip; a prefix record has no blocks (block size 0) and still decodes.
  ASSERT_TRUE(
      index->put_pin(ObjectKey{"b", "r", ""}, PinRecord{"\"v\"", 5, kBlock, kPinNotByKey | kPinUntilRead}).is_ok());
  ASSERT_TRUE(
      index->put_pin(ObjectKey{"b", "p/", std::string(kPinPrefixVariant)}, PinRecord{"", 0, 0, kPinPrefixRecord})
          .is_ok());
  auto r = index->pins("b", "r");
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].second.flags, kPinNotByKey | kPinUntilRead);
  auto prefixes = index->pins("b", "p/");
  ASSERT_EQ(prefixes->size(), 3u);  // the record of "p/" sorts before the objects under it
  EXPECT_EQ((*prefixes)[0].first.key, "p/");
  EXPECT_EQ((*prefixes)[0].second.flags, kPinPrefixRecord);
}

}  // namespace
}  // namespace tagd::cache
