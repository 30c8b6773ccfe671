#include "tagd/upstream/retry_policy.hpp"

#include <gtest/gtest.h>

#include <limits>
#include <set>

namespace tagd::upstream {
namespace {

using std::chrono::milliseconds;
constexpr auto kConnect = FailurePhase::kConnect;
constexpr auto kSend = FailurePhase::kSend;
constexpr auto kHead = FailurePhase::kReceiveHead;
constexpr auto kNo = RetryAction::kNo;
constexpr auto kNow = RetryAction::kNow;
constexpr auto kBackoff = RetryAction::kWithBackoff;

struct Row {
  const char* name;
  unsigned max_retries;
  Attempt attempt;     // number, replayable, idempotent
  Failure failure;     // phase, timeout, end_of_stream, connection_reused
  RetryAction expected;
};

TEST(RetryPolicy, DecisionTable) {
  const Row rows[] = {
      // Connect failures: retried with backoff while retries remain, even a POST.
      {"connect refused", 2, {0, true, true}, {kConnect, false, false, false}, kBackoff},
      {"connect refused, POST", 2, {0, true, false}, {kConnect, false, false, false}, kBackoff},
      {"connect refused, last retry", 2, {2, true, true}, {kConnect, false, false, false}, kNo},
      {"connect refused, no retries", 0, {0, true, true}, {kConnect, false, false, false}, kNo},
      {"connect timeout is retried", 2, {1, true, true}, {kConnect, true, false, false}, kBackoff},
      {"connect, streamed body", 2, {0, false, true}, {kConnect, false, false, false}, kNo},
      // Send failures.
      {"send, GET", 2, {1, true, true}, {kSend, false, false, false}, kBackoff},
      {"send, POST attempt 0", 2, {0, true, false}, {kSend, false, false, false}, kBackoff},
      {"send, POST attempt 1", 2, {1, true, false}, {kSend, false, false, false}, kNo},
      {"send timeout", 2, {0, true, true}, {kSend, true, false, false}, kNo},
      {"send, streamed body", 2, {0, false, true}, {kSend, false, false, false}, kNo},
      {"send, out of retries", 1, {1, true, true}, {kSend, false, false, false}, kNo},
      // Response head failures.
      {"head reset, GET", 2, {0, true, true}, {kHead, false, true, false}, kBackoff},
      {"head garbage, GET", 2, {1, true, true}, {kHead, false, false, false}, kBackoff},
      {"head, POST", 2, {0, true, false}, {kHead, false, true, false}, kNo},
      {"head timeout, GET", 2, {0, true, true}, {kHead, true, false, false}, kNo},
      {"head timeout on reused connection", 2, {0, true, true}, {kHead, true, true, true}, kNo},
      {"head, out of retries", 2, {2, true, true}, {kHead, false, true, false}, kNo},
      {"head, streamed body", 2, {0, false, true}, {kHead, false, true, false}, kNo},
      // The stale keep-alive connection: at once, any method, even with no retries left.
      {"stale pooled, GET", 2, {0, true, true}, {kHead, false, true, true}, kNow},
      {"stale pooled, POST", 2, {0, true, false}, {kHead, false, true, true}, kNow},
      {"stale pooled, no retries", 0, {0, true, true}, {kHead, false, true, true}, kNow},
      {"stale pooled, send phase", 0, {0, true, false}, {kSend, false, true, true}, kNow},
      {"stale pooled, attempt 1", 2, {1, true, false}, {kHead, false, true, true}, kNo},
      {"stale pooled, streamed body", 2, {0, false, true}, {kHead, false, true, true}, kNo},
      {"pooled, not end of stream, POST", 2, {0, true, false}, {kHead, false, false, true}, kNo},
      {"pooled, garbage, no retries", 0, {0, true, true}, {kHead, false, false, true}, kNo},
  };
  for (const auto& row : rows) {
    RetryOptions options;
    options.max_retries = row.max_retries;
    EXPECT_EQ(decide_retry(options, row.attempt, row.failure), row.expected) << row.name;
  }
}

TEST(RetryPolicy, BackoffWithinBounds) {
  RetryOptions options;  // 25 ms base, 1600 ms cap
  for (unsigned retry = 1; retry <= 6; ++retry) {
    const auto low = milliseconds(25LL << (retry - 1));
    for (std::uint64_t r : {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{12345}, std::uint64_t{0xdeadbeefcafe},
                            std::numeric_limits<std::uint64_t>::max()}) {
      const auto wait = backoff(options, retry, r);
      EXPECT_GE(wait, low) << retry << "/" << r;
      EXPECT_LE(wait, std::min(2 * low, options.max_backoff)) << retry << "/" << r;
    }
  }
  // Both ends of the interval are reachable.
  EXPECT_EQ(backoff(options, 1, 0), milliseconds(25));
  EXPECT_EQ(backoff(options, 1, 25), milliseconds(50));
  EXPECT_EQ(backoff(options, 3, 0), milliseconds(100));
  EXPECT_EQ(backoff(options, 3, 100), milliseconds(200));
}

TEST(RetryPolicy, BackoffIsJittered) {
  RetryOptions options;
  options.base_backoff = milliseconds(100);
  options.max_backoff = milliseconds(100000);
  std::set<long long> seen;
  for (std::uint64_t r = 0; r < 50; ++r) seen.insert(backoff(options, 2, r * 7919).count());
  EXPECT_GT(seen.size(), 10u);
}

TEST(RetryPolicy, BackoffCapped) {
  RetryOptions options;
  options.base_backoff = milliseconds(25);
  options.max_backoff = milliseconds(300);
  EXPECT_EQ(backoff(options, 5, 0), milliseconds(300));  // 400 ms lower bound, capped
  EXPECT_LE(backoff(options, 4, ~std::uint64_t{0}), milliseconds(300));  // [200, 400] capped
  EXPECT_GE(backoff(options, 4, 0), milliseconds(200));
}

TEST(RetryPolicy, BackoffLargeRetryNumbers) {
  RetryOptions options;
  for (unsigned retry : {7u, 31u, 32u, 63u, 64u, 65u, 1000u, std::numeric_limits<unsigned>::max()}) {
    EXPECT_EQ(backoff(options, retry, 12345), options.max_backoff) << retry;
  }
  // A huge cap: the doubling stops before it overflows.
  options.max_backoff = milliseconds::max();
  for (unsigned retry : {62u, 63u, 64u, 200u, std::numeric_limits<unsigned>::max()}) {
    const auto wait = backoff(options, retry, ~std::uint64_t{0});
    EXPECT_GT(wait.count(), 0) << retry;
    EXPECT_LE(wait, milliseconds::max()) << retry;
  }
  // A zero base never loops on doubling zero.
  options.base_backoff = milliseconds(0);
  EXPECT_EQ(backoff(options, std::numeric_limits<unsigned>::max(), 99), milliseconds(0));
  // Retry 0 is treated as the first retry.
  EXPECT_EQ(backoff(RetryOptions{}, 0, 0), milliseconds(25));
}

}  // namespace
}  // namespace tagd::upstream
