#include "tagd/cache/fill_engine.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/this_coro.hpp>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "tagd/core/logging.hpp"
#include "tagd/core/metrics.hpp"

namespace tagd::cache {

namespace asio = boost::asio;

std::uint32_t block_length(const ObjectMeta& meta, std::uint64_t block) {
  const std::uint64_t start = block * meta.block_size;
  return static_cast<std::uint32_t>(std::min<std::uint64_t>(meta.block_size, meta.size - start));
}

std::uint64_t last_block(const ObjectMeta& meta) {
  return meta.size == 0 ? 0 : (meta.size - 1) / meta.block_size;
}

namespace {
// Most a fill takes from the upstream per read. A read returns what has arrived (the
// upstream client's reads do not wait for a full span), so readers see bytes as they cross
// the WAN, in pieces as large as the socket had buffered.
constexpr std::size_t kPiece = 64 * 1024;

std::int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

// One loop's block writer: a thread that writes finished blocks (device write, then the
// index entry, then the DRAM tier: ObjectCache::store_block) and takes them out of the
// in-flight registry, in the order they were queued. Started on the first block.
class FillWriter {
 public:
  explicit FillWriter(std::uint64_t max_queued_bytes) : max_queued_bytes_(max_queued_bytes) {}
  ~FillWriter() { stop(); }
  FillWriter(const FillWriter&) = delete;
  FillWriter& operator=(const FillWriter&) = delete;

  // Queues `job` (writing `bytes`); false when the queue is full or the writer stopped:
  // the caller writes the block itself.
  bool submit(std::uint64_t bytes, std::function<void()> job) {
    {
      std::lock_guard lock(mu_);
      if (stopping_ || queued_bytes_ + bytes > max_queued_bytes_) return false;
      if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
      // The gauge goes up under the lock, before the job can run: "0" must mean that every
      // queued block is written (tests and operators wait on it; a block written inline
      // because the queue was full is written before its fill goes on).
      metrics().cache_fill_write_queue_bytes.add(static_cast<std::int64_t>(bytes));
      queue_.emplace_back(bytes, std::move(job));
      queued_bytes_ += bytes;
    }
    cv_.notify_one();
    return true;
  }

  // Writes what is queued, then joins the thread. Later submits are refused.
  void stop() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
  }

 private:
  void run() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and nothing left to write
      auto [bytes, job] = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      job();
      job = nullptr;  // (what it holds goes before the queue's bytes are given back)
      metrics().cache_fill_write_queue_bytes.add(-static_cast<std::int64_t>(bytes));
      lock.lock();
      queued_bytes_ -= bytes;
    }
  }

  const std::uint64_t max_queued_bytes_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<std::uint64_t, std::function<void()>>> queue_;
  std::uint64_t queued_bytes_ = 0;
  bool stopping_ = false;
  std::thread thread_;
};

struct FillEngine::Run {
  ObjectCache* cache = nullptr;
  ObjectKey key;  // invalidated when the upstream says the object changed
  std::uint64_t key_hash = 0;
  std::string etag;
  std::uint64_t first_block = 0;
  // Parallel: each block's length in the body, and the block to fill (null: another fill
  // owns it, so its bytes are skipped; or it is finished already).
  std::vector<std::uint32_t> lengths;
  std::vector<std::shared_ptr<InflightBlock>> blocks;
  std::unique_ptr<BodySource> body;
  std::uint64_t skip = 0;  // leading body bytes before first_block (a suffix answer)
  Admission admission;     // the fill (or prefetch) budget is held until the run ends
  FetchSlot slot;          // one of the object's fetches in flight until the run ends
  std::shared_ptr<FillWriter> writer;
  // Body bytes received so far; every block of the run shares it (fill_progress()).
  std::shared_ptr<std::atomic<std::uint64_t>> progress = std::make_shared<std::atomic<std::uint64_t>>(0);

  void fail_from(std::size_t index, bool changed = false) {
    for (std::size_t i = index; i < blocks.size(); ++i) {
      if (!blocks[i]) continue;
      blocks[i]->fail(changed);
      cache->finish(key_hash, etag, first_block + i);
    }
  }
  void mark_validated() {
    for (auto& b : blocks) {
      if (b) b->mark_validated();
    }
  }
  void add_block(std::uint32_t length, std::shared_ptr<InflightBlock> block) {
    if (block) block->attach_fill_progress(progress);
    lengths.push_back(length);
    blocks.push_back(std::move(block));
  }
};

