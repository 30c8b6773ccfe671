#include "tagd/cache/cached_body.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstring>

#include "tagd/core/metrics.hpp"
#include "tagd/core/strings.hpp"

namespace tagd::cache {

namespace asio = boost::asio;

namespace {

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
// A body's disk reads: 128 KiB (two 64 KiB pieces) at first, so a slow reader holds little.
constexpr std::uint64_t kDiskChunk = 128 * 1024;
// Chunks read ahead of a sequential reader: three at first. A reader that finds its next
// chunk still being read is waiting for the disk, not for its socket: its window grows (one
// more chunk in flight, each new one twice as large) up to kMaxReadAheadChunks of
// kMaxReadAheadChunk (4 MiB), so a fast whole-object reader keeps the disk busy with large
// reads (measured: 1 MiB reads, 4 in flight, reach the disk's O_DIRECT rate; 128 KiB reads,
// 3 in flight, do not). A slow reader never waits for the disk and keeps the small window.
// All bodies of one event loop hold at most kReadAheadBytesPerLoop that way, the chunk
// being written included (many streams cannot turn read-ahead into unbounded memory).
constexpr std::size_t kReadAheadChunks = 3;
constexpr std::size_t kMaxReadAheadChunks = 4;
constexpr std::uint64_t kMaxReadAheadChunk = 1ull << 20;
constexpr std::uint64_t kReadAheadBytesPerLoop = 8ull << 20;
thread_local std::uint64_t read_ahead_bytes_held = 0;  // each loop is one thread

}  // namespace

struct CachedBody::ReadAhead {
  explicit ReadAhead(std::uint64_t pos, std::uint64_t b, std::uint64_t off, std::uint64_t len)
      : position(pos), block(b), offset(off), length(len) {
    read_ahead_bytes_held += length;
  }
  ~ReadAhead() { read_ahead_bytes_held -= length; }
  ReadAhead(const ReadAhead&) = delete;
  ReadAhead& operator=(const ReadAhead&) = delete;

  std::uint64_t position, block, offset, length;
  bool done = false;
  BlockRead result;
  std::shared_ptr<asio::steady_timer> waiter;  // set while the reader waits for it
};

CachedBody::CachedBody(ObjectCache& cache, FillEngine& fills, ObjectKey key, std::shared_ptr<const ObjectMeta> meta,
                       ByteRange range,
                       std::chrono::milliseconds wait_timeout, ActiveReader reader)
    : cache_(cache),
      fills_(fills),
      key_(std::move(key)),
      key_hash_(key_.hash()),
      meta_ptr_(std::move(meta)),
      meta_(*meta_ptr_),
      range_(range),
      length_(meta_.size == 0 ? 0 : range.length()),
      wait_timeout_(wait_timeout),
      reader_(std::move(reader)),
      run_blocks_(std::max<std::uint64_t>(1, cache.options().max_fetch / meta_.block_size)),
      parallel_blocks_(run_blocks_ * std::max<std::uint32_t>(1, cache.options().fetch_parallelism)),
      parts_checked_until_(range.first / meta_.block_size + 1),
      position_(range.first),
      ahead_depth_(kReadAheadChunks),
      ahead_chunk_(kDiskChunk) {}

namespace {
// Presence checks are index lookups: bounded, so the head of a huge cached object is not
// delayed. A block missing beyond the bound is still fetched with If-Match; a change
// found then fails read() (the connection is reset).
constexpr std::uint64_t kMaxScan = 1024;
}  // namespace

std::uint64_t CachedBody::first_missing_block() const {
  const auto span = blocks_for(range_, meta_.block_size);
  std::uint64_t b = span.first;
  while (b <= span.last && b - span.first < kMaxScan && cache_.block_cached(key_hash_, meta_.etag, b)) ++b;
  return b;
}

std::optional<CachedBody::Preparation> CachedBody::prepare_cached() const {
  if (length_ == 0) return Preparation::kOk;
  const auto span = blocks_for(range_, meta_.block_size);
  const std::uint64_t b = first_missing_block();
  if (b > span.last || b - span.first >= kMaxScan) return Preparation::kOk;
  return std::nullopt;
}

asio::awaitable<CachedBody::Preparation> CachedBody::prepare() {
  if (length_ == 0) co_return Preparation::kOk;
  const auto span = blocks_for(range_, meta_.block_size);
  const std::uint64_t b = first_missing_block();
  if (b > span.last || b - span.first >= kMaxScan) co_return Preparation::kOk;
  // X-Cache: joining another request's fill of the first missing block is a hit, but a
  // later block that nobody holds or fetches will come from the upstream for this answer
  // (e.g. a ranged GET's fill still streaming its block when the whole object is asked).
  for (std::uint64_t c = b + 1; c <= span.last && c - span.first < kMaxScan && !needs_upstream_; ++c) {
    if (!cache_.block_cached(key_hash_, meta_.etag, c) && !cache_.find(key_hash_, meta_.etag, c)) {
      needs_upstream_ = true;
    }
  }
  auto executor = co_await asio::this_coro::executor;
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto inflight = cache_.find(key_hash_, meta_.etag, b);
    if (!inflight) {
      // This request fetches (a block joined in flight was another request's doing).
      needs_upstream_ = true;
      fills_.ensure_run(key_, meta_, b, span.last);
      inflight = cache_.find(key_hash_, meta_.etag, b);
      if (!inflight) co_return Preparation::kOk;  // stored in between
    }
    auto timer = std::make_shared<asio::steady_timer>(executor);
    timer->expires_after(wait_timeout_);
    if (inflight->wait_for_validation(executor, timer)) {
      auto [ec] = co_await timer->async_wait(kTuple);
      if (!ec) co_return Preparation::kTimeout;
    }
    if (inflight->changed()) co_return Preparation::kChanged;
    if (!inflight->failed()) co_return Preparation::kOk;
    // Failed for another reason (upstream error, broken connection): one more try.
  }
  co_return Preparation::kFailed;
}

