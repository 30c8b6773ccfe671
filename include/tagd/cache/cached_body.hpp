#pragma once
// The body of a cached answer: the bytes of one range of an object, read block by block
// from the DRAM tier, the disk, or a fill in progress (at this reader's pace: a slow
// reader holds back no one). Whoever writes it to the client does not know which.
//
// Before a head is sent, prepare() makes sure that the first block this body needs from
// the upstream comes from a checked answer, so an object that changed upstream becomes a
// clean miss instead of a response cut after the cached blocks. A change found later
// (beyond what prepare() checks) makes read() fail with kPreconditionFailed; the entry is
// invalidated and the failure counted (cache_changed_resets_total) here.
#include <boost/asio/any_io_executor.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "tagd/cache/fill_engine.hpp"
#include "tagd/cache/http_semantics.hpp"
#include "tagd/cache/object_cache.hpp"
#include "tagd/core/body_source.hpp"

namespace tagd::cache {

class CachedBody final : public BodySource {
 public:
  // `range` must lie inside the object; an empty object has no body (length 0). `reader`
  // (a ranged GET's registration with the sequential detector) is held until the body is
  // gone, so other requests of the object see this one in flight.
  CachedBody(ObjectCache& cache, FillEngine& fills, ObjectKey key, std::shared_ptr<const ObjectMeta> meta, ByteRange range,
             std::chrono::milliseconds wait_timeout, ActiveReader reader = {});

  enum class Preparation { kOk, kChanged, kFailed, kTimeout };
  [[nodiscard]] boost::asio::awaitable<Preparation> prepare();
  // prepare() without waiting: kOk when every block of the range is cached (or the scan
  // bound is reached), as prepare() would answer; nullopt when prepare() must run.
  [[nodiscard]] std::optional<Preparation> prepare_cached() const;
  // After prepare(): this request had to start an upstream fetch for a block of its range
  // (neither cached nor being fetched by another request), so the answer is not served
  // from the cache (X-Cache says MISS, not HIT; joining a fill in flight is still a HIT).
  bool needs_upstream() const noexcept { return needs_upstream_; }

  [[nodiscard]] boost::asio::awaitable<Result<std::size_t>> read(std::span<char> out) override;
  [[nodiscard]] boost::asio::awaitable<Result<std::span<const char>>> next(std::span<char> scratch) override;
  // A piece of a block already held, or of a whole small block in the DRAM tier.
  [[nodiscard]] std::optional<Result<std::span<const char>>> try_next(std::span<char> scratch) override;
  // A piece lent from a DRAM-tier block in a memfd slot; its buffer is marked lent to the
  // kernel, so the pool drops its pages before it is filled again.
  [[nodiscard]] PieceFile lend_piece_file() override;
  [[nodiscard]] std::optional<std::uint64_t> length() const override { return length_; }

 private:
  // Moves on to block `b` (the reader's position entered it): per-block state reset, the
  // prefetch ledger told, the parts ahead of the reader started.
  void enter_block(std::uint64_t b);
  // Lends up to `max_lent` bytes at the position from the held chunk `stored_`; nullopt
  // (and the chunk let go) when it does not hold the position.
  std::optional<std::span<const char>> lend_stored(std::uint64_t lo, std::uint64_t hi, std::size_t max_lent);
  // The first block of the range that is not cached, or where the presence scan stopped.
  std::uint64_t first_missing_block() const;
  // The next piece of the current block (up to `max_lent` bytes lent from a stored block,
  // or copied from a fill into `scratch`), or an empty span at the end of the range.
  boost::asio::awaitable<Result<std::span<const char>>> next_piece(std::span<char> scratch, std::size_t max_lent);
  Status failed(const Status& status);

  ObjectCache& cache_;
  FillEngine& fills_;
  ObjectKey key_;
  std::uint64_t key_hash_;
  std::shared_ptr<const ObjectMeta> meta_ptr_;  // the index's version: shared, not copied
  const ObjectMeta& meta_;
  ByteRange range_;
  std::uint64_t length_;
  std::chrono::milliseconds wait_timeout_;
  ActiveReader reader_;
  std::uint64_t run_blocks_;
  // Parallel parts: the blocks of this range up to parallel_blocks_ ahead of the reader
  // are kept in flight (FillEngine::fetch_ahead); parts_checked_until_ is the first block
  // not yet looked at, so each block is checked for presence once per body.
  std::uint64_t parallel_blocks_;
  std::uint64_t parts_checked_until_ = 0;
  std::uint64_t position_ = 0;  // next object byte to hand out
  // The block being handed out: whole (stored) or in flight.
  std::uint64_t block_ = UINT64_MAX;
  BlockBytes stored_;
  std::uint64_t stored_first_ = 0;  // block offset of stored_'s first byte
  const char* lent_from_stored_ = nullptr;  // the last piece lent, when it came from stored_
  bool stored_from_memory_ = false;  // stored_ came from the DRAM tier (else the device)
  std::shared_ptr<InflightBlock> inflight_;
  int attempts_ = 0;  // new fills started for the current block
  bool needs_upstream_ = false;
  // Disk reads started ahead of this reader (a sequential reader of blocks that are not in
  // the DRAM tier does not wait for each chunk's read after the previous chunk's write),
  // oldest first, and the object offset up to which reads were started.
  // What next_piece() reads at an object offset: the block, the span [lo, hi) of it this
  // body needs, and the chunk [lo, lo + want) one disk read takes (`whole`: the block is
  // small and wanted whole, read as one and kept in the DRAM tier). Read-ahead asks the
  // same question, so it starts exactly the reads the body will ask for.
  struct Chunk {
    std::uint64_t block = 0, block_start = 0, length = 0, lo = 0, hi = 0, want = 0;
    bool whole = false;
  };
  Chunk chunk_at(std::uint64_t position, std::uint64_t chunk_size) const;
  struct ReadAhead;
  // Oldest first, at most a few (kMaxReadAheadChunks): a vector, because an empty deque
  // already allocates (its map and a 512-byte node) for every body, DRAM hits included.
  std::vector<std::shared_ptr<ReadAhead>> ahead_;
  std::shared_ptr<ReadAhead> lent_;  // the read-ahead stored_ came from, if any
  std::uint64_t ahead_until_ = 0;
  // The read-ahead window: chunks kept in flight and the length of each new one. Widened
  // each time the reader has to wait for a chunk read ahead (cached_body.cpp).
  std::size_t ahead_depth_;
  std::uint64_t ahead_chunk_;
  void start_read_ahead(const boost::asio::any_io_executor& executor, std::uint64_t from);
  // The read started ahead at [offset, ...) of `block`, if any; `length` becomes its length.
  boost::asio::awaitable<std::optional<BlockRead>> take_read_ahead(std::uint64_t block, std::uint64_t offset,
                                                                   std::uint64_t& length);
};

}  // namespace tagd::cache