namespace {

// Stores a finished block and takes it out of the in-flight registry (in that order, so a
// new reader finds it in one or the other): on the loop's writer thread when it has room,
// else here. Readers already have its bytes (InflightBlock::complete), so none waits.
void store(FillEngine::Run& run, const asio::any_io_executor& executor, std::uint64_t block, BlockBytes bytes) {
  ObjectCache* cache = run.cache;
  const std::uint64_t key_hash = run.key_hash;
  const std::uint64_t size = bytes->size();
  if (run.writer) {
    // Tracked work: the loop's run() does not return while a block of its fills is still
    // being written (tests settle on it; a stopping server has joined the writer first).
    auto work = asio::prefer(executor, asio::execution::outstanding_work.tracked);
    if (run.writer->submit(size, [cache, key_hash, etag = run.etag, block, bytes, work = std::move(work)]() mutable {
          cache->store_block(key_hash, etag, block, std::move(bytes));
          cache->finish(key_hash, etag, block);
        })) {
      return;
    }
  }
  metrics().cache_fill_writes_inline.inc();
  static logging::WarnThrottle throttle(std::chrono::seconds(10));
  if (throttle.allow(steady_ms())) {
    spdlog::warn(
        "cache fill write queue full: blocks are written on the event loop (the disk is slower than "
        "the upstream)");
  }
  cache->store_block(key_hash, run.etag, block, std::move(bytes));
  cache->finish(key_hash, run.etag, block);
}

// Copies the body into its blocks; each finished block is stored, then leaves the registry.
asio::awaitable<void> pump(std::shared_ptr<FillEngine::Run> run) {
  auto& m = metrics();
  const auto executor = co_await asio::this_coro::executor;
  auto piece = std::make_unique_for_overwrite<char[]>(kPiece);  // read into: no zero fill
  std::size_t index = 0;
  std::size_t filled = 0;
  bool ok = true;
  while (index < run->blocks.size()) {
    auto got = co_await run->body->read(std::span<char>(piece.get(), kPiece));
    if (!got) {
      spdlog::warn("cache fill of key {:016x} blocks {}+{} broke after block {}: {}", run->key_hash, run->first_block,
                   run->blocks.size(), run->first_block + index, got.error().message());
      ok = false;
      break;
    }
    std::size_t n = got.value();
    if (n == 0) {
      // The upstream ended the body before the bytes its head announced.
      m.upstream_truncated_bodies.inc();
      ok = false;
      break;
    }
    m.cache_fill_bytes.inc(n);
    run->progress->fetch_add(n, std::memory_order_relaxed);
    const char* p = piece.get();
    if (run->skip > 0) {
      const std::size_t skipped = static_cast<std::size_t>(std::min<std::uint64_t>(run->skip, n));
      run->skip -= skipped;
      p += skipped;
      n -= skipped;
    }
    while (n > 0 && index < run->blocks.size()) {
      const std::uint32_t expected = run->lengths[index];
      const std::size_t take = std::min<std::size_t>(expected - filled, n);
      if (run->blocks[index]) run->blocks[index]->append(reinterpret_cast<const std::byte*>(p), take);
      p += take;
      n -= take;
      filled += take;
      if (filled < expected) break;
      if (run->blocks[index]) {
        store(*run, executor, run->first_block + index, run->blocks[index]->complete());
        // Drop the run's reference: readers still copying from it (and the registry, until
        // it is written) keep it alive. The fill holds one block, not the object.
        run->blocks[index].reset();
      }
      ++index;
      filled = 0;
    }
  }
  if (!ok) {
    // A truncated body never becomes a cached block: unfinished blocks are failed and their
    // waiters refetch or give up.
    m.cache_fills_failed.inc();
    run->fail_from(index);
    co_return;
  }
  m.cache_fills_completed.inc();
  run->slot.release();  // every byte is here: the object may start another fetch
  // Read the (empty) end of the body so a keep-alive connection goes back to its pool.
  (void)co_await run->body->read(std::span<char>(piece.get(), kPiece));
}

asio::awaitable<void> fetch_and_pump(std::shared_ptr<FillEngine::Run> run, Fetcher* fetcher, FetchRequest request,
                                     std::uint64_t object_size) {
  const ByteRange range = *request.range;
  auto reply = co_await fetcher->fetch(std::move(request));
  if (!reply) {
    spdlog::warn("cache fill of key {:016x} bytes {}-{} failed: {}", run->key_hash, range.first, range.last,
                 reply.error().message());
    metrics().cache_fills_failed.inc();
    run->fail_from(0);
    co_return;
  }
  // Nothing is stored unless the answer is exactly the bytes asked for, of this ETag.
  const auto& h = reply.value()->head();
  namespace http = boost::beast::http;
  std::string why;
  const auto verdict =
      check_fill_response(h.result_int(), h[http::field::content_range], h[http::field::content_length],
                          h[http::field::etag], FillExpectation{range.first, range.last, object_size, run->etag}, why);
  if (verdict != FillVerdict::kOk) {
    const bool changed = verdict == FillVerdict::kChanged;
    spdlog::warn("cache fill of key {:016x} bytes {}-{} refused: {}{}", run->key_hash, range.first, range.last, why,
                 changed ? "; the object changed upstream, cached entry invalidated" : "");
    // Invalidated before the blocks fail, so a reader that retries finds no metadata.
    if (changed) run->cache->invalidate(run->key.bucket, run->key.key);
    metrics().cache_fills_failed.inc();
    run->fail_from(0, changed);
    co_return;  // the unread answer is dropped with its connection
  }
  run->mark_validated();
  run->body = std::move(reply.value());
  co_await pump(run);
}

void count_cause(FillCause cause) {
  auto& m = metrics();
  switch (cause) {
    case FillCause::kMiss: m.fill_cause_miss.inc(); break;
    case FillCause::kRange: m.fill_cause_range.inc(); break;
    case FillCause::kSuffix: m.fill_cause_suffix.inc(); break;
    case FillCause::kConditional: m.fill_cause_conditional.inc(); break;
    case FillCause::kBlock: m.fill_cause_block.inc(); break;
    case FillCause::kParallel: m.fill_cause_parallel.inc(); break;
    case FillCause::kReadAhead: m.fill_cause_readahead.inc(); break;
    case FillCause::kWarm: m.fill_cause_warm.inc(); break;
  }
}

}  // namespace

