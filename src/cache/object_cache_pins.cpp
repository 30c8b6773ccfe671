// ObjectCache's pins (docs/warm.md, "Pins"). The block store counts pins per region and
// keeps pinned regions from eviction; this file decides which objects are pinned and by
// whom, and maps them to their blocks.
//
// An object's pin has owners: the pinned prefixes covering its key (records of their own,
// so objects filled under a prefix later are pinned too), its key (a key-list --pin job,
// and every record written before owners existed), and key-list jobs running ahead of
// their readers (until each block is read). It is held while its key or a prefix holds
// it, armed until read while only a run ahead does, and released when no owner is left.
// Every owner is in the object's `p` record (PinRecord::flags; prefixes are computed from
// the prefix records), so what survives a restart is exactly what was pinned.
//
// Locks: mu_ (publish) before pin_mu_ before the block store's; index writes of pin
// records happen under pin_mu_, so the index and pinned_ never disagree for long.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "tagd/cache/object_cache.hpp"
#include "tagd/core/logging.hpp"
#include "tagd/core/metrics.hpp"
#include "tagd/core/strings.hpp"

namespace tagd::cache {

namespace {
std::uint64_t block_count(std::uint64_t size, std::uint32_t block_size) {
  return block_size == 0 ? 0 : (size + block_size - 1) / block_size;
}

ObjectKey prefix_record_key(const std::string& bucket, const std::string& prefix) {
  return ObjectKey{bucket, prefix, std::string(kPinPrefixVariant)};
}

bool is_prefix_record(const ObjectKey& key, const PinRecord& record) {
  return (record.flags & kPinPrefixRecord) != 0 && key.variant == kPinPrefixVariant;
}

bool held_by_key(const PinRecord& record) {
  return (record.flags & kPinNotByKey) == 0;
}

std::int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
logging::WarnThrottle refused_warning{std::chrono::seconds(10)};
logging::WarnThrottle record_warning{std::chrono::seconds(10)};

// A pin record the index could not write or erase. The callers keep pinned_ equal to what
// the index holds where they can (a pin not recorded is not taken, and the caller is told);
// where they cannot (an erase that failed), a restart may restore a pin released since.
Status note_record_failure(Status s, std::string_view what, const ObjectKey& key) {
  if (s) return s;
  metrics().cache_pin_records_failed.inc();
  if (record_warning.allow(steady_ms())) {
    spdlog::warn("cache: pin record of {}/{} not {} ({}) (tagd_cache_pin_record_failures_total)", log_field(key.bucket),
                 log_field(key.key), what, s.message());
  }
  return s;
}
}  // namespace

const char* pin_outcome_name(PinOutcome outcome) {
  switch (outcome) {
    case PinOutcome::kPinned: return "pinned";
    case PinOutcome::kQuotaExceeded: return "QuotaExceeded";
    case PinOutcome::kNotCached: return "NotCached";
    case PinOutcome::kDisabled: return "PinningDisabled";
    case PinOutcome::kUnpinned: return "Unpinned";
    case PinOutcome::kNotRecorded: return "PinNotRecorded";
  }
  return "unknown";
}

ObjectCache::~ObjectCache() = default;

bool ObjectCache::covered_locked(const ObjectKey& key) const {
  auto it = pinned_prefixes_.find(key.bucket);
  if (it == pinned_prefixes_.end()) return false;
  for (const std::string& prefix : it->second) {
    if (key.key.starts_with(prefix)) return true;
  }
  return false;
}

void ObjectCache::release_blocks(std::uint64_t key_hash, const PinRecord& record) {
  for (std::uint64_t b = 0; b < block_count(record.size, record.block_size); ++b) {
    store_->unpin(BlockIdentity{key_hash, b, record.etag});
  }
}

void ObjectCache::drop_pinned_locked(std::uint64_t key_hash) {
  pinned_.erase(key_hash);
  pinned_objects_.store(pinned_.size(), std::memory_order_relaxed);
}

void ObjectCache::restore_pins() {
  auto records = index_->pins("", "");
  if (!records) {
    spdlog::warn("cache: pins not restored: {}", records.error().message());
    return;
  }
  std::lock_guard lock(pin_mu_);
  std::uint64_t restored = 0, dropped = 0, prefixes = 0;
  // Prefixes first: whether an object a prefix held is still held depends on them.
  for (const auto& [key, record] : records.value()) {
    if (!is_prefix_record(key, record)) continue;
    if (pinning_enabled()) {
      pinned_prefixes_[key.bucket].insert(key.key);
      ++prefixes;
    } else {
      (void)note_record_failure(index_->erase_pin(key), "erased", key);
      ++dropped;
    }
  }
  pinned_prefix_count_.store(prefixes, std::memory_order_relaxed);
  for (const auto& [key, record] : records.value()) {
    if (is_prefix_record(key, record)) continue;
    const std::uint64_t kh = key.hash();
    const std::uint64_t blocks = block_count(record.size, record.block_size);
    const bool held = held_by_key(record) || covered_locked(key);
    const bool until_read = !held && (record.flags & kPinUntilRead) != 0;
    // A key's pin was of a whole object; a prefix's or a run ahead's may be of the blocks
    // a reader filled (a range), the rest being pinned when they are filled.
    const bool whole = held_by_key(record);
    bool keep = pinning_enabled() && (held || until_read);
    std::vector<std::uint64_t> taken;
    for (std::uint64_t b = 0; keep && b < blocks; ++b) {
      const PinResult r = store_->pin(BlockIdentity{kh, b, record.etag}, until_read);
      if (r == PinResult::kPinned || r == PinResult::kAlreadyPinned) taken.push_back(b);
      if (r == PinResult::kQuotaExceeded || (r == PinResult::kMissing && whole)) keep = false;
    }
    if (keep && !taken.empty()) {
      pinned_[kh] = PinnedObject{key, record, {}, until_read ? taken.size() : 0};
      ++restored;
      continue;
    }
    // Evicted before pins existed for it, lost in a crash, over a quota lowered since, or
    // its prefix was unpinned by a tagd that did not know prefixes: the record goes, with
    // whatever of it was pinned again.
    for (std::uint64_t b : taken) store_->unpin(BlockIdentity{kh, b, record.etag});
    (void)note_record_failure(index_->erase_pin(key), "erased", key);
    ++dropped;
  }
  pinned_objects_.store(pinned_.size(), std::memory_order_relaxed);
  if (restored > 0 || dropped > 0 || prefixes > 0) {
    spdlog::info("cache: {} pinned prefixes and {} pinned objects restored ({} bytes of regions pinned)", prefixes,
                 restored, store_->pinned_bytes());
  }
  if (dropped > 0) {
    spdlog::warn(
        "cache: {} pins dropped at start-up (their blocks were gone, or cache.pin_quota is smaller than "
        "what was pinned, or 0); warm them with --pin again",
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

bool ObjectCache::pin_when_stored(std::uint64_t key_hash, const std::string& etag) {
  if (pinning_count_.load(std::memory_order_relaxed) == 0 && pinned_objects_.load(std::memory_order_relaxed) == 0) {
    return false;
  }
  std::lock_guard lock(pin_mu_);
  if (pinning_.contains(key_hash)) return true;
  auto it = pinned_.find(key_hash);
  return it != pinned_.end() && it->second.record.etag == etag &&
         (held_by_key(it->second.record) || covered_locked(it->second.key));
}

void ObjectCache::confirm_stored_pin(std::uint64_t key_hash, const std::string& etag, std::uint64_t block) {
  const BlockIdentity id{key_hash, block, etag};
  std::optional<PinnedObject> refused;
  {
    std::lock_guard lock(pin_mu_);
    auto it = pinned_.find(key_hash);
    const bool held = it != pinned_.end() && it->second.record.etag == etag &&
                      (held_by_key(it->second.record) || covered_locked(it->second.key));
    if (!held) {
      // A warm job's fill: its pin_object confirms (or end_pin gives back). Otherwise the
      // object was unpinned while this block was being written.
      if (!pinning_.contains(key_hash)) store_->unpin(id);
      return;
    }
    if (store_->pin(id, false) != PinResult::kQuotaExceeded) return;
    // The quota is spent: the object is refused whole (half an object pinned would hold
    // quota and still miss). put() counted it (tagd_cache_pins_refused_total), and later
    // blocks are stored unpinned, so it counts once.
    refused = std::move(it->second);
    (void)note_record_failure(index_->erase_pin(refused->key), "erased", refused->key);
    drop_pinned_locked(key_hash);
  }
  release_blocks(key_hash, refused->record);
  if (refused_warning.allow(steady_ms())) {
    spdlog::warn(
        "cache: {}/{} is under a pinned prefix but not pinned: cache.pin_quota is spent "
        "(tagd_cache_pins_refused_total); it stays cached, evictable",
        log_field(refused->key.bucket), log_field(refused->key.key));
  }
}

void ObjectCache::pin_if_under_prefix(const ObjectKey& key, const ObjectMeta& meta) {
  if (!pinning_enabled() || meta.block_size == 0) return;
  const std::uint64_t kh = key.hash();
  std::optional<PinRecord> replaced;
  {
    std::lock_guard lock(pin_mu_);
    if (!covered_locked(key)) return;
    auto it = pinned_.find(kh);
    if (it != pinned_.end() && it->second.record.etag == meta.etag) return;  // a republish (revalidation)
    if (it != pinned_.end()) replaced = it->second.record;
    // A new version is held by the prefix only: a key's own pin went with the old bytes.
    PinRecord record{meta.etag, meta.size, meta.block_size, kPinNotByKey};
    if (!note_record_failure(index_->put_pin(key, record), "written", key)) {
      // Not pinned, as a restart would find it; a prefix job's pin_object tries again and
      // reports it. The old version's record goes if the index lets it.
      if (replaced) (void)note_record_failure(index_->erase_pin(key), "erased", key);
      drop_pinned_locked(kh);
    } else {
      pinned_[kh] = PinnedObject{key, record, {}, 0};
      pinned_objects_.store(pinned_.size(), std::memory_order_relaxed);
    }
  }
  // The object changed upstream without a write through tagd: its old bytes go.
  if (replaced) release_blocks(kh, *replaced);
}

PinOutcome ObjectCache::pin_object(const ObjectKey& key, PinOwner owner, std::string_view job) {
  if (!pinning_enabled()) return PinOutcome::kDisabled;
  auto meta = lookup(key);
  if (!meta) return PinOutcome::kNotCached;
  const bool until_read = owner == PinOwner::kUntilRead;
  if (owner == PinOwner::kPrefix) {
    std::lock_guard lock(pin_mu_);
    if (!covered_locked(key)) return PinOutcome::kUnpinned;
  }
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
  std::optional<PinRecord> replaced;
  {
    std::lock_guard lock(pin_mu_);
    if (owner == PinOwner::kPrefix && !covered_locked(key)) {
      // Unpinned while its blocks were being pinned: nothing of it stays pinned by this.
      for (std::uint64_t b : taken) store_->unpin(BlockIdentity{kh, b, meta->etag});
      return PinOutcome::kUnpinned;
    }
    auto it = pinned_.find(kh);
    if (it != pinned_.end() && it->second.record.etag != meta->etag) {
      replaced = it->second.record;
      pinned_.erase(it);
      it = pinned_.end();
    }
    const bool fresh = it == pinned_.end();
    std::optional<PinnedObject> before;
    if (!fresh) before = it->second;
    PinnedObject& pinned = fresh ? pinned_[kh] : it->second;
    const std::uint8_t was = fresh ? std::uint8_t{kPinNotByKey} : pinned.record.flags;
    if (fresh) pinned = PinnedObject{key, PinRecord{meta->etag, meta->size, meta->block_size, kPinNotByKey}, {}, 0};
    if (owner == PinOwner::kKey) pinned.record.flags &= static_cast<std::uint8_t>(~kPinNotByKey);
    if (until_read) {
      pinned.record.flags |= kPinUntilRead;
      if (std::find(pinned.jobs.begin(), pinned.jobs.end(), job) == pinned.jobs.end()) pinned.jobs.emplace_back(job);
      pinned.unread = blocks;
    }
    if ((fresh || pinned.record.flags != was) &&
        !note_record_failure(index_->put_pin(key, pinned.record), "written", key)) {
      // A pin held for this run only would be lost by a restart without anyone knowing:
      // it is not taken (the owners stay what the index holds) and the caller is told.
      if (before) {
        pinned = std::move(*before);
      } else {
        pinned_.erase(kh);
        if (replaced) (void)note_record_failure(index_->erase_pin(key), "erased", key);
      }
      for (std::uint64_t b : taken) store_->unpin(BlockIdentity{kh, b, meta->etag});
      outcome = PinOutcome::kNotRecorded;
    }
    pinned_objects_.store(pinned_.size(), std::memory_order_relaxed);
  }
  if (replaced) release_blocks(kh, *replaced);
  return outcome;
}

Status ObjectCache::pin_prefix(const std::string& bucket, const std::string& prefix) {
  if (!pinning_enabled()) return Status(ErrorCode::kInvalidRequest, "pinning is off: cache.pin_quota is 0");
  std::lock_guard lock(pin_mu_);
  if (pinned_prefixes_[bucket].contains(prefix)) return Status::ok();
  const ObjectKey record_key = prefix_record_key(bucket, prefix);
  if (Status s = note_record_failure(index_->put_pin(record_key, PinRecord{"", 0, 0, kPinPrefixRecord}), "written",
                                     record_key);
      !s) {
    return s;
  }
  pinned_prefixes_[bucket].insert(prefix);
  pinned_prefix_count_.fetch_add(1, std::memory_order_relaxed);
  return Status::ok();
}

std::vector<std::string> ObjectCache::pinned_prefixes(const std::string& bucket, const std::string& prefix) {
  std::lock_guard lock(pin_mu_);
  std::vector<std::string> out;
  auto it = pinned_prefixes_.find(bucket);
  if (it == pinned_prefixes_.end()) return out;
  for (const std::string& p : it->second) {
    if (p.starts_with(prefix) || prefix.starts_with(p)) out.push_back(p);
  }
  return out;
}

Result<UnpinSummary> ObjectCache::unpin(const std::string& bucket, const std::string& prefix, bool recursive) {
  UnpinSummary summary;
  std::vector<std::pair<std::uint64_t, PinRecord>> released;
  // A record the index fails to change stops the unpin there: what was changed before stays
  // changed (its blocks released below), the rest stays pinned as recorded, and the caller
  // gets the error.
  Status failed = Status::ok();
  {
    std::lock_guard lock(pin_mu_);
    auto& prefixes = pinned_prefixes_[bucket];
    std::vector<std::string> removed;
    for (const std::string& p : prefixes) {
      if (p == prefix || (recursive && p.starts_with(prefix))) removed.push_back(p);
    }
    for (const std::string& p : removed) {
      const ObjectKey record_key = prefix_record_key(bucket, p);
      failed = note_record_failure(index_->erase_pin(record_key), "erased", record_key);
      if (!failed) break;
      prefixes.erase(p);
      pinned_prefix_count_.fetch_sub(1, std::memory_order_relaxed);
      ++summary.prefixes;
    }
    // Every owner under the prefix goes but the prefix records that remain: the keys' own
    // pins and the runs ahead.
    for (auto it = pinned_.begin(); failed && it != pinned_.end();) {
      PinnedObject& pinned = it->second;
      if (pinned.key.bucket != bucket || !pinned.key.key.starts_with(prefix)) {
        ++it;
        continue;
      }
      if (covered_locked(pinned.key)) {
        PinRecord record = pinned.record;
        record.flags = kPinNotByKey;
        if (record.flags != pinned.record.flags) {
          failed = note_record_failure(index_->put_pin(pinned.key, record), "written", pinned.key);
          if (!failed) break;
        }
        pinned.record = std::move(record);
        pinned.jobs.clear();
        pinned.unread = 0;
        ++summary.objects_kept;
        ++it;
        continue;
      }
      failed = note_record_failure(index_->erase_pin(pinned.key), "erased", pinned.key);
      if (!failed) break;
      ++summary.objects;
      summary.bytes += pinned.record.size;
      released.emplace_back(it->first, std::move(pinned.record));
      it = pinned_.erase(it);
    }
    pinned_objects_.store(pinned_.size(), std::memory_order_relaxed);
    for (const std::string& p : prefixes) {
      if (p.starts_with(prefix) || prefix.starts_with(p)) summary.still_pinned_by.push_back(p);
    }
    if (prefixes.empty()) pinned_prefixes_.erase(bucket);
  }
  for (const auto& [key_hash, record] : released) release_blocks(key_hash, record);
  if (!failed) return failed;
  return summary;
}

std::vector<std::pair<std::uint64_t, PinRecord>> ObjectCache::release_pins_of(const std::string& bucket,
                                                                              const std::string& key) {
  std::vector<std::pair<std::uint64_t, PinRecord>> released;
  std::lock_guard lock(pin_mu_);
  for (auto it = pinned_.begin(); it != pinned_.end();) {
    if (it->second.key.bucket != bucket || it->second.key.key != key) {
      ++it;
      continue;
    }
    (void)note_record_failure(index_->erase_pin(it->second.key), "erased", it->second.key);
    spdlog::info("cache: pin of {}/{} released: the object was written through tagd", log_field(bucket),
                 log_field(key));
    released.emplace_back(it->first, std::move(it->second.record));
    it = pinned_.erase(it);
  }
  pinned_objects_.store(pinned_.size(), std::memory_order_relaxed);
  return released;
}

void ObjectCache::release_until_read(const ObjectKey& key, std::string_view job) {
  const std::uint64_t kh = key.hash();
  std::optional<PinRecord> released;
  {
    std::lock_guard lock(pin_mu_);
    auto it = pinned_.find(kh);
    if (it == pinned_.end() || (it->second.record.flags & kPinUntilRead) == 0) return;
    auto& jobs = it->second.jobs;
    const auto mine = std::find(jobs.begin(), jobs.end(), job);
    if (mine == jobs.end()) return;  // another job's run ahead, or one from before a restart
    jobs.erase(mine);
    if (!jobs.empty()) return;  // another live job still runs ahead of its readers with it
    it->second.record.flags &= static_cast<std::uint8_t>(~kPinUntilRead);
    it->second.unread = 0;
    if (held_by_key(it->second.record) || covered_locked(it->second.key)) {
      (void)note_record_failure(index_->put_pin(it->second.key, it->second.record), "written", it->second.key);
      return;
    }
    (void)note_record_failure(index_->erase_pin(it->second.key), "erased", it->second.key);
    released = std::move(it->second.record);
    drop_pinned_locked(kh);
  }
  release_blocks(kh, *released);
}

boost::asio::awaitable<void> ObjectCache::settle_fill(const ObjectKey& key, std::chrono::milliseconds limit) {
  auto meta = lookup(key);
  if (!meta) co_return;
  const auto executor = co_await boost::asio::this_coro::executor;
  const auto deadline = std::chrono::steady_clock::now() + limit;
  const std::uint64_t kh = key.hash();
  for (std::uint64_t b = 0; b < block_count(meta->size, meta->block_size); ++b) {
    // A block may leave the registry and a new fill of it come in (a failed write
    // retried by a reader): wait for each in turn, until the deadline.
    while (auto inflight = find(kh, meta->etag, b)) {
      if (std::chrono::steady_clock::now() >= deadline) co_return;
      auto timer = std::make_shared<boost::asio::steady_timer>(executor, deadline);
      if (!inflight->wait_for_finish(executor, timer)) continue;
      (void)co_await timer->async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    }
  }
}

Result<std::vector<std::pair<ObjectKey, PinRecord>>> ObjectCache::pins(const std::string& bucket,
                                                                       const std::string& prefix) {
  auto all = index_->pins(bucket, prefix);
  if (!all) return all;
  std::erase_if(all.value(), [](const auto& entry) { return is_prefix_record(entry.first, entry.second); });
  return all;
}

std::vector<std::pair<ObjectKey, std::vector<std::string>>> ObjectCache::until_read_pins(const std::string& bucket,
                                                                                        const std::string& prefix) {
  std::lock_guard lock(pin_mu_);
  std::vector<std::pair<ObjectKey, std::vector<std::string>>> out;
  for (const auto& [kh, pinned] : pinned_) {
    if ((pinned.record.flags & kPinUntilRead) == 0 || pinned.key.bucket != bucket ||
        !pinned.key.key.starts_with(prefix)) {
      continue;
    }
    out.emplace_back(pinned.key, pinned.jobs);
  }
  return out;
}

void ObjectCache::note_read(std::uint64_t key_hash, const std::string& etag, std::uint64_t block) {
  if (!store_->has_until_read_pins()) return;
  if (!store_->note_read(BlockIdentity{key_hash, block, etag})) return;
  // The last armed block of an object read: its run-ahead pin is spent, so is its record.
  std::lock_guard lock(pin_mu_);
  auto it = pinned_.find(key_hash);
  if (it == pinned_.end() || it->second.record.etag != etag || (it->second.record.flags & kPinUntilRead) == 0) return;
  if (it->second.unread > 0 && --it->second.unread > 0) return;
  it->second.record.flags &= static_cast<std::uint8_t>(~kPinUntilRead);
  it->second.jobs.clear();
  if (held_by_key(it->second.record) || covered_locked(it->second.key)) {
    (void)note_record_failure(index_->put_pin(it->second.key, it->second.record), "written", it->second.key);
    return;
  }
  (void)note_record_failure(index_->erase_pin(it->second.key), "erased", it->second.key);
  drop_pinned_locked(key_hash);
}

}  // namespace tagd::cache
