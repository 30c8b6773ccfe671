#include "tagd/cache/prefetch_ledger.hpp"

#include "tagd/core/metrics.hpp"

namespace tagd::cache {

void PrefetchLedger::add(const BlockKey& block, std::uint32_t bytes) {
  std::lock_guard lock(mu_);
  const std::uint64_t seq = ++sequence_;
  if (!unread_.emplace(block, Entry{bytes, seq}).second) return;
  order_.emplace_back(block, seq);
  metrics().cache_prefetch_bytes.inc(bytes);
  metrics().cache_prefetch_unread_bytes.add(bytes);
  // order_ keeps entries read since (they leave it lazily, here): bounded at twice the
  // entries, so an old unread block at its front cannot make it grow without limit.
  while (!order_.empty() && (unread_.size() > max_entries_ || order_.size() > 2 * max_entries_)) {
    const auto [front, front_seq] = order_.front();
    order_.pop_front();
    auto it = unread_.find(front);
    if (it == unread_.end() || it->second.seq != front_seq) continue;  // read already (maybe added again since)
    metrics().cache_prefetch_unused_bytes.inc(it->second.bytes);
    metrics().cache_prefetch_unread_bytes.add(-static_cast<std::int64_t>(it->second.bytes));
    unread_.erase(it);
  }
  count_.store(unread_.size(), std::memory_order_relaxed);
}

void PrefetchLedger::on_read(const BlockKey& block) {
  if (count_.load(std::memory_order_relaxed) == 0) return;
  std::lock_guard lock(mu_);
  auto it = unread_.find(block);
  if (it == unread_.end()) return;
  metrics().cache_prefetch_used_bytes.inc(it->second.bytes);
  metrics().cache_prefetch_unread_bytes.add(-static_cast<std::int64_t>(it->second.bytes));
  unread_.erase(it);
  count_.store(unread_.size(), std::memory_order_relaxed);
}

}  // namespace tagd::cache
