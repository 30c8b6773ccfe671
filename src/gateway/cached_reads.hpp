#pragma once
// Internal to the gateway module: GET/HEAD of objects served through the block cache.
//
// Read path: cache key (bypass for variants that change the response) → metadata lookup
// → fresh: answer conditionals, ranges and the body from blocks (DRAM tier, disk, or a
// fill in progress); stale or client no-cache: conditional revalidation upstream (304
// renews); unknown: one request per object fetches the head and first blocks while
// concurrent requests wait for it (single flight), then every request reads blocks.
// Missing blocks are fetched in runs of contiguous blocks (up to cache.max_fetch) with
// If-Match on the ETag, by a fill coroutine that outlives the request that started it.
#include <boost/asio/awaitable.hpp>
#include <memory>
#include <optional>

#include "exchange.hpp"
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
  boost::asio::awaitable<bool> respond(Exchange& ex, const cache::ObjectKey& key, const cache::ObjectMeta& meta,
                                       const char* x_cache, bool stale);
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
