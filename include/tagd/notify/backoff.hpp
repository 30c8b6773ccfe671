#pragma once
// When a failed delivery is tried again: exponential backoff with jitter, and the
// dead-letter decision. Pure (the caller supplies the time and the random draw), so the
// schedule is table-tested with a manual clock.
#include <chrono>
#include <cstdint>

namespace tagd::notify {

// Delay before attempt `failures + 1` after `failures` consecutive failures (>= 1):
// base * 2^(failures-1) capped at `cap`, then "equal jitter": half of it fixed, the other
// half scaled by `unit` in [0, 1). Receivers that come back are not hit by every tagd at
// once, and the delay never collapses to zero.
std::chrono::milliseconds backoff_delay(unsigned failures, std::chrono::milliseconds base,
                                        std::chrono::milliseconds cap, double unit) noexcept;

// One endpoint's retry state for the batch at the head of its queue.
class RetryState {
 public:
  RetryState(unsigned max_attempts, std::chrono::milliseconds base, std::chrono::milliseconds cap)
      : max_attempts_(max_attempts), base_(base), cap_(cap) {}

  struct Decision {
    bool dead_letter = false;  // max_attempts reached: give the batch up
    std::chrono::system_clock::time_point retry_at;
  };
  Decision on_failure(std::chrono::system_clock::time_point now, double unit) noexcept;
  void on_success() noexcept { failures_ = 0; }
  // A reload changed the limits: the failures so far still count against the new ones.
  void set_limits(unsigned max_attempts, std::chrono::milliseconds base, std::chrono::milliseconds cap) noexcept {
    max_attempts_ = max_attempts;
    base_ = base;
    cap_ = cap;
  }
  unsigned failures() const noexcept { return failures_; }

 private:
  unsigned max_attempts_;
  std::chrono::milliseconds base_, cap_;
  unsigned failures_ = 0;
};

}  // namespace tagd::notify