FillEngine::FillEngine(ObjectCache& cache, Fetcher& fetcher, boost::asio::any_io_executor executor,
                       std::chrono::milliseconds read_timeout, std::uint64_t write_queue_bytes)
    : cache_(cache),
      fetcher_(fetcher),
      executor_(std::move(executor)),
      read_timeout_(read_timeout),
      writer_(std::make_shared<FillWriter>(write_queue_bytes)) {}

FillEngine::~FillEngine() {
  writer_->stop();
}

void FillEngine::ensure_run(const ObjectKey& key, const ObjectMeta& meta, std::uint64_t block,
                            std::uint64_t last_wanted, FillCause cause) {
  const std::uint64_t kh = key.hash();
  if (block > last_block(meta) || cache_.present_or_inflight(kh, meta.etag, block)) return;
  std::uint64_t max_blocks = std::max<std::uint64_t>(1, cache_.options().max_fetch / meta.block_size);
  if (last_wanted >= block) max_blocks = std::min(max_blocks, last_wanted - block + 1);
  cache_.sequential_detector().begin_fetch(kh);
  (void)start_run(key, meta, block, max_blocks, Admission(), cause, false, FetchSlot(cache_.sequential_detector(), kh));
}

std::uint64_t FillEngine::fetch_ahead(const ObjectKey& key, const ObjectMeta& meta, std::uint64_t first_block,
                                      std::uint64_t last_block_wanted, std::size_t max_runs, FillCause cause) {
  const std::uint64_t kh = key.hash();
  const std::uint64_t last = std::min(last_block_wanted, last_block(meta));
  const std::uint64_t max_blocks = std::max<std::uint64_t>(1, cache_.options().max_fetch / meta.block_size);
  const std::size_t limit = std::max<std::uint32_t>(1, cache_.options().fetch_parallelism);
  auto& activity = cache_.sequential_detector();
  std::size_t started = 0;
  std::uint64_t b = first_block;
  while (b <= last && started < max_runs) {
    if (cache_.present_or_inflight(kh, meta.etag, b)) {
      ++b;
      continue;
    }
    // The run's extent before registering it, to reserve exactly its bytes; it ends at its
    // part's boundary, so the runs after it are whole parts.
    const std::uint64_t part_last = (b / max_blocks + 1) * max_blocks - 1;
    std::uint64_t n = 1;
    while (b + n <= std::min(last, part_last) && !cache_.present_or_inflight(kh, meta.etag, b + n)) ++n;
    if (!activity.try_begin_fetch(kh, limit)) {
      // Enough of this object is on its way (a reader's own parts included): the next
      // block a reader reaches, or the next read, tries again.
      metrics().cache_prefetch_held.inc();
      break;
    }
    FetchSlot slot(activity, kh);
    const std::uint64_t bytes = std::min(meta.size, (b + n) * meta.block_size) - b * meta.block_size;
    if (!cache_.prefetch_budget().try_admit(bytes)) {
      metrics().cache_prefetch_budget_spent.inc();
      static logging::WarnThrottle throttle(std::chrono::seconds(10));
      const std::int64_t now =
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
              .count();
      if (throttle.allow(now)) {
        spdlog::warn("prefetch budget spent (cache.prefetch_budget): readers fetch blocks as they reach them");
      }
      break;
    }
    if (start_run(key, meta, b, n, Admission(&cache_.prefetch_budget(), bytes), cause, true, std::move(slot))) {
      ++started;
    }
    b += n;
  }
  // Blocks past the object's end need no fetching: report them covered.
  return b > last ? std::max(b, last_block_wanted + 1) : b;
}

