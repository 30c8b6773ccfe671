#pragma once
// The cache as the gateway sees it: object metadata, blocks (DRAM tier, then disk),
// invalidation that races safely with fills, and the registry of blocks being fetched so
// that concurrent requests join one upstream fetch.
//
// Threading: shared by every event loop; each part has its own lock (index and block
// store inside, the in-flight registry and invalidation epochs here). Waiters are woken by
// posting to their own executor, so no loop ever runs another loop's handlers.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "tagd/cache/admission.hpp"
#include "tagd/cache/block_store.hpp"
#include "tagd/cache/index.hpp"
#include "tagd/cache/memory_tier.hpp"
#include "tagd/cache/prefetch_ledger.hpp"
#include "tagd/cache/sequential_detector.hpp"
#include "tagd/config/config.hpp"

namespace tagd::cache {

// A block being fetched. The fill appends bytes and wakes waiters; readers copy what is
// there at their own pace, so a slow reader holds no one back.
class InflightBlock {
 public:
  // No buffer yet: a whole-object fill registers every block up front, and memory must
  // only be taken by the block actually being filled. `pool`: where its buffer comes from
  // (and goes back to once the DRAM tier, the writer and every reader let go of it).
  explicit InflightBlock(std::uint32_t expected_length, std::shared_ptr<BlockBufferPool> pool = nullptr)
      : expected_(expected_length), pool_(std::move(pool)) {}

  // Fill side.
  void append(const std::byte* data, std::size_t n);
  // Marks the block whole and returns its bytes, shared with readers still copying from
  // it (no copy: nothing is appended after this).
  BlockBytes complete();
  // `changed`: the upstream said the object is not the one the metadata describes (412,
  // another ETag or size): readers must not retry with the same metadata.
  void fail(bool changed = false);
  // The fill's upstream answer was checked (status, Content-Range, ETag): bytes that will
  // arrive belong to the object the metadata describes. Set before the first append.
  void mark_validated();

  // Reader side: copies up to `max` bytes from `offset` into `out`; returns the number
  // copied, 0 if none are there yet. `done` is set once no more bytes will come
  // (complete or failed; check failed()).
  std::size_t read(std::size_t offset, std::byte* out, std::size_t max, bool& done) const;
  bool failed() const;
  bool changed() const;
  // Bytes the fill this block belongs to has received so far, across all its blocks. A
  // reader waiting for a block that the fill has not reached yet (a footer beside a
  // whole-object stream) judges a stall by this, not by its own block's bytes.
  void attach_fill_progress(std::shared_ptr<const std::atomic<std::uint64_t>> progress);
  std::uint64_t fill_progress() const;
  bool validated() const;
  std::uint32_t expected_length() const noexcept { return expected_; }

  // Arranges for `timer` (running on `executor`) to be cancelled at the next progress.
  // Returns false (and registers nothing) if progress already happened past `seen`.
  bool wait_for_progress(std::size_t seen, boost::asio::any_io_executor executor,
                         std::shared_ptr<boost::asio::steady_timer> timer);
  // Same, until the block is validated, complete or failed.
  bool wait_for_validation(boost::asio::any_io_executor executor, std::shared_ptr<boost::asio::steady_timer> timer);
  // Same, until the block left the in-flight registry (ObjectCache::finish: written to the
  // store, or failed): a pin of the object can then find it (ObjectCache::settle_fill).
  bool wait_for_finish(boost::asio::any_io_executor executor, std::shared_ptr<boost::asio::steady_timer> timer);
  void mark_finished();