Status CachedBody::failed(const Status& status) {
  if (status.code() == ErrorCode::kPreconditionFailed) {
    metrics().cache_changed_resets.inc();
    // (The fill that found the change invalidated already; a reader may have cached the
    // new object since, which stays.)
    if (auto now_cached = cache_.lookup(key_); now_cached && now_cached->etag == meta_.etag) {
      cache_.invalidate(key_.bucket, key_.key);
    }
    spdlog::warn("{}/{} changed upstream while its cached copy was being served (block {}); response aborted, "
                 "entry invalidated",
                 log_field(key_.bucket), log_field(key_.key), block_);
  } else {
    spdlog::warn("cached read of {}/{} block {} failed: {}; response aborted", log_field(key_.bucket),
                 log_field(key_.key), block_, status.message());
  }
  return status;
}

void CachedBody::enter_block(std::uint64_t b) {
  const std::uint32_t bs = meta_.block_size;
  block_ = b;
  stored_.reset();
  lent_.reset();
  inflight_.reset();
  attempts_ = 0;
  if (cache_.prefetch_ledger().size() > 0) cache_.prefetch_ledger().on_read(MemoryTier::key(key_hash_, meta_.etag, b));
  // Parallel parts: keep the parts of this range ahead of the reader in flight, so a
  // cold object streams at several upstream requests' rate, not one's. A budget spent
  // leaves blocks unchecked: a later step tries again, and the reader fetches a block it
  // reaches itself.
  // Whole parts (aligned to parts of the object) so each fetch is a full cache.max_fetch.
  const auto span = blocks_for(range_, bs);
  const std::uint64_t horizon = std::min(span.last, (b / run_blocks_) * run_blocks_ + parallel_blocks_ - 1);
  parts_checked_until_ = std::max(parts_checked_until_, b + 1);
  if (horizon >= parts_checked_until_) {
    parts_checked_until_ = fills_.fetch_ahead(key_, meta_, parts_checked_until_, horizon,
                                              cache_.options().fetch_parallelism, FillCause::kParallel);
  }
}

