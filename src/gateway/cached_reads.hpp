#pragma once
// Internal to the gateway module: GET/HEAD of objects served through the block cache.
//
// Read path: cache key (allow-listed headers and query parameters; variants: versionId,
// X-Tigris-Snapshot-Version; anything unknown bypasses) → metadata lookup
// → fresh: answer conditionals, ranges and the body from blocks (DRAM tier, disk, or a
// fill in progress); stale or client no-cache: conditional revalidation upstream (304
// renews); unknown: one request per object fetches the head and first blocks while
// concurrent requests wait for it (single flight), then every request reads blocks.
// Missing blocks are fetched in runs of contiguous blocks (up to cache.max_fetch) with
// If-Match on the ETag, by a fill coroutine that outlives the request that started it.
// A fill's answer is stored only if it is exactly the bytes asked for, of that ETag; a hit
// that needs blocks from upstream waits for the first such answer before sending its
// head, so an object that changed upstream is served as a clean miss. Once the head is
// sent, a change resets the connection (never a short or mixed body).
#include <boost/asio/awaitable.hpp>
#include <memory>
#include <optional>

#include "exchange.hpp"
#include "tagd/cache/http_semantics.hpp"
#include "tagd/cache/object_cache.hpp"
#include "tagd/upstream/pool.hpp"

namespace tagd::gateway {

class CachedReads {
 public:
  CachedReads(const Shared& shared, upstream::Pool& pool, cache::ObjectCache& cache)
      : shared_(shared), pool_(pool), cache_(cache) {}

  // Returns nullopt when the request must be forwarded instead (ex.x_cache says how it
  // will be labelled); otherwise whether the client connection may be kept.
  boost::asio::awaitable<std::optional<bool>> serve(Exchange& ex);

  struct Run;  // a fill of contiguous blocks (cached_reads.cpp)

 private:
  // nullopt: the object changed upstream (the entry is invalidated, nothing was sent):
  // serve the request as a miss. Otherwise whether the connection may be kept.
  boost::asio::awaitable<std::optional<bool>> respond(Exchange& ex, const cache::ObjectKey& key,
                                                      const cache::ObjectMeta& meta, const char* x_cache, bool stale,
                                                      bool checksum_mode);
  enum class Prevalidation { kOk, kChanged, kFailed, kTimeout };
  // Makes sure the first block of `span` that is not cached is being fetched from an
  // upstream answer that was checked (or finds that the object changed).
  boost::asio::awaitable<Prevalidation> prevalidate(Exchange& ex, const cache::ObjectKey& key,
                                                    const cache::ObjectMeta& meta, const cache::BlockSpan& span);
  boost::asio::awaitable<Status> stream_block(Exchange& ex, const cache::ObjectKey& key, const cache::ObjectMeta& meta,
                                              std::uint64_t block, std::uint64_t lo, std::uint64_t hi);
  // Starts fetching the run of missing blocks beginning at `block` (no-op if it is cached
  // or in flight).
  void ensure_run(const cache::ObjectKey& key, const cache::ObjectMeta& meta, std::uint64_t block);

  const Shared& shared_;
  upstream::Pool& pool_;
  cache::ObjectCache& cache_;
};

}  // namespace tagd::gateway
