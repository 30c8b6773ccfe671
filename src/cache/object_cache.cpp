#include "tagd/cache/object_cache.hpp"
#include "tagd/cache/policies.hpp"

#include <spdlog/spdlog.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <filesystem>
#include <stdexcept>

#include "tagd/core/metrics.hpp"

namespace tagd::cache {

void InflightBlock::append(const std::byte* data, std::size_t n) {
  std::lock_guard lock(mu_);
  // Taken on the first byte, not at registration: only the block being filled takes
  // memory; the buffer (later shared with the DRAM tier) holds one block, and the fill
  // never appends past the length it registered.
  if (!data_) data_ = pool_ ? pool_->acquire(expected_) : std::make_shared<BlockBuffer>(expected_);
  (void)data_->append(data, n);
  notify_locked();
}

BlockBytes InflightBlock::complete() {
  std::lock_guard lock(mu_);
  complete_ = true;
  notify_locked();
  if (!data_) data_ = std::make_shared<BlockBuffer>(0);
  return std::make_shared<const BlockData>(std::shared_ptr<const BlockBuffer>(data_));
}

void InflightBlock::fail(bool changed) {
  std::lock_guard lock(mu_);
  failed_ = true;
  changed_ = changed_ || changed;
  notify_locked();
}

void InflightBlock::attach_fill_progress(std::shared_ptr<const std::atomic<std::uint64_t>> progress) {
  std::lock_guard lock(mu_);
  fill_progress_ = std::move(progress);
}

std::uint64_t InflightBlock::fill_progress() const {
  std::lock_guard lock(mu_);
  return fill_progress_ ? fill_progress_->load(std::memory_order_relaxed) : size_locked();
}

void InflightBlock::mark_validated() {
  std::lock_guard lock(mu_);
  validated_ = true;
  notify_locked();
}

bool InflightBlock::failed() const {
  std::lock_guard lock(mu_);
  return failed_;
}

bool InflightBlock::changed() const {
  std::lock_guard lock(mu_);
  return changed_;
}

bool InflightBlock::validated() const {
  std::lock_guard lock(mu_);
  return validated_ || complete_;
}

bool InflightBlock::wait_for_validation(boost::asio::any_io_executor executor,
                                        std::shared_ptr<boost::asio::steady_timer> timer) {
  std::lock_guard lock(mu_);
  if (validated_ || complete_ || failed_) return false;
  waiters_.emplace_back(std::move(executor), std::move(timer));
  return true;
}

std::size_t InflightBlock::read(std::size_t offset, std::byte* out, std::size_t max, bool& done) const {
  std::lock_guard lock(mu_);
  const std::size_t size = size_locked();
  std::size_t n = offset < size ? std::min(max, size - offset) : 0;
  if (n > 0) std::memcpy(out, data_->data() + offset, n);
  done = failed_ || (complete_ && offset + n >= size);
  return n;
}

bool InflightBlock::wait_for_finish(boost::asio::any_io_executor executor,
                                    std::shared_ptr<boost::asio::steady_timer> timer) {
  std::lock_guard lock(mu_);
  if (finished_) return false;
  waiters_.emplace_back(std::move(executor), std::move(timer));
  return true;
}

void InflightBlock::mark_finished() {
  std::lock_guard lock(mu_);
  finished_ = true;
  notify_locked();
}

bool InflightBlock::wait_for_progress(std::size_t seen, boost::asio::any_io_executor executor,
                                      std::shared_ptr<boost::asio::steady_timer> timer) {
  std::lock_guard lock(mu_);
  if (size_locked() > seen || complete_ || failed_) return false;
  waiters_.emplace_back(std::move(executor), std::move(timer));
  return true;
}

void InflightBlock::notify_locked() {
  for (auto& [executor, timer] : waiters_) {
    boost::asio::post(executor, [t = timer] { t->cancel(); });
  }
  waiters_.clear();
}

ObjectCache::ObjectCache(std::unique_ptr<BlockDevice> device, std::unique_ptr<CacheIndex> index,
                         std::unique_ptr<EvictionPolicy> eviction, std::unique_ptr<AdmissionPolicy> admission,
                         std::uint64_t memory_bytes, std::uint64_t region_size, ObjectCacheOptions options)
    : device_(std::move(device)),
      index_(std::move(index)),
      admission_(std::move(admission)),
      memory_(memory_bytes),
      options_(options),
      // Runs ahead are bounded in bytes; the count bound only keeps one reader from taking
      // every slot (each part is at most max_fetch).
      prefetch_budget_(make_fill_budget(options.prefetch_budget, 1024)),
      sequential_(options.read_ahead),
      invalidated_at_(1 << 16, 0),
      buffer_pool_(BlockBufferPool::create(
          std::max<std::uint64_t>(std::min<std::uint64_t>(memory_bytes / 8, 64ull << 20), 8ull * options.block_size),
          options.block_size, options.sendfile)) {
  metrics().cache_memory_capacity_bytes.set(static_cast<std::int64_t>(memory_bytes));
  memory_.right_size_promotions_with(buffer_pool_);
  auto store = BlockStore::open(*device_, *index_, std::move(eviction),
                               BlockStoreOptions{region_size, options.block_size, options.pin_quota});
  if (!store) throw std::runtime_error("cache: " + store.error().message());
  store_ = std::move(store.value());
  restore_pins();
}

std::unique_ptr<ObjectCache> ObjectCache::open(const config::Config& config, bool io_uring_available) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(config.cache_disk_path, ec);
  if (ec) throw std::runtime_error("invalid setting cache.disk_path: cannot create " + config.cache_disk_path + ": " + ec.message());
  // The format versions are in the names, so a cache written by another version is
  // never opened, let alone misread: older files are removed here (their space is
  // needed), newer ones (a downgrade) are left alone for that version.
  const std::string block_file =
      (fs::path(config.cache_disk_path) / ("blocks.v" + std::to_string(kBlockFormatVersion))).string();
  const std::string index_dir =
      (fs::path(config.cache_disk_path) / ("index.v" + std::to_string(kBlockLocationVersion))).string();
  for (int old = 1; old < kBlockFormatVersion; ++old) {
    for (const char* stem : {"blocks.v", "index.v"}) {
      const fs::path stale = fs::path(config.cache_disk_path) / (stem + std::to_string(old));
      if (!fs::exists(stale, ec)) continue;
      spdlog::warn("cache: {} was written by an older cache format (version {}, this tagd writes version {}); "
                   "removing it, the cache starts empty",
                   stale.string(), old, kBlockFormatVersion);
      fs::remove_all(stale, ec);
      if (ec) throw std::runtime_error("invalid setting cache.disk_path: cannot remove " + stale.string() + ": " + ec.message());
    }
  }