std::optional<std::span<const char>> CachedBody::lend_stored(std::uint64_t lo, std::uint64_t hi,
                                                             std::size_t max_lent) {
  const std::uint64_t stored_end = stored_first_ + stored_->size();
  if (lo >= stored_first_ && lo < stored_end) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(std::min(hi, stored_end) - lo, max_lent));
    position_ += n;
    auto& m = metrics();
    m.cache_hit_bytes.inc(n);
    (stored_from_memory_ ? m.served_bytes_dram : m.served_bytes_disk).inc(n);
    lent_from_stored_ = reinterpret_cast<const char*>(stored_->data()) + (lo - stored_first_);
    return std::span<const char>(lent_from_stored_, n);
  }
  stored_.reset();  // a chunk of the block, used up: read the next one
  lent_.reset();
  return std::nullopt;
}

PieceFile CachedBody::lend_piece_file() {
  if (lent_from_stored_ == nullptr || !stored_) return {};
  const int fd = stored_->file_descriptor();
  if (fd < 0) return {};
  stored_->lend_to_kernel();
  const auto within = static_cast<std::uint64_t>(lent_from_stored_ - reinterpret_cast<const char*>(stored_->data()));
  return PieceFile{fd, stored_->file_offset() + within};
}

std::optional<Result<std::span<const char>>> CachedBody::try_next(std::span<char> scratch) {
  (void)scratch;  // lent pieces only: a fill in progress is read by next()
  lent_from_stored_ = nullptr;
  if (length_ == 0 || position_ > range_.last) return Result<std::span<const char>>(std::span<const char>());
  const std::uint64_t b = position_ / meta_.block_size;
  if (b != block_) enter_block(b);
  const Chunk chunk = chunk_at(position_, kDiskChunk);
  if (stored_) {
    if (auto piece = lend_stored(chunk.lo, chunk.hi, SIZE_MAX)) return Result<std::span<const char>>(*piece);
  }
  // A whole small block from the DRAM tier, checked as next_piece() checks it.
  if (inflight_ || !chunk.whole) return std::nullopt;
  std::optional<BlockRead> r = cache_.read_block_in_memory(key_hash_, meta_.etag, b);
  if (!r) return std::nullopt;
  if (r->first != 0 || r->bytes->size() != chunk.length) return std::nullopt;  // next_piece() reports it
  stored_ = std::move(r->bytes);
  stored_first_ = 0;
  stored_from_memory_ = true;
  auto piece = lend_stored(chunk.lo, chunk.hi, SIZE_MAX);
  if (!piece) return std::nullopt;
  return Result<std::span<const char>>(*piece);
}

