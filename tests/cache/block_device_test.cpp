// One suite, three devices: io_uring, pread/pwrite and memory must behave the same.
#include "tagd/cache/block_device.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <random>

namespace tagd::cache {
namespace {

constexpr std::uint64_t kDeviceSize = 8 << 20;

struct MemoryFactory {
  static Result<std::unique_ptr<BlockDevice>> make(const std::string&) {
    return std::unique_ptr<BlockDevice>(std::make_unique<MemoryBlockDevice>(kDeviceSize, 4096));
  }
};
struct PreadFactory {
  static Result<std::unique_ptr<BlockDevice>> make(const std::string& path) {
    return open_pread_device({path, kDeviceSize, true});
  }
};
struct UringFactory {
  static Result<std::unique_ptr<BlockDevice>> make(const std::string& path) {
    return open_uring_device({path, kDeviceSize, true});
  }
};

template <class Factory>
class BlockDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("tagd_dev_" + std::to_string(::getpid()) + "_" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    auto d = Factory::make((dir_ / "cache.bin").string());
    if (!d && std::string(typeid(Factory).name()).find("Uring") != std::string::npos) {
      GTEST_SKIP() << "io_uring unavailable here: " << d.error().message();
    }
    ASSERT_TRUE(d.has_value()) << d.error().message();
    device_ = std::move(d.value());
  }
  void TearDown() override {
    device_.reset();
    std::filesystem::remove_all(dir_);
  }

  AlignedBuffer pattern(std::size_t size, unsigned seed) {
    AlignedBuffer b(size, 4096);
    std::mt19937 rng(seed);
    for (std::size_t i = 0; i < size; ++i) b.data()[i] = std::byte(rng() & 0xFF);
    return b;
  }

  std::filesystem::path dir_;
  std::unique_ptr<BlockDevice> device_;
};

using Factories = ::testing::Types<MemoryFactory, PreadFactory, UringFactory>;
TYPED_TEST_SUITE(BlockDeviceTest, Factories);

TYPED_TEST(BlockDeviceTest, ReportsSizeAndAlignment) {
  EXPECT_EQ(this->device_->size(), kDeviceSize);
  EXPECT_GE(this->device_->alignment(), 512u);
  EXPECT_EQ(kDeviceSize % this->device_->alignment(), 0u);
}

TYPED_TEST(BlockDeviceTest, WhatIsWrittenIsReadBack) {
  const std::size_t a = this->device_->alignment();
  auto data = this->pattern(256 * 1024, 1);
  ASSERT_TRUE(this->device_->write(3 * a, {data.data(), data.size()}).is_ok());
  AlignedBuffer back(data.size(), 4096);
  ASSERT_TRUE(this->device_->read(3 * a, back.span()).is_ok());
  EXPECT_EQ(std::memcmp(back.data(), data.data(), data.size()), 0);
  EXPECT_TRUE(this->device_->sync().is_ok());
}

TYPED_TEST(BlockDeviceTest, WritesDoNotDisturbNeighbours) {
  const std::size_t a = this->device_->alignment();
  auto first = this->pattern(a, 2);
  auto second = this->pattern(a, 3);
  ASSERT_TRUE(this->device_->write(0, {first.data(), a}).is_ok());
  ASSERT_TRUE(this->device_->write(a, {second.data(), a}).is_ok());
  AlignedBuffer back(2 * a, 4096);
  ASSERT_TRUE(this->device_->read(0, back.span()).is_ok());
  EXPECT_EQ(std::memcmp(back.data(), first.data(), a), 0);
  EXPECT_EQ(std::memcmp(back.data() + a, second.data(), a), 0);
}

TYPED_TEST(BlockDeviceTest, LastBlockOfTheDevice) {
  const std::size_t a = this->device_->alignment();
  auto data = this->pattern(a, 4);
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
}

TEST(MemoryBlockDeviceTest, InjectedFaults) {
  MemoryBlockDevice d(1 << 20, 512);
  AlignedBuffer buf(512, 512);
  std::memset(buf.data(), 7, 512);
  d.fail_writes_after(1);
  EXPECT_TRUE(d.write(0, {buf.data(), 512}).is_ok());
  EXPECT_EQ(d.write(512, {buf.data(), 512}).code(), ErrorCode::kInternalError);
  d.corrupt(10);
  AlignedBuffer back(512, 512);
  ASSERT_TRUE(d.read(0, back.span()).is_ok());
  EXPECT_NE(back.data()[10], std::byte{7});
  EXPECT_EQ(back.data()[11], std::byte{7});
}

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

}  // namespace
}  // namespace tagd::cache
