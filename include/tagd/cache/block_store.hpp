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
// - Every read checks what it returns: a whole-block read checks the block header (key
//   hash, block number, ETag, header and piece-table CRCs) and every piece's CRC32C; a
//   partial read checks the pieces it read against the index's piece CRCs, and both check
//   after the read that the region was not recycled meanwhile. A mismatch is reported as
//   corruption, never returned as data.
// Capacity: exactly the device size; regions are device_size / region_size.
// Threading: put() takes one mutex around the write head and region table (fills are
// serialised there). Reads take no lock: region generations are atomics, reads are
// asynchronous device reads on the caller's loop, and the eviction policy is told of a
// hit only if it asks to be (wants_hits()).
#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "tagd/cache/block_device.hpp"
#include "tagd/cache/block_format.hpp"
#include "tagd/cache/eviction.hpp"
#include "tagd/cache/index.hpp"
#include "tagd/cache/memory_tier.hpp"

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

struct BlockRead {
  ReadOutcome outcome = ReadOutcome::kMissing;
  BlockBytes bytes;         // set on kHit: the bytes asked for (or more, see `first`)
  std::uint32_t first = 0;  // the offset within the block of bytes->data()[0]
  bool whole_block = false;  // bytes are the whole block (from read() or the DRAM tier)
  bool from_memory = false;  // bytes came from the DRAM tier, not the device (tagd_served_bytes_total)
};

class BlockStore {
 public:
  // Errors: kInvalidArgument (region smaller than one block, device smaller than two
  // regions), index errors.
  static Result<std::unique_ptr<BlockStore>> open(BlockDevice& device, CacheIndex& index,
                                                  std::unique_ptr<EvictionPolicy> eviction, BlockStoreOptions options);

  // Writes a block and indexes it (synchronously: fills call it off the hit path).
  // Errors: device write failures (disk full, I/O error): the block is simply not cached.
  [[nodiscard]] Status put(const BlockIdentity& id, std::span<const std::byte> payload);

  // Reads a whole block. kStale and kCorrupt entries are erased from the index so the
  // next request refetches.
  [[nodiscard]] boost::asio::awaitable<BlockRead> read(const BlockIdentity& id);
  // Reads payload bytes [offset, offset + length) of a block: only the 64 KiB pieces that
  // hold them. `length` > 0; a range beyond the stored block is kCorrupt (the caller's
  // metadata and the index disagree).
  [[nodiscard]] boost::asio::awaitable<BlockRead> read_range(const BlockIdentity& id, std::uint32_t offset,
                                                             std::uint32_t length);

  // Presence only (an index lookup; no device read).
  [[nodiscard]] bool contains(const BlockIdentity& id);

BlockStoreStats stats() const;
  std::uint32_t region_count() const noexcept { return region_count_; }
  std::uint64_t capacity_bytes() const noexcept { return std::uint64_t{region_count()} * options_.region_size; }

 private:
  BlockStore(BlockDevice& device, CacheIndex& index, std::unique_ptr<EvictionPolicy> eviction,
             BlockStoreOptions options);
  Status start_new_region_locked();
  bool current(const BlockLocation& location) const;
  BlockRead drop(const BlockIdentity& id, ReadOutcome why);
  void count_hit(const BlockLocation& location);

  BlockDevice& device_;
  CacheIndex& index_;
  std::unique_ptr<EvictionPolicy> eviction_;
  BlockStoreOptions options_;
  mutable std::mutex mu_;
  // Written under mu_, read without it (a read re-checks after its I/O).
  std::unique_ptr<std::atomic<std::uint64_t>[]> generations_;
  std::uint32_t region_count_ = 0;
  std::uint64_t next_generation_ = 1;
  std::uint32_t active_region_ = 0;
  std::uint64_t active_offset_ = 0;  // within the active region
  BlockStoreStats stats_;  // under mu_, except the atomics below
  std::atomic<std::uint64_t> corrupt_blocks_{0};
  std::atomic<std::uint64_t> stale_lookups_{0};
};

}  // namespace tagd::cache
