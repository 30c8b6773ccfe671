// Hit-gated region eviction (issue 10, "scan resistance"); the rules are in eviction.hpp.
//
// Why a gate rather than only a better victim: in an epoch over a dataset larger than the
// cache every fill must displace something, and whatever it displaces the epoch reads
// again, while the object filled was just read and is not needed until the next epoch.
// Any policy that admits every miss churns (bench/eviction_sim.py, 6,000 objects cached:
// FIFO 0.41-0.43 of epochs 2-4 hit, LRU of regions 0.60-0.63, this policy 0.65, a cache
// frozen once full 0.65-0.66; tagd itself, bench scenario evict: FIFO 0.39, this 0.66).
// Declining the fill keeps a stable part of the dataset, as CoorDL's MinIO does; the
// cold and dead rules are what make it let go when the workload changes.
//
// Threading: on_hit runs on every event loop (lock-free once attached: per-region atomic
// counts; the halving every 32 x regions ticks takes mu_); everything else takes mu_,
// briefly. The store calls attach, on_written, on_sealed and pick_victim under its own
// lock (store lock, then mu_, never the other way); the read path's admit_new_object
// evaluates the gate only if mu_ is free (try_lock).
#include <algorithm>
#include <atomic>
#include <cassert>
#include <memory>
#include <mutex>

#include <spdlog/spdlog.h>

#include "tagd/cache/eviction.hpp"
#include "tagd/core/metrics.hpp"

namespace tagd::cache {
namespace {

constexpr std::uint32_t kNone = UINT32_MAX;

class HitGatedRegions final : public FillGate {
 public:
  explicit HitGatedRegions(HitGatedOptions options) : options_(options) {
    options_.protect_divisor = std::max<std::uint32_t>(1, options_.protect_divisor);
    options_.decay_per_region = std::max<std::uint32_t>(1, options_.decay_per_region);
  }

  void attach(std::uint32_t region_count) {
    std::lock_guard lock(mu_);
    grow_locked(region_count);
    region_count_ = region_count;
    attached_.store(true, std::memory_order_release);
    update_periods_locked();
  }

  bool attached() const noexcept { return attached_.load(std::memory_order_acquire); }

  void on_written(std::uint32_t region) {
    std::lock_guard lock(mu_);
    if (!grow_locked(region + 1)) return;
    ++regions_[region].blocks;
  }

  void on_sealed(std::uint32_t region) {
    std::lock_guard lock(mu_);
    if (!grow_locked(region + 1)) return;
    Region& r = regions_[region];
    if (r.sealed) return;
    r.sealed = true;
    r.seq = next_seq_++;
    r.last.store(now_.load(std::memory_order_relaxed), std::memory_order_relaxed);
    ++sealed_count_;
    sealed_blocks_ += r.blocks;
    if (r.blocks > 0) ++known_regions_;
    if (!attached()) update_periods_locked();
    evaluate_locked();
  }

  void on_hit(std::uint32_t region) {
    const std::uint64_t now = tick();
    if (!attached()) {
      // Before attach the array may still grow: count under mu_.
      std::lock_guard lock(mu_);
      if (grow_locked(region + 1)) count_hit(region, now);
      return;
    }
    // After attach the array is fixed (written before attached_ was released).
    if (region < capacity_) count_hit(region, now);
  }

  // Pinned regions are out of the running (dead, coldest and the gate's mean alike): they
  // stay whatever their hits, and the gate judges the rest of the cache.
  void on_pinned(std::uint32_t region, bool pinned) {
    std::lock_guard lock(mu_);
    if (!grow_locked(region + 1)) return;
    regions_[region].pinned = pinned;
    evaluate_locked();
  }

  std::uint32_t pick_victim() {
    std::lock_guard lock(mu_);
    std::uint32_t victim = dead_locked();
    if (victim != kNone) {
      metrics().cache_regions_evicted_dead.inc();
    } else {
      victim = coldest_locked();
    }
    if (victim == kNone) return kNoVictim;  // every sealed region is pinned
    Region& r = regions_[victim];
    r.sealed = false;
    r.seq = 0;
    r.hits.store(0, std::memory_order_relaxed);
    --sealed_count_;
    sealed_blocks_ -= r.blocks;
    if (r.blocks > 0) --known_regions_;
    r.blocks = 0;
    evaluate_locked();
    return victim;
  }

  bool admit_new_object() override {
    const std::uint64_t now = tick();
    // Evaluating scans every region; between evaluations the last answer stands (it is
    // also refreshed on every seal and victim), and a loop that finds another one
    // evaluating does not wait for it.
    if (now - evaluated_at_.load(std::memory_order_relaxed) >= evaluate_every_.load(std::memory_order_relaxed)) {
      std::unique_lock lock(mu_, std::try_to_lock);
      if (lock.owns_lock()) evaluate_locked();
    }
    const bool open = gate_open_.load(std::memory_order_relaxed);
    if (!open) metrics().cache_fills_declined.inc();
    return open;
  }

