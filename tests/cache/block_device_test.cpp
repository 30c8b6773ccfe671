// One suite, three devices: io_uring, pread/pwrite and memory must behave the same, through
// the synchronous calls and through async_read. Then what only one device has: the memory
// device's injected faults, the io_uring device's per-loop rings.
#include "tagd/cache/block_device.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <functional>
#include <numeric>
#include <random>
#include <thread>

#include "tagd/core/metrics.hpp"

namespace tagd::cache {
namespace {

namespace asio = boost::asio;

constexpr std::uint64_t kDeviceSize = 8 << 20;

struct MemoryFactory {
  static constexpr const char* kKind = "memory";
  static Result<std::unique_ptr<BlockDevice>> make(const std::string&) {
    return std::unique_ptr<BlockDevice>(std::make_unique<MemoryBlockDevice>(kDeviceSize, 4096));
  }
};
struct PreadFactory {
  static constexpr const char* kKind = "pread";
  static Result<std::unique_ptr<BlockDevice>> make(const std::string& path) {
    return open_pread_device({path, kDeviceSize, true});
  }
};
struct UringFactory {
  static constexpr const char* kKind = "io_uring";
  static Result<std::unique_ptr<BlockDevice>> make(const std::string& path) {
    return open_uring_device({path, kDeviceSize, true});
  }
};

std::filesystem::path scratch_dir() {
  return std::filesystem::temp_directory_path() / ("tagd_dev_" + std::to_string(::getpid()) + "_" +
                                                   ::testing::UnitTest::GetInstance()->current_test_info()->name());
}

AlignedBuffer pattern(std::size_t size, unsigned seed) {
  AlignedBuffer b(size, 4096);
  std::mt19937 rng(seed);
  for (std::size_t i = 0; i < size; ++i) b.data()[i] = std::byte(rng() & 0xFF);
  return b;
}

// Exceptions escaping a coroutine fail the test from io_context::run() instead of vanishing.
void rethrow(std::exception_ptr e) {
  if (e) std::rethrow_exception(e);
}

// `count` distinct blocks of `block` bytes from offset 0; returns what was written.
AlignedBuffer fill_blocks(BlockDevice& d, std::size_t count, std::size_t block) {
  AlignedBuffer all = pattern(count * block, 77);
  Status s = d.write(0, {all.data(), all.size()});
  EXPECT_TRUE(s.is_ok()) << s.message();
  return all;
}

// One async read of block `i`, compared with `expected`; failures are counted, not
// asserted (ASSERT_* cannot return from a coroutine).
asio::awaitable<void> read_block(BlockDevice& d, std::size_t i, std::size_t block, const AlignedBuffer& expected,
                                 int& failures) {
  AlignedBuffer buf(block, 4096);
  Status s = co_await d.async_read(i * block, buf.span());
  if (!s.is_ok() || std::memcmp(buf.data(), expected.data() + i * block, block) != 0) ++failures;
}

template <class Factory>
class BlockDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = scratch_dir();
    std::filesystem::create_directories(dir_);
    auto d = Factory::make((dir_ / "cache.bin").string());
    if (!d && std::string(Factory::kKind) == "io_uring") {
      GTEST_SKIP() << "io_uring unavailable here: " << d.error().message();
    }
    ASSERT_TRUE(d.has_value()) << d.error().message();
    device_ = std::move(d.value());
  }
  void TearDown() override {
    device_.reset();
    std::filesystem::remove_all(dir_);
  }

  bool real_device() const { return std::string(Factory::kKind) != "memory"; }

  std::filesystem::path dir_;
  std::unique_ptr<BlockDevice> device_;
};

using Factories = ::testing::Types<MemoryFactory, PreadFactory, UringFactory>;
TYPED_TEST_SUITE(BlockDeviceTest, Factories);

TYPED_TEST(BlockDeviceTest, ReportsSizeAlignmentAndKind) {
  EXPECT_EQ(this->device_->size(), kDeviceSize);
  EXPECT_GE(this->device_->alignment(), 512u);
  EXPECT_EQ(kDeviceSize % this->device_->alignment(), 0u);
  EXPECT_STREQ(this->device_->kind(), TypeParam::kKind);
  if (!this->real_device()) {
    EXPECT_FALSE(this->device_->direct());
  }
}

