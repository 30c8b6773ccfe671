// The durable index (RocksDB) behind a bounded in-memory copy of the entries hits need.
//
// Why: a hit used to cost a RocksDB Get plus a JSON parse for the object's metadata and
// one more Get per block. Here each is a hash lookup in one of kShards maps.
//
// Consistency: every write goes to the durable index first and then to memory, under the
// shard's lock, so memory never holds what the durable index does not. A lookup that
// misses memory reads the durable index without the lock and then installs what it read
// only if no erase touched the shard meanwhile (the shard's erase counter), so an entry
// erased by an invalidation is never brought back by a slower reader.
// Bound: at most max_entries objects plus max_entries blocks, dropped oldest-inserted
// first (FIFO); a dropped entry is one durable lookup away.
#include <array>
#include <deque>
#include <mutex>
#include <unordered_map>

#include "tagd/cache/block_format.hpp"
#include "tagd/cache/http_semantics.hpp"
#include "tagd/cache/index.hpp"
#include "tagd/cache/memory_tier.hpp"

namespace tagd::cache {
namespace {

constexpr std::size_t kShards = 16;

// A bounded map with FIFO eviction. Not thread-safe: the owning shard locks.
template <class Key, class Value, class Hash = std::hash<Key>>
class BoundedMap {
 public:
  explicit BoundedMap(std::size_t max) : max_(std::max<std::size_t>(max, 1)) {}

  Value* find(const Key& key) {
    auto it = map_.find(key);
    return it == map_.end() ? nullptr : &it->second.value;
  }
  void put(const Key& key, Value value) {
    auto [it, inserted] = map_.try_emplace(key);
    it->second.value = std::move(value);
    if (!inserted) return;
    it->second.seq = ++seq_;
    order_.emplace_back(key, it->second.seq);
    while (map_.size() > max_) drop_oldest();
    // Erased keys leave their order entries behind; compact before they dominate.
    if (order_.size() > 2 * max_ + 64) compact();
  }
  void erase(const Key& key) { map_.erase(key); }

 private:
  struct Slot {
    Value value{};
    std::uint64_t seq = 0;
  };
  void drop_oldest() {
    while (!order_.empty()) {
      auto [key, seq] = std::move(order_.front());
      order_.pop_front();
      auto it = map_.find(key);
      if (it != map_.end() && it->second.seq == seq) {
        map_.erase(it);
        return;
      }
    }
  }
  void compact() {
    std::deque<std::pair<Key, std::uint64_t>> kept;
    for (auto& entry : order_) {
      auto it = map_.find(entry.first);
      if (it != map_.end() && it->second.seq == entry.second) kept.push_back(std::move(entry));
    }
    order_ = std::move(kept);
  }

  std::size_t max_;
  std::uint64_t seq_ = 0;
  std::unordered_map<Key, Slot, Hash> map_;
  std::deque<std::pair<Key, std::uint64_t>> order_;
};

// All variants of one (bucket, key), so an invalidation drops them with one erase.
// Each version is shared with the hits that read it and never changed: a new version
// replaces the pointer.
using Variants = std::vector<std::pair<std::string, std::shared_ptr<const ObjectMeta>>>;
using ObjectMap = BoundedMap<std::string, Variants>;               // by variants prefix
using BlockMap = BoundedMap<BlockKey, BlockLocation, BlockKeyHash>;  // the DRAM tier's key

class MemoryCachedIndex final : public CacheIndex {
 public:
  MemoryCachedIndex(std::unique_ptr<CacheIndex> durable, std::size_t max_entries) : durable_(std::move(durable)) {
    const std::size_t per_shard = std::max<std::size_t>(1, max_entries / kShards);
    for (auto& s : shards_) {
      s.objects = std::make_unique<ObjectMap>(per_shard);
      s.blocks = std::make_unique<BlockMap>(per_shard);
    }
  }

  Result<std::optional<ObjectMeta>> get_object(const ObjectKey& key) override {
    auto found = get_object_shared(key);
    if (!found) return found.error();
    if (!*found) return std::optional<ObjectMeta>();
    return std::optional<ObjectMeta>(**found);
  }

  Result<std::shared_ptr<const ObjectMeta>> get_object_shared(const ObjectKey& key) override {
    const std::string& prefix = lookup_prefix(key);
    Shard& shard = shard_for(prefix);
    std::uint64_t erases = 0;
    {
      std::lock_guard lock(shard.mu);
      if (Variants* variants = shard.objects->find(prefix)) {
        for (const auto& [variant, meta] : *variants) {
          if (variant == key.variant) return meta;
        }
      }
      erases = shard.erases;
    }
    auto found = durable_->get_object(key);
    if (!found) return found.error();
    if (!found->has_value()) return std::shared_ptr<const ObjectMeta>();
    auto installed = std::make_shared<const ObjectMeta>(with_prepared_head(**found));
    std::lock_guard lock(shard.mu);
    if (shard.erases == erases) install_locked(shard, prefix, key.variant, installed);
    return installed;
  }

  Status put_object(const ObjectKey& key, const ObjectMeta& meta) override {
    const std::string prefix = ObjectKey::variants_prefix(key.bucket, key.key);
    Shard& shard = shard_for(prefix);
    auto installed = std::make_shared<const ObjectMeta>(with_prepared_head(meta));  // outside the lock
    std::lock_guard lock(shard.mu);
    if (Status s = durable_->put_object(key, meta); !s) return s;
    install_locked(shard, prefix, key.variant, std::move(installed));
    return Status::ok();
  }