 private:
  struct Region {
    std::atomic<std::uint32_t> hits{0};  // decayed count of block hits
    std::atomic<std::uint64_t> last{0};  // tick of the last hit, or of the seal
    std::uint64_t seq = 0;               // seal order; 0 while not sealed
    std::uint64_t blocks = 0;            // blocks written since the region was last reused
    bool sealed = false;
    bool pinned = false;  // never a victim (block_store.hpp, pins)
  };

  void count_hit(std::uint32_t region, std::uint64_t now) {
    regions_[region].hits.fetch_add(1, std::memory_order_relaxed);
    regions_[region].last.store(now, std::memory_order_relaxed);
  }

  // Under mu_: how many regions there are (the count once attached, else the ones seen).
  std::uint32_t known_count() const noexcept {
    return region_count_ != 0 ? region_count_ : static_cast<std::uint32_t>(sealed_count_ + 1);
  }

  // Before attach, regions are learnt as they come; after it, a region beyond the count
  // is a caller's bug and is ignored rather than written out of bounds.
  bool grow_locked(std::uint32_t needed) {
    if (needed <= capacity_) return true;
    if (attached()) return false;
    const std::uint32_t capacity = std::max(needed, capacity_ * 2);
    auto grown = std::make_unique<Region[]>(capacity);
    for (std::uint32_t i = 0; i < capacity_; ++i) {
      grown[i].hits.store(regions_[i].hits.load(std::memory_order_relaxed), std::memory_order_relaxed);
      grown[i].last.store(regions_[i].last.load(std::memory_order_relaxed), std::memory_order_relaxed);
      grown[i].seq = regions_[i].seq;
      grown[i].blocks = regions_[i].blocks;
      grown[i].sealed = regions_[i].sealed;
      grown[i].pinned = regions_[i].pinned;
    }
    regions_ = std::move(grown);
    capacity_ = capacity;
    return true;
  }

  void update_periods_locked() {
    decay_every_.store(std::uint64_t{options_.decay_per_region} * known_count(), std::memory_order_relaxed);
    evaluate_every_.store(std::max<std::uint64_t>(1, known_count() / 8), std::memory_order_relaxed);
  }

  std::uint64_t tick() {
    const std::uint64_t now = now_.fetch_add(1, std::memory_order_relaxed) + 1;
    if (since_decay_.fetch_add(1, std::memory_order_relaxed) + 1 >= decay_every_.load(std::memory_order_relaxed)) {
      decay();
    }
    return now;
  }

  // Halving keeps the counts a measure of recent use. Increments racing the halving may
  // be lost; the counts are estimates and a lost hit is noise next to the rule's margins.
  void decay() {
    std::lock_guard lock(mu_);
    if (since_decay_.load(std::memory_order_relaxed) < decay_every_.load(std::memory_order_relaxed)) {
      return;  // another thread did it
    }
    since_decay_.store(0, std::memory_order_relaxed);
    for (std::uint32_t i = 0; i < capacity_; ++i) {
      regions_[i].hits.store(regions_[i].hits.load(std::memory_order_relaxed) / 2, std::memory_order_relaxed);
    }
  }

  // The dead horizon is in ticks, so that it scales with how many blocks the cache holds:
  // a loop over up to dead_factor x the cache comes back to a region before it is dead,
  // and data nobody reads any more (a finished job) gives way after that many reads.
  // (A longer horizon for regions read since their seal helped epochs over 3x the cache
  // with only 5 objects a region, but kept a finished job's data for 8x the cache:
  // bench/eviction_sim.py, hit-gated/read-dead-8.) Regions sealed again after a restart
  // have no block count; they are assumed to hold as many as the regions written since.
  // Without any count the rule is off.
  std::uint32_t dead_locked() const {
    if (known_regions_ == 0) return kNone;
    const std::uint64_t horizon = options_.dead_factor * (sealed_blocks_ * sealed_count_ / known_regions_);
    const std::uint64_t now = now_.load(std::memory_order_relaxed);
    std::uint32_t oldest = kNone;
    std::uint64_t oldest_last = 0;
    for (std::uint32_t i = 0; i < capacity_; ++i) {
      if (!regions_[i].sealed || regions_[i].pinned) continue;
      const std::uint64_t last = std::min(now, regions_[i].last.load(std::memory_order_relaxed));
      if (now - last > horizon && (oldest == kNone || last < oldest_last)) {
        oldest = i;
        oldest_last = last;
      }
    }
    return oldest;
  }

