#pragma once
// Eviction works on whole regions (log-structured, as in flash caches): the device sees
// large sequential writes and an evicted region's index entries simply become stale
// (their generation no longer matches). A policy only decides which sealed region to
// reuse next.
#include <cstdint>
#include <deque>
#include <memory>
#include <string_view>

#include "tagd/cache/admission.hpp"

namespace tagd::cache {

// pick_victim's answer when every sealed region is pinned (nothing may be evicted).
inline constexpr std::uint32_t kNoVictim = UINT32_MAX;

class EvictionPolicy {
 public:
  virtual ~EvictionPolicy() = default;
  // Called once by the store before any other call: how many regions it has. A policy
  // that needs the count (to know when the cache is full) works without it, degraded as
  // its own comment says.
  virtual void attach(std::uint32_t /*region_count*/) {}
  // A block was appended to `region` (the active one), under the store's lock: lets a
  // policy know how much a region holds without asking the index.
  virtual void on_written(std::uint32_t /*region*/) {}
  // A region was filled and is now readable.
  virtual void on_sealed(std::uint32_t region) = 0;
  // A block in `region` was read (a hit). Called only if wants_hits(): a policy that
  // ignores hits keeps reads lock-free. Under the block store's lock unless
  // hits_need_store_lock() is false (the policy then synchronises its hit counts itself).
  virtual void on_hit(std::uint32_t region) = 0;
  virtual bool wants_hits() const noexcept { return true; }
  virtual bool hits_need_store_lock() const noexcept { return true; }
  // Pinned regions (warm --pin, block_store.hpp) are never victims: the store says when a
  // region becomes pinned or unpinned, under its lock. Pure virtual so that no policy can
  // forget to honour pins.
  virtual void on_pinned(std::uint32_t region, bool pinned) = 0;
  // The region to reuse next, among sealed regions that are not pinned; kNoVictim when
  // there is none (every sealed region pinned: the store refuses the write).
  virtual std::uint32_t pick_victim() = 0;
  virtual const char* name() const noexcept = 0;
};

// First in, first out over sealed regions: the lowest write amplification, and the
// reference behaviour of flash caches (CacheLib Navy).
std::unique_ptr<EvictionPolicy> make_fifo_eviction();

// Scan resistance for shuffled epochs over a dataset larger than the cache (issue 10).
// Each region counts its block hits (halved every 32 ticks per region: a tick is a hit or
// a miss, so the counts follow recent use) and remembers its last hit.
// - A region not hit for `dead_factor` x (blocks cached) ticks is dead: nothing read it
//   for longer than a loop over that multiple of the cache takes to come round.
// - Victim: the oldest dead region; else the fewest hits among regions not sealed in the
//   last region_count/8 seals, ties to the most recently sealed, so regions nobody reads
//   churn among themselves while older, re-read ones stay (MRU-like for loops).
// - Gate (the FillGate): a new object is admitted while a region is free, dead or cold
//   (hits <= mean / 4). When every region is being read, as in an epoch over a dataset
//   larger than the cache, a fill could only displace an object that the epoch will
//   read again, so it is declined and the cache keeps a stable part of the dataset.
// Measured in bench/eviction_sim.py (table in src/cache/README.md).
struct HitGatedOptions {
  std::uint32_t protect_divisor = 8;    // the newest region_count / 8 sealed regions are never victims
  std::uint32_t cold_divisor = 4;       // cold: hits * 4 <= mean hits
  std::uint32_t decay_per_region = 32;  // halve all counts every 32 x region_count ticks
  std::uint32_t dead_factor = 2;        // dead: not read for 2 x blocks-cached ticks
};
struct HitGatedPolicy {
  std::unique_ptr<EvictionPolicy> eviction;  // handed to the block store
  std::shared_ptr<FillGate> gate;            // handed to make_gated_admission
};
HitGatedPolicy make_hit_gated_eviction(HitGatedOptions options = {});

// "fifo" → FIFO. Unknown names return nullptr (config validation names the setting).
// "hit-gated" also returns nullptr here: without its gate it would silently be a different
// policy; make_cache_policies (policies.hpp) builds it with the gate.
std::unique_ptr<EvictionPolicy> make_eviction_policy(std::string_view name);

}  // namespace tagd::cache