 private:
  void notify_locked();
  std::size_t size_locked() const noexcept { return data_ ? data_->size() : 0; }
  mutable std::mutex mu_;
  std::shared_ptr<BlockBuffer> data_;  // taken on the first byte
  std::uint32_t expected_ = 0;
  std::shared_ptr<BlockBufferPool> pool_;
  bool complete_ = false;
  bool failed_ = false;
  bool changed_ = false;
  bool validated_ = false;
  bool finished_ = false;
  std::shared_ptr<const std::atomic<std::uint64_t>> fill_progress_;
  std::vector<std::pair<boost::asio::any_io_executor, std::shared_ptr<boost::asio::steady_timer>>> waiters_;
};

struct ObjectCacheOptions {
  std::uint32_t block_size = 1u << 20;
  std::chrono::milliseconds ttl{24 * 3600 * 1000};
  std::chrono::milliseconds stale_if_error{3600 * 1000};
  std::uint64_t max_fetch = 8ull << 20;  // bytes per upstream request of a fill (a part)
  // Parts of one object in flight at once ahead of a reader (the part it reads included).
  std::uint32_t fetch_parallelism = 8;
  // Bytes all fetches ahead of readers (parallel parts, read-ahead) may hold in flight.
  std::uint64_t prefetch_budget = 256ull << 20;
  ReadAheadSettings read_ahead;
  std::uint64_t pin_quota = 0;  // cache.pin_quota (BlockStoreOptions::pin_quota)
  // DRAM-tier blocks in memfd slots, so a writer may send them from there (cache.sendfile
  // not "off"; which clients get sendfile is the server's choice, http::ClientStream).
  bool sendfile = true;
};

// What pinning an object came to (ObjectCache::pin_object).
enum class PinOutcome {
  kPinned,
  kQuotaExceeded,  // nothing of the object stays pinned by this call
  kNotCached,      // the object (or one of its blocks) is not in the cache
  kDisabled,       // cache.pin_quota is 0
  kUnpinned,       // a prefix job's object whose prefix was unpinned meanwhile
  kNotRecorded,    // the index failed to write its pin record: not pinned (a restart would not restore it)
};
const char* pin_outcome_name(PinOutcome outcome);

// Who holds an object's pin (docs/warm.md, "Pins"). An object stays pinned while any
// owner does: a prefix record covering its key, its own key (a key-list --pin job), or a
// key-list job running ahead of its readers (until read).
enum class PinOwner { kKey, kPrefix, kUntilRead };

struct UnpinSummary {
  std::uint64_t objects = 0;
  std::uint64_t bytes = 0;  // object bytes
  std::uint64_t prefixes = 0;      // prefix records removed
  std::uint64_t objects_kept = 0;  // under the prefix, still held by another prefix record
  std::vector<std::string> still_pinned_by;  // live prefix records overlapping the prefix
};

class ObjectCache {
 public:
  // Opens the configured cache: block file in cache.disk_path (io_uring device when
  // available, pread/pwrite otherwise), RocksDB index beside it. Throws std::runtime_error
  // naming the setting on start-up problems (not enough free space, unusable directory).
  static std::unique_ptr<ObjectCache> open(const config::Config& config, bool io_uring_available);

  ObjectCache(std::unique_ptr<BlockDevice> device, std::unique_ptr<CacheIndex> index,
              std::unique_ptr<EvictionPolicy> eviction, std::unique_ptr<AdmissionPolicy> admission,
              std::uint64_t memory_bytes, std::uint64_t region_size, ObjectCacheOptions options);
  ~ObjectCache();
  ObjectCache(const ObjectCache&) = delete;
  ObjectCache& operator=(const ObjectCache&) = delete;

  const ObjectCacheOptions& options() const noexcept { return options_; }
  AdmissionPolicy& admission() { return *admission_; }
  // Fetches ahead of readers reserve from this budget, not the fill budget: a miss that a
  // client waits for must not be refused because prefetch took the room.
  AdmissionPolicy& prefetch_budget() { return *prefetch_budget_; }
  PrefetchLedger& prefetch_ledger() { return prefetch_ledger_; }
  BlockBufferPool& buffer_pool() noexcept { return *buffer_pool_; }
  SequentialDetector& sequential_detector() { return sequential_; }
  const char* device_kind() const noexcept { return device_->kind(); }
  const BlockDevice& device() const noexcept { return *device_; }

  std::optional<ObjectMeta> lookup(const ObjectKey& key);
  // lookup() without a copy (the index's own version, or null): what a hit reads.
  std::shared_ptr<const ObjectMeta> lookup_shared(const ObjectKey& key);
  // A fill records epoch() before its upstream request; publish() refuses if the key was
  // invalidated since (TAG bug 2: a write racing a fill re-cached stale data).
  std::uint64_t epoch() const;
  bool publish(const ObjectKey& key, const ObjectMeta& meta, std::uint64_t fill_epoch);
  // Every variant of (bucket, key) — plain, versionId=..., snapshot=... — is erased (one
  // prefix scan in the index) and fills of any of them that started before refuse to
  // publish (the epoch slot is per bucket and key, not per variant).
  void invalidate(const std::string& bucket, const std::string& key);

