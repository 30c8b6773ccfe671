// Polls a condition from a test thread until it holds or a time limit passes; for state
// that other threads (a notifier's delivery threads, a writer thread) change.
#pragma once

#include <chrono>
#include <functional>
#include <thread>

namespace tagd::testing {

inline bool wait_for(const std::function<bool()>& done,
                     std::chrono::milliseconds limit = std::chrono::milliseconds(5000)) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return done();
}

}  // namespace tagd::testing
