#include "tagd/cache/block_store.hpp"

#include <algorithm>
#include <cstring>
#include <numeric>

#include <spdlog/spdlog.h>

#include "tagd/core/logging.hpp"
#include "tagd/core/metrics.hpp"

namespace tagd::cache {

namespace {
constexpr std::size_t kBufferAlignment = 4096;

std::uint64_t align_down(std::uint64_t v, std::uint64_t a) { return v / a * a; }
std::uint64_t align_up(std::uint64_t v, std::uint64_t a) { return (v + a - 1) / a * a; }

std::int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
logging::WarnThrottle blocked_warning{std::chrono::seconds(10)};

BlockKey key_of(const BlockIdentity& id) { return MemoryTier::key(id.key_hash, id.etag, id.block_number); }
}  // namespace

BlockStore::BlockStore(BlockDevice& device, CacheIndex& index, std::unique_ptr<EvictionPolicy> eviction,
                       BlockStoreOptions options)
    : device_(device), index_(index), eviction_(std::move(eviction)), options_(options) {}

Result<std::unique_ptr<BlockStore>> BlockStore::open(BlockDevice& device, CacheIndex& index,
                                                     std::unique_ptr<EvictionPolicy> eviction,
                                                     BlockStoreOptions options) {
  if (options.region_size % device.alignment() != 0 ||
      options.region_size < stored_block_size(options.max_block_payload, device.alignment())) {
    return Status(ErrorCode::kInvalidArgument, "cache region must be aligned and hold at least one block");
  }
  std::uint64_t count = device.size() / options.region_size;
  if (count < 2) return Status(ErrorCode::kInvalidArgument, "cache device must hold at least two regions");
  std::unique_ptr<BlockStore> store(new BlockStore(device, index, std::move(eviction), options));
  auto generations = index.region_generations(static_cast<std::uint32_t>(count));
  if (!generations) return generations.error();
  store->region_count_ = static_cast<std::uint32_t>(count);
  store->generations_ = std::make_unique<std::atomic<std::uint64_t>[]>(count);
  for (std::uint32_t r = 0; r < count; ++r) store->generations_[r].store(generations.value()[r]);

  // Regions written before a restart are sealed, oldest first, so FIFO resumes where it
  // stopped. The one that was being filled is sealed too: its indexed blocks are whole
  // (bytes before index entries), and the rest of it is simply unused.
  std::vector<std::uint32_t> used;
  for (std::uint32_t r = 0; r < count; ++r) {
    const std::uint64_t g = generations.value()[r];
    if (g != 0) used.push_back(r);
    store->next_generation_ = std::max(store->next_generation_, g + 1);
  }
  std::sort(used.begin(), used.end(), [&](std::uint32_t a, std::uint32_t b) {
    return generations.value()[a] < generations.value()[b];
  });
  store->eviction_->attach(static_cast<std::uint32_t>(count));
  for (std::uint32_t r : used) store->eviction_->on_sealed(r);
  store->pins_.assign(count, 0);
  store->pin_quota_regions_ =
      static_cast<std::uint32_t>(std::min<std::uint64_t>(options.pin_quota / options.region_size, count - 2));
  if (options.pin_quota / options.region_size > count - 2) {
    spdlog::info("cache: pins may hold {} of {} regions (cache.pin_quota {} is more than the cache minus two regions)",
                 store->pin_quota_regions_, count, options.pin_quota);
  }
  metrics().cache_pin_quota_bytes.set(static_cast<std::int64_t>(store->pin_quota_bytes()));
  metrics().cache_pinned_bytes.set(0);
  // Whole regions: one that holds any block counts as used (start_new_region_locked adds
  // each free region it takes).
  metrics().cache_capacity_bytes.set(static_cast<std::int64_t>(store->capacity_bytes()));
  metrics().cache_used_bytes.set(static_cast<std::int64_t>(used.size() * options.region_size));
  // No write head yet: the first put() takes one. Taking it here would let the policy
  // evict a region before ObjectCache has restored the pins that hold it.
  return store;
}

Status BlockStore::start_new_region_locked(std::uint32_t& region) {
  // Free regions (never written) first, then the policy's victim. The other write head's
  // region has a generation, so it is never taken as free.
  region = UINT32_MAX;
  for (std::uint32_t r = 0; r < region_count_; ++r) {
    if (generations_[r].load(std::memory_order_relaxed) == 0 && r != head_.region && r != pin_head_.region) {
      region = r;
      break;
    }
  }
  if (region == UINT32_MAX) {
    region = eviction_->pick_victim();
    if (region == kNoVictim || region >= region_count_ || pins_[region] != 0) {
      // Degraded: every sealed region is pinned (only reachable with a quota of the whole
      // cache, which open() does not allow, or a policy bug). The write is refused; the
      // cache keeps what it holds and serves the rest uncached.
      ++stats_.blocked_writes;
      metrics().cache_pin_blocked_writes.inc();
      if (blocked_warning.allow(steady_ms())) {
        spdlog::warn("cache: every evictable region is pinned; new blocks are not cached until something is "
                     "unpinned (tagd unpin, tagd_cache_pin_blocked_writes_total)");
      }
      return Status(ErrorCode::kSlowDown, "every evictable cache region is pinned");
    }
    ++stats_.regions_evicted;
    metrics().cache_region_evictions.inc();
    metrics().cache_evicted_bytes.inc(options_.region_size);
  } else {
    metrics().cache_used_bytes.add(static_cast<std::int64_t>(options_.region_size));  // a free region taken
  }
  std::uint64_t generation = next_generation_++;
  // Persist the new generation before any block lands in the region: from here on, every
  // index entry of the region's previous life is stale. The in-memory generation moves
  // first, so a read racing the reuse fails its after-read check.
  generations_[region].store(generation, std::memory_order_release);
  if (Status s = index_.put_region_generation(region, generation); !s) return s;
  return Status::ok();
}

// Seals the head's region (once, even if taking the next one fails and is retried) and
// moves the head to a new region. The pin head holds one pin on its region while it is
// the head, so a region being filled with pinned blocks is never a victim.
Status BlockStore::advance_head_locked(Head& head, bool pin_head) {
  if (!head.sealed) {
    eviction_->on_sealed(head.region);
    head.sealed = true;
    if (pin_head) drop_pin_locked(head.region);
  }
  std::uint32_t region = UINT32_MAX;
  if (Status s = start_new_region_locked(region); !s) return s;
  head = Head{region, 0, false};
  if (pin_head) add_pin_locked(region);
  return Status::ok();
}

void BlockStore::add_pin_locked(std::uint32_t region) {
  if (pins_[region]++ == 0) {
    ++pinned_regions_;
    eviction_->on_pinned(region, true);
    publish_pin_metrics_locked();
  }
}

void BlockStore::drop_pin_locked(std::uint32_t region) {
  if (pins_[region] == 0) return;  // defensive: a count never goes below zero
  if (--pins_[region] == 0) {
    --pinned_regions_;
    eviction_->on_pinned(region, false);
    publish_pin_metrics_locked();
  }
}

bool BlockStore::can_pin_locked(std::uint32_t region) const {
  return pins_[region] > 0 || pinned_regions_ < pin_quota_regions_;
}

void BlockStore::publish_pin_metrics_locked() {
  metrics().cache_pinned_bytes.set(static_cast<std::int64_t>(std::uint64_t{pinned_regions_} * options_.region_size));
}

Status BlockStore::put(const BlockIdentity& id, std::span<const std::byte> payload, bool pin) {
  if (payload.size() > options_.max_block_payload) {
    return Status(ErrorCode::kInvalidArgument, "block larger than the configured block size");
  }
  const auto length = static_cast<std::uint32_t>(payload.size());
  const std::size_t alignment = device_.alignment();
  const std::uint64_t stored = stored_block_size(length, alignment);
  const std::uint32_t payload_offset = block_payload_offset(length);
  std::vector<std::uint32_t> pieces = block_piece_checksums(payload);
  AlignedBuffer buffer(stored, std::max(alignment, kBufferAlignment));
  encode_block_header(id, payload, pieces, buffer.span().first(payload_offset));
  std::memcpy(buffer.data() + payload_offset, payload.data(), payload.size());
  // Only the padding is zeroed (deterministic bytes on disk), not the whole buffer.
  std::memset(buffer.data() + payload_offset + length, 0, stored - payload_offset - length);

  const BlockKey key = key_of(id);
  std::lock_guard lock(mu_);
  auto was_pinned = pinned_.find(key);
  const bool want_pin = pin || was_pinned != pinned_.end();
  // The pin head while the quota has room for it, else the normal head (the block is then
  // cached, and pinned in place only if its region already is).
  Head* head = &head_;
  if (want_pin && pin_quota_regions_ > 0) {
    if (!pin_head_.sealed && pin_head_.offset + stored <= options_.region_size) {
      head = &pin_head_;
    } else {
      if (!pin_head_.sealed) {  // full: seal it first, which may give its quota back
        eviction_->on_sealed(pin_head_.region);
        pin_head_.sealed = true;
        drop_pin_locked(pin_head_.region);
      }
      if (pinned_regions_ < pin_quota_regions_ && advance_head_locked(pin_head_, true).is_ok()) head = &pin_head_;
    }
  }
  if (head->sealed || head->offset + stored > options_.region_size) {
    if (Status s = advance_head_locked(*head, head == &pin_head_); !s) return s;
  }
  const std::uint32_t region = head->region;
  BlockLocation location{region, generations_[region].load(std::memory_order_relaxed),
                         std::uint64_t{region} * options_.region_size + head->offset, length, std::move(pieces)};
  if (Status s = device_.write(location.offset, {buffer.data(), stored}); !s) return s;
  head->offset += stored;
  eviction_->on_written(region);
  ++stats_.blocks_written;
  stats_.bytes_written += stored;
  Status indexed = index_.put_block(id.key_hash, id.etag, id.block_number, location);
  if (!indexed) return indexed;
  // The pin follows the block to its new copy (a refill after a corrupt read, or a pinned
  // fill): the old copy's region gives its count back first.
  PinMode mode = PinMode::kFilled;
  if (was_pinned != pinned_.end()) {
    mode = was_pinned->second.mode;
    release_locked(was_pinned);
  }
  if (want_pin) {
    if (can_pin_locked(region)) {
      insert_pin_locked(key, region, mode);
    } else {
      metrics().cache_pins_refused.inc();
    }
  }
  return Status::ok();
}

void BlockStore::insert_pin_locked(const BlockKey& key, std::uint32_t region, PinMode mode) {
  pinned_[key] = PinnedBlock{region, mode};
  if (mode == PinMode::kUntilRead) until_read_pins_.fetch_add(1, std::memory_order_relaxed);
  if (mode == PinMode::kFilled) unconfirmed_[key.key_hash].push_back(key);
  add_pin_locked(region);
}

void BlockStore::set_mode_locked(PinnedBlock& pinned, const BlockKey& key, PinMode mode) {
  if (pinned.mode == mode) return;
  if (pinned.mode == PinMode::kUntilRead) until_read_pins_.fetch_sub(1, std::memory_order_relaxed);
  if (pinned.mode == PinMode::kFilled) forget_unconfirmed_locked(key);
  if (mode == PinMode::kUntilRead) until_read_pins_.fetch_add(1, std::memory_order_relaxed);
  if (mode == PinMode::kFilled) unconfirmed_[key.key_hash].push_back(key);
  pinned.mode = mode;
}

void BlockStore::forget_unconfirmed_locked(const BlockKey& key) {
  auto it = unconfirmed_.find(key.key_hash);
  if (it == unconfirmed_.end()) return;
  std::erase(it->second, key);
  if (it->second.empty()) unconfirmed_.erase(it);
}

void BlockStore::release_locked(std::unordered_map<BlockKey, PinnedBlock, BlockKeyHash>::iterator it) {
  set_mode_locked(it->second, it->first, PinMode::kHeld);  // settles the counters
  drop_pin_locked(it->second.region);
  pinned_.erase(it);
}

// An unpin that leaves the pin head holding nothing but its own hold seals it: otherwise
// the released blocks would stay unevictable until the next pinned fill moved the head on.
void BlockStore::release_unpinned_locked(std::unordered_map<BlockKey, PinnedBlock, BlockKeyHash>::iterator it) {
  release_locked(it);
  if (!pin_head_.sealed && pins_[pin_head_.region] == 1) {
    eviction_->on_sealed(pin_head_.region);
    pin_head_.sealed = true;
    drop_pin_locked(pin_head_.region);
  }
}

PinResult BlockStore::pin(const BlockIdentity& id, bool until_read) {
  const BlockKey key = key_of(id);
  const PinMode wanted = until_read ? PinMode::kUntilRead : PinMode::kHeld;
  std::lock_guard lock(mu_);
  if (auto it = pinned_.find(key); it != pinned_.end()) {
    // Confirms a pin taken when the block was written, or strengthens an until-read pin to
    // held; a held pin is never weakened.
    const PinMode was = it->second.mode;
    if (was != PinMode::kHeld) set_mode_locked(it->second, key, wanted);
    return was == PinMode::kFilled ? PinResult::kConfirmed : PinResult::kAlreadyPinned;
  }
  // Under mu_: a region is only reused under it, so a location current here stays so
  // until the pin is counted.
  auto found = index_.get_block(id.key_hash, id.etag, id.block_number);
  if (!found || !found->has_value() || !current(**found)) return PinResult::kMissing;
  const std::uint32_t region = (*found)->region;
  if (!can_pin_locked(region)) return PinResult::kQuotaExceeded;
  insert_pin_locked(key, region, wanted);
  return PinResult::kPinned;
}

void BlockStore::unpin(const BlockIdentity& id, bool only_unarmed) {
  std::lock_guard lock(mu_);
  auto it = pinned_.find(key_of(id));
  if (it == pinned_.end() || (only_unarmed && it->second.mode != PinMode::kFilled)) return;
  release_unpinned_locked(it);
}

bool BlockStore::note_read(const BlockIdentity& id) {
  if (!has_until_read_pins()) return false;
  std::lock_guard lock(mu_);
  auto it = pinned_.find(key_of(id));
  if (it == pinned_.end() || it->second.mode != PinMode::kUntilRead) return false;
  release_unpinned_locked(it);
  return true;
}

void BlockStore::unpin_unconfirmed(std::uint64_t key_hash) {
  std::lock_guard lock(mu_);
  auto found = unconfirmed_.find(key_hash);
  if (found == unconfirmed_.end()) return;
  const std::vector<BlockKey> keys = found->second;  // release_locked edits the list
  for (const BlockKey& key : keys) {
    if (auto it = pinned_.find(key); it != pinned_.end()) release_unpinned_locked(it);
  }
  unconfirmed_.erase(key_hash);
}

bool BlockStore::pinned(const BlockIdentity& id) const {
  std::lock_guard lock(mu_);
  return pinned_.contains(key_of(id));
}

std::uint64_t BlockStore::pinned_bytes() const {
  std::lock_guard lock(mu_);
  return std::uint64_t{pinned_regions_} * options_.region_size;
}

bool BlockStore::current(const BlockLocation& location) const {
  return location.region < region_count_ &&
         generations_[location.region].load(std::memory_order_acquire) == location.generation;
}

BlockRead BlockStore::drop(const BlockIdentity& id, ReadOutcome why) {
  (why == ReadOutcome::kStale ? stale_lookups_ : corrupt_blocks_).fetch_add(1, std::memory_order_relaxed);
  (void)index_.erase_block(id.key_hash, id.etag, id.block_number);
  return BlockRead{why, nullptr};
}

void BlockStore::count_hit(const BlockLocation& location) {
  if (!eviction_->wants_hits()) return;
  if (!eviction_->hits_need_store_lock()) {
    eviction_->on_hit(location.region);
    return;
  }
  std::lock_guard lock(mu_);
  eviction_->on_hit(location.region);
}

bool BlockStore::contains(const BlockIdentity& id) {
  auto found = index_.get_block(id.key_hash, id.etag, id.block_number);
  return found && found->has_value() && current(**found);
}

boost::asio::awaitable<BlockRead> BlockStore::read(const BlockIdentity& id) {
  auto found = index_.get_block(id.key_hash, id.etag, id.block_number);
  if (!found || !found->has_value()) co_return BlockRead{};
  const BlockLocation location = std::move(**found);
  if (!current(location)) co_return drop(id, ReadOutcome::kStale);
  const std::uint64_t stored = stored_block_size(location.length, device_.alignment());
  AlignedBuffer buffer(stored, std::max(device_.alignment(), kBufferAlignment));
  const Status io = co_await device_.async_read(location.offset, buffer.span());
  // A region recycled while the read was in flight: whatever was read is not this block.
  if (!current(location)) co_return drop(id, ReadOutcome::kStale);
  if (!io.is_ok()) co_return drop(id, ReadOutcome::kCorrupt);
  auto header = decode_block_header(buffer.span(), id, options_.max_block_payload);
  if (!header || header->length != location.length || header->piece_crc32c != location.piece_crc32c) {
    co_return drop(id, ReadOutcome::kCorrupt);
  }
  const std::uint32_t payload_offset = block_payload_offset(location.length);
  if (!verify_block_pieces(header->piece_crc32c, location.length, 0,
                           std::span<const std::byte>(buffer.data() + payload_offset, location.length))
           .is_ok()) {
    co_return drop(id, ReadOutcome::kCorrupt);
  }
  count_hit(location);
  co_return BlockRead{ReadOutcome::kHit,
                      std::make_shared<const BlockData>(std::move(buffer), payload_offset, location.length), 0,
                      true};
}

boost::asio::awaitable<BlockRead> BlockStore::read_range(const BlockIdentity& id, std::uint32_t offset,
                                                         std::uint32_t length) {
  auto found = index_.get_block(id.key_hash, id.etag, id.block_number);
  if (!found || !found->has_value()) co_return BlockRead{};
  const BlockLocation location = std::move(**found);
  if (!current(location)) co_return drop(id, ReadOutcome::kStale);
  if (length == 0 || std::uint64_t{offset} + length > location.length ||
      location.piece_crc32c.size() != block_piece_count(location.length)) {
    co_return drop(id, ReadOutcome::kCorrupt);
  }
  // The pieces holding [offset, offset + length), and the aligned device range holding them.
  const std::uint32_t first_piece = offset >> kBlockPieceShift;
  const std::uint32_t last_piece = (offset + length - 1) >> kBlockPieceShift;
  const std::uint64_t pieces_begin = std::uint64_t{first_piece} << kBlockPieceShift;
  const std::uint64_t pieces_end = std::min<std::uint64_t>(std::uint64_t{last_piece + 1} << kBlockPieceShift,
                                                           location.length);
  const std::uint64_t payload_at = location.offset + block_payload_offset(location.length);
  const std::uint64_t device_begin = align_down(payload_at + pieces_begin, device_.alignment());
  const std::uint64_t device_end = align_up(payload_at + pieces_end, device_.alignment());
  AlignedBuffer buffer(device_end - device_begin, std::max(device_.alignment(), kBufferAlignment));
  const Status io = co_await device_.async_read(device_begin, buffer.span());
  if (!current(location)) co_return drop(id, ReadOutcome::kStale);
  if (!io.is_ok()) co_return drop(id, ReadOutcome::kCorrupt);
  const std::size_t pieces_at = payload_at + pieces_begin - device_begin;
  if (!verify_block_pieces(location.piece_crc32c, location.length, first_piece,
                           std::span<const std::byte>(buffer.data() + pieces_at, pieces_end - pieces_begin))
           .is_ok()) {
    co_return drop(id, ReadOutcome::kCorrupt);
  }
  count_hit(location);
  const std::size_t wanted_at = pieces_at + (offset - pieces_begin);
  co_return BlockRead{ReadOutcome::kHit, std::make_shared<const BlockData>(std::move(buffer), wanted_at, length),
                      offset};
}

BlockStoreStats BlockStore::stats() const {
  std::lock_guard lock(mu_);
  BlockStoreStats s = stats_;
  s.corrupt_blocks = corrupt_blocks_.load(std::memory_order_relaxed);
  s.stale_lookups = stale_lookups_.load(std::memory_order_relaxed);
  s.pinned_blocks = pinned_.size();
  s.pinned_regions = pinned_regions_;
  s.pin_quota_regions = pin_quota_regions_;
  return s;
}

}  // namespace tagd::cache