  // Respect the free-space floor: the block file is preallocated whole, so check before.
  std::uint64_t already = fs::exists(block_file, ec) ? fs::file_size(block_file, ec) : 0;
  struct statvfs vfs {};
  if (::statvfs(config.cache_disk_path.c_str(), &vfs) == 0) {
    std::uint64_t free_bytes = std::uint64_t{vfs.f_bavail} * vfs.f_frsize;
    std::uint64_t needed = config.cache_max_disk_usage > already ? config.cache_max_disk_usage - already : 0;
    if (free_bytes < needed + config.cache_min_free_disk) {
      throw std::runtime_error("invalid setting cache.max_disk_usage: " + std::to_string(config.cache_max_disk_usage) +
                               " bytes do not fit in " + config.cache_disk_path + " while keeping cache.min_free_disk (" +
                               std::to_string(config.cache_min_free_disk) + ") free; " + std::to_string(free_bytes) +
                               " bytes are free");
    }
  }
  std::uint64_t usable = config.cache_max_disk_usage / config.cache_region_size * config.cache_region_size;
  FileDeviceOptions file{block_file, usable, config.cache_disk_io == "direct"};
  Result<std::unique_ptr<BlockDevice>> device = Status(ErrorCode::kInternalError, "unset");
  if (io_uring_available) {
    device = open_uring_device(file);
    if (!device) {
      metrics().io_uring_enabled.set(0);
      spdlog::warn("cache: io_uring device unavailable ({}); falling back to pread/pwrite", device.error().message());
    }
  }
  if (!device) device = open_pread_device(file);
  if (!device) throw std::runtime_error("invalid setting cache.disk_path: " + device.error().message());
  metrics().disk_direct_io.set(device.value()->direct() ? 1 : 0);
  // io_uring until a loop's ring cannot be set up (the device then says so and sets 0).
  metrics().disk_io_uring.set(std::string_view(device.value()->kind()) == "io_uring" ? 1 : 0);
  if (config.cache_disk_io == "direct" && !device.value()->direct()) {
    spdlog::warn("cache: {} refuses O_DIRECT; block reads go through the page cache", block_file);
  }