  // The whole block from the DRAM tier only (read_block's first step, without a coroutine
  // frame): nullopt when it is not there.
  [[nodiscard]] std::optional<BlockRead> read_block_in_memory(std::uint64_t key_hash, const std::string& etag,
                                                              std::uint64_t block);
  // The whole block: DRAM tier, then disk (a disk read is admitted to the DRAM tier).
  // kCorrupt is counted and the block dropped (the caller refetches).
  [[nodiscard]] boost::asio::awaitable<BlockRead> read_block(std::uint64_t key_hash, const std::string& etag,
                                                            std::uint64_t block);
  // Bytes [offset, offset + length) of a block: from the DRAM tier if the block is there,
  // otherwise only the 64 KiB pieces that hold them, from disk (not admitted to the DRAM
  // tier: it holds whole blocks). The result may hold more than asked (BlockRead::first).
  [[nodiscard]] boost::asio::awaitable<BlockRead> read_block_range(std::uint64_t key_hash, const std::string& etag,
                                                                  std::uint64_t block, std::uint32_t offset,
                                                                  std::uint32_t length);
  // Stores a finished block (disk, then DRAM tier). Failures are counted, not fatal.
  void store_block(std::uint64_t key_hash, const std::string& etag, std::uint64_t block, BlockBytes bytes);

  // Pins (docs/warm.md; the block store keeps the counts). A warm job with pins calls
  // begin_pin before it reads an object, so the blocks its fill writes go to pinned
  // regions at once (no window in which they could be evicted), then pin_object once the
  // object is read (confirms, or pins in place what was cached before), then end_pin
  // (releases whatever the fill pinned that pin_object did not confirm).
  // Every pin is persisted in the index with its owners (object_cache_pins.cpp) and pinned
  // again at start-up; until-read pins (a key-list warm's run ahead of its readers) are
  // released by the first read of each block, their record with the object's last block.
  bool pinning_enabled() const noexcept { return store_->pin_quota_bytes() > 0; }
  std::uint64_t pin_quota_bytes() const noexcept { return store_->pin_quota_bytes(); }
  std::uint64_t pinned_bytes() const { return store_->pinned_bytes(); }
  void begin_pin(const ObjectKey& key);
  void end_pin(const ObjectKey& key);
  // kPrefix: only while a prefix record covers the key (else kUnpinned).
  // `job`: the key-list job that pins until read (its id), so cancelling it releases only
  // what no other owner holds.
  [[nodiscard]] PinOutcome pin_object(const ObjectKey& key, PinOwner owner, std::string_view job = {});
  // A pinned prefix (`tagd warm s3://b/p --pin`): a record in the index, restored at
  // start-up. Every object published under it from then on (any miss, a refill after a
  // write) is pinned as its blocks are written, within the quota (beyond it the object is
  // refused: tagd_cache_pins_refused_total and a warning). Errors: kInvalidRequest when
  // pinning is off, index write errors.
  [[nodiscard]] Status pin_prefix(const std::string& bucket, const std::string& prefix);
  // Removes the prefix record (`recursive`: every record at or below it), clears the key
  // ownership of objects under it, and releases those no remaining prefix record covers.
  [[nodiscard]] Result<UnpinSummary> unpin(const std::string& bucket, const std::string& prefix,
                                           bool recursive = false);
  // Releases `job`'s until-read pin of one object (a cancelled key-list job's run ahead);
  // the object stays pinned while another owner holds it.
  void release_until_read(const ObjectKey& key, std::string_view job);
  // Waits (at most `limit`) until no block of the object is in flight: a warm job that has
  // read an object's body may find its last blocks still queued for the fill's writer.
  [[nodiscard]] boost::asio::awaitable<void> settle_fill(const ObjectKey& key, std::chrono::milliseconds limit);
  // Pinned objects (not prefix records) in `bucket` under `prefix`.
  [[nodiscard]] Result<std::vector<std::pair<ObjectKey, PinRecord>>> pins(const std::string& bucket,
                                                                          const std::string& prefix);
  // Until-read pins in `bucket` under `prefix` and the live jobs that hold each (none for
  // one restored at start-up), read-only: what GET /_tagd/pins lists and a cancel releases.
  std::vector<std::pair<ObjectKey, std::vector<std::string>>> until_read_pins(const std::string& bucket,
                                                                              const std::string& prefix);
  // Pinned prefixes of `bucket` that overlap `prefix` (cover it or lie under it).
  std::vector<std::string> pinned_prefixes(const std::string& bucket, const std::string& prefix);

