#include "tagd/cache/sequential_detector.hpp"

#include <gtest/gtest.h>

namespace tagd::cache {
namespace {

constexpr std::uint64_t kMiB = 1ull << 20;

SequentialDetector detector(std::uint64_t initial = kMiB, std::uint64_t max = 8 * kMiB, std::size_t streams = 16) {
  return SequentialDetector(ReadAheadSettings{initial, max, streams});
}

TEST(SequentialDetectorTest, OneReadIsNotAStream) {
  auto d = detector();
  EXPECT_FALSE(d.observe(1, {0, kMiB - 1}, 100 * kMiB).has_value());
}

TEST(SequentialDetectorTest, WindowDoublesUpToTheCapAndNothingIsAskedTwice) {
  auto d = detector();
  const std::uint64_t size = 1024 * kMiB;
  EXPECT_FALSE(d.observe(1, {0, kMiB - 1}, size));
  std::uint64_t asked_until = 0;
  std::uint64_t last_window = 0;
  for (std::uint64_t i = 1; i < 12; ++i) {
    auto ahead = d.observe(1, {i * kMiB, (i + 1) * kMiB - 1}, size);
    ASSERT_TRUE(ahead.has_value()) << "read " << i;
    EXPECT_GE(ahead->first, (i + 1) * kMiB) << "never the bytes just read";
    EXPECT_GE(ahead->first, asked_until) << "never asked twice";
    const std::uint64_t window = ahead->last + 1 - (i + 1) * kMiB;
    EXPECT_GE(window, last_window);
    EXPECT_LE(window, 8 * kMiB);
    last_window = window;
    asked_until = ahead->last + 1;
  }
  EXPECT_EQ(last_window, 8 * kMiB) << "the window reached the cap";
}

TEST(SequentialDetectorTest, StopsAtTheObjectsEnd) {
  auto d = detector(kMiB, 64 * kMiB);
  const std::uint64_t size = 3 * kMiB + 10;
  (void)d.observe(1, {0, kMiB - 1}, size);
  auto ahead = d.observe(1, {kMiB, 2 * kMiB - 1}, size);
  ASSERT_TRUE(ahead.has_value());
  ahead = d.observe(1, {2 * kMiB, 3 * kMiB - 1}, size);
  ASSERT_TRUE(ahead.has_value());
  EXPECT_EQ(ahead->last, size - 1);
  EXPECT_FALSE(d.observe(1, {3 * kMiB, size - 1}, size).has_value()) << "nothing left past the end";
}

TEST(SequentialDetectorTest, AJumpResetsTheWindow) {
  auto d = detector(kMiB, 64 * kMiB);
  const std::uint64_t size = 4096 * kMiB;
  for (std::uint64_t i = 0; i < 6; ++i) (void)d.observe(1, {i * kMiB, (i + 1) * kMiB - 1}, size);
  EXPECT_FALSE(d.observe(1, {2000 * kMiB, 2001 * kMiB - 1}, size).has_value()) << "a jump is not a stream";
  auto ahead = d.observe(1, {2001 * kMiB, 2002 * kMiB - 1}, size);
  ASSERT_TRUE(ahead.has_value());
  EXPECT_EQ(ahead->last + 1 - ahead->first, kMiB) << "starts again from the initial window";
  EXPECT_FALSE(d.observe(1, {10 * kMiB, 11 * kMiB - 1}, size).has_value()) << "nor is a jump backwards";
}

TEST(SequentialDetectorTest, PartsOfParallelReadersArrivingOutOfOrderStillFormAStream) {
  // s3transfer: 8 MiB parts fetched by several threads, arriving slightly out of order.
  auto d = detector(kMiB, 64 * kMiB);
  const std::uint64_t part = 8 * kMiB, size = 1024 * kMiB;
  const int order[] = {0, 2, 1, 3, 5, 4, 6, 7};
  int streams = 0;
  for (int p : order) streams += d.observe(1, {p * part, (p + 1) * part - 1}, size).has_value();
  EXPECT_GE(streams, 6);
}

TEST(SequentialDetectorTest, ObjectsAreTrackedApartAndTheTableIsBounded) {
  auto d = detector(kMiB, 8 * kMiB, /*streams=*/4);
  const std::uint64_t size = 100 * kMiB;
  (void)d.observe(1, {0, kMiB - 1}, size);
  (void)d.observe(2, {50 * kMiB, 51 * kMiB - 1}, size);
  EXPECT_TRUE(d.observe(1, {kMiB, 2 * kMiB - 1}, size).has_value());
  EXPECT_FALSE(d.observe(2, {0, kMiB - 1}, size).has_value()) << "object 2 is its own stream";
  for (std::uint64_t k = 10; k < 20; ++k) (void)d.observe(k, {0, 99}, size);  // pushes 1 and 2 out
  EXPECT_FALSE(d.observe(1, {2 * kMiB, 3 * kMiB - 1}, size).has_value()) << "forgotten: a new stream";
}

TEST(SequentialDetectorTest, AParallelReaderIsFollowedButGetsNoReadAhead) {
  auto d = detector(kMiB, 64 * kMiB);
  const std::uint64_t part = 8 * kMiB, size = 1024 * kMiB;
  (void)d.observe(1, {0, part - 1}, size);
  for (std::uint64_t p = 1; p < 8; ++p) {
    EXPECT_FALSE(d.observe(1, {p * part, (p + 1) * part - 1}, size, /*parallel_reader=*/true).has_value()) << p;
  }
  // Alone for a moment (its parts finished together): still a parallel client.
  EXPECT_FALSE(d.observe(1, {8 * part, 9 * part - 1}, size).has_value()) << "sticky";
  // A jump starts a new stream, sequential until seen overlapping again.
  (void)d.observe(1, {100 * part, 101 * part - 1}, size);
  auto ahead = d.observe(1, {101 * part, 102 * part - 1}, size);
  ASSERT_TRUE(ahead.has_value());
  EXPECT_EQ(ahead->first, 102 * part);
}

TEST(SequentialDetectorTest, CoveredMovesWhereTheNextReadAsksFrom) {
  auto d = detector(kMiB, 64 * kMiB);
  const std::uint64_t size = 1024 * kMiB;
  (void)d.observe(1, {0, kMiB - 1}, size);
  auto ahead = d.observe(1, {kMiB, 2 * kMiB - 1}, size);
  ASSERT_TRUE(ahead.has_value());
  d.covered(1, 8 * kMiB);  // rounded up to a whole part
  ahead = d.observe(1, {2 * kMiB, 3 * kMiB - 1}, size);
  EXPECT_FALSE(ahead.has_value()) << "3 + 2 MiB is inside what was fetched";
  EXPECT_FALSE(d.observe(1, {3 * kMiB, 4 * kMiB - 1}, size).has_value()) << "4 + 4 MiB too";
  ahead = d.observe(1, {4 * kMiB, 5 * kMiB - 1}, size);
  ASSERT_TRUE(ahead.has_value());
  EXPECT_EQ(ahead->first, 8 * kMiB);
  d.covered(1, 9 * kMiB);  // held back after one more MiB
  ahead = d.observe(1, {5 * kMiB, 6 * kMiB - 1}, size);
  ASSERT_TRUE(ahead.has_value());
  EXPECT_EQ(ahead->first, 9 * kMiB) << "asked again from where the last fetch stopped";
}

TEST(SequentialDetectorTest, ReadersAndFetchesInFlightAreCountedPerObject) {
  auto d = detector();
  {
    ActiveReader a(d, 1);
    EXPECT_EQ(a.others(), 0u);
    ActiveReader b(d, 1);
    EXPECT_EQ(b.others(), 1u);
    ActiveReader c(d, 2);
    EXPECT_EQ(c.others(), 0u) << "another object";
    ActiveReader moved = std::move(b);
    EXPECT_EQ(d.readers(1), 2u);
    b = ActiveReader();  // a moved-from reader releases nothing
    EXPECT_EQ(d.readers(1), 2u);
  }
  EXPECT_EQ(d.readers(1), 0u);

  EXPECT_TRUE(d.try_begin_fetch(1, 2));
  EXPECT_TRUE(d.try_begin_fetch(1, 2));
  EXPECT_FALSE(d.try_begin_fetch(1, 2)) << "held at the limit";
  EXPECT_TRUE(d.try_begin_fetch(2, 2)) << "per object";
  d.begin_fetch(1);  // a reader waits for it: never refused
  EXPECT_EQ(d.fetches_in_flight(1), 3u);
  {
    FetchSlot slot(d, 1);
  }
  EXPECT_EQ(d.fetches_in_flight(1), 2u);
  EXPECT_FALSE(d.try_begin_fetch(1, 2));
  d.end_fetch(1);
  EXPECT_TRUE(d.try_begin_fetch(1, 2));
  d.end_fetch(1);
  d.end_fetch(1);
  d.end_fetch(1);  // one too many: ignored, never below zero
  EXPECT_EQ(d.fetches_in_flight(1), 0u);
  EXPECT_TRUE(d.try_begin_fetch(1, 1));
}

TEST(SequentialDetectorTest, DisabledByAZeroCap) {
  auto d = detector(kMiB, 0);
  for (std::uint64_t i = 0; i < 4; ++i) EXPECT_FALSE(d.observe(1, {i * kMiB, (i + 1) * kMiB - 1}, 64 * kMiB));
}

}  // namespace
}  // namespace tagd::cache
