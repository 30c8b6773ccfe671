#include "tagd/upstream/retry_policy.hpp"

#include <algorithm>

namespace tagd::upstream {

RetryAction decide_retry(const RetryOptions& options, const Attempt& attempt, const Failure& failure) {
  // A body that was (even partly) pulled from the client cannot be sent again. This holds
  // for a connect failure too: the caller may already have consumed the first piece.
  if (!attempt.replayable) return RetryAction::kNo;
  // A slow upstream is not retried: the wait was already as long as the client's
  // patience. A connect timeout (nothing was sent) may be.
  if (failure.timeout && failure.phase != FailurePhase::kConnect) return RetryAction::kNo;
  // The stale keep-alive case: the upstream closed a pooled connection just as the
  // request went out. Nothing reached its application, so one immediate retry on a fresh
  // connection is safe for any method, even with max_retries 0.
  if (failure.connection_reused && failure.end_of_stream && attempt.number == 0 &&
      failure.phase != FailurePhase::kConnect) {
    return RetryAction::kNow;
  }
  if (attempt.number >= options.max_retries) return RetryAction::kNo;
  switch (failure.phase) {
    case FailurePhase::kConnect:
      return RetryAction::kWithBackoff;
    case FailurePhase::kSend:
      // On the first attempt a failed write means the request never reached the
      // upstream's application; later the first attempt's copy might have.
      return attempt.idempotent || attempt.number == 0 ? RetryAction::kWithBackoff : RetryAction::kNo;
    case FailurePhase::kReceiveHead:
      // The upstream may have acted on the request: only an idempotent one is repeated.
      return attempt.idempotent ? RetryAction::kWithBackoff : RetryAction::kNo;
  }
  return RetryAction::kNo;
}

std::chrono::milliseconds backoff(const RetryOptions& options, unsigned retry, std::uint64_t random) {
  using Rep = std::chrono::milliseconds::rep;
  const auto cap = static_cast<std::uint64_t>(std::max<Rep>(options.max_backoff.count(), 0));
  std::uint64_t low = static_cast<std::uint64_t>(std::max<Rep>(options.base_backoff.count(), 0));
  // low = base·2^(retry-1), doubled step by step and stopped once past the cap, so a large
  // retry number neither shifts out of range nor loops for long (at most 64 doublings).
  for (unsigned i = 1; i < retry && low != 0 && low < cap; ++i) low *= 2;
  if (low >= cap) return std::chrono::milliseconds(static_cast<Rep>(cap));
  // low < cap <= INT64_MAX: neither 2·low nor low + (random mod (low+1)) overflows.
  const std::uint64_t wait = low + random % (low + 1);
  return std::chrono::milliseconds(static_cast<Rep>(std::min(wait, cap)));
}

}  // namespace tagd::upstream