  auto durable_index = open_rocksdb_index(index_dir);
  if (!durable_index) throw std::runtime_error("invalid setting cache.disk_path: " + durable_index.error().message());
  auto index = make_memory_cached_index(std::move(durable_index.value()), config.cache_index_memory_entries);
  auto policies = make_cache_policies(config.cache_eviction_policy, config.cache_fill_budget_bytes,
                                      config.cache_max_fills);
  if (!policies) throw std::runtime_error("invalid setting cache.eviction_policy: " + config.cache_eviction_policy);
  ObjectCacheOptions options{config.cache_block_size, config.cache_ttl, config.cache_stale_if_error,
                             config.cache_max_fetch};
  options.fetch_parallelism = config.cache_fetch_parallelism;
  options.prefetch_budget = config.cache_prefetch_budget;
  options.read_ahead.initial_window = std::min<std::uint64_t>(1ull << 20, config.cache_read_ahead_max);
  options.read_ahead.max_window = config.cache_read_ahead_max;
  options.pin_quota = config.cache_pin_quota;
  options.sendfile = config.cache_sendfile != "off";
  auto cache = std::make_unique<ObjectCache>(std::move(device.value()), std::move(index),
                                             std::move(policies->eviction), std::move(policies->admission),
                                             config.cache_memory_size, config.cache_region_size, options);
  spdlog::info("cache: {} bytes in {} ({} device, {} I/O, {} regions of {} bytes), index {}, DRAM tier {} bytes",
               usable, block_file, cache->device_kind(), cache->device().direct() ? "direct" : "buffered",
               usable / config.cache_region_size, config.cache_region_size, index_dir, config.cache_memory_size);
  return cache;
}

std::shared_ptr<const ObjectMeta> ObjectCache::lookup_shared(const ObjectKey& key) {
  auto r = index_->get_object_shared(key);
  if (!r) {
    spdlog::warn("cache index read failed: {}", r.error().message());
    return nullptr;
  }
  return std::move(r.value());
}

std::optional<ObjectMeta> ObjectCache::lookup(const ObjectKey& key) {
  const std::shared_ptr<const ObjectMeta> found = lookup_shared(key);
  if (!found) return std::nullopt;
  return *found;  // a copy the caller may change
}

std::uint64_t ObjectCache::epoch() const {
  std::lock_guard lock(mu_);
  return epoch_;
}

std::size_t ObjectCache::epoch_slot(const std::string& bucket, const std::string& key) const {
  return hash_bytes(bucket + '\0' + key) % invalidated_at_.size();
}

