#pragma once
// Eviction works on whole regions (log-structured, as in flash caches): the device sees
// large sequential writes and an evicted region's index entries simply become stale
// (their generation no longer matches). A policy only decides which sealed region to
// reuse next.
#include <cstdint>
#include <deque>
#include <memory>
#include <string_view>

namespace tagd::cache {

class EvictionPolicy {
 public:
  virtual ~EvictionPolicy() = default;
  // A region was filled and is now readable.
  virtual void on_sealed(std::uint32_t region) = 0;
  // A block in `region` was read (a hit). Called under the block store's lock, and only
  // if wants_hits(): a policy that ignores hits keeps reads lock-free.
  virtual void on_hit(std::uint32_t region) = 0;
  virtual bool wants_hits() const noexcept { return true; }
  // The region to reuse next. Only called when at least one region is sealed.
  virtual std::uint32_t pick_victim() = 0;
  virtual const char* name() const noexcept = 0;
};

// First in, first out over sealed regions: the lowest write amplification, and the
// reference behaviour of flash caches (CacheLib Navy).
std::unique_ptr<EvictionPolicy> make_fifo_eviction();

// "fifo" → FIFO. Unknown names return nullptr (config validation names the setting).
std::unique_ptr<EvictionPolicy> make_eviction_policy(std::string_view name);

}  // namespace tagd::cache
