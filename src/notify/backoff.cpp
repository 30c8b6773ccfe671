#include "tagd/notify/backoff.hpp"

#include <algorithm>

namespace tagd::notify {

std::chrono::milliseconds backoff_delay(unsigned failures, std::chrono::milliseconds base,
                                        std::chrono::milliseconds cap, double unit) noexcept {
  if (failures == 0) return std::chrono::milliseconds(0);
  // Doubling stops at the cap; the shift is bounded so it cannot overflow.
  std::int64_t d = base.count();
  for (unsigned i = 1; i < failures && d < cap.count(); ++i) d *= 2;
  d = std::min<std::int64_t>(d, cap.count());
  unit = std::clamp(unit, 0.0, 1.0);
  const std::int64_t half = d / 2;
  return std::chrono::milliseconds(d - half + static_cast<std::int64_t>(static_cast<double>(half) * unit));
}

RetryState::Decision RetryState::on_failure(std::chrono::system_clock::time_point now, double unit) noexcept {
  ++failures_;
  Decision d;
  if (failures_ >= max_attempts_) {
    d.dead_letter = true;
    d.retry_at = now;
    failures_ = 0;  // the next batch starts afresh
    return d;
  }
  d.retry_at = now + backoff_delay(failures_, base_, cap_, unit);
  return d;
}

}  // namespace tagd::notify
