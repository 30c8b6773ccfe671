#pragma once
// DRAM tier: the hottest blocks, bounded in bytes. Eviction is SIEVE (a FIFO queue with a
// "visited" bit and a hand that sweeps from old to new): hits only set a bit, so lookups
// stay cheap, and one-hit wonders from a scan leave before re-read blocks.
// Threading: one mutex; values are shared so a reader keeps its block if it is evicted.
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace tagd::cache {

using BlockBytes = std::shared_ptr<const std::vector<std::byte>>;

class MemoryTier {
 public:
  explicit MemoryTier(std::uint64_t capacity_bytes) : capacity_(capacity_bytes) {}
  MemoryTier(const MemoryTier&) = delete;
  MemoryTier& operator=(const MemoryTier&) = delete;

  BlockBytes get(const std::string& block_key);
  // Presence only: unlike get(), does not count as a use for eviction.
  bool contains(const std::string& block_key) const;
  void put(const std::string& block_key, BlockBytes bytes);
  void erase(const std::string& block_key);

  std::uint64_t bytes() const;
  std::uint64_t capacity() const noexcept { return capacity_; }

  static std::string key(std::uint64_t key_hash, const std::string& etag, std::uint64_t block);

 private:
  struct Entry {
    std::string key;
    BlockBytes bytes;
    bool visited = false;
  };
  void evict_one_locked();

  std::uint64_t capacity_;
  mutable std::mutex mu_;
  std::list<Entry> queue_;  // front = newest
  std::unordered_map<std::string, std::list<Entry>::iterator> map_;
  std::list<Entry>::iterator hand_ = queue_.end();
  std::uint64_t bytes_ = 0;
};

}  // namespace tagd::cache