  Status erase_object(const ObjectKey& key) override {
    const std::string prefix = ObjectKey::variants_prefix(key.bucket, key.key);
    Shard& shard = shard_for(prefix);
    std::lock_guard lock(shard.mu);
    ++shard.erases;
    if (Variants* variants = shard.objects->find(prefix)) {
      std::erase_if(*variants, [&](const auto& v) { return v.first == key.variant; });
    }
    return durable_->erase_object(key);
  }

  Status erase_object_variants(const std::string& bucket, const std::string& key) override {
    const std::string prefix = ObjectKey::variants_prefix(bucket, key);
    Shard& shard = shard_for(prefix);
    std::lock_guard lock(shard.mu);
    ++shard.erases;
    shard.objects->erase(prefix);
    return durable_->erase_object_variants(bucket, key);
  }

  Result<std::optional<BlockLocation>> get_block(std::uint64_t key_hash, const std::string& etag,
                                                 std::uint64_t block) override {
    const BlockKey k = MemoryTier::key(key_hash, etag, block);
    Shard& shard = shard_for(k);
    std::uint64_t erases = 0;
    {
      std::lock_guard lock(shard.mu);
      if (BlockLocation* location = shard.blocks->find(k)) return std::optional<BlockLocation>(*location);
      erases = shard.erases;
    }
    auto found = durable_->get_block(key_hash, etag, block);
    if (!found || !found->has_value()) return found;
    std::lock_guard lock(shard.mu);
    if (shard.erases == erases) shard.blocks->put(k, **found);
    return found;
  }

  Status put_block(std::uint64_t key_hash, const std::string& etag, std::uint64_t block,
                   const BlockLocation& location) override {
    const BlockKey k = MemoryTier::key(key_hash, etag, block);
    Shard& shard = shard_for(k);
    std::lock_guard lock(shard.mu);
    if (Status s = durable_->put_block(key_hash, etag, block, location); !s) return s;
    shard.blocks->put(k, location);
    return Status::ok();
  }

  Status erase_block(std::uint64_t key_hash, const std::string& etag, std::uint64_t block) override {
    const BlockKey k = MemoryTier::key(key_hash, etag, block);
    Shard& shard = shard_for(k);
    std::lock_guard lock(shard.mu);
    ++shard.erases;
    shard.blocks->erase(k);
    return durable_->erase_block(key_hash, etag, block);
  }

  // Region generations are read at start-up and written once per region: no copy kept.
  Status put_region_generation(std::uint32_t region, std::uint64_t generation) override {
    return durable_->put_region_generation(region, generation);
  }
  Result<std::vector<std::uint64_t>> region_generations(std::uint32_t region_count) override {
    return durable_->region_generations(region_count);
  }
  // Pins are written on warm/unpin and read at start-up and by unpin: no copy kept.
  Status put_pin(const ObjectKey& key, const PinRecord& pin) override { return durable_->put_pin(key, pin); }
  Status erase_pin(const ObjectKey& key) override { return durable_->erase_pin(key); }
  Result<std::vector<std::pair<ObjectKey, PinRecord>>> pins(const std::string& bucket,
                                                            const std::string& prefix) override {
    return durable_->pins(bucket, prefix);
  }

 private:
  struct Shard {
    std::mutex mu;
    std::uint64_t erases = 0;
    std::unique_ptr<ObjectMap> objects;
    std::unique_ptr<BlockMap> blocks;
  };

  Shard& shard_for(const std::string& k) { return shards_[hash_bytes(k) % kShards]; }

  // ObjectKey::variants_prefix(key.bucket, key.key) ("o" bucket \0 key \0, index.hpp) in
  // this thread's reused buffer: a hit builds no key string (it used to build two). Valid
  // until the thread's next lookup; get_object makes no other lookup meanwhile.
  static const std::string& lookup_prefix(const ObjectKey& key) {
    thread_local std::string buffer;
    buffer.clear();
    buffer.push_back('o');
    buffer.append(key.bucket);
    buffer.push_back('\0');
    buffer.append(key.key);
    buffer.push_back('\0');
    return buffer;
  }
  Shard& shard_for(const BlockKey& k) { return shards_[BlockKeyHash()(k) % kShards]; }

  // A hit's response head is prepared here, once per installed version: a new version (an
  // overwrite's fill, a revalidation, learnt checksums) is installed by put_object with a
  // head of its own, and an erase drops the head with the metadata.
  static ObjectMeta with_prepared_head(const ObjectMeta& meta) {
    ObjectMeta out = meta;
    out.prepared = std::make_shared<const PreparedHead>(prepare_head(meta));
    return out;
  }

  static void install_locked(Shard& shard, const std::string& prefix, const std::string& variant,
                             std::shared_ptr<const ObjectMeta> meta) {
    Variants* variants = shard.objects->find(prefix);
    if (variants == nullptr) {
      shard.objects->put(prefix, Variants{{variant, std::move(meta)}});
      return;
    }
    for (auto& [v, m] : *variants) {
      if (v == variant) {
        m = std::move(meta);
        return;
      }
    }
    variants->emplace_back(variant, std::move(meta));
  }

  std::unique_ptr<CacheIndex> durable_;
  std::array<Shard, kShards> shards_;
};

}  // namespace

std::unique_ptr<CacheIndex> make_memory_cached_index(std::unique_ptr<CacheIndex> durable, std::size_t max_entries) {
  return std::make_unique<MemoryCachedIndex>(std::move(durable), max_entries);
}

}  // namespace tagd::cache
