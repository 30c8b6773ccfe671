#pragma once
// spdlog set-up: console or JSON lines, and a separate "access" logger (one line per
// request) that shares the sinks but can be silenced on its own. Under systemd (stderr is
// the stream JOURNAL_STREAM names), the console format drops its timestamp and starts
// each line with a syslog priority ("<4>"), which journald stores as the entry's priority.
#include <spdlog/logger.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

namespace tagd::logging {

// Throws std::invalid_argument on an unknown level or format (config validates first).
void setup(const std::string& level, const std::string& format);
spdlog::logger& access();

// Lets a warning through at most once per `interval`, from any thread: a condition that
// holds under a burst (a budget spent) would otherwise log once per request.
class WarnThrottle {
 public:
  explicit WarnThrottle(std::chrono::milliseconds interval) : interval_ms_(interval.count()) {}
  // `now_ms`: any monotonic-enough clock in milliseconds (the caller's own, so tests with
  // a manual clock see the same decisions).
  bool allow(std::int64_t now_ms) noexcept {
    std::int64_t last = last_ms_.load(std::memory_order_relaxed);
    return (last == kNever || now_ms - last > interval_ms_) && last_ms_.compare_exchange_strong(last, now_ms);
  }

 private:
  static constexpr std::int64_t kNever = INT64_MIN;
  std::int64_t interval_ms_;
  std::atomic<std::int64_t> last_ms_{kNever};
};

}  // namespace tagd::logging