bool ObjectCache::publish(const ObjectKey& key, const ObjectMeta& meta, std::uint64_t fill_epoch) {
  std::lock_guard lock(mu_);
  // Under the lock, so an invalidation either happened before (we see it and refuse) or
  // after (it erases what we publish).
  if (invalidated_at_[epoch_slot(key.bucket, key.key)] > fill_epoch) return false;
  if (Status s = index_->put_object(key, meta); !s) {
    spdlog::warn("cache index write failed: {}", s.message());
    return false;
  }
  // Under mu_, so an invalidation releases the pin after this (or refused the publish).
  if (pinned_prefix_count_.load(std::memory_order_relaxed) > 0) pin_if_under_prefix(key, meta);
  return true;
}

void ObjectCache::invalidate(const std::string& bucket, const std::string& key) {
  std::vector<std::pair<std::uint64_t, PinRecord>> unpinned;
  {
    std::lock_guard lock(mu_);
    invalidated_at_[epoch_slot(bucket, key)] = ++epoch_;
    // Every variant: a DELETE ?versionId= removes a version, a PUT to a versioning-suspended
    // bucket replaces the "null" version, and a snapshot read is conservatively refetched.
    if (Status s = index_->erase_object_variants(bucket, key); !s) {
      spdlog::warn("cache index erase failed: {}", s.message());
    }
    // A write through tagd replaces a pinned object: its pin goes with the old bytes (the
    // new version is pinned again when filled under a pinned prefix, else not until warmed
    // with --pin again; docs/warm.md). Under mu_ with the epoch: a publish came either
    // before (its pin goes here) or after (its new pin is not taken for the old one).
    if (pinned_objects_.load(std::memory_order_relaxed) > 0) unpinned = release_pins_of(bucket, key);
  }
  for (const auto& [key_hash, record] : unpinned) release_blocks(key_hash, record);
  metrics().cache_invalidations.inc();
}

std::optional<BlockRead> ObjectCache::read_block_in_memory(std::uint64_t key_hash, const std::string& etag,
                                                           std::uint64_t block) {
  BlockBytes bytes = memory_.get(MemoryTier::key(key_hash, etag, block));
  if (!bytes) return std::nullopt;
  note_read(key_hash, etag, block);
  return BlockRead{ReadOutcome::kHit, std::move(bytes), 0, true, true};
}

boost::asio::awaitable<BlockRead> ObjectCache::read_block(std::uint64_t key_hash, const std::string& etag,
                                                           std::uint64_t block) {
  if (std::optional<BlockRead> in_memory = read_block_in_memory(key_hash, etag, block)) co_return std::move(*in_memory);
  const BlockKey mkey = MemoryTier::key(key_hash, etag, block);
  // Named, not a temporary in the co_await (GCC 12 frees such temporaries twice).
  const BlockIdentity id{key_hash, block, etag};
  BlockRead r = co_await store_->read(id);
  count_read(r, key_hash, etag, block);
  if (r.outcome == ReadOutcome::kHit) note_read(key_hash, etag, block);
  if (r.outcome == ReadOutcome::kHit) (void)memory_.promote(mkey, r.bytes);
  co_return r;
}

boost::asio::awaitable<BlockRead> ObjectCache::read_block_range(std::uint64_t key_hash, const std::string& etag,
                                                                 std::uint64_t block, std::uint32_t offset,
                                                                 std::uint32_t length) {
  if (BlockBytes bytes = memory_.get(MemoryTier::key(key_hash, etag, block))) {
    note_read(key_hash, etag, block);
    co_return BlockRead{ReadOutcome::kHit, std::move(bytes), 0, true, true};
  }
  const BlockIdentity id{key_hash, block, etag};
  BlockRead r = co_await store_->read_range(id, offset, length);
  count_read(r, key_hash, etag, block);
  if (r.outcome == ReadOutcome::kHit) note_read(key_hash, etag, block);
  co_return r;
}

