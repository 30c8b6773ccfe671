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
// Pins (warm --pin, docs/warm.md): a pinned block keeps its region from being evicted.
// - Each region counts its pinned blocks (plus one while it is the pin write head); a
//   region with a count is never a victim (EvictionPolicy::on_pinned). Counts live in
//   memory beside the generations and are rebuilt at start-up from the index's pin
//   records (ObjectCache), so they cannot disagree with what is persisted.
// - Blocks written with `pin` go to a second write head, so pinned data packs into regions
//   of its own and the quota (whole regions: cache.pin_quota / region size, at most all
//   regions but two, so one region can always be evicted) is not spent on neighbours.
// - Beyond the quota a pin is refused (kQuotaExceeded), never paid for by another pin.
// - An until-read pin is released by the first read of its block after it was armed.
// Threading: put() takes one mutex around the write head and region table (fills are
// serialised there). Reads take no lock: region generations are atomics, reads are
// asynchronous device reads on the caller's loop, and the eviction policy is told of a
// hit only if it asks to be (wants_hits()).
#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
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
  // Bytes of whole regions pins may hold (0: pinning refused). Capped at all regions but
  // two: the normal write head and one evictable region always remain.
  std::uint64_t pin_quota = 0;
};

enum class PinResult {
  kPinned,         // newly pinned in place
  kConfirmed,      // pinned when written (put(pin)); now held or until-read
  kAlreadyPinned,  // held or until-read before (by another pin)
  kQuotaExceeded,  // the block's region is not pinned yet and the quota is spent
  kMissing,        // the block is not cached (never was, or its region was reused)
};

struct BlockStoreStats {
  std::uint64_t blocks_written = 0;
  std::uint64_t bytes_written = 0;  // device bytes, headers and padding included
  std::uint64_t regions_evicted = 0;
  std::uint64_t corrupt_blocks = 0;
  std::uint64_t stale_lookups = 0;
  std::uint64_t pinned_blocks = 0;
  std::uint32_t pinned_regions = 0;  // the pin write head included
  std::uint32_t pin_quota_regions = 0;
  std::uint64_t blocked_writes = 0;  // writes refused: every sealed region pinned
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

  // Writes a block and indexes it (synchronously: fills call it off the hit path). `pin`:
  // the block is written to the pin head and pinned (held, not armed) if the quota allows;
  // a block that was pinned stays pinned when written again.
  // Errors: device write failures (disk full, I/O error), and kSlowDown when every sealed
  // region is pinned (tagd_cache_pin_blocked_writes_total): the block is simply not cached.
  [[nodiscard]] Status put(const BlockIdentity& id, std::span<const std::byte> payload, bool pin = false);

  // Pins a cached block where it is (already pinned: only the mode changes; a held pin
  // is never weakened to until-read). `until_read`: released by the next read.
  [[nodiscard]] PinResult pin(const BlockIdentity& id, bool until_read);
  // Releases a block's pin (no-op if it has none). `only_unarmed`: only a pin taken by
  // put(pin) that pin() has not confirmed yet (a warm fill that failed half-way).
  void unpin(const BlockIdentity& id, bool only_unarmed = false);
  // A client read the block: releases an armed until-read pin (true if it did). One
  // relaxed load when no until-read pin exists.
  bool note_read(const BlockIdentity& id);
  bool has_until_read_pins() const noexcept { return until_read_pins_.load(std::memory_order_relaxed) != 0; }
  // Releases the pins put(pin) took for blocks of `key_hash` that pin() did not confirm (a
  // warm fill that failed or changed ETag half-way). Scans the pinned blocks.
  void unpin_unconfirmed(std::uint64_t key_hash);
  bool pinned(const BlockIdentity& id) const;
  std::uint64_t pinned_bytes() const;       // whole regions, the pin head included
  std::uint64_t pin_quota_bytes() const noexcept { return std::uint64_t{pin_quota_regions_} * options_.region_size; }

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
  // A write head: the normal one, or the one pinned blocks go to.
  struct Head {
    std::uint32_t region = UINT32_MAX;
    std::uint64_t offset = 0;  // within the region
    bool sealed = true;        // no region yet, or told to the policy as sealed
  };
  // kFilled: pinned by put(pin), not yet confirmed by pin(); note_read leaves it alone, so
  // the warm job reading its own fill does not release it.
  enum class PinMode : std::uint8_t { kFilled, kHeld, kUntilRead };
  struct PinnedBlock {
    std::uint32_t region = 0;
    PinMode mode = PinMode::kFilled;
  };
  Status start_new_region_locked(std::uint32_t& region);
  Status advance_head_locked(Head& head, bool pin_head);
  void add_pin_locked(std::uint32_t region);
  void drop_pin_locked(std::uint32_t region);
  bool can_pin_locked(std::uint32_t region) const;
  void publish_pin_metrics_locked();
  using PinMap = std::unordered_map<BlockKey, PinnedBlock, BlockKeyHash>;
  void insert_pin_locked(const BlockKey& key, std::uint32_t region, PinMode mode);
  void set_mode_locked(PinnedBlock& pinned, const BlockKey& key, PinMode mode);
  void forget_unconfirmed_locked(const BlockKey& key);
  void release_locked(PinMap::iterator it);
  void release_unpinned_locked(PinMap::iterator it);
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
  Head head_;      // unpinned blocks
  Head pin_head_;  // pinned blocks (no region until the first one)
  // Pins, under mu_: per-region counts, the pinned blocks, how many regions have a count.
  std::vector<std::uint32_t> pins_;
  std::unordered_map<BlockKey, PinnedBlock, BlockKeyHash> pinned_;
  // kFilled pins by object (key hash), so a failed warm fill releases its own quickly.
  std::unordered_map<std::uint64_t, std::vector<BlockKey>> unconfirmed_;
  std::uint32_t pinned_regions_ = 0;
  std::uint32_t pin_quota_regions_ = 0;
  std::atomic<std::uint64_t> until_read_pins_{0};  // note_read's fast path
  BlockStoreStats stats_;  // under mu_, except the atomics below
  std::atomic<std::uint64_t> corrupt_blocks_{0};
  std::atomic<std::uint64_t> stale_lookups_{0};
};

}  // namespace tagd::cache