TYPED_TEST(BlockDeviceTest, WhatIsWrittenIsReadBack) {
  const std::size_t a = this->device_->alignment();
  auto data = pattern(256 * 1024, 1);
  ASSERT_TRUE(this->device_->write(3 * a, {data.data(), data.size()}).is_ok());
  AlignedBuffer back(data.size(), 4096);
  ASSERT_TRUE(this->device_->read(3 * a, back.span()).is_ok());
  EXPECT_EQ(std::memcmp(back.data(), data.data(), data.size()), 0);
  EXPECT_TRUE(this->device_->sync().is_ok());
}

TYPED_TEST(BlockDeviceTest, WritesDoNotDisturbNeighbours) {
  const std::size_t a = this->device_->alignment();
  auto first = pattern(a, 2);
  auto second = pattern(a, 3);
  ASSERT_TRUE(this->device_->write(0, {first.data(), a}).is_ok());
  ASSERT_TRUE(this->device_->write(a, {second.data(), a}).is_ok());
  AlignedBuffer back(2 * a, 4096);
  ASSERT_TRUE(this->device_->read(0, back.span()).is_ok());
  EXPECT_EQ(std::memcmp(back.data(), first.data(), a), 0);
  EXPECT_EQ(std::memcmp(back.data() + a, second.data(), a), 0);
}

TYPED_TEST(BlockDeviceTest, LastBlockOfTheDevice) {
  const std::size_t a = this->device_->alignment();
  auto data = pattern(a, 4);
  ASSERT_TRUE(this->device_->write(kDeviceSize - a, {data.data(), a}).is_ok());
  AlignedBuffer back(a, 4096);
  ASSERT_TRUE(this->device_->read(kDeviceSize - a, back.span()).is_ok());
  EXPECT_EQ(std::memcmp(back.data(), data.data(), a), 0);
}

