#pragma once
// Which blocks were fetched ahead of any reader (read-ahead and parallel parts) and have
// not been read yet: the first read of one counts its bytes as prefetch used, so
// prefetched − used is what prefetch wasted. Bounded: the oldest entries beyond the bound
// are dropped and counted as unused (tagd_cache_prefetch_unused_bytes_total).
//
// Threading: shared by every event loop; one mutex, taken on a read only when the ledger
// is not empty (an atomic count says so), so hits on objects nobody prefetched pay one
// relaxed load.
#include <atomic>
#include <cstdint>
#include <deque>
#include <mutex>
#include <unordered_map>
#include <utility>

#include "tagd/cache/memory_tier.hpp"

namespace tagd::cache {

class PrefetchLedger {
 public:
  explicit PrefetchLedger(std::size_t max_entries = 1u << 16) : max_entries_(max_entries) {}

  // A block of `bytes` bytes was fetched ahead of readers.
  void add(const BlockKey& block, std::uint32_t bytes);
  // A reader reached `block`: if it was prefetched and unread, counts it as used.
  void on_read(const BlockKey& block);
  std::size_t size() const noexcept { return count_.load(std::memory_order_relaxed); }

 private:
  std::size_t max_entries_;
  std::atomic<std::size_t> count_{0};
  std::mutex mu_;
  struct Entry {
    std::uint32_t bytes = 0;
    std::uint64_t seq = 0;  // which add() this is: a block prefetched again is a new entry
  };
  std::uint64_t sequence_ = 0;
  std::unordered_map<BlockKey, Entry, BlockKeyHash> unread_;
  // Insertion order, for the bound; may hold entries read since (they leave lazily).
  std::deque<std::pair<BlockKey, std::uint64_t>> order_;
};

}  // namespace tagd::cache
