#include "tagd/cache/memory_tier.hpp"

#include <algorithm>
#include <cstring>
#include <new>
#include <utility>
#include <vector>

#include "tagd/cache/block_format.hpp"
#include "tagd/core/metrics.hpp"

namespace tagd::cache {

BlockKey MemoryTier::key(std::uint64_t key_hash, const std::string& etag, std::uint64_t block) {
  return BlockKey{key_hash, hash_bytes(etag), block};
}

BlockBytes MemoryTier::get(const BlockKey& block_key) {
  std::lock_guard lock(mu_);
  auto it = map_.find(block_key);
  if (it == map_.end()) return nullptr;
  it->second->visited = true;
  return it->second->bytes;
}

bool MemoryTier::contains(const BlockKey& block_key) const {
  std::lock_guard lock(mu_);
  return map_.count(block_key) != 0;
}

void MemoryTier::put(const BlockKey& block_key, BlockBytes bytes) {
  if (!bytes || bytes->footprint() > capacity_) return;
  std::vector<BlockBytes> released;  // dropped after the lock
  std::lock_guard lock(mu_);
  put_locked(block_key, std::move(bytes), released);
}

bool MemoryTier::promote(const BlockKey& block_key, BlockBytes bytes) {
  if (!bytes) return false;
  // Room, the gate's window and the capacity check all count what the block will hold once
  // kept: its right-sized copy if it gets one.
  const std::size_t fitted = right_size_for(*bytes);
  const std::size_t charge = fitted != 0 ? fitted : bytes->footprint();
  if (charge > capacity_) return false;
  std::vector<BlockBytes> released;  // dropped after the lock (declared first: destroyed last)
  std::unique_lock lock(mu_);
  const bool room = bytes_ + charge <= capacity_ || map_.count(block_key) != 0;
  if (!room && !second_reads_.admit(BlockKeyHash{}(block_key), charge)) {
    metrics().cache_memory_promotions_declined.inc();
    return false;
  }
  if (fitted != 0) {
    // The copy runs outside the lock (every loop's hits take it). What changed meanwhile
    // is put_locked's to settle: it replaces an entry another loop put for the same key.
    lock.unlock();
    if (BlockBytes smaller = copied_at_size(*bytes)) released.push_back(std::exchange(bytes, std::move(smaller)));
    lock.lock();
  }
  put_locked(block_key, std::move(bytes), released);
  return map_.count(block_key) != 0;
}

std::size_t MemoryTier::right_size_for(const BlockData& block) const noexcept {
  if (!right_size_pool_) return 0;
  const std::size_t length = std::max(block.size(), kMinKeptBuffer);
  const std::size_t pooled = right_size_pool_->capacity_for(length);
  const std::size_t fitted = pooled != 0 ? pooled : length;  // unpooled: a buffer of that length
  return fitted * 4 <= block.footprint() * 3 ? fitted : 0;
}

BlockBytes MemoryTier::copied_at_size(const BlockData& block) const noexcept {
  try {
    std::shared_ptr<BlockBuffer> buffer = right_size_pool_->acquire(std::max(block.size(), kMinKeptBuffer));
    if (buffer->append(block.data(), block.size()) != block.size()) return nullptr;  // (sized to it: never short)
    return std::make_shared<const BlockData>(std::shared_ptr<const BlockBuffer>(std::move(buffer)));
  } catch (const std::bad_alloc&) {
    return nullptr;  // the block is kept in its read buffer: the read itself succeeded
  }
}

void MemoryTier::put_locked(const BlockKey& block_key, BlockBytes bytes, std::vector<BlockBytes>& released) {
  if (auto it = map_.find(block_key); it != map_.end()) {
    bytes_ -= it->second->bytes->footprint();
    bytes_ += bytes->footprint();
    released.push_back(std::exchange(it->second->bytes, std::move(bytes)));
  } else {
    bytes_ += bytes->footprint();
    queue_.push_front(Entry{block_key, std::move(bytes), false});
    map_[block_key] = queue_.begin();
  }
  while (bytes_ > capacity_ && !queue_.empty()) released.push_back(evict_one_locked());
  metrics().cache_memory_used_bytes.set(static_cast<std::int64_t>(bytes_));
}

BlockBytes MemoryTier::evict_one_locked() {
  // The hand moves from the oldest entry towards the newest, giving visited entries a
  // second chance; it wraps around to the oldest.
  if (hand_ == queue_.end()) hand_ = std::prev(queue_.end());
  while (hand_->visited) {
    hand_->visited = false;
    hand_ = hand_ == queue_.begin() ? std::prev(queue_.end()) : std::prev(hand_);
  }
  auto victim = hand_;
  hand_ = victim == queue_.begin() ? queue_.end() : std::prev(victim);
  bytes_ -= victim->bytes->footprint();
  BlockBytes bytes = std::move(victim->bytes);
  map_.erase(victim->key);
  queue_.erase(victim);
  return bytes;
}

void MemoryTier::erase(const BlockKey& block_key) {
  BlockBytes released;  // dropped after the lock
  std::lock_guard lock(mu_);
  auto it = map_.find(block_key);
  if (it == map_.end()) return;
  if (hand_ == it->second) hand_ = it->second == queue_.begin() ? queue_.end() : std::prev(it->second);
  bytes_ -= it->second->bytes->footprint();
  released = std::move(it->second->bytes);
  queue_.erase(it->second);
  map_.erase(it);
  metrics().cache_memory_used_bytes.set(static_cast<std::int64_t>(bytes_));
}

std::uint64_t MemoryTier::bytes() const {
  std::lock_guard lock(mu_);
  return bytes_;
}

}  // namespace tagd::cache
