#pragma once
// Blocks appended into fixed-size regions of a BlockDevice, located through the index.
//
// Invariants:
// - A block's bytes are on the device before its index entry exists, so the index never
//   points at bytes that were not written (a crash loses at most unindexed blocks).
// - Reusing a region first bumps and persists its generation; every index entry written
//   for the old generation is stale from then on and is never read as valid data.
// - Every read checks the block header (key hash, block number, ETag, header CRC) and the
//   payload CRC32C; a mismatch is reported as corruption, never returned as data.
// Capacity: exactly the device size; regions are device_size / region_size.
// Threading: one mutex around the write head and region table; reads of sealed regions
// only take it to check the generation.
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "tagd/cache/block_device.hpp"
#include "tagd/cache/block_format.hpp"
#include "tagd/cache/eviction.hpp"
#include "tagd/cache/index.hpp"

namespace tagd::cache {

struct BlockStoreOptions {
  std::uint64_t region_size = 16ull << 20;
  std::uint32_t max_block_payload = 1u << 20;  // the configured block size
};

struct BlockStoreStats {
  std::uint64_t blocks_written = 0;
  std::uint64_t bytes_written = 0;  // device bytes, headers and padding included
  std::uint64_t regions_evicted = 0;
  std::uint64_t corrupt_blocks = 0;
  std::uint64_t stale_lookups = 0;
};

enum class ReadOutcome { kHit, kMissing, kStale, kCorrupt };

class BlockStore {
 public:
  // Errors: kInvalidArgument (region smaller than one block, device smaller than two
  // regions), index errors.
  static Result<std::unique_ptr<BlockStore>> open(BlockDevice& device, CacheIndex& index,
                                                  std::unique_ptr<EvictionPolicy> eviction, BlockStoreOptions options);

  // Writes a block and indexes it. Errors: device write failures (disk full, I/O error):
  // the block is simply not cached.
  [[nodiscard]] Status put(const BlockIdentity& id, std::span<const std::byte> payload);

  // Reads a block into `out` (resized to the payload). kStale and kCorrupt entries are
  // erased from the index so the next request refetches.
  [[nodiscard]] ReadOutcome get(const BlockIdentity& id, std::vector<std::byte>& out);

  BlockStoreStats stats() const;
  std::uint32_t region_count() const noexcept { return static_cast<std::uint32_t>(generations_.size()); }
  std::uint64_t capacity_bytes() const noexcept { return std::uint64_t{region_count()} * options_.region_size; }

 private:
  BlockStore(BlockDevice& device, CacheIndex& index, std::unique_ptr<EvictionPolicy> eviction,
             BlockStoreOptions options);
  Status start_new_region_locked();

  BlockDevice& device_;
  CacheIndex& index_;
  std::unique_ptr<EvictionPolicy> eviction_;
  BlockStoreOptions options_;
  mutable std::mutex mu_;
  std::vector<std::uint64_t> generations_;
  std::uint64_t next_generation_ = 1;
  std::uint32_t active_region_ = 0;
  std::uint64_t active_offset_ = 0;  // within the active region
  BlockStoreStats stats_;
};

}  // namespace tagd::cache
