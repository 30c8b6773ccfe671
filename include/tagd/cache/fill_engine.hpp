#pragma once
// Fills: runs of contiguous missing blocks fetched from the upstream (through a Fetcher)
// and published block by block into the cache. A fill runs detached on its event loop,
// so it outlives the request that started it; readers follow its progress through the
// in-flight registry (ObjectCache::find), never through the fill itself.
//
// A fill stores nothing unless the upstream answer is exactly the bytes asked for, of the
// ETag the metadata names (If-Match + check_fill_response). A changed object invalidates
// the entry and fails the blocks as "changed", so readers stop instead of retrying.
//
// A finished block is handed to the loop's writer thread (FillWriter, fill_engine.cpp):
// readers copy it from memory meanwhile (it stays in the in-flight registry until its
// write and index entry are done, then leaves it), so neither the reader nor the next
// block of the fill waits for the disk. A failed write publishes nothing and is counted
// (tagd_cache_write_errors_total); a full write queue (write_queue_bytes) makes the loop
// write the block itself, as before (tagd_cache_fill_writes_inline_total).
//
// Upstream fetches per object (this loop's and every other's) are counted in the
// sequential detector: fetches ahead of readers start only while the object has fewer
// than cache.fetch_parallelism in flight (tagd_cache_prefetch_held_total otherwise).
//
// Threading: one FillEngine per event loop, used from that loop only (its writer thread
// only writes blocks and takes them out of the registry, both thread-safe).
#include <boost/asio/any_io_executor.hpp>
#include <chrono>
#include <cstdint>
#include <memory>

#include "tagd/cache/admission.hpp"
#include "tagd/cache/fetcher.hpp"
#include "tagd/cache/object_cache.hpp"
#include "tagd/core/body_source.hpp"

namespace tagd::cache {

// What started a fill (tagd_cache_fills_by_cause_total). Metadata-only fills (a HEAD
// miss, a conditional that needs no body) are counted by the read path as "head".
enum class FillCause {
  kMiss,         // a whole-object GET that found nothing cached
  kRange,        // a ranged GET that found nothing cached
  kSuffix,       // a suffix range (bytes=-n) that found nothing cached
  kConditional,  // a GET with If-Match / If-Unmodified-Since that found nothing cached
  kBlock,        // a reader reached a block that is not cached
  kParallel,     // a part fetched ahead of a reader, inside the range it asked for
  kReadAhead,    // bytes past what the reader asked for (a sequential stream)
  kWarm,         // a warm job
};

class FillWriter;

// Bytes of finished blocks one loop's writer may hold queued before the loop writes
// blocks itself (bounded memory when the disk is slower than the upstream).
inline constexpr std::uint64_t kDefaultWriteQueueBytes = 64ull << 20;

class FillEngine {
 public:
  // `cache` and `fetcher` outlive the engine and every fill it starts.
  FillEngine(ObjectCache& cache, Fetcher& fetcher, boost::asio::any_io_executor executor,
             std::chrono::milliseconds read_timeout, std::uint64_t write_queue_bytes = kDefaultWriteQueueBytes);
  // Waits for the blocks queued for writing (their index entries are published first).
  ~FillEngine();
  FillEngine(const FillEngine&) = delete;
  FillEngine& operator=(const FillEngine&) = delete;

  // Starts fetching the run of missing blocks that begins at `block` (up to
  // cache.max_fetch bytes, stopping at a block that is cached or being fetched). No-op if
  // `block` itself is cached or in flight), and not past `last_wanted`: bytes beyond what
  // the reader asked for are read-ahead's to decide (a random reader must not pay a part
  // per small read). Not budgeted and not held by the per-object limit: a reader needs
  // `block` now (it counts against the limit all the same).
  void ensure_run(const ObjectKey& key, const ObjectMeta& meta, std::uint64_t block,
                  std::uint64_t last_wanted = UINT64_MAX, FillCause cause = FillCause::kBlock);

  // Fetches ahead of readers: the missing blocks of [first_block, last_block], in runs of
  // up to cache.max_fetch that never cross a part boundary (parts are cache.max_fetch
  // aligned in the object, so once aligned every run is a whole part), at most `max_runs`
  // runs started by this call, and none while the object has cache.fetch_parallelism
  // fetches in flight. Each run is reserved from the prefetch budget (none started once it
  // is spent) and its blocks are entered in the prefetch ledger. Returns the first block
  // it did not get to (past `last_block` when it covered them all; earlier when the run
  // count, the per-object limit or the budget stopped it), so a caller can resume there.
  std::uint64_t fetch_ahead(const ObjectKey& key, const ObjectMeta& meta, std::uint64_t first_block,
                            std::uint64_t last_block, std::size_t max_runs, FillCause cause);

  // Takes over a validated upstream body that holds `body_bytes` bytes of the object
  // starting at `first_block` (a miss's own answer), after `skip` leading bytes that
  // precede that block (a suffix answer starts wherever the object's end says): blocks
  // nobody else is fetching are registered now and filled as the body arrives.
  // `admission` is held until the fill ends.
  void adopt(const ObjectKey& key, const ObjectMeta& meta, std::uint64_t first_block, std::uint64_t body_bytes,
             std::unique_ptr<BodySource> body, Admission admission, FillCause cause, std::uint64_t skip = 0);

  struct Run;  // one fill (fill_engine.cpp)

 private:
  // Registers the run of missing blocks from `block` (at most `max_blocks`) and starts
  // its fetch; false if there was nothing to fetch.
  // `slot` counts the run in the object's fetches in flight until the run ends.
  bool start_run(const ObjectKey& key, const ObjectMeta& meta, std::uint64_t block, std::uint64_t max_blocks,
                 Admission admission, FillCause cause, bool ahead, FetchSlot slot);

  ObjectCache& cache_;
  Fetcher& fetcher_;
  boost::asio::any_io_executor executor_;
  std::chrono::milliseconds read_timeout_;
  // Shared with the runs (a detached run may end after the engine); stopped (drained and
  // joined) by the destructor.
  std::shared_ptr<FillWriter> writer_;
};

// Length of `block` of an object (the last one may be short).
std::uint32_t block_length(const ObjectMeta& meta, std::uint64_t block);
std::uint64_t last_block(const ObjectMeta& meta);

}  // namespace tagd::cache
