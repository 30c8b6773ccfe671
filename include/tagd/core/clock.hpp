#pragma once
// Time as the data path sees it, behind a seam so freshness, stale-if-error and
// signing dates are testable without sleeping.
#include <atomic>
#include <chrono>

namespace tagd {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual std::chrono::system_clock::time_point now() const = 0;
  std::int64_t now_ms() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(now().time_since_epoch()).count();
  }
};

class SystemClock final : public Clock {
 public:
  std::chrono::system_clock::time_point now() const override { return std::chrono::system_clock::now(); }
};

// Tests: time moves only when told to.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(std::chrono::system_clock::time_point start = std::chrono::system_clock::now()) : t_(start) {}
  std::chrono::system_clock::time_point now() const override { return t_.load(); }
  void advance(std::chrono::milliseconds d) { t_.store(t_.load() + d); }

 private:
  std::atomic<std::chrono::system_clock::time_point> t_;
};

}  // namespace tagd