asio::awaitable<Result<std::span<const char>>> CachedBody::next_piece(std::span<char> scratch, std::size_t max_lent) {
  lent_from_stored_ = nullptr;
  if (length_ == 0 || position_ > range_.last) co_return std::span<const char>();
  const std::uint32_t bs = meta_.block_size;
  const std::uint64_t b = position_ / bs;
  if (b != block_) enter_block(b);
  const Chunk chunk = chunk_at(position_, kDiskChunk);
  const std::uint64_t block_start = chunk.block_start;
  const std::uint64_t lo = chunk.lo;
  const std::uint64_t hi = chunk.hi;
  // The first byte of this block that this body needs: a fill that fails after it was
  // handed out cannot be retried (the bytes must all come from one answer).
  const std::uint64_t first_needed = std::max(range_.first, block_start) - block_start;
  auto& m = metrics();
  for (;;) {
    if (stored_) {
      if (auto piece = lend_stored(lo, hi, max_lent)) co_return *piece;
    }
    if (!inflight_) {
      // Only the bytes this body still needs from the block: a range inside a large block
      // reads (and checks) just the pieces that hold it. A large block not in the DRAM
      // tier is read in chunks of kDiskChunk, so a slow reader holds at most one chunk,
      // not a block (memory stays bounded with many connections streaming from disk).
      const std::uint64_t length = chunk.length;
      std::uint64_t want = chunk.want;
      BlockRead r;
      if (chunk.whole) {
        r = co_await cache_.read_block(key_hash_, meta_.etag, b);
      } else if (std::optional<BlockRead> ahead = co_await take_read_ahead(b, lo, want)) {
        r = std::move(*ahead);  // `want`: the read-ahead's own length (its window's chunk)
      } else {
        r = co_await cache_.read_block_range(key_hash_, meta_.etag, b, static_cast<std::uint32_t>(lo),
                                             static_cast<std::uint32_t>(want));
      }
      // A chunk from the disk (not a whole block from the DRAM tier): the next chunks are
      // probably wanted next.
      if (r.outcome == ReadOutcome::kHit && !r.whole_block) {
        const auto executor = co_await asio::this_coro::executor;
        start_read_ahead(executor, block_start + lo + want);
      }
      if (r.outcome == ReadOutcome::kHit) {
        // A whole block must be exactly as long as the metadata says; a chunk must hold
        // [lo, lo + want) inside the block.
        const std::uint64_t end = r.first + r.bytes->size();
        const bool fits = r.whole_block ? (r.first == 0 && end == length)
                                        : (r.first <= lo && end >= lo + want && end <= length);
        if (!fits) {
          co_return failed(Status(ErrorCode::kInternalError, "cache block length"));
        }
        stored_ = std::move(r.bytes);
        stored_first_ = r.first;
        stored_from_memory_ = r.from_memory;
        continue;
      }
      auto inflight = cache_.find(key_hash_, meta_.etag, b);
      if (!inflight) {
        if (attempts_ >= 3) co_return failed(Status(ErrorCode::kBadGateway, "could not fetch a block from upstream"));
        ++attempts_;
        fills_.ensure_run(key_, meta_, b, blocks_for(range_, bs).last);
        inflight = cache_.find(key_hash_, meta_.etag, b);
        if (!inflight) continue;  // finished between the checks: read it from the cache
      } else {
        m.cache_joined_fills.inc();
      }
      inflight_ = std::move(inflight);
    }
    // Read the block as it arrives, at this reader's pace.
    bool done = false;
    const std::size_t n = inflight_->read(static_cast<std::size_t>(lo), reinterpret_cast<std::byte*>(scratch.data()),
                                          std::min<std::uint64_t>(scratch.size(), hi - lo), done);
    if (n > 0) {
      position_ += n;
      m.served_bytes_upstream.inc(n);  // a fill in progress: bytes as the upstream sends them
      co_return std::span<const char>(scratch.data(), n);
    }
    if (done) {
      // The metadata is wrong now (the fill invalidated it): no retry can help.
      if (inflight_->changed()) co_return failed(Status(ErrorCode::kPreconditionFailed, "the object changed upstream"));
      if (!inflight_->failed()) co_return failed(Status(ErrorCode::kInternalError, "cache fill shorter than its block"));
      if (lo > first_needed) co_return failed(Status(ErrorCode::kBadGateway, "cache fill failed mid-block"));
      inflight_.reset();  // failed before this body's first byte of the block: a new run
      continue;
    }
    // A stall is the fill making no progress for wait_timeout_, not this block: a footer
    // read beside a whole-object stream waits for the stream to reach it.
    const std::uint64_t progress_before = inflight_->fill_progress();
    auto executor = co_await asio::this_coro::executor;
    auto timer = std::make_shared<asio::steady_timer>(executor);
    timer->expires_after(wait_timeout_);
    if (inflight_->wait_for_progress(static_cast<std::size_t>(lo), executor, timer)) {
      auto [ec] = co_await timer->async_wait(kTuple);
      if (!ec && inflight_->fill_progress() == progress_before) {
        co_return failed(Status(ErrorCode::kGatewayTimeout, "cache fill stalled"));
      }
    }
  }
}

CachedBody::Chunk CachedBody::chunk_at(std::uint64_t position, std::uint64_t chunk_size) const {
  Chunk c;
  c.block = position / meta_.block_size;
  c.block_start = c.block * meta_.block_size;
  c.length = block_length(meta_, c.block);
  c.lo = position - c.block_start;
  c.hi = std::min<std::uint64_t>(range_.last + 1, c.block_start + c.length) - c.block_start;
  c.want = std::min<std::uint64_t>(c.hi - c.lo, chunk_size);
  c.whole = c.lo == 0 && c.hi == c.length && c.length <= kDiskChunk;
  return c;
}