TYPED_TEST(BlockDeviceTest, RejectsOutOfRangeAndMisaligned) {
  const std::size_t a = this->device_->alignment();
  AlignedBuffer buf(2 * a, 4096);
  EXPECT_EQ(this->device_->read(kDeviceSize - a, buf.span()).code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(this->device_->write(kDeviceSize, {buf.data(), a}).code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(this->device_->read(1, {buf.data(), a}).code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(this->device_->write(0, {buf.data(), a - 1}).code(), ErrorCode::kInvalidArgument);
  // Misuse is not a device error.
  EXPECT_EQ(this->device_->stats().read_errors, 0u);
  EXPECT_EQ(this->device_->stats().write_errors, 0u);
}

TYPED_TEST(BlockDeviceTest, CountsTransfers) {
  const std::size_t a = this->device_->alignment();
  auto data = pattern(4 * a, 5);
  ASSERT_TRUE(this->device_->write(0, {data.data(), data.size()}).is_ok());
  AlignedBuffer back(4 * a, 4096);
  ASSERT_TRUE(this->device_->read(0, back.span()).is_ok());
  ASSERT_TRUE(this->device_->read(0, {back.data(), a}).is_ok());
  BlockDeviceStats s = this->device_->stats();
  EXPECT_EQ(s.writes, 1u);
  EXPECT_EQ(s.bytes_written, 4 * a);
  EXPECT_EQ(s.reads, 2u);
  EXPECT_EQ(s.bytes_read, 5 * a);
  EXPECT_EQ(s.async_reads, 0u);
  EXPECT_EQ(s.read_errors, 0u);
}

TYPED_TEST(BlockDeviceTest, AsyncReadSeesWhatSyncReadSees) {
  const std::size_t a = this->device_->alignment();
  auto data = pattern(64 * 1024, 6);
  ASSERT_TRUE(this->device_->write(5 * a, {data.data(), data.size()}).is_ok());
  AlignedBuffer sync_back(data.size(), 4096);
  ASSERT_TRUE(this->device_->read(5 * a, sync_back.span()).is_ok());
  AlignedBuffer async_back(data.size(), 4096);
  Status result(ErrorCode::kInternalError, "never ran");
  asio::io_context io;
  asio::co_spawn(
      io, [&]() -> asio::awaitable<void> { result = co_await this->device_->async_read(5 * a, async_back.span()); },
      rethrow);
  io.run();
  ASSERT_TRUE(result.is_ok()) << result.message();
  EXPECT_EQ(std::memcmp(async_back.data(), data.data(), data.size()), 0);
  EXPECT_EQ(std::memcmp(async_back.data(), sync_back.data(), data.size()), 0);
  BlockDeviceStats s = this->device_->stats();
  EXPECT_EQ(s.reads, 2u);
  EXPECT_EQ(s.async_reads, 1u);
  EXPECT_EQ(s.bytes_read, 2 * data.size());
  EXPECT_EQ(s.reads_in_flight, 0u);
}

TYPED_TEST(BlockDeviceTest, AsyncRejectsOutOfRangeAndMisaligned) {
  const std::size_t a = this->device_->alignment();
  AlignedBuffer buf(2 * a, 4096);
  std::vector<ErrorCode> codes;
  asio::io_context io;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        Status past_end = co_await this->device_->async_read(kDeviceSize - a, buf.span());
        codes.push_back(past_end.code());
        Status beyond = co_await this->device_->async_read(kDeviceSize, {buf.data(), a});
        codes.push_back(beyond.code());
        Status misaligned_offset = co_await this->device_->async_read(1, {buf.data(), a});
        codes.push_back(misaligned_offset.code());
        Status misaligned_length = co_await this->device_->async_read(0, {buf.data(), a - 1});
        codes.push_back(misaligned_length.code());
      },
      rethrow);
  io.run();
  EXPECT_EQ(codes, std::vector<ErrorCode>(4, ErrorCode::kInvalidArgument));
  EXPECT_EQ(this->device_->stats().async_reads, 0u);
  EXPECT_EQ(this->device_->stats().reads_in_flight, 0u);
}

TYPED_TEST(BlockDeviceTest, ManyAsyncReadsInFlight) {
  constexpr std::size_t kBlocks = 64, kBlock = 16 * 1024;
  AlignedBuffer expected = fill_blocks(*this->device_, kBlocks, kBlock);
  const std::int64_t gauge_before = metrics().disk_reads_in_flight.get();
  int failures = 0;
  asio::io_context io;
  for (std::size_t i = 0; i < kBlocks; ++i) {
    asio::co_spawn(io, read_block(*this->device_, i, kBlock, expected, failures), rethrow);
  }
  io.run();
  EXPECT_EQ(failures, 0);
  BlockDeviceStats s = this->device_->stats();
  EXPECT_EQ(s.async_reads, kBlocks);
  EXPECT_EQ(s.bytes_read, kBlocks * kBlock);
  EXPECT_EQ(s.reads_in_flight, 0u);
  EXPECT_EQ(metrics().disk_reads_in_flight.get(), gauge_before);
  if (this->real_device()) {
    EXPECT_GT(s.max_reads_in_flight, 1u);
  }
}

TYPED_TEST(BlockDeviceTest, AsyncReadsFromTwoLoopsAtOnce) {
  constexpr std::size_t kBlocks = 64, kBlock = 8 * 1024, kReaders = 8, kReadsEach = 40;
  AlignedBuffer expected = fill_blocks(*this->device_, kBlocks, kBlock);
  auto reader = [&](unsigned seed, int& failures) -> asio::awaitable<void> {
    std::mt19937 rng(seed);
    for (std::size_t n = 0; n < kReadsEach; ++n)
      co_await read_block(*this->device_, rng() % kBlocks, kBlock, expected, failures);
  };
  int failures[2] = {0, 0};
  std::thread loops[2];
  for (int l = 0; l < 2; ++l) {
    loops[l] = std::thread([&, l] {
      asio::io_context io;
      for (unsigned r = 0; r < kReaders; ++r) asio::co_spawn(io, reader(l * 100 + r, failures[l]), rethrow);
      io.run();
    });
  }
  for (auto& t : loops) t.join();
  EXPECT_EQ(failures[0], 0);
  EXPECT_EQ(failures[1], 0);
  BlockDeviceStats s = this->device_->stats();
  EXPECT_EQ(s.async_reads, 2 * kReaders * kReadsEach);
  EXPECT_EQ(s.reads_in_flight, 0u);
}

// The caller's loop must never resume on a pool thread (its state is not thread-safe).
TYPED_TEST(BlockDeviceTest, AsyncReadCompletesOnTheAwaitingLoopsThread) {
  constexpr std::size_t kBlocks = 16, kBlock = 4096;
  AlignedBuffer expected = fill_blocks(*this->device_, kBlocks, kBlock);
  asio::io_context io;
  std::thread::id loop_thread;
  int failures = 0, foreign = 0;
  auto reader = [&](std::size_t i) -> asio::awaitable<void> {
    co_await read_block(*this->device_, i, kBlock, expected, failures);
    if (std::this_thread::get_id() != loop_thread) ++foreign;
  };
  for (std::size_t i = 0; i < kBlocks; ++i) asio::co_spawn(io, reader(i), rethrow);
  std::thread t([&] {
    loop_thread = std::this_thread::get_id();
    io.run();
  });
  t.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(foreign, 0);
  EXPECT_EQ(this->device_->stats().async_reads, kBlocks);
}

// --- Memory device: injected faults ---

TEST(MemoryBlockDeviceTest, InjectedFaults) {
  MemoryBlockDevice d(1 << 20, 512);
  AlignedBuffer buf(512, 512);
  std::memset(buf.data(), 7, 512);
  d.fail_writes_after(1);
  EXPECT_TRUE(d.write(0, {buf.data(), 512}).is_ok());
  EXPECT_EQ(d.write(512, {buf.data(), 512}).code(), ErrorCode::kInternalError);
  EXPECT_EQ(d.stats().write_errors, 1u);
  d.corrupt(10);
  AlignedBuffer back(512, 512);
  ASSERT_TRUE(d.read(0, back.span()).is_ok());
  EXPECT_NE(back.data()[10], std::byte{7});
  EXPECT_EQ(back.data()[11], std::byte{7});
}

TEST(MemoryBlockDeviceTest, AsyncDelayCompletesOutOfOrder) {
  constexpr std::size_t kBlocks = 32, kBlock = 4096;
  MemoryBlockDevice d(1 << 20, 4096);
  AlignedBuffer expected = fill_blocks(d, kBlocks, kBlock);
  d.async_delay(std::chrono::microseconds(3000));
  std::vector<std::size_t> completed;
  int failures = 0;
  auto reader = [&](std::size_t i) -> asio::awaitable<void> {
    co_await read_block(d, i, kBlock, expected, failures);
    completed.push_back(i);
  };
  asio::io_context io;
  for (std::size_t i = 0; i < kBlocks; ++i) asio::co_spawn(io, reader(i), rethrow);
  io.run();
  EXPECT_EQ(failures, 0);
  std::vector<std::size_t> started(kBlocks);
  std::iota(started.begin(), started.end(), 0);
  ASSERT_EQ(completed.size(), kBlocks);
  EXPECT_NE(completed, started);
  EXPECT_TRUE(std::is_permutation(completed.begin(), completed.end(), started.begin()));
  EXPECT_GT(d.stats().max_reads_in_flight, 1u);
  EXPECT_EQ(d.stats().reads_in_flight, 0u);
}

TEST(MemoryBlockDeviceTest, ShortReadsAreResumed) {
  constexpr std::size_t kSize = 64 * 1024;
  MemoryBlockDevice d(1 << 20, 4096);
  AlignedBuffer expected = fill_blocks(d, 1, kSize);
  d.short_reads(true);
  AlignedBuffer sync_back(kSize, 4096);
  ASSERT_TRUE(d.read(0, sync_back.span()).is_ok());
  EXPECT_EQ(std::memcmp(sync_back.data(), expected.data(), kSize), 0);
  const std::uint64_t after_sync = d.stats().short_reads;
  EXPECT_GT(after_sync, 0u);

  d.async_delay(std::chrono::microseconds(200));
  int failures = 0;
  asio::io_context io;
  asio::co_spawn(io, read_block(d, 0, kSize, expected, failures), rethrow);
  io.run();
  EXPECT_EQ(failures, 0);
  EXPECT_GT(d.stats().short_reads, after_sync);
  EXPECT_EQ(d.stats().read_errors, 0u);
}

TEST(MemoryBlockDeviceTest, InjectedReadErrors) {
  constexpr std::size_t kBlock = 4096;
  MemoryBlockDevice d(1 << 20, 4096);
  AlignedBuffer expected = fill_blocks(d, 4, kBlock);
  d.fail_reads_at(2 * kBlock + 100);
  AlignedBuffer back(kBlock, 4096);
  EXPECT_EQ(d.read(2 * kBlock, back.span()).code(), ErrorCode::kInternalError);
  EXPECT_TRUE(d.read(1 * kBlock, back.span()).is_ok());

  Status bad, good;
  AlignedBuffer wide(3 * kBlock, 4096), other(kBlock, 4096);
  asio::io_context io;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        bad = co_await d.async_read(kBlock, wide.span());  // covers the bad offset
        good = co_await d.async_read(3 * kBlock, other.span());
      },
      rethrow);
  io.run();
  EXPECT_EQ(bad.code(), ErrorCode::kInternalError);
  ASSERT_TRUE(good.is_ok()) << good.message();
  EXPECT_EQ(std::memcmp(other.data(), expected.data() + 3 * kBlock, kBlock), 0);
  BlockDeviceStats s = d.stats();
  EXPECT_EQ(s.read_errors, 2u);
  EXPECT_EQ(s.reads, 2u);
  EXPECT_EQ(s.async_reads, 1u);
  EXPECT_EQ(s.reads_in_flight, 0u);
}

