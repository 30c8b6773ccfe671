#include "tagd/notify/backoff.hpp"

#include <gtest/gtest.h>

#include "tagd/core/clock.hpp"

namespace tagd::notify {
namespace {

using namespace std::chrono;

TEST(NotifyBackoff, DoublesUpToTheCapWithHalfJitter) {
  const milliseconds base(1000), cap(8000);
  // unit 0: the fixed half; unit ~1: the whole delay.
  EXPECT_EQ(backoff_delay(1, base, cap, 0.0), milliseconds(500));
  EXPECT_EQ(backoff_delay(2, base, cap, 0.0), milliseconds(1000));
  EXPECT_EQ(backoff_delay(3, base, cap, 0.0), milliseconds(2000));
  EXPECT_EQ(backoff_delay(4, base, cap, 0.0), milliseconds(4000));
  EXPECT_EQ(backoff_delay(5, base, cap, 0.0), milliseconds(4000));  // capped at 8 s
  EXPECT_EQ(backoff_delay(50, base, cap, 0.0), milliseconds(4000));
  EXPECT_EQ(backoff_delay(3, base, cap, 0.5), milliseconds(3000));
  EXPECT_EQ(backoff_delay(3, base, cap, 1.0), milliseconds(4000));
  EXPECT_EQ(backoff_delay(1000, base, cap, 1.0), milliseconds(8000));  // no overflow
  EXPECT_EQ(backoff_delay(0, base, cap, 0.7), milliseconds(0));
}

TEST(NotifyBackoff, ScheduleOnAManualClockThenDeadLetter) {
  ManualClock clock(system_clock::time_point{seconds(1'000'000)});
  RetryState state(4, milliseconds(100), milliseconds(1000));
  // Attempt 1 fails at t0: next at t0 + [50, 100) ms; with unit 0.5 → 75 ms.
  auto d = state.on_failure(clock.now(), 0.5);
  EXPECT_FALSE(d.dead_letter);
  EXPECT_EQ(d.retry_at - clock.now(), milliseconds(75));
  clock.advance(milliseconds(75));
  d = state.on_failure(clock.now(), 0.5);
  EXPECT_EQ(d.retry_at - clock.now(), milliseconds(150));
  clock.advance(milliseconds(150));
  d = state.on_failure(clock.now(), 0.5);
  EXPECT_EQ(d.retry_at - clock.now(), milliseconds(300));
  EXPECT_EQ(state.failures(), 3u);
  clock.advance(milliseconds(300));
  d = state.on_failure(clock.now(), 0.5);  // the 4th failure of 4 attempts
  EXPECT_TRUE(d.dead_letter);
  EXPECT_EQ(state.failures(), 0u);  // the next batch starts afresh
}

TEST(NotifyBackoff, SuccessResetsTheSchedule) {
  RetryState state(10, milliseconds(100), milliseconds(1000));
  const auto t = system_clock::time_point{seconds(5)};
  (void)state.on_failure(t, 0.0);
  (void)state.on_failure(t, 0.0);
  state.on_success();
  EXPECT_EQ(state.on_failure(t, 0.0).retry_at - t, milliseconds(50));
}

}  // namespace
}  // namespace tagd::notify
