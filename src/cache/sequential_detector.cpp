#include "tagd/cache/sequential_detector.hpp"

#include <algorithm>

namespace tagd::cache {

std::optional<ByteRange> SequentialDetector::observe(std::uint64_t key_hash, ByteRange read, std::uint64_t size) {
  if (settings_.max_window == 0 || size == 0 || read.last < read.first) return std::nullopt;
  const std::uint64_t length = read.last - read.first + 1;
  std::lock_guard lock(mu_);
  auto it = streams_.find(key_hash);
  if (it == streams_.end()) {
    if (streams_.size() >= settings_.max_streams && !lru_.empty()) {
      streams_.erase(lru_.back());
      lru_.pop_back();
    }
    lru_.push_front(key_hash);
    Stream fresh;
    fresh.frontier = read.last + 1;
    fresh.window = settings_.initial_window;
    fresh.lru = lru_.begin();
    streams_.emplace(key_hash, fresh);
    return std::nullopt;  // one read is not a stream yet
  }
  Stream& st = it->second;
  lru_.splice(lru_.begin(), lru_, st.lru);
  // Slack: a window ahead (or several parts, for parallel readers), and as far behind for
  // a part that arrives after later ones.
  const std::uint64_t slack = std::max(st.window, 16 * length);
  const bool continues = read.first <= st.frontier + slack && read.first + slack >= st.frontier;
  if (!continues) {
    st.frontier = read.last + 1;
    st.window = settings_.initial_window;
    st.requested_until = 0;
    st.continued = 0;
    return std::nullopt;
  }
  if (st.continued > 0) st.window = std::min(st.window * 2, settings_.max_window);
  ++st.continued;
  st.frontier = std::max(st.frontier, read.last + 1);
  const std::uint64_t from = std::max(st.frontier, st.requested_until);
  const std::uint64_t to = std::min(size, st.frontier + st.window);  // exclusive
  if (from >= to) return std::nullopt;
  st.requested_until = to;
  return ByteRange{from, to - 1};
}

}  // namespace tagd::cache