  // Fewest hits among the regions old enough to have had a chance to be read; ties go to
  // the newest, so unread data churns in the newest regions and the rest stays.
  std::uint32_t coldest_locked() const {
    const std::uint64_t protect = std::max<std::uint64_t>(1, known_count() / options_.protect_divisor);
    const std::uint64_t cutoff = next_seq_ > protect ? next_seq_ - protect : 0;
    std::uint32_t best = kNone;
    for (int pass = 0; pass < 2 && best == kNone; ++pass) {
      for (std::uint32_t i = 0; i < capacity_; ++i) {
        const Region& r = regions_[i];
        if (!r.sealed || r.pinned || (pass == 0 && r.seq >= cutoff)) continue;
        if (best == kNone) {
          best = i;
          continue;
        }
        const std::uint32_t h = r.hits.load(std::memory_order_relaxed);
        const std::uint32_t bh = regions_[best].hits.load(std::memory_order_relaxed);
        if (h < bh || (h == bh && r.seq > regions_[best].seq)) best = i;
      }
    }
    return best;
  }

  void evaluate_locked() {
    evaluated_at_.store(now_.load(std::memory_order_relaxed), std::memory_order_relaxed);
    bool open = true;
    // A pinned region that is not sealed is the store's second write head (pinned fills):
    // it takes a region as the active one does, so the cache is full one region earlier.
    std::uint64_t pinned_heads = 0;
    for (std::uint32_t i = 0; i < capacity_; ++i) pinned_heads += regions_[i].pinned && !regions_[i].sealed;
    // Without the region count the cache cannot tell it is full: admit, as FIFO does.
    if (attached() && sealed_count_ + 1 + pinned_heads >= region_count_ && dead_locked() == kNone) {
      const std::uint32_t coldest = coldest_locked();
      std::uint64_t sum = 0, evictable = 0;
      for (std::uint32_t i = 0; i < capacity_; ++i) {
        if (regions_[i].sealed && !regions_[i].pinned) {
          sum += regions_[i].hits.load(std::memory_order_relaxed);
          ++evictable;
        }
      }
      // Nothing evictable (every sealed region pinned): a new object could not be stored.
      open = coldest != kNone &&
             regions_[coldest].hits.load(std::memory_order_relaxed) * options_.cold_divisor * evictable <= sum;
    }
    if (open != gate_open_.load(std::memory_order_relaxed)) {
      gate_open_.store(open, std::memory_order_relaxed);
      if (!open && !logged_closed_) {
        logged_closed_ = true;
        spdlog::info(
            "cache: every region holds data that is still being read; new objects are served without caching "
            "until a region goes cold (cache.eviction_policy=hit-gated, tagd_cache_fills_declined_total)");
      } else {
        spdlog::debug("cache: hit-gated fill gate {}", open ? "open" : "closed");
      }
    }
  }

  HitGatedOptions options_;
  std::mutex mu_;
  std::atomic<bool> attached_{false};
  std::unique_ptr<Region[]> regions_;
  std::uint32_t capacity_ = 0;
  std::uint32_t region_count_ = 0;  // 0 until attach
  std::uint64_t next_seq_ = 1;
  std::uint64_t sealed_count_ = 0;
  std::uint64_t sealed_blocks_ = 0;
  std::uint64_t known_regions_ = 0;  // sealed regions whose block count is known
  bool logged_closed_ = false;
  std::atomic<std::uint64_t> now_{0};
  std::atomic<std::uint64_t> since_decay_{0};
  std::atomic<std::uint64_t> evaluated_at_{0};
  std::atomic<std::uint64_t> decay_every_{32};
  std::atomic<std::uint64_t> evaluate_every_{1};
  std::atomic<bool> gate_open_{true};
};

class HitGatedEviction final : public EvictionPolicy {
 public:
  explicit HitGatedEviction(std::shared_ptr<HitGatedRegions> regions) : regions_(std::move(regions)) {}
  void attach(std::uint32_t region_count) override { regions_->attach(region_count); }
  void on_written(std::uint32_t region) override { regions_->on_written(region); }
  void on_sealed(std::uint32_t region) override { regions_->on_sealed(region); }
  void on_pinned(std::uint32_t region, bool pinned) override { regions_->on_pinned(region, pinned); }
  void on_hit(std::uint32_t region) override { regions_->on_hit(region); }
  bool hits_need_store_lock() const noexcept override { return !regions_->attached(); }
  std::uint32_t pick_victim() override { return regions_->pick_victim(); }
  const char* name() const noexcept override { return "hit-gated"; }

 private:
  std::shared_ptr<HitGatedRegions> regions_;
};

}  // namespace

HitGatedPolicy make_hit_gated_eviction(HitGatedOptions options) {
  auto regions = std::make_shared<HitGatedRegions>(options);
  return HitGatedPolicy{std::make_unique<HitGatedEviction>(regions), regions};
}

}  // namespace tagd::cache
