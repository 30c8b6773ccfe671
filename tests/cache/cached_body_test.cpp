// CachedBody's disk path: chunked reads of large blocks, the read-ahead window (widened
// only for a reader that waits for the disk), and a flipped byte inside a chunk read
// ahead (detected, the block refetched, the client still gets the right bytes).
//
// A read path over the memory device (with a random completion delay, so reads in flight
// complete out of order) and no DRAM tier, so every hit reads the device.
#include "tagd/cache/cached_body.hpp"

#include <gtest/gtest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include <unistd.h>

#include "support/fake_origin.hpp"
#include "support/test_bytes.hpp"
#include "tagd/cache/block_device.hpp"
#include "tagd/cache/eviction.hpp"
#include "tagd/cache/read_path.hpp"
#include "tagd/core/clock.hpp"
#include "tagd/core/metrics.hpp"

namespace tagd::cache {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using namespace std::chrono_literals;
using tagd::testing::FakeOrigin;

constexpr std::uint32_t kBlock = 1u << 20;
constexpr std::uint64_t kObject = 8 * kBlock;
constexpr const char* kBucket = "b";

using tagd::testing::make_bytes;

struct Got {
  bool done = false;
  ReadResult result;
  Status error;
  std::string bytes;
  std::size_t pieces = 0;
  // Pieces whose lend_piece_file() named a file, and those whose file bytes differed.
  std::size_t pieces_in_a_file = 0;
  std::size_t file_mismatches = 0;
};

struct Harness;
asio::awaitable<void> fetch(Harness* h, std::shared_ptr<Got> out, std::chrono::microseconds pause);

struct Harness {
  explicit Harness(std::uint64_t dram_tier = 0)
      : cache(make_device(), make_memory_index(), make_fifo_eviction(), make_fill_budget(1 << 30, 8), dram_tier, 8 << 20,
              ObjectCacheOptions{kBlock, 60s, 300s, 8 << 20}),
        path(cache, origin, clock, io.get_executor(), 5s) {}
  std::unique_ptr<BlockDevice> make_device() {
    auto d = std::make_unique<MemoryBlockDevice>(64 << 20, 4096);
    device = d.get();
    return d;
  }
  ~Harness() {
    io.restart();
    io.run_for(2s);
  }

  // GET the whole object and drain it with next(); `pause` after each piece (a slow client).
  std::shared_ptr<Got> get(std::chrono::microseconds pause = 0us) {
    auto out = std::make_shared<Got>();
    asio::co_spawn(io, fetch(this, out, pause), asio::detached);
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (!out->done && std::chrono::steady_clock::now() < deadline) {
      io.restart();
      io.run_for(5ms);
    }
    EXPECT_TRUE(out->done) << "request timed out";
    // Detached fills and reads settle: run until no work is left (the fill writer holds work
    // until each block is written), bounded. A fixed 50 ms was too short under ASan.
    io.restart();
    io.run_for(10s);
    EXPECT_TRUE(io.stopped()) << "fills did not settle";
    return out;
  }

  FakeOrigin origin;
  ManualClock clock;
  MemoryBlockDevice* device = nullptr;
  ObjectCache cache;
  asio::io_context io;
  ReadPath path;
};

// (A free function, not a capturing lambda: the coroutine outlives the lambda object.)
asio::awaitable<void> fetch(Harness* h, std::shared_ptr<Got> out, std::chrono::microseconds pause) {
  http::fields fields;
  std::vector<std::pair<std::string, std::string>> query;
  // A named request: GCC 12 destroys a temporary inside a co_await expression twice.
  const ReadRequest request{false, kBucket, "k", &query, &fields};
  out->result = co_await h->path.serve(request);
  std::vector<char> scratch(64 * 1024);
  asio::steady_timer timer(h->io);
  while (out->result.body) {
    auto got = co_await out->result.body->next(std::span<char>(scratch));
    if (!got) {
      out->error = got.error();
      break;
    }
    if (got->empty()) break;
    if (const PieceFile file = out->result.body->lend_piece_file(); file.fd >= 0) {
      ++out->pieces_in_a_file;
      std::string from_file(got->size(), '\0');
      if (::pread(file.fd, from_file.data(), from_file.size(), static_cast<off_t>(file.offset)) !=
              static_cast<ssize_t>(from_file.size()) ||
          from_file != std::string_view(got->data(), got->size())) {
        ++out->file_mismatches;
      }
    }
    out->bytes.append(got->data(), got->size());
    ++out->pieces;
    if (pause > std::chrono::microseconds(0)) {
      timer.expires_after(pause);
      co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    }
  }
  out->done = true;
}

class CachedBodyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_ = make_bytes(kObject, 7);
    h_.origin.put(kBucket, "k", data_);
    auto miss = h_.get();
    ASSERT_EQ(miss->result.outcome, CacheOutcome::kMiss);
    ASSERT_TRUE(miss->bytes == data_);
    h_.device->async_delay(300us);  // from here on, device reads complete out of order
  }
  Harness h_;
  std::string data_;
};

