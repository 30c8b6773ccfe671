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
// Threading: one FillEngine per event loop, used from that loop only.
#include <boost/asio/any_io_executor.hpp>
#include <chrono>
#include <cstdint>
#include <memory>

#include "tagd/cache/admission.hpp"
#include "tagd/cache/fetcher.hpp"
#include "tagd/cache/object_cache.hpp"
#include "tagd/core/body_source.hpp"

namespace tagd::cache {

class FillEngine {
 public:
  // `cache` and `fetcher` outlive the engine and every fill it starts.
  FillEngine(ObjectCache& cache, Fetcher& fetcher, boost::asio::any_io_executor executor,
             std::chrono::milliseconds read_timeout)
      : cache_(cache), fetcher_(fetcher), executor_(std::move(executor)), read_timeout_(read_timeout) {}

  // Starts fetching the run of missing blocks that begins at `block` (up to
  // cache.max_fetch bytes, stopping at a block that is cached or being fetched). No-op if
  // `block` itself is cached or in flight.
  void ensure_run(const ObjectKey& key, const ObjectMeta& meta, std::uint64_t block);

  // Takes over a validated upstream body that holds `body_bytes` bytes of the object
  // starting at `first_block` (a miss's own answer): blocks nobody else is fetching are
  // registered now and filled as the body arrives. `admission` is held until the fill ends.
  void adopt(const ObjectKey& key, const ObjectMeta& meta, std::uint64_t first_block, std::uint64_t body_bytes,
             std::unique_ptr<BodySource> body, Admission admission);

  struct Run;  // one fill (fill_engine.cpp)

 private:
  ObjectCache& cache_;
  Fetcher& fetcher_;
  boost::asio::any_io_executor executor_;
  std::chrono::milliseconds read_timeout_;
};

// Length of `block` of an object (the last one may be short).
std::uint32_t block_length(const ObjectMeta& meta, std::uint64_t block);
std::uint64_t last_block(const ObjectMeta& meta);

}  // namespace tagd::cache
