// Fill block buffers recycled through BlockBufferPool: reuse, the idle bound, size classes,
// and never a buffer handed out again while the DRAM tier or a reader still holds it.
#include "tagd/cache/block_buffer_pool.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tagd/cache/memory_tier.hpp"
#include "tagd/cache/object_cache.hpp"
#include "tagd/core/metrics.hpp"

namespace tagd::cache {
namespace {

constexpr std::size_t kBlock = 1 << 20;

std::vector<std::byte> pattern(std::size_t n, std::uint8_t seed) {
  std::vector<std::byte> p(n);
  for (std::size_t i = 0; i < n; ++i) p[i] = std::byte(static_cast<std::uint8_t>(seed + i * 7));
  return p;
}

// A block filled the way the fill engine fills one: appended in pieces, then completed.
BlockBytes fill_block(InflightBlock& block, const std::vector<std::byte>& bytes) {
  for (std::size_t at = 0; at < bytes.size(); at += 64 * 1024) {
    block.append(bytes.data() + at, std::min<std::size_t>(64 * 1024, bytes.size() - at));
  }
  return block.complete();
}

TEST(BlockBufferPoolTest, ABufferLetGoOfIsHandedOutAgainInsteadOfAFreshOne) {
  auto pool = BlockBufferPool::create(4 * kBlock, kBlock);
  auto a = pool->acquire(kBlock);
  const std::byte* first = a->data();
  const auto bytes = pattern(kBlock, 1);
  EXPECT_EQ(a->append(bytes.data(), bytes.size()), kBlock);
  a.reset();
  EXPECT_EQ(pool->stats().idle_buffers, 1u);
  auto b = pool->acquire(kBlock);
  EXPECT_EQ(b->data(), first);
  EXPECT_EQ(b->size(), 0u);  // empty again: what a fill appends is all it holds
  EXPECT_EQ(pool->stats().allocated, 1u);
  EXPECT_EQ(pool->stats().reused, 1u);
}

TEST(BlockBufferPoolTest, ABufferIsNotReusedWhileTheTierOrAReaderStillHoldsIt) {
  auto pool = BlockBufferPool::create(8 * kBlock, kBlock);
  MemoryTier tier(2 * kBlock);
  const auto old_bytes = pattern(kBlock, 1);
  BlockBytes reader;
  const std::byte* held = nullptr;
  {
    InflightBlock block(kBlock, pool);
    BlockBytes bytes = fill_block(block, old_bytes);
    held = bytes->data();
    reader = bytes;  // a client streaming it (lent, not copied)
    tier.put(BlockKey{1, 1, 0}, std::move(bytes));
  }
  // Two newer blocks evict it from the tier; the reader still has it.
  for (std::uint64_t b = 1; b <= 2; ++b) {
    InflightBlock block(kBlock, pool);
    tier.put(BlockKey{1, 1, b}, fill_block(block, pattern(kBlock, static_cast<std::uint8_t>(10 + b))));
  }
  ASSERT_FALSE(tier.contains(BlockKey{1, 1, 0}));
  // A fill now must not get the reader's buffer: its bytes would change under the reader.
  InflightBlock next(kBlock, pool);
  const auto new_bytes = pattern(kBlock, 99);
  BlockBytes filled = fill_block(next, new_bytes);
  EXPECT_NE(filled->data(), held);
  ASSERT_EQ(reader->size(), kBlock);
  EXPECT_TRUE(std::equal(old_bytes.begin(), old_bytes.end(), reader->data()));
  EXPECT_EQ(pool->stats().reused, 0u);  // nothing was idle: all four are held somewhere

  // Once the reader is done, the buffer is idle and the next fill reuses it.
  reader.reset();
  EXPECT_EQ(pool->stats().idle_buffers, 1u);
  InflightBlock after(kBlock, pool);
  EXPECT_EQ(fill_block(after, new_bytes)->data(), held);
}

TEST(BlockBufferPoolTest, IdleBuffersStayWithinTheLimitAndTheGaugeCountsThem) {
  const auto gauge = metrics().cache_fill_buffer_pool_bytes.get();
  const auto allocated = metrics().cache_fill_buffers_allocated.get();
  {
    auto pool = BlockBufferPool::create(3 * kBlock, kBlock);
    std::vector<std::shared_ptr<BlockBuffer>> in_use;
    for (int i = 0; i < 5; ++i) in_use.push_back(pool->acquire(kBlock));
    EXPECT_EQ(metrics().cache_fill_buffers_allocated.get() - allocated, 5);
    in_use.clear();
    EXPECT_EQ(pool->stats().idle_bytes, 3 * kBlock);
    EXPECT_EQ(pool->stats().freed, 2u);
    EXPECT_EQ(metrics().cache_fill_buffer_pool_bytes.get() - gauge, static_cast<std::int64_t>(3 * kBlock));
  }
  EXPECT_EQ(metrics().cache_fill_buffer_pool_bytes.get(), gauge);  // a pool's end frees its idle buffers
}

TEST(BlockBufferPoolTest, LengthsShareClassesAndTheTierCountsTheClass) {
  auto pool = BlockBufferPool::create(8 * kBlock, kBlock);
  EXPECT_EQ(pool->capacity_for(100 * 1024), 112u * 1024);
  EXPECT_EQ(pool->capacity_for(64 * 1024), 64u * 1024);
  EXPECT_EQ(pool->capacity_for(kBlock), kBlock);
  EXPECT_EQ(pool->capacity_for(kBlock - 1), kBlock);
  EXPECT_EQ(pool->capacity_for(60 * 1024), 0u);               // small: glibc's bins
  EXPECT_EQ(pool->capacity_for(kBlock + 1), 0u);              // longer than a block: never filled
  auto odd = BlockBufferPool::create(8 * kBlock, 1'000'000);  // a block size off the grid
  EXPECT_EQ(odd->capacity_for(999'999), 1'000'000u);
  EXPECT_EQ(odd->capacity_for(800'000), 896u * 1024);

  // Two lengths of one class: the buffer of one serves the other.
  auto a = pool->acquire(100 * 1024);
  const std::byte* first = a->data();
  a.reset();
  EXPECT_EQ(pool->acquire(110 * 1024)->data(), first);

  InflightBlock block(100 * 1024, pool);
  BlockBytes bytes = fill_block(block, pattern(100 * 1024, 3));
  EXPECT_EQ(bytes->size(), 100u * 1024);
  EXPECT_EQ(bytes->footprint(), 112u * 1024);
  MemoryTier tier(kBlock);
  tier.put(BlockKey{1, 1, 0}, bytes);
  EXPECT_EQ(tier.bytes(), 112u * 1024);
}

TEST(BlockBufferPoolTest, ALengthInUseNowMakesRoomByFreeingIdleBuffersOfAnother) {
  auto pool = BlockBufferPool::create(2 * kBlock, kBlock);
  {
    auto a = pool->acquire(kBlock);
    auto b = pool->acquire(kBlock);
  }
  EXPECT_EQ(pool->stats().idle_bytes, 2 * kBlock);
  pool->acquire(100 * 1024).reset();
  EXPECT_EQ(pool->stats().idle_bytes, kBlock + 112 * 1024);
  EXPECT_EQ(pool->stats().idle_buffers, 2u);
  EXPECT_EQ(pool->stats().freed, 1u);
}

TEST(BlockBufferPoolTest, ACacheWhoseTierIsFullFillsIntoTheBuffersItEvicts) {
  // A 4-block DRAM tier, 40 blocks filled one after another (as a long miss does once
  // the tier is full): only the first few buffers come from the allocator.
  ObjectCache cache(std::make_unique<MemoryBlockDevice>(64ull << 20, 4096), make_memory_index(), make_fifo_eviction(),
                    make_fill_budget(1 << 30, 8), 4 * kBlock, 8 << 20,
                    ObjectCacheOptions{static_cast<std::uint32_t>(kBlock)});
  const auto bytes = pattern(kBlock, 5);
  for (std::uint64_t b = 0; b < 40; ++b) {
    auto [block, mine] = cache.find_or_start(77, "\"e\"", b, kBlock);
    ASSERT_TRUE(mine);
    cache.store_block(77, "\"e\"", b, fill_block(*block, bytes));
    cache.finish(77, "\"e\"", b);
  }
  const auto stats = cache.buffer_pool().stats();
  EXPECT_LE(stats.allocated, 6u);
  EXPECT_GE(stats.reused, 34u);
  EXPECT_LE(stats.idle_bytes, cache.buffer_pool().idle_limit());
}

TEST(BlockBufferPoolTest, PooledBuffersLieInAFileAndPlainOnesDoNot) {
  auto pool = BlockBufferPool::create(4 * kBlock, kBlock);
  auto a = pool->acquire(kBlock);
  auto b = pool->acquire(kBlock);
  ASSERT_GE(a->file_descriptor(), 0);
  EXPECT_EQ(a->file_descriptor(), b->file_descriptor());  // one file per size class
  EXPECT_NE(a->file_offset(), b->file_offset());
  const auto bytes = pattern(kBlock, 4);
  b->append(bytes.data(), bytes.size());
  // What the file holds at the buffer's offset is what was appended to it.
  std::vector<std::byte> from_file(kBlock);
  ASSERT_EQ(::pread(b->file_descriptor(), from_file.data(), kBlock, static_cast<off_t>(b->file_offset())),
            static_cast<ssize_t>(kBlock));
  EXPECT_TRUE(from_file == bytes);
  // A DRAM-tier block made of it says the same.
  InflightBlock block(100 * 1024, pool);
  BlockBytes small = fill_block(block, pattern(100 * 1024, 5));
  EXPECT_GE(small->file_descriptor(), 0);

  EXPECT_LT(BlockBufferPool::create(4 * kBlock, kBlock, /*file_backed=*/false)->acquire(kBlock)->file_descriptor(), 0);
  EXPECT_LT(BlockBuffer(kBlock).file_descriptor(), 0);
  EXPECT_LT(make_block_bytes(kBlock)->file_descriptor(), 0);
}

TEST(BlockBufferPoolTest, OnlyABufferLentToTheKernelGetsFreshPagesBeforeItIsFilledAgain) {
  auto pool = BlockBufferPool::create(4 * kBlock, kBlock);
  const auto bytes = pattern(kBlock, 6);
  auto a = pool->acquire(kBlock);
  const std::byte* slot = a->data();
  a->append(bytes.data(), bytes.size());
  a.reset();
  auto b = pool->acquire(kBlock);
  ASSERT_EQ(b->data(), slot);
  // Never lent: reused as it is (no page faults for the next fill).
  EXPECT_EQ(std::memcmp(b->data(), bytes.data(), 4096), 0);
  b->lend_to_kernel();
  b.reset();
  auto c = pool->acquire(kBlock);
  ASSERT_EQ(c->data(), slot);
  // Lent: its old pages left the file, the slot reads as fresh (zero) pages.
  const std::vector<std::byte> zeros(kBlock);
  EXPECT_EQ(std::memcmp(c->data(), zeros.data(), kBlock), 0);
}

TEST(BlockBufferPoolTest, AClassOutOfSlotsFallsBackToPlainMemoryAndCountsIt) {
  // A class's range holds two slots here: the third buffer held at once is plain memory
  // (hits of it are copied, not sent from a file), counted; all three work and go back.
  auto pool = BlockBufferPool::create(4 * kBlock, kBlock, /*file_backed=*/true, /*slab_span=*/2 * kBlock);
  const auto unshared = metrics().cache_fill_buffers_unshared.get();
  auto a = pool->acquire(kBlock);
  auto b = pool->acquire(kBlock);
  auto c = pool->acquire(kBlock);
  EXPECT_GE(a->file_descriptor(), 0);
  EXPECT_GE(b->file_descriptor(), 0);
  EXPECT_LT(c->file_descriptor(), 0);
  EXPECT_EQ(metrics().cache_fill_buffers_unshared.get() - unshared, 1u);
  const auto bytes = pattern(kBlock, 8);
  EXPECT_EQ(c->append(bytes.data(), bytes.size()), kBlock);
  EXPECT_EQ(std::memcmp(c->data(), bytes.data(), kBlock), 0);
  c->lend_to_kernel();  // never lent in practice (no file); harmless either way
  a.reset();
  b.reset();
  c.reset();
  EXPECT_EQ(pool->stats().idle_buffers, 3u);
  // All three are reused as they were: the two slots still lie in the file, the plain
  // buffer still does not, and nothing new was made.
  std::vector<std::shared_ptr<BlockBuffer>> again;
  for (int i = 0; i < 3; ++i) again.push_back(pool->acquire(kBlock));
  EXPECT_EQ(std::count_if(again.begin(), again.end(), [](const auto& x) { return x->file_descriptor() >= 0; }), 2);
  EXPECT_EQ(pool->stats().allocated, 3u);
  EXPECT_EQ(metrics().cache_fill_buffers_unshared.get() - unshared, 1u);
}

TEST(BlockBufferPoolTest, PagesQueuedInASocketKeepTheirBytesWhenTheBufferIsFilledAgain) {
  // The trap the pool guards against: sendfile queues the slot's pages themselves in the
  // socket, and the peer reads them later. A fill that reused the slot in place would
  // change what the peer reads.
  int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener, 1), 0);
  ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  int receiver = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_EQ(::connect(receiver, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  int sender = ::accept(listener, nullptr, nullptr);
  ASSERT_GE(sender, 0);
  ASSERT_EQ(::fcntl(sender, F_SETFL, O_NONBLOCK), 0);

  constexpr std::size_t kLength = 256 * 1024;
  auto pool = BlockBufferPool::create(4 * kBlock, kBlock);
  const auto old_bytes = pattern(kLength, 7);
  auto a = pool->acquire(kLength);
  a->append(old_bytes.data(), old_bytes.size());
  const std::byte* slot = a->data();
  a->lend_to_kernel();
  off_t offset = static_cast<off_t>(a->file_offset());
  const ssize_t queued = ::sendfile(sender, a->file_descriptor(), &offset, kLength);
  ASSERT_GT(queued, 0);
  a.reset();  // the DRAM tier evicted the block, the writer moved on; the peer has read nothing yet

  auto b = pool->acquire(kLength);
  ASSERT_EQ(b->data(), slot);
  const auto new_bytes = pattern(kLength, 99);
  b->append(new_bytes.data(), new_bytes.size());

  std::vector<std::byte> got(static_cast<std::size_t>(queued));
  std::size_t have = 0;
  while (have < got.size()) {
    const ssize_t n = ::recv(receiver, got.data() + have, got.size() - have, 0);
    ASSERT_GT(n, 0);
    have += static_cast<std::size_t>(n);
  }
  EXPECT_TRUE(std::equal(got.begin(), got.end(), old_bytes.begin())) << "the peer read bytes of the next fill";
  ::close(sender);
  ::close(receiver);
  ::close(listener);
}

}  // namespace
}  // namespace tagd::cache