TEST_F(CachedBodyTest, AReaderWaitingForTheDiskGetsAWiderWindowOfLargerReads) {
  const auto before = h_.device->stats();
  auto hit = h_.get();
  ASSERT_EQ(hit->result.outcome, CacheOutcome::kHit);
  ASSERT_TRUE(hit->error.is_ok()) << hit->error.message();
  ASSERT_TRUE(hit->bytes == data_);
  const auto after = h_.device->stats();
  const std::uint64_t reads = after.async_reads - before.async_reads;
  EXPECT_EQ(after.bytes_read - before.bytes_read >= kObject, true);
  // 128 KiB chunks throughout would be 64 reads; the window grows to 1 MiB reads.
  EXPECT_LT(reads, kObject / (256 * 1024)) << "the read-ahead window did not widen";
  EXPECT_GE(after.max_reads_in_flight, 3u);
}

TEST_F(CachedBodyTest, ASlowReaderKeepsSmallReads) {
  const auto before = h_.device->stats();
  auto hit = h_.get(2ms);  // slower than the device: every chunk read ahead is ready in time
  ASSERT_EQ(hit->result.outcome, CacheOutcome::kHit);
  ASSERT_TRUE(hit->bytes == data_);
  const auto after = h_.device->stats();
  // The window stays at 128 KiB reads (64 of them).
  EXPECT_GE(after.async_reads - before.async_reads, kObject / (128 * 1024));
  EXPECT_GE(hit->pieces, kObject / (256 * 1024));
}

TEST_F(CachedBodyTest, AFlippedByteInAChunkReadAheadIsDetectedAndTheBlockRefetched) {
  // Find block 2's bytes on the device, far enough in to be read ahead in a wide window.
  std::vector<std::byte> disk(h_.device->size());
  ASSERT_TRUE(h_.device->read(0, disk).is_ok());
  const std::uint64_t at = 2 * kBlock + 700 * 1024;
  const std::string_view needle(data_.data() + at, 64);
  const std::string_view haystack(reinterpret_cast<const char*>(disk.data()), disk.size());
  const std::size_t found = haystack.find(needle);
  ASSERT_NE(found, std::string_view::npos);
  h_.device->corrupt(found + 10);
  const std::size_t gets = h_.origin.gets();
  const auto failures = metrics().cache_checksum_failures.get();

  auto hit = h_.get();
  ASSERT_TRUE(hit->error.is_ok()) << hit->error.message();
  EXPECT_TRUE(hit->bytes == data_) << "the flipped byte reached the client";
  EXPECT_EQ(h_.origin.gets(), gets + 1) << "the corrupt block is fetched again";
  EXPECT_EQ(metrics().cache_checksum_failures.get(), failures + 1);
}

TEST_F(CachedBodyTest, PiecesReadFromDiskLieInNoFile) {
  // No DRAM tier here: every piece is a chunk read from the device into its own buffer,
  // which a writer must copy.
  auto hit = h_.get();
  ASSERT_EQ(hit->result.outcome, CacheOutcome::kHit);
  ASSERT_TRUE(hit->bytes == data_);
  EXPECT_EQ(hit->pieces_in_a_file, 0u);
}

TEST(CachedBodyDramTest, PiecesOfDramTierBlocksNameTheirMemfdSlotAndItHoldsTheirBytes) {
  Harness h(16ull << 20);
  const std::string data = make_bytes(kObject, 9);
  h.origin.put(kBucket, "k", data);
  ASSERT_TRUE(h.get()->bytes == data);  // the miss fills the DRAM tier from pooled buffers
  auto hit = h.get();
  ASSERT_EQ(hit->result.outcome, CacheOutcome::kHit);
  ASSERT_TRUE(hit->bytes == data);
  EXPECT_EQ(hit->pieces_in_a_file, hit->pieces);
  EXPECT_EQ(hit->pieces, kObject / kBlock);  // whole blocks lent
  EXPECT_EQ(hit->file_mismatches, 0u);
}

}  // namespace
}  // namespace tagd::cache
