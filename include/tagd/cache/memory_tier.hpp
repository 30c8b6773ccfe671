#pragma once
// DRAM tier: the hottest blocks, bounded in bytes. Eviction is SIEVE (a FIFO queue with a
// "visited" bit and a hand that sweeps from old to new): hits only set a bit, so lookups
// stay cheap, and one-hit wonders from a scan leave before re-read blocks.
// Threading: one mutex; values are shared so a reader keeps its block if it is evicted.
#include <algorithm>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <span>
#include <vector>

#include "tagd/cache/block_buffer_pool.hpp"
#include "tagd/cache/block_device.hpp"
#include "tagd/cache/second_read_gate.hpp"

namespace tagd::cache {

// The bytes of one cached block (or of the part of one a read needed), immutable once
// shared. They come either from a fill (the buffer the fill appended to, from the
// BlockBufferPool: back to it when the last holder lets go) or from a disk read (the
// aligned buffer the device read into, the payload at an offset in it): both are lent to
// the client as they are, never copied into another buffer.
class BlockData {
 public:
  explicit BlockData(std::shared_ptr<const BlockBuffer> filled)
      : buffer_(std::move(filled)), data_(buffer_->data()), size_(buffer_->size()), footprint_(buffer_->capacity()) {}
  // Tests.
  explicit BlockData(std::shared_ptr<const std::vector<std::byte>> filled)
      : filled_(std::move(filled)), data_(filled_->data()), size_(filled_->size()), footprint_(size_) {}
  // `offset`/`size`: where the payload lies in the buffer.
  BlockData(AlignedBuffer read, std::size_t offset, std::size_t size)
      : read_(std::move(read)),
        data_(read_.data() + offset),
        size_(size),
        footprint_(std::max(size, read_.capacity())) {}
  BlockData(const BlockData&) = delete;
  BlockData& operator=(const BlockData&) = delete;

  const std::byte* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  std::span<const std::byte> bytes() const noexcept { return {data_, size_}; }
  // Memory held for it (a pooled fill buffer's size class, a disk read's whole buffer,
  // which a pooled read buffer makes up to 160 KiB or 1.125 MiB): what the DRAM tier
  // counts, so that it bounds memory, not payload.
  std::size_t footprint() const noexcept { return footprint_; }
  // The memfd its first byte lies in and that byte's offset there (fd < 0: plain memory).
  // A writer may send the bytes from there (sendfile) after lend_to_kernel().
  int file_descriptor() const noexcept { return buffer_ ? buffer_->file_descriptor() : -1; }
  std::uint64_t file_offset() const noexcept {
    return buffer_ ? buffer_->file_offset() + static_cast<std::uint64_t>(data_ - buffer_->data()) : 0;
  }
  void lend_to_kernel() const noexcept {
    if (buffer_) buffer_->lend_to_kernel();
  }

 private:
  std::shared_ptr<const BlockBuffer> buffer_;
  std::shared_ptr<const std::vector<std::byte>> filled_;
  AlignedBuffer read_;
  const std::byte* data_;
  std::size_t size_;
  std::size_t footprint_;
};
using BlockBytes = std::shared_ptr<const BlockData>;
// A block of `n` bytes of `value` (tests).
inline BlockBytes make_block_bytes(std::size_t n, std::byte value = std::byte{0}) {
  return std::make_shared<const BlockData>(std::make_shared<const std::vector<std::byte>>(n, value));
}

// Names one block of one object version: (object key hash, ETag hash, block number).
// Fixed width, so a lookup builds no string.
struct BlockKey {
  std::uint64_t key_hash = 0;
  std::uint64_t etag_hash = 0;
  std::uint64_t block = 0;
  bool operator==(const BlockKey&) const = default;
};
struct BlockKeyHash {
  std::size_t operator()(const BlockKey& k) const noexcept {
    // key_hash and etag_hash are already well mixed; fold the block number in.
    return static_cast<std::size_t>(k.key_hash ^ (k.etag_hash * 0x9E3779B97F4A7C15ull) ^
                                    (k.block * 0xC2B2AE3D27D4EB4Full));
  }
};

class MemoryTier {
 public:
  explicit MemoryTier(std::uint64_t capacity_bytes) : capacity_(capacity_bytes), second_reads_(capacity_bytes / 2) {}
  MemoryTier(const MemoryTier&) = delete;
  MemoryTier& operator=(const MemoryTier&) = delete;

  BlockBytes get(const BlockKey& block_key);
  // Presence only: unlike get(), does not count as a use for eviction.
  bool contains(const BlockKey& block_key) const;
  // A block that was filled (or is replaced): kept, evicting others as needed.
  void put(const BlockKey& block_key, BlockBytes bytes);
  // A block just read from disk: kept if there is room, or if it was read from disk
  // recently (second_read_gate.hpp); true if it is in the tier afterwards (SIEVE may
  // still evict a newcomer at once when every older entry was visited). A kept block whose
  // read buffer is much larger than it (a 1 KiB block read into a 160 KiB pooled buffer, a
  // 200 KiB one into 1.125 MiB) is copied into a buffer of its size first, when a pool was
  // given: the tier counts buffers, so it would otherwise hold a few times fewer blocks.
  bool promote(const BlockKey& block_key, BlockBytes bytes);
  // Where promote() takes right-sized buffers from (the fill buffers' pool). Set once, at
  // start-up, before any promote(). Without it, blocks are kept in the buffer read into.
  void right_size_promotions_with(std::shared_ptr<BlockBufferPool> pool) { right_size_pool_ = std::move(pool); }
  // The smallest buffer such a copy gets: a tiny block charged its own few bytes would let
  // the tier's per-entry bookkeeping (a few hundred bytes) outweigh what it counts.
  static constexpr std::size_t kMinKeptBuffer = 4096;
  void erase(const BlockKey& block_key);

  std::uint64_t bytes() const;
  std::uint64_t capacity() const noexcept { return capacity_; }

  static BlockKey key(std::uint64_t key_hash, const std::string& etag, std::uint64_t block);

 private:
  struct Entry {
    BlockKey key;
    BlockBytes bytes;
    bool visited = false;
  };
  // The victim's bytes are moved out, to be released after the lock (a fill buffer goes
  // back to its pool then).
  BlockBytes evict_one_locked();
  // Under mu_; what it lets go of goes into `released`, to be dropped after the lock.
  void put_locked(const BlockKey& block_key, BlockBytes bytes, std::vector<BlockBytes>& released);

  std::uint64_t capacity_;
  mutable std::mutex mu_;
  std::list<Entry> queue_;  // front = newest
  std::unordered_map<BlockKey, std::list<Entry>::iterator, BlockKeyHash> map_;
  std::list<Entry>::iterator hand_ = queue_.end();
  // The footprint `block` would be kept at: a buffer of its size from the pool (at least
  // kMinKeptBuffer), if that saves a quarter or more of what it holds now; 0 if it stays.
  std::size_t right_size_for(const BlockData& block) const noexcept;
  // That copy; null if memory for it could not be had (the block then stays as it is).
  BlockBytes copied_at_size(const BlockData& block) const noexcept;

  std::uint64_t bytes_ = 0;
  SecondReadGate second_reads_;
  std::shared_ptr<BlockBufferPool> right_size_pool_;
};

}  // namespace tagd::cache