  // In-flight registry. find_or_start returns the block being fetched and whether the
  // caller must fetch it (true: the caller owns the fill and must finish() it).
  std::pair<std::shared_ptr<InflightBlock>, bool> find_or_start(std::uint64_t key_hash, const std::string& etag,
                                                                std::uint64_t block, std::uint32_t length);
  std::shared_ptr<InflightBlock> find(std::uint64_t key_hash, const std::string& etag, std::uint64_t block);
  void finish(std::uint64_t key_hash, const std::string& etag, std::uint64_t block);
  // True if the block is cached (DRAM tier or index) or being fetched; reads no data.
  bool present_or_inflight(std::uint64_t key_hash, const std::string& etag, std::uint64_t block);
  // True if the block is cached (DRAM tier or index); reads no data.
  bool block_cached(std::uint64_t key_hash, const std::string& etag, std::uint64_t block);

  // Object-level single flight: for a cold object the first request fetches the object's
  // head (and first blocks), for a stale one it sends the conditional HEAD; others wait for
  // `signal` and then look the metadata up.
  struct PendingObject {
    InflightBlock signal{0};
    // Set by a revalidation that could not reach the upstream (before `signal` completes):
    // its waiters serve the stale copy (or forward) instead of each trying in turn.
    std::atomic<bool> upstream_failed{false};
  };
  std::pair<std::shared_ptr<PendingObject>, bool> find_or_start_object(const ObjectKey& key);
  void finish_object(const ObjectKey& key);

 private:
  std::size_t epoch_slot(const std::string& bucket, const std::string& key) const;
  void count_read(const BlockRead& r, std::uint64_t key_hash, const std::string& etag, std::uint64_t block);
  void restore_pins();
  void note_read(std::uint64_t key_hash, const std::string& etag, std::uint64_t block);
  // store_block's hooks: whether a block goes to the pin head, and (after it is written)
  // confirming it held, or refusing its object when the quota is spent.
  bool pin_when_stored(std::uint64_t key_hash, const std::string& etag);
  void confirm_stored_pin(std::uint64_t key_hash, const std::string& etag, std::uint64_t block);
  // publish()'s hook (under mu_): an object published under a pinned prefix is pinned.
  void pin_if_under_prefix(const ObjectKey& key, const ObjectMeta& meta);
  // Forgets the pin records of every variant of (bucket, key); returns the blocks to release.
  std::vector<std::pair<std::uint64_t, PinRecord>> release_pins_of(const std::string& bucket, const std::string& key);
  struct PinnedObject {
    ObjectKey key;
    PinRecord record;
    // Until-read: the live key-list jobs that pinned it (cancelling one releases only its
    // share; none after a restart), and how many of its blocks no client has read yet.
    std::vector<std::string> jobs;
    std::uint64_t unread = 0;
  };
  bool covered_locked(const ObjectKey& key) const;
  void release_blocks(std::uint64_t key_hash, const PinRecord& record);
  void drop_pinned_locked(std::uint64_t key_hash);
  // Pin records: how many exist (invalidate() and store_block look further only if any do).
  std::atomic<std::uint64_t> pinned_objects_{0};
  // Objects a warm job is filling with pins (begin_pin), by key hash, counted.
  std::mutex pin_mu_;
  std::unordered_map<std::uint64_t, std::uint32_t> pinning_;
  std::atomic<std::uint32_t> pinning_count_{0};  // store_block's fast path
  // Under pin_mu_: every object pin record by key hash (the index's `p` records, in
  // memory), and the pinned prefixes by bucket.
  std::unordered_map<std::uint64_t, PinnedObject> pinned_;
  std::map<std::string, std::set<std::string>> pinned_prefixes_;
  std::atomic<std::uint64_t> pinned_prefix_count_{0};  // publish's fast path

  std::unique_ptr<BlockDevice> device_;
  std::unique_ptr<CacheIndex> index_;
  std::unique_ptr<BlockStore> store_;
  std::unique_ptr<AdmissionPolicy> admission_;
  MemoryTier memory_;
  ObjectCacheOptions options_;
  std::unique_ptr<AdmissionPolicy> prefetch_budget_;
  PrefetchLedger prefetch_ledger_;
  SequentialDetector sequential_;

  mutable std::mutex mu_;
  std::uint64_t epoch_ = 1;
  // Last invalidation epoch per key, in a fixed hashed table: a collision only makes a
  // fill skip publishing (safe), and memory stays constant.
  std::vector<std::uint64_t> invalidated_at_;
  std::unordered_map<BlockKey, std::shared_ptr<InflightBlock>, BlockKeyHash> inflight_;
  std::unordered_map<std::string, std::shared_ptr<PendingObject>> pending_objects_;
  // Fill block buffers, recycled (block_buffer_pool.hpp): idle ones at most an eighth of
  // the DRAM tier, 8 blocks to 64 MiB.
  std::shared_ptr<BlockBufferPool> buffer_pool_;
};

}  // namespace tagd::cache
