#include <gtest/gtest.h>

#include "tagd/core/logging.hpp"

namespace tagd::logging {
namespace {

TEST(WarnThrottleTest, OnceAnIntervalFromTheFirstCall) {
  WarnThrottle throttle(std::chrono::seconds(10));
  EXPECT_TRUE(throttle.allow(5)) << "the first warning always goes out, whatever the clock says";
  EXPECT_FALSE(throttle.allow(6));
  EXPECT_FALSE(throttle.allow(10'005));
  EXPECT_TRUE(throttle.allow(10'006));
  EXPECT_FALSE(throttle.allow(10'007));
}

TEST(WarnThrottleTest, AClockBelowTheIntervalStillLetsTheFirstThrough) {
  WarnThrottle throttle(std::chrono::seconds(10));
  EXPECT_TRUE(throttle.allow(0));
  EXPECT_FALSE(throttle.allow(9'999));
}

}  // namespace
}  // namespace tagd::logging
