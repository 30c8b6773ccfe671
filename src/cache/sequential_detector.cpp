#include "tagd/cache/sequential_detector.hpp"

#include <algorithm>

namespace tagd::cache {

std::optional<ByteRange> SequentialDetector::observe(std::uint64_t key_hash, ByteRange read, std::uint64_t size,
                                                     bool parallel_reader) {
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
    fresh.parallel = parallel_reader;
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
    st.parallel = parallel_reader;
    return std::nullopt;
  }
  st.parallel = st.parallel || parallel_reader;
  if (st.parallel) {
    // The client keeps several requests in flight itself: follow it, fetch nothing ahead.
    st.frontier = std::max(st.frontier, read.last + 1);
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

void SequentialDetector::covered(std::uint64_t key_hash, std::uint64_t until) {
  std::lock_guard lock(mu_);
  auto it = streams_.find(key_hash);
  if (it != streams_.end()) it->second.requested_until = until;
}

std::size_t SequentialDetector::begin_reader(std::uint64_t key_hash) {
  std::lock_guard lock(mu_);
  Activity& a = active_[key_hash];
  return a.readers++;
}

void SequentialDetector::end_reader(std::uint64_t key_hash) {
  std::lock_guard lock(mu_);
  auto it = active_.find(key_hash);
  if (it == active_.end() || it->second.readers == 0) return;
  --it->second.readers;
  release_locked(it);
}

bool SequentialDetector::try_begin_fetch(std::uint64_t key_hash, std::size_t limit) {
  std::lock_guard lock(mu_);
  Activity& a = active_[key_hash];
  if (a.fetches >= limit) {
    release_locked(active_.find(key_hash));
    return false;
  }
  ++a.fetches;
  return true;
}

void SequentialDetector::begin_fetch(std::uint64_t key_hash) {
  std::lock_guard lock(mu_);
  ++active_[key_hash].fetches;
}

void SequentialDetector::end_fetch(std::uint64_t key_hash) {
  std::lock_guard lock(mu_);
  auto it = active_.find(key_hash);
  if (it == active_.end() || it->second.fetches == 0) return;
  --it->second.fetches;
  release_locked(it);
}

std::size_t SequentialDetector::fetches_in_flight(std::uint64_t key_hash) {
  std::lock_guard lock(mu_);
  auto it = active_.find(key_hash);
  return it == active_.end() ? 0 : it->second.fetches;
}

std::size_t SequentialDetector::readers(std::uint64_t key_hash) {
  std::lock_guard lock(mu_);
  auto it = active_.find(key_hash);
  return it == active_.end() ? 0 : it->second.readers;
}

void SequentialDetector::release_locked(std::unordered_map<std::uint64_t, Activity>::iterator it) {
  if (it != active_.end() && it->second.readers == 0 && it->second.fetches == 0) active_.erase(it);
}

}  // namespace tagd::cache