void ObjectCache::count_read(const BlockRead& r, std::uint64_t key_hash, const std::string& etag,
                             std::uint64_t block) {
  auto& m = metrics();
  if (r.outcome == ReadOutcome::kHit) {
    m.cache_disk_read_bytes.inc(r.bytes->size());
  } else if (r.outcome == ReadOutcome::kCorrupt) {
    m.cache_checksum_failures.inc();
    spdlog::warn("cache: corrupt block {} of key {:016x} etag {} dropped; refetching", block, key_hash, etag);
  }
}

void ObjectCache::store_block(std::uint64_t key_hash, const std::string& etag, std::uint64_t block, BlockBytes bytes) {
  const bool pin = pin_when_stored(key_hash, etag);
  Status s = store_->put(BlockIdentity{key_hash, block, etag}, bytes->bytes(), pin);
  if (s.code() == ErrorCode::kSlowDown) return;  // every region pinned: counted and logged by the store
  if (!s) {
    metrics().cache_write_errors.inc();
    spdlog::warn("cache: block write failed ({}); serving without caching", s.message());
    return;
  }
  if (pin) confirm_stored_pin(key_hash, etag, block);
  memory_.put(MemoryTier::key(key_hash, etag, block), std::move(bytes));
}

std::pair<std::shared_ptr<InflightBlock>, bool> ObjectCache::find_or_start(std::uint64_t key_hash,
                                                                           const std::string& etag,
                                                                           std::uint64_t block, std::uint32_t length) {
  std::lock_guard lock(mu_);
  auto& slot = inflight_[MemoryTier::key(key_hash, etag, block)];
  if (slot) return {slot, false};
  slot = std::make_shared<InflightBlock>(length, buffer_pool_);
  return {slot, true};
}

std::shared_ptr<InflightBlock> ObjectCache::find(std::uint64_t key_hash, const std::string& etag, std::uint64_t block) {
  std::lock_guard lock(mu_);
  auto it = inflight_.find(MemoryTier::key(key_hash, etag, block));
  return it == inflight_.end() ? nullptr : it->second;
}

void ObjectCache::finish(std::uint64_t key_hash, const std::string& etag, std::uint64_t block) {
  std::shared_ptr<InflightBlock> done;
  {
    std::lock_guard lock(mu_);
    auto it = inflight_.find(MemoryTier::key(key_hash, etag, block));
    if (it == inflight_.end()) return;
    done = std::move(it->second);
    inflight_.erase(it);
  }
  done->mark_finished();  // outside mu_: it wakes waiters (settle_fill)
}

bool ObjectCache::present_or_inflight(std::uint64_t key_hash, const std::string& etag, std::uint64_t block) {
  // contains(), not get(): a prefetch check must not make a block look hot to SIEVE.
  if (memory_.contains(MemoryTier::key(key_hash, etag, block))) return true;
  if (find(key_hash, etag, block)) return true;
  return store_->contains(BlockIdentity{key_hash, block, etag});
}

bool ObjectCache::block_cached(std::uint64_t key_hash, const std::string& etag, std::uint64_t block) {
  if (memory_.contains(MemoryTier::key(key_hash, etag, block))) return true;
  return store_->contains(BlockIdentity{key_hash, block, etag});
}

std::pair<std::shared_ptr<ObjectCache::PendingObject>, bool> ObjectCache::find_or_start_object(const ObjectKey& key) {
  std::lock_guard lock(mu_);
  auto& slot = pending_objects_[key.encoded()];
  if (slot) return {slot, false};
  slot = std::make_shared<PendingObject>();
  return {slot, true};
}

void ObjectCache::finish_object(const ObjectKey& key) {
  std::shared_ptr<PendingObject> done;
  {
    std::lock_guard lock(mu_);
    auto it = pending_objects_.find(key.encoded());
    if (it == pending_objects_.end()) return;
    done = std::move(it->second);
    pending_objects_.erase(it);
  }
  done->signal.complete();
}

}  // namespace tagd::cache
