#pragma once
// Whether a failed upstream attempt is tried again, and after how long. Pure: the
// exchange reports what happened, this decides (the model is Envoy's RetryState, kept
// apart from the request itself), so every caller retries by the same rules.
#include <chrono>
#include <cstdint>

namespace tagd::upstream {

enum class FailurePhase {
  kConnect,      // no connection (refused, unresolvable, TLS failure, connect timeout)
  kSend,         // writing the request head or body failed
  kReceiveHead,  // the response head did not arrive (reset, EOF, garbage)
};

struct Failure {
  FailurePhase phase = FailurePhase::kConnect;
  bool timeout = false;            // the attempt ran out of time (not retried: the wait was already long)
  bool end_of_stream = false;      // the peer closed before answering
  bool connection_reused = false;  // the attempt ran on a pooled keep-alive connection
};

struct Attempt {
  unsigned number = 0;     // 0 for the first try
  bool replayable = true;  // the whole request (head and body) can be sent again
  bool idempotent = true;  // GET, HEAD, PUT, DELETE, OPTIONS
};

enum class RetryAction {
  kNo,           // give up: the exchange fails with this attempt's error
  kNow,          // a pooled connection the upstream had closed: retry at once on a fresh one
  kWithBackoff,  // retry on a fresh connection after backoff()
};

struct RetryOptions {
  unsigned max_retries = 2;
  std::chrono::milliseconds base_backoff{25};
  std::chrono::milliseconds max_backoff{1600};
};

RetryAction decide_retry(const RetryOptions& options, const Attempt& attempt, const Failure& failure);

// Jittered exponential backoff before retry number `retry` (1 for the first retry):
// uniformly in [base·2^(retry-1), 2·base·2^(retry-1)], capped at max_backoff.
// `random` is any 64-bit value (the caller's RNG), so the function stays pure.
std::chrono::milliseconds backoff(const RetryOptions& options, unsigned retry, std::uint64_t random);

}  // namespace tagd::upstream