void CachedBody::start_read_ahead(const asio::any_io_executor& executor, std::uint64_t from) {
  std::uint64_t pos = std::max(from, ahead_until_);
  while (ahead_.size() < ahead_depth_ && pos <= range_.last) {
    // The chunk next_piece() will take at `pos` (a read-ahead's length is its own).
    const Chunk chunk = chunk_at(pos, ahead_chunk_);
    if (chunk.whole) break;  // a small whole block: read as one, into the DRAM tier
    if (read_ahead_bytes_held + chunk.want > kReadAheadBytesPerLoop) break;
    auto ahead = std::make_shared<ReadAhead>(pos, chunk.block, chunk.lo, chunk.want);
    ahead_.push_back(ahead);
    pos += chunk.want;
    ahead_until_ = pos;
    // Detached: if this body goes away first, the read completes and is dropped.
    asio::co_spawn(
        executor,
        [&cache = cache_, key_hash = key_hash_, etag = meta_.etag, ahead]() -> asio::awaitable<void> {
          BlockRead r = co_await cache.read_block_range(key_hash, etag, ahead->block,
                                                        static_cast<std::uint32_t>(ahead->offset),
                                                        static_cast<std::uint32_t>(ahead->length));
          ahead->result = std::move(r);
          ahead->done = true;
          if (ahead->waiter) ahead->waiter->cancel();
        },
        asio::detached);
  }
}

asio::awaitable<std::optional<BlockRead>> CachedBody::take_read_ahead(std::uint64_t block, std::uint64_t offset,
                                                                     std::uint64_t& length) {
  const std::uint64_t pos = block * meta_.block_size + offset;
  while (!ahead_.empty() && ahead_.front()->position < pos) ahead_.erase(ahead_.begin());  // skipped over
  if (ahead_.empty()) co_return std::nullopt;
  std::shared_ptr<ReadAhead> ahead = ahead_.front();
  if (ahead->position != pos || ahead->block != block || ahead->offset != offset) co_return std::nullopt;
  ahead_.erase(ahead_.begin());
  length = ahead->length;
  // Still counted against the loop's read-ahead bytes while it is being written: a reader
  // whose window grew and whose client then slowed down holds a 1 MiB chunk, and many
  // such streams must not add up beyond the bound.
  lent_ = ahead;
  if (!ahead->done && read_ahead_bytes_held <= kReadAheadBytesPerLoop / 2) {
    // The reader outran the disk: a wider window (the chunks already started keep their
    // size; the next ones are read larger). Not while the loop's read-ahead budget is half
    // taken: many streams at once share the disk, and wide windows would only hold larger
    // buffers each (a slow client whose first writes went through at once would otherwise
    // widen too, then block holding 1 MiB chunks: ManyStreamsTest).
    ahead_depth_ = std::min(ahead_depth_ + 1, kMaxReadAheadChunks);
    ahead_chunk_ = std::min(ahead_chunk_ * 2, kMaxReadAheadChunk);
  }
  if (!ahead->done) {
    // Same loop as the read: `done` and `waiter` need no lock. The read cancels the timer.
    const auto executor = co_await asio::this_coro::executor;
    ahead->waiter = std::make_shared<asio::steady_timer>(executor, asio::steady_timer::time_point::max());
    auto [ec] = co_await ahead->waiter->async_wait(kTuple);
    (void)ec;
  }
  if (!ahead->done) co_return std::nullopt;  // (cancelled for another reason: read it again)
  co_return std::move(ahead->result);
}

// Not a coroutine: next_piece's own frame is the only one a piece costs.
asio::awaitable<Result<std::span<const char>>> CachedBody::next(std::span<char> scratch) {
  return next_piece(scratch, SIZE_MAX);
}

asio::awaitable<Result<std::size_t>> CachedBody::read(std::span<char> out) {
  if (out.empty()) co_return std::size_t{0};
  auto piece = co_await next_piece(out, out.size());
  if (!piece) co_return piece.error();
  const std::size_t n = piece.value().size();
  if (n > 0 && piece.value().data() != out.data()) std::memcpy(out.data(), piece.value().data(), n);
  co_return n;
}

}  // namespace tagd::cache