bool FillEngine::start_run(const ObjectKey& key, const ObjectMeta& meta, std::uint64_t block, std::uint64_t max_blocks,
                           Admission admission, FillCause cause, bool ahead, FetchSlot slot) {
  const std::uint64_t kh = key.hash();
  auto run = std::make_shared<Run>();
  run->cache = &cache_;
  run->key = key;
  run->key_hash = kh;
  run->etag = meta.etag;
  run->first_block = block;
  for (std::uint64_t b = block; b <= last_block(meta) && b < block + max_blocks; ++b) {
    if (b != block && cache_.present_or_inflight(kh, meta.etag, b)) break;  // runs stop at what is there
    auto [inflight, owner] = cache_.find_or_start(kh, meta.etag, b, block_length(meta, b));
    if (!owner) break;
    run->add_block(block_length(meta, b), std::move(inflight));
    if (ahead) cache_.prefetch_ledger().add(MemoryTier::key(kh, meta.etag, b), block_length(meta, b));
  }
  if (run->blocks.empty()) return false;
  run->admission = std::move(admission);
  run->slot = std::move(slot);
  run->writer = writer_;
  metrics().cache_fills_started.inc();
  count_cause(cause);
  FetchRequest request;
  request.key = key;
  request.range =
      ByteRange{block * meta.block_size, std::min(meta.size, (block + run->blocks.size()) * meta.block_size) - 1};
  request.if_match = meta.etag;
  request.timeout = read_timeout_;
  asio::co_spawn(executor_, fetch_and_pump(run, &fetcher_, std::move(request), meta.size), asio::detached);
  return true;
}

void FillEngine::adopt(const ObjectKey& key, const ObjectMeta& meta, std::uint64_t first_block,
                       std::uint64_t body_bytes, std::unique_ptr<BodySource> body, Admission admission, FillCause cause,
                       std::uint64_t skip) {
  auto run = std::make_shared<Run>();
  run->cache = &cache_;
  run->key = key;
  run->key_hash = key.hash();
  run->etag = meta.etag;
  run->first_block = first_block;
  const std::uint64_t blocks_in_body = (body_bytes + meta.block_size - 1) / meta.block_size;
  for (std::uint64_t i = 0; i < blocks_in_body; ++i) {
    const std::uint64_t b = first_block + i;
    auto [inflight, mine] = cache_.find_or_start(run->key_hash, run->etag, b, block_length(meta, b));
    run->add_block(block_length(meta, b), mine ? std::move(inflight) : nullptr);
  }
  run->mark_validated();  // the caller checked this answer's head
  run->body = std::move(body);
  run->skip = skip;
  run->admission = std::move(admission);
  cache_.sequential_detector().begin_fetch(run->key_hash);
  run->slot = FetchSlot(cache_.sequential_detector(), run->key_hash);
  run->writer = writer_;
  metrics().cache_fills_started.inc();
  count_cause(cause);
  asio::co_spawn(executor_, pump(run), asio::detached);
}

}  // namespace tagd::cache
