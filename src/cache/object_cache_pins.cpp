// ObjectCache's pins: objects a warm job pinned (held until unpinned, persisted in the
// index) or ran ahead of its readers with (until read). The block store counts pins per
// region and keeps pinned regions from eviction; this file maps objects to their blocks.
#include <spdlog/spdlog.h>

#include <atomic>

#include "tagd/cache/object_cache.hpp"
#include "tagd/core/metrics.hpp"

namespace tagd::cache {

namespace {
std::uint64_t block_count(std::uint64_t size, std::uint32_t block_size) {
  return block_size == 0 ? 0 : (size + block_size - 1) / block_size;
}
}  // namespace

const char* pin_outcome_name(PinOutcome outcome) {
  switch (outcome) {
    case PinOutcome::kPinned: return "pinned";
    case PinOutcome::kQuotaExceeded: return "QuotaExceeded";
    case PinOutcome::kNotCached: return "NotCached";
    case PinOutcome::kDisabled: return "PinningDisabled";
  }
  return "unknown";
}

ObjectCache::~ObjectCache() = default;

void ObjectCache::restore_pins() {
  auto records = index_->pins("", "");
  if (!records) {
    spdlog::warn("cache: pins not restored: {}", records.error().message());
    return;
  }
  std::uint64_t restored = 0, dropped = 0;
  for (const auto& [key, record] : records.value()) {
    const std::uint64_t kh = key.hash();
    const std::uint64_t blocks = block_count(record.size, record.block_size);
    bool whole = pinning_enabled();
    std::uint64_t done = 0;
    for (; whole && done < blocks; ++done) {
      const PinResult r = store_->pin(BlockIdentity{kh, done, record.etag}, false);
      whole = r != PinResult::kMissing && r != PinResult::kQuotaExceeded;
    }
    if (whole) {
      ++restored;
      continue;
    }
    // Evicted before pins existed for it, lost in a crash, or over a quota lowered since:
    // the record goes, with whatever of it was pinned again.
    for (std::uint64_t b = 0; b < done; ++b) store_->unpin(BlockIdentity{kh, b, record.etag});
    (void)index_->erase_pin(key);
    ++dropped;
  }
  pinned_objects_.store(restored, std::memory_order_relaxed);
  if (restored > 0 || dropped > 0) {
    spdlog::info("cache: {} pinned objects restored ({} bytes of regions pinned)", restored, store_->pinned_bytes());
  }
  if (dropped > 0) {
    spdlog::warn("cache: {} pinned objects dropped at start-up (their blocks were gone, or cache.pin_quota is "
                 "smaller than what was pinned); warm them with --pin again",
                 dropped);
  }
}

void ObjectCache::begin_pin(const ObjectKey& key) {
  std::lock_guard lock(pin_mu_);
  ++pinning_[key.hash()];
  pinning_count_.fetch_add(1, std::memory_order_relaxed);
}

void ObjectCache::end_pin(const ObjectKey& key) {
  const std::uint64_t kh = key.hash();
  {
    std::lock_guard lock(pin_mu_);
    auto it = pinning_.find(kh);
    if (it == pinning_.end()) return;
    pinning_count_.fetch_sub(1, std::memory_order_relaxed);
    if (--it->second > 0) return;  // another job still fills it
    pinning_.erase(it);
  }
  store_->unpin_unconfirmed(kh);
}

bool ObjectCache::pinning(std::uint64_t key_hash) {
  if (pinning_count_.load(std::memory_order_relaxed) == 0) return false;
  std::lock_guard lock(pin_mu_);
  return pinning_.contains(key_hash);
}

PinOutcome ObjectCache::pin_object(const ObjectKey& key, bool until_read) {
  if (!pinning_enabled()) return PinOutcome::kDisabled;
  auto meta = lookup(key);
  if (!meta) return PinOutcome::kNotCached;
  const std::uint64_t kh = key.hash();
  const std::uint64_t blocks = block_count(meta->size, meta->block_size);
  // Blocks this call pinned or confirmed: given back if the object cannot be pinned whole
  // (half an object pinned would hold quota and still miss).
  std::vector<std::uint64_t> taken;
  PinOutcome outcome = PinOutcome::kPinned;
  for (std::uint64_t b = 0; b < blocks; ++b) {
    const PinResult r = store_->pin(BlockIdentity{kh, b, meta->etag}, until_read);
    if (r == PinResult::kPinned || r == PinResult::kConfirmed) taken.push_back(b);
    if (r == PinResult::kMissing) outcome = PinOutcome::kNotCached;
    if (r == PinResult::kQuotaExceeded) outcome = PinOutcome::kQuotaExceeded;
    if (outcome != PinOutcome::kPinned) break;
  }
  if (outcome != PinOutcome::kPinned) {
    for (std::uint64_t b : taken) store_->unpin(BlockIdentity{kh, b, meta->etag});
    if (outcome == PinOutcome::kQuotaExceeded) metrics().cache_pins_refused.inc();
    return outcome;
  }
  if (!until_read) {
    if (Status s = index_->put_pin(key, PinRecord{meta->etag, meta->size, meta->block_size}); !s) {
      // Pinned for this run only: say so rather than fail the object.
      spdlog::warn("cache: pin of {} not persisted ({}); it will not survive a restart", key.key, s.message());
    } else {
      pinned_objects_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  return PinOutcome::kPinned;
}

Result<UnpinSummary> ObjectCache::unpin(const std::string& bucket, const std::string& prefix) {
  auto records = index_->pins(bucket, prefix);
  if (!records) return records.error();
  UnpinSummary summary;
  for (const auto& [key, record] : records.value()) {
    const std::uint64_t kh = key.hash();
    for (std::uint64_t b = 0; b < block_count(record.size, record.block_size); ++b) {
      store_->unpin(BlockIdentity{kh, b, record.etag});
    }
    if (Status s = index_->erase_pin(key); !s) return s;
    pinned_objects_.fetch_sub(1, std::memory_order_relaxed);
    ++summary.objects;
    summary.bytes += record.size;
  }
  return summary;
}

void ObjectCache::release_pins_of(const std::string& bucket, const std::string& key) {
  auto records = index_->pins(bucket, key);
  if (!records) return;
  for (const auto& [k, record] : records.value()) {
    if (k.key != key) continue;  // a longer key sharing the prefix
    const std::uint64_t kh = k.hash();
    for (std::uint64_t b = 0; b < block_count(record.size, record.block_size); ++b) {
      store_->unpin(BlockIdentity{kh, b, record.etag});
    }
    if (index_->erase_pin(k).is_ok()) pinned_objects_.fetch_sub(1, std::memory_order_relaxed);
    spdlog::info("cache: pin of {}/{} released: the object was written through tagd", bucket, key);
  }
}

void ObjectCache::release_until_read(const ObjectKey& key) {
  if (!store_->has_until_read_pins()) return;
  auto meta = lookup(key);
  if (!meta) return;
  const std::uint64_t kh = key.hash();
  for (std::uint64_t b = 0; b < block_count(meta->size, meta->block_size); ++b) {
    store_->note_read(BlockIdentity{kh, b, meta->etag});
  }
}

Result<std::vector<std::pair<ObjectKey, PinRecord>>> ObjectCache::pins(const std::string& bucket,
                                                                       const std::string& prefix) {
  return index_->pins(bucket, prefix);
}

void ObjectCache::note_read(std::uint64_t key_hash, const std::string& etag, std::uint64_t block) {
  if (!store_->has_until_read_pins()) return;
  store_->note_read(BlockIdentity{key_hash, block, etag});
}

}  // namespace tagd::cache