// --- File devices ---

TEST(FileBlockDeviceTest, DataSurvivesReopening) {
  auto path = std::filesystem::temp_directory_path() / ("tagd_reopen_" + std::to_string(::getpid()));
  AlignedBuffer data(4096, 4096);
  std::memset(data.data(), 0x42, 4096);
  {
    auto d = open_pread_device({path.string(), 1 << 20, true});
    ASSERT_TRUE(d.has_value()) << d.error().message();
    ASSERT_TRUE((*d)->write(8192, {data.data(), 4096}).is_ok());
    ASSERT_TRUE((*d)->sync().is_ok());
  }
  auto d = open_pread_device({path.string(), 1 << 20, true});
  ASSERT_TRUE(d.has_value());
  AlignedBuffer back(4096, 4096);
  ASSERT_TRUE((*d)->read(8192, back.span()).is_ok());
  EXPECT_EQ(std::memcmp(back.data(), data.data(), 4096), 0);
  EXPECT_EQ(std::filesystem::file_size(path), 1u << 20);  // preallocated
  std::filesystem::remove(path);
}

class UringBlockDeviceTest : public ::testing::Test {
 protected:
  static constexpr std::size_t kBlocks = 32, kBlock = 16 * 1024;

  void SetUp() override {
    dir_ = scratch_dir();
    std::filesystem::create_directories(dir_);
    auto d = open_uring_device({(dir_ / "cache.bin").string(), kDeviceSize, true});
    if (!d) GTEST_SKIP() << "io_uring unavailable here: " << d.error().message();
    device_ = std::move(d.value());
    expected_ = fill_blocks(*device_, kBlocks, kBlock);
  }
  void TearDown() override {
    device_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Reads every block once, all in flight together, on a fresh io_context.
  int read_all_on_a_new_loop() {
    int failures = 0;
    asio::io_context io;
    for (std::size_t i = 0; i < kBlocks; ++i) {
      asio::co_spawn(io, read_block(*device_, i, kBlock, expected_, failures), rethrow);
    }
    io.run();
    return failures;
  }

  std::filesystem::path dir_;
  std::unique_ptr<BlockDevice> device_;
  AlignedBuffer expected_;
};

// Each io_context has its ring; a ring dies with its io_context, the device goes on.
TEST_F(UringBlockDeviceTest, LoopsComeAndGo) {
  for (int round = 0; round < 5; ++round) EXPECT_EQ(read_all_on_a_new_loop(), 0) << "round " << round;
  int failures = -1;
  std::thread([&] { failures = read_all_on_a_new_loop(); }).join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(device_->stats().async_reads, 6 * kBlocks);
  EXPECT_EQ(device_->stats().reads_in_flight, 0u);
  EXPECT_EQ(metrics().disk_io_uring.get(), 1);
}

// Beyond the contract (the server stops its loops first), but a loop destroyed with reads
// in flight must neither crash nor let the kernel write into freed frames: its ring waits
// for the reads before the readers are dropped.
TEST_F(UringBlockDeviceTest, LoopDestroyedWithReadsInFlight) {
  int failures = 0;
  {
    asio::io_context io;
    for (std::size_t i = 0; i < kBlocks; ++i) {
      asio::co_spawn(io, read_block(*device_, i, kBlock, expected_, failures), rethrow);
    }
    io.poll();  // starts the readers and submits their reads
    // Not asserted: a fast disk may already have answered some.
    std::printf("reads in flight when the loop is destroyed: %llu of %zu\n",
                static_cast<unsigned long long>(device_->stats().reads_in_flight), kBlocks);
  }
  EXPECT_EQ(device_->stats().reads_in_flight, 0u);  // the dropped readers' frames are gone
  EXPECT_EQ(read_all_on_a_new_loop(), 0);
}

// A loop whose ring cannot be set up (a kernel or seccomp profile refusing io_uring after
// the start-up probe passed) reads through the pread pool: the bytes are the same, the
// gauge says 0, and a warning says why; a later loop with a working ring uses it again.
TEST_F(UringBlockDeviceTest, ARefusedRingFallsBackToThePreadPool) {
  inject_uring_ring_setup_failure(true);
  EXPECT_EQ(read_all_on_a_new_loop(), 0);
  EXPECT_EQ(metrics().disk_io_uring.get(), 0);
  EXPECT_EQ(device_->stats().async_reads, kBlocks);
  EXPECT_EQ(device_->stats().reads_in_flight, 0u);
  inject_uring_ring_setup_failure(false);
  EXPECT_EQ(read_all_on_a_new_loop(), 0);
  EXPECT_EQ(metrics().disk_io_uring.get(), 1);
}

// An executor that is not an io_context's has no ring: the pread pool serves it, and the
// reader still resumes on its own executor.
TEST_F(UringBlockDeviceTest, OtherExecutorsUseThePreadPool) {
  asio::thread_pool pool(1);
  int failures = 0, foreign = 0;
  asio::co_spawn(
      pool,
      [&]() -> asio::awaitable<void> {
        for (std::size_t i = 0; i < kBlocks; ++i) {
          co_await read_block(*device_, i, kBlock, expected_, failures);
          if (!pool.get_executor().running_in_this_thread()) ++foreign;
        }
      },
      rethrow);
  pool.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(foreign, 0);
  EXPECT_EQ(device_->stats().async_reads, kBlocks);
}

// Chunk buffers are reused from a per-thread list (both the 128 KiB class and the 1 MiB
// class a widened read-ahead window reads), so streams do not fragment the heap; a larger
// buffer is not kept.
TEST(AlignedBufferTest, ChunkBuffersAreReusedPerSizeClass) {
  for (std::size_t size : {std::size_t{128 * 1024}, std::size_t{(1 << 20) + 8192}}) {
    const std::byte* first = nullptr;
    {
      AlignedBuffer b(size, 4096);
      first = b.data();
      std::memset(b.data(), 1, b.size());
    }
    AlignedBuffer again(size, 4096);
    EXPECT_EQ(again.data(), first) << size;
    EXPECT_EQ(again.size(), size);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(again.data()) % 4096, 0u);
  }
  AlignedBuffer small(4096, 4096);
  AlignedBuffer large((1 << 20) + 8192, 4096);
  EXPECT_NE(small.data(), large.data());
}

}  // namespace
}  // namespace tagd::cache
