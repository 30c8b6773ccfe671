#include "tagd/core/strings.hpp"
#include "cached_reads.hpp"

#include <spdlog/spdlog.h>
#include <strings.h>

#include <atomic>
#include <limits>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include "tagd/cache/http_semantics.hpp"
#include "tagd/core/metrics.hpp"
#include "tagd/upstream/signer.hpp"

namespace tagd::gateway {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using cache::ObjectKey;
using cache::ObjectMeta;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

namespace {

using ResponseParser = http::response_parser<http::buffer_body>;

struct UpstreamReply {
  std::unique_ptr<upstream::Connection> conn;
  std::unique_ptr<ResponseParser> parser;
};

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The upstream request-target for an object key (and its version variant).
std::string object_target(const ObjectKey& key) {
  s3::Target t;
  t.bucket = key.bucket;
  t.key = key.key;
  if (auto version = cache::parse_variant(key.variant).version_id) t.query.emplace_back("versionId", *version);
  return s3::upstream_target(t);
}

// Headers every upstream request for `key` carries: the variant's own (a snapshot read
// asks for the same snapshot) and checksum mode, so the answer names the object's
// checksums and the metadata can keep them.
std::vector<std::pair<std::string, std::string>> variant_headers(const ObjectKey& key) {
  std::vector<std::pair<std::string, std::string>> headers;
  if (auto snapshot = cache::parse_variant(key.variant).snapshot) {
    headers.emplace_back("X-Tigris-Snapshot-Version", *snapshot);
  }
  headers.emplace_back("x-amz-checksum-mode", "ENABLED");
  return headers;
}

// The connection is cut so that the client sees an error, never a short body that could
// pass for a complete one (as relay_response does for truncated upstream bodies).
void reset_client(Exchange& ex) {
  boost::system::error_code ignored;
  ex.client.stream.socket().set_option(asio::socket_base::linger(true, 0), ignored);
  ex.client.stream.socket().close(ignored);
}

// One bodyless upstream request (GET or HEAD) up to its response head, with retries on a
// fresh connection when the pooled one failed (idempotent, nothing to replay).
asio::awaitable<Result<UpstreamReply>> upstream_request(upstream::Pool& pool, const config::Config& config,
                                                        const upstream::SigningCredentials& signing, http::verb method,
                                                        const std::string& target,
                                                        const std::vector<std::pair<std::string, std::string>>& extra,
                                                        std::chrono::milliseconds read_timeout = {}) {
  if (read_timeout.count() <= 0) read_timeout = config.upstream_read_timeout;
  http::request<http::empty_body> req{method, target, 11};
  for (const auto& [name, value] : extra) req.set(name, value);
  upstream::sign_request(req.base(), req.method_string(), target, pool.endpoint().host_header, auth::kEmptySha256,
                         signing, std::chrono::system_clock::now());
  Status last(ErrorCode::kBadGateway, "upstream failed");
  for (unsigned attempt = 0; attempt <= config.upstream_retries; ++attempt) {
    if (attempt > 0) metrics().upstream_retries.inc();
    Result<std::unique_ptr<upstream::Connection>> acquired = Status(ErrorCode::kInternalError, "unset");
    if (attempt == 0) {
      acquired = co_await pool.acquire();
    } else {
      acquired = co_await pool.connect();
    }
    if (!acquired) {
      last = acquired.error();
      continue;
    }
    UpstreamReply reply{std::move(acquired.value()), std::make_unique<ResponseParser>()};
    metrics().upstream_requests.inc();
    auto& conn = *reply.conn;
    conn.tcp().expires_after(read_timeout);
    http::request_serializer<http::empty_body> sr{req};
    boost::system::error_code ec;
    std::tie(ec, std::ignore) = co_await conn.visit([&](auto& s) { return http::async_write_header(s, sr, kTuple); });
    while (!ec) {
      reply.parser = std::make_unique<ResponseParser>();
      reply.parser->body_limit(boost::none);
      if (method == http::verb::head) reply.parser->skip(true);
      conn.tcp().expires_after(read_timeout);
      std::tie(ec, std::ignore) =
          co_await conn.visit([&](auto& s) { return http::async_read_header(s, conn.buffer(), *reply.parser, kTuple); });
      if (!ec && reply.parser->get().result_int() >= 200) break;
    }
    if (!ec) co_return reply;
    if (ec == beast::error::timeout) {
      // A slow upstream is not retried: the wait is already as long as the client's patience.
      last = Status(ErrorCode::kGatewayTimeout, "upstream timed out");
      break;
    }
    last = Status(ErrorCode::kBadGateway, "upstream failed: " + ec.message());
  }
  metrics().upstream_errors.inc();
  co_return last;
}

// Every upstream header is replayed on a hit except those that describe one response or
// one connection (and the ones tagd sets itself). A fixed allow-list dropped SSE-KMS key
// ids, object-lock legal holds and whatever vendors add next.
bool replayed_header(std::string_view name) {
  static constexpr std::string_view kPerResponse[] = {
      "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
      "content-length", "content-range", "date", "server", "x-amz-request-id", "x-amz-id-2", "etag",
      "last-modified", "accept-ranges", "x-cache", "set-cookie", "age", "warning"};
  for (auto k : kPerResponse) {
    if (iequals(name, k)) return false;
  }
  // Whole-object checksums are kept apart (ObjectMeta::checksums): a hit returns them only
  // where S3 would (cache::return_checksums).
  return !cache::is_checksum_header(name);
}

std::vector<std::pair<std::string, std::string>> checksums_from(const http::response_header<>& h) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& f : h) {
    if (cache::is_checksum_header(f.name_string())) {
      out.emplace_back(to_lower(f.name_string()), std::string(f.value()));
    }
  }
  return out;
}

// Metadata from an upstream 200/206 head, or nullopt if the response must not be cached.
std::optional<ObjectMeta> meta_from(const http::response_header<>& h, const cache::ObjectCacheOptions& options,
                                    bool immutable, std::string& why_not) {
  ObjectMeta m;
  m.etag = std::string(h[http::field::etag]);
  // Empty and weak ETags cannot key blocks (TAG bug 3).
  if (m.etag.empty() || m.etag.rfind("W/", 0) == 0) {
    why_not = "no strong ETag";
    return std::nullopt;
  }
  bool whole_object = true;
  if (h.result_int() == 206) {
    auto cr = cache::parse_content_range(h[http::field::content_range]);
    if (!cr) {
      why_not = "no object size in Content-Range";
      return std::nullopt;
    }
    m.size = cr->size;
    whole_object = cr->first == 0 && cr->last + 1 == cr->size;
  } else {
    auto cl = h[http::field::content_length];
    try {
      m.size = std::stoull(std::string(cl));
    } catch (...) {
      why_not = "no Content-Length";
      return std::nullopt;
    }
  }
  auto now = std::chrono::system_clock::now();
  auto fresh = cache::freshness(h[http::field::cache_control], h[http::field::expires], h[http::field::date], now,
                                std::chrono::duration_cast<std::chrono::seconds>(options.ttl));
  if (!fresh.storable) {
    why_not = "Cache-Control forbids storing";
    return std::nullopt;
  }
  m.last_modified = std::string(h[http::field::last_modified]);
  for (const auto& f : h) {
    if (replayed_header(f.name_string())) m.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
  }
  // Fills ask in checksum mode: an answer with every byte names the checksums (or shows
  // there are none). A partial answer says nothing about them.
  if (whole_object) {
    m.checksums = checksums_from(h);
    m.checksums_known = true;
  }
  m.fetched_at_ms = now_ms();
  m.fresh_until_ms = std::chrono::duration_cast<std::chrono::milliseconds>(fresh.until.time_since_epoch()).count();
  // A read as of a past snapshot never changes: it is not expired by the TTL (a write
  // through tagd still invalidates it, with every other variant of the key).
  if (immutable) m.fresh_until_ms = std::numeric_limits<std::int64_t>::max();
  m.block_size = options.block_size;
  return m;
}

std::uint32_t block_length(const ObjectMeta& meta, std::uint64_t block) {
  std::uint64_t start = block * meta.block_size;
  return static_cast<std::uint32_t>(std::min<std::uint64_t>(meta.block_size, meta.size - start));
}

std::uint64_t last_block(const ObjectMeta& meta) { return meta.size == 0 ? 0 : (meta.size - 1) / meta.block_size; }

}  // namespace

// A fill of contiguous blocks: owns the upstream connection and writes each finished
// block to the cache. Runs detached, so it outlives the request that started it.
struct CachedReads::Run {
  cache::ObjectCache* cache = nullptr;
  upstream::Pool* pool = nullptr;
  std::string bucket;  // invalidated when the upstream says the object changed
  std::string key;
  std::uint64_t key_hash = 0;
  std::string etag;
  std::uint64_t object_size = 0;
  std::uint64_t first_byte = 0;  // the bytes asked for: the answer must be exactly these
  std::uint64_t last_byte = 0;
  std::uint64_t first_block = 0;
  // Parallel: each block's length in the body, and the block to fill (null: another fill
  // owns it, so its bytes are skipped; or it is finished already).
  std::vector<std::uint32_t> lengths;
  std::vector<std::shared_ptr<cache::InflightBlock>> blocks;
  UpstreamReply reply;
  std::unique_ptr<char[]> piece = std::make_unique<char[]>(kPiece);
  std::chrono::milliseconds read_timeout{60000};
  cache::Admission admission;  // the fill budget is held until the run ends

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
};

namespace {

asio::awaitable<void> pump(std::shared_ptr<CachedReads::Run> run) {
  auto& parser = *run->reply.parser;
  auto& conn = *run->reply.conn;
  auto& m = metrics();
  std::size_t index = 0;
  std::size_t filled = 0;
  bool ok = true;
  while (!parser.is_done() && index < run->blocks.size()) {
    auto& body = parser.get().body();
    body.data = run->piece.get();
    body.size = kPiece;
    conn.tcp().expires_after(run->read_timeout);
    auto [ec, n] = co_await conn.visit([&](auto& s) { return http::async_read(s, conn.buffer(), parser, kTuple); });
    if (ec == http::error::need_buffer) ec = {};
    std::size_t got = kPiece - body.size;
    const char* p = run->piece.get();
    m.cache_fill_bytes.inc(got);
    while (got > 0 && index < run->blocks.size()) {
      const std::uint32_t expected = run->lengths[index];
      std::size_t take = std::min<std::size_t>(expected - filled, got);
      if (run->blocks[index]) run->blocks[index]->append(reinterpret_cast<const std::byte*>(p), take);
      p += take;
      got -= take;
      filled += take;
      if (filled < expected) break;
      if (run->blocks[index]) {
        // Stored before it leaves the registry, so a new reader finds it in one or the other.
        run->cache->store_block(run->key_hash, run->etag, run->first_block + index, run->blocks[index]->complete());
        run->cache->finish(run->key_hash, run->etag, run->first_block + index);
        // Drop the run's reference: readers still copying from it keep it alive, everyone
        // else reads the block from the cache now. The fill holds one block, not the object.
        run->blocks[index].reset();
      }
      ++index;
      filled = 0;
    }
    if (ec) {
      spdlog::warn("cache fill of key {:016x} blocks {}+{} broke after block {}: {}", run->key_hash, run->first_block,
                   run->blocks.size(), run->first_block + index, ec.message());
      ok = false;
      break;
    }
  }
  if (!ok || index < run->blocks.size()) {
    // A truncated body never becomes a cached block: unfinished blocks are failed and their
    // waiters refetch or give up.
    m.cache_fills_failed.inc();
    m.upstream_truncated_bodies.inc();
    run->fail_from(index);
    co_return;
  }
  m.cache_fills_completed.inc();
  if (parser.is_done() && parser.keep_alive()) run->pool->release(std::move(run->reply.conn));
}

asio::awaitable<void> start_fetch(std::shared_ptr<CachedReads::Run> run, const config::Config* config,
                                  const upstream::SigningCredentials* signing, std::string target,
                                  std::vector<std::pair<std::string, std::string>> headers) {
  const std::string range = "bytes=" + std::to_string(run->first_byte) + "-" + std::to_string(run->last_byte);
  headers.emplace_back("Range", range);
  headers.emplace_back("If-Match", run->etag);
  auto reply = co_await upstream_request(*run->pool, *config, *signing, http::verb::get, target, headers);
  if (!reply) {
    spdlog::warn("cache fill of {} {} failed: {}", target, range, reply.error().message());
    metrics().cache_fills_failed.inc();
    run->fail_from(0);
    co_return;
  }
  // Nothing is stored unless the answer is exactly the bytes asked for, of this ETag.
  auto& h = reply->parser->get();
  std::string why;
  const auto verdict = cache::check_fill_response(
      h.result_int(), h[http::field::content_range], h[http::field::content_length], h[http::field::etag],
      cache::FillExpectation{run->first_byte, run->last_byte, run->object_size, run->etag}, why);
  if (verdict != cache::FillVerdict::kOk) {
    const bool changed = verdict == cache::FillVerdict::kChanged;
    spdlog::warn("cache fill of {} {} refused: {}{}", target, range, why,
                 changed ? "; the object changed upstream, cached entry invalidated" : "");
    // Invalidated before the blocks fail, so a reader that retries finds no metadata.
    if (changed) run->cache->invalidate(run->bucket, run->key);
    metrics().cache_fills_failed.inc();
    run->fail_from(0, changed);
    co_return;  // the connection (with an unread body) is dropped
  }
  run->mark_validated();
  run->reply = std::move(reply.value());
  co_await pump(run);
}

}  // namespace

void CachedReads::ensure_run(const ObjectKey& key, const ObjectMeta& meta, std::uint64_t block) {
  const std::uint64_t kh = key.hash();
  if (block > last_block(meta) || cache_.present_or_inflight(kh, meta.etag, block)) return;
  auto run = std::make_shared<Run>();
  run->cache = &cache_;
  run->pool = &pool_;
  run->bucket = key.bucket;
  run->key = key.key;
  run->key_hash = kh;
  run->etag = meta.etag;
  run->object_size = meta.size;
  run->first_block = block;
  run->read_timeout = shared_.config.upstream_read_timeout;
  const std::uint64_t max_blocks = std::max<std::uint64_t>(1, cache_.options().max_fetch / meta.block_size);
  for (std::uint64_t b = block; b <= last_block(meta) && b < block + max_blocks; ++b) {
    if (b != block && cache_.present_or_inflight(kh, meta.etag, b)) break;  // runs stop at what is there
    auto [inflight, owner] = cache_.find_or_start(kh, meta.etag, b, block_length(meta, b));
    if (!owner) break;
    run->lengths.push_back(block_length(meta, b));
    run->blocks.push_back(std::move(inflight));
  }
  if (run->blocks.empty()) return;
  metrics().cache_fills_started.inc();
  run->first_byte = block * meta.block_size;
  run->last_byte = std::min(meta.size, (block + run->blocks.size()) * meta.block_size) - 1;
  asio::co_spawn(pool_.executor(),
                 start_fetch(run, &shared_.config, &shared_.signing, object_target(key), variant_headers(key)),
                 asio::detached);
}

asio::awaitable<Status> CachedReads::stream_block(Exchange& ex, const ObjectKey& key, const ObjectMeta& meta,
                                                  std::uint64_t block, std::uint64_t lo, std::uint64_t hi) {
  const std::uint64_t kh = key.hash();
  auto& m = metrics();
  for (int attempt = 0; attempt < 3; ++attempt) {
    cache::BlockBytes bytes;
    if (cache_.read_block(kh, meta.etag, block, bytes) == cache::ReadOutcome::kHit) {
      if (bytes->size() != block_length(meta, block)) co_return Status(ErrorCode::kInternalError, "cache block length");
      ex.client.stream.expires_after(shared_.config.idle_timeout);
      auto [ec, n] = co_await asio::async_write(ex.client.stream, asio::buffer(bytes->data() + lo, hi - lo), kTuple);
      if (ec) co_return Status(ErrorCode::kRequestTimeout, "client went away");
      ex.bytes_out += hi - lo;
      m.cache_hit_bytes.inc(hi - lo);
      m.response_body_bytes.inc(hi - lo);
      co_return Status::ok();
    }
    auto inflight = cache_.find(kh, meta.etag, block);
    if (!inflight) {
      ensure_run(key, meta, block);
      inflight = cache_.find(kh, meta.etag, block);
      if (!inflight) continue;  // finished between the checks: read it from the cache
    } else {
      m.cache_joined_fills.inc();
    }
    // Read the block as it arrives, at this client's pace.
    std::uint64_t offset = lo;
    auto timer = std::make_shared<asio::steady_timer>(ex.client.stream.get_executor());
    bool failed = false;
    while (offset < hi) {
      bool done = false;
      std::size_t n = inflight->read(offset, reinterpret_cast<std::byte*>(ex.piece.get()),
                                     std::min<std::uint64_t>(kPiece, hi - offset), done);
      if (n > 0) {
        ex.client.stream.expires_after(shared_.config.idle_timeout);
        auto [ec, w] = co_await asio::async_write(ex.client.stream, asio::buffer(ex.piece.get(), n), kTuple);
        if (ec) co_return Status(ErrorCode::kRequestTimeout, "client went away");
        offset += n;
        ex.bytes_out += n;
        m.response_body_bytes.inc(n);
        continue;
      }
      if (done) {
        failed = true;
        break;
      }
      timer->expires_after(shared_.config.upstream_read_timeout);
      if (inflight->wait_for_progress(offset, ex.client.stream.get_executor(), timer)) {
        auto [ec] = co_await timer->async_wait(kTuple);
        if (!ec) co_return Status(ErrorCode::kGatewayTimeout, "cache fill stalled");
      }
    }
    if (!failed) co_return Status::ok();
    // The metadata is wrong now (the fill invalidated it): no retry can help.
    if (inflight->changed()) co_return Status(ErrorCode::kPreconditionFailed, "the object changed upstream");
    if (offset > lo) co_return Status(ErrorCode::kBadGateway, "cache fill failed mid-block");
    // The fill failed before this block's first byte: try again with a new run.
  }
  co_return Status(ErrorCode::kBadGateway, "could not fetch a block from upstream");
}

asio::awaitable<CachedReads::Prevalidation> CachedReads::prevalidate(Exchange& ex, const ObjectKey& key,
                                                                     const ObjectMeta& meta,
                                                                     const cache::BlockSpan& span) {
  const std::uint64_t kh = key.hash();
  // Presence checks are index lookups: bounded, so the head of a huge cached object is not
  // delayed. A block missing beyond the bound is still fetched with If-Match; a change
  // found then resets the connection.
  constexpr std::uint64_t kMaxScan = 1024;
  std::uint64_t b = span.first;
  while (b <= span.last && b - span.first < kMaxScan && cache_.block_cached(kh, meta.etag, b)) ++b;
  if (b > span.last || b - span.first >= kMaxScan) co_return Prevalidation::kOk;
  // The first block this response needs from upstream: its fill's answer is checked
  // (status, Content-Range, ETag) before the head goes out, so an object that changed
  // upstream becomes a clean miss instead of a response cut after the cached blocks.
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto inflight = cache_.find(kh, meta.etag, b);
    if (!inflight) {
      ensure_run(key, meta, b);
      inflight = cache_.find(kh, meta.etag, b);
      if (!inflight) co_return Prevalidation::kOk;  // stored in between
    }
    auto timer = std::make_shared<asio::steady_timer>(ex.client.stream.get_executor());
    timer->expires_after(shared_.config.upstream_read_timeout);
    if (inflight->wait_for_validation(ex.client.stream.get_executor(), timer)) {
      auto [ec] = co_await timer->async_wait(kTuple);
      if (!ec) co_return Prevalidation::kTimeout;
    }
    if (inflight->changed()) co_return Prevalidation::kChanged;
    if (!inflight->failed()) co_return Prevalidation::kOk;
    // Failed for another reason (upstream error, broken connection): one more try.
  }
  co_return Prevalidation::kFailed;
}

asio::awaitable<std::optional<bool>> CachedReads::respond(Exchange& ex, const ObjectKey& key, const ObjectMeta& meta,
                                                          const char* x_cache, bool stale, bool checksum_mode) {
  auto& req = ex.parser.get();
  const auto& config = shared_.config;
  std::string im, inm, ims, ius;
  cache::ConditionalHeaders cond;
  if (auto it = req.find(http::field::if_match); it != req.end()) cond.if_match = &(im = std::string(it->value()));
  if (auto it = req.find(http::field::if_none_match); it != req.end()) cond.if_none_match = &(inm = std::string(it->value()));
  if (auto it = req.find(http::field::if_modified_since); it != req.end()) {
    cond.if_modified_since = &(ims = std::string(it->value()));
  }
  if (auto it = req.find(http::field::if_unmodified_since); it != req.end()) {
    cond.if_unmodified_since = &(ius = std::string(it->value()));
  }
  const bool head = req.method() == http::verb::head;
  const bool keep_alive = req.keep_alive() && metrics().draining.get() == 0;

  http::response<http::empty_body> res{http::status::ok, 11};
  res.set(http::field::server, "tagd");
  res.set("x-amz-request-id", ex.request_id);
  res.set(http::field::etag, meta.etag);
  if (!meta.last_modified.empty()) res.set(http::field::last_modified, meta.last_modified);
  res.set("X-Cache", x_cache);
  if (stale) res.set(http::field::warning, "110 tagd \"Response is Stale\"");
  res.keep_alive(keep_alive);

  auto outcome = cache::evaluate_conditionals(cond, meta.etag, meta.last_modified);
  if (outcome == cache::ConditionalOutcome::kPreconditionFailed) {
    ex.x_cache = x_cache;
    co_return co_await send_error(config, ex, Status(ErrorCode::kPreconditionFailed,
                                                     "At least one of the pre-conditions you specified did not hold"));
  }
  for (const auto& [name, value] : meta.headers) res.set(name, value);
  if (outcome == cache::ConditionalOutcome::kNotModified) {
    ex.x_cache = x_cache;
    res.result(http::status::not_modified);
    ex.status = 304;
    ex.client.stream.expires_after(config.idle_timeout);
    http::response_serializer<http::empty_body> sr{res};
    auto [ec, n] = co_await http::async_write_header(ex.client.stream, sr, kTuple);
    co_return !ec && keep_alive;
  }

  cache::ByteRange range{0, meta.size == 0 ? 0 : meta.size - 1};
  bool partial = false;
  if (auto it = req.find(http::field::range); it != req.end()) {
    auto r = cache::parse_range(it->value(), meta.size);
    if (r.kind == cache::RangeKind::kUnsatisfiable) {
      ex.x_cache = x_cache;
      co_return co_await send_error(config, ex, Status(ErrorCode::kInvalidRange, "The requested range is not satisfiable"));
    }
    if (r.kind == cache::RangeKind::kSatisfiable) {
      range = r.range;
      partial = true;
    }
  }
  if (cache::return_checksums(cache::ChecksumContext{checksum_mode, partial, range, meta.size, meta.etag})) {
    for (const auto& [name, value] : meta.checksums) res.set(name, value);
  }
  res.set(http::field::accept_ranges, "bytes");
  const std::uint64_t length = meta.size == 0 ? 0 : range.length();
  if (partial) {
    res.result(http::status::partial_content);
    res.set(http::field::content_range, "bytes " + std::to_string(range.first) + "-" + std::to_string(range.last) +
                                            "/" + std::to_string(meta.size));
  }
  res.content_length(length);
  const auto span = cache::blocks_for(range, meta.block_size);
  if (!head && length > 0) {
    // Nothing is committed yet: an object that changed upstream is served as a miss.
    switch (co_await prevalidate(ex, key, meta, span)) {
      case Prevalidation::kOk:
        break;
      case Prevalidation::kChanged:
        spdlog::info("request {}: {}/{} changed upstream since it was cached; serving it as a miss", ex.request_id,
                     key.bucket, key.key);
        co_return std::nullopt;
      case Prevalidation::kTimeout:
        ex.x_cache = x_cache;
        co_return co_await send_error(config, ex, Status(ErrorCode::kGatewayTimeout, "upstream timed out filling the cache"));
      case Prevalidation::kFailed:
        ex.x_cache = x_cache;
        co_return co_await send_error(config, ex, Status(ErrorCode::kBadGateway, "upstream failed filling the cache"));
    }
  }
  ex.x_cache = x_cache;
  ex.status = partial ? 206 : 200;
  ex.client.stream.expires_after(config.idle_timeout);
  http::response_serializer<http::empty_body> sr{res};
  auto [ec, n] = co_await http::async_write_header(ex.client.stream, sr, kTuple);
  if (ec) co_return false;
  if (head || length == 0) co_return keep_alive;

  const std::uint64_t run_blocks = std::max<std::uint64_t>(1, cache_.options().max_fetch / meta.block_size);
  for (std::uint64_t b = span.first; b <= span.last; ++b) {
    // Read-ahead: when a run starts, get the next one going so a sequential reader over
    // a high-latency link does not stall at each run boundary.
    if ((b - span.first) % run_blocks == 0 && b + run_blocks <= span.last) ensure_run(key, meta, b + run_blocks);
    std::uint64_t block_start = b * meta.block_size;
    std::uint64_t lo = std::max(range.first, block_start) - block_start;
    std::uint64_t hi = std::min(range.last + 1, block_start + block_length(meta, b)) - block_start;
    Status s = co_await stream_block(ex, key, meta, b, lo, hi);
    if (!s) {
      if (s.code() == ErrorCode::kRequestTimeout) {
        metrics().client_aborts.inc();
        ex.error = s3_code(s.code());
        co_return false;
      }
      // The head is sent: a reset is the only honest signal left (a plain close could
      // pass for the end of a body), and the client never gets a short or mixed body.
      if (s.code() == ErrorCode::kPreconditionFailed) {
        metrics().cache_changed_resets.inc();
        // (The fill that found the change invalidated already; a reader may have cached
        // the new object since, which stays.)
        if (auto now_cached = cache_.lookup(key); now_cached && now_cached->etag == meta.etag) {
          cache_.invalidate(key.bucket, key.key);
        }
        ex.error = "ObjectChangedUpstream";
        spdlog::warn("request {}: {}/{} changed upstream while its cached copy was being served (block {}); "
                     "connection reset, entry invalidated",
                     ex.request_id, key.bucket, key.key, b);
      } else {
        ex.error = s3_code(s.code());
        spdlog::warn("request {}: cached read of {}/{} block {} failed: {}; connection reset", ex.request_id,
                     key.bucket, key.key, b, s.message());
      }
      reset_client(ex);
      co_return false;
    }
  }
  co_return keep_alive;
}

asio::awaitable<std::optional<bool>> CachedReads::serve(Exchange& ex) {
  auto& req = ex.parser.get();
  auto& m = metrics();
  std::vector<std::pair<std::string, std::string>> headers;
  for (const auto& f : req) headers.emplace_back(to_lower(f.name_string()), std::string(f.value()));
  auto decision = cache::cache_key_for(ex.target.query, headers);
  auto directive = cache::client_directive(req[http::field::cache_control], req[http::field::pragma]);
  if (!decision.cacheable || directive == cache::ClientDirective::kBypass) {
    spdlog::debug("request {}: cache bypass for {}/{}: {}", ex.request_id, ex.target.bucket, ex.target.key,
                  decision.cacheable ? std::string("Cache-Control: no-store") : decision.reason);
    ex.x_cache = "BYPASS";
    m.cache_bypass.inc();
    co_return std::nullopt;
  }
  ObjectKey key{ex.target.bucket, ex.target.key, decision.variant};
  const std::string target = object_target(key);
  const auto& config = shared_.config;
  // Exactly one outcome counter per request, whatever the rounds below.
  bool counted_miss = false;
  auto count_miss = [&] {
    if (!counted_miss) m.cache_misses.inc();
    counted_miss = true;
  };
  auto as_miss = [&]() -> std::optional<bool> {
    ex.x_cache = "MISS";
    count_miss();
    return std::nullopt;
  };

  // A round ends early when the cached copy turned out to be stale (changed upstream):
  // it is invalidated and the next round reads the object as a miss.
  for (int round = 0; round < 3; ++round) {
    auto meta = cache_.lookup(key);
    if (meta && meta->block_size != cache_.options().block_size) meta.reset();  // cached with another geometry
    if (meta && now_ms() < meta->fresh_until_ms && directive != cache::ClientDirective::kRevalidate) {
      // A checksum-mode client gets the object's checksums on whole-object answers; a fill
      // of a range did not learn them: ask once (HEAD in checksum mode) and keep them.
      bool want_checksums = false;
      if (decision.checksum_mode && !meta->checksums_known) {
        cache::ChecksumContext c{true, false, {}, meta->size, meta->etag};
        if (auto it = req.find(http::field::range); it != req.end()) {
          auto r = cache::parse_range(it->value(), meta->size);
          if (r.kind == cache::RangeKind::kSatisfiable) {
            c.partial = true;
            c.range = r.range;
          }
        }
        want_checksums = cache::return_checksums(c);
      }
      if (want_checksums) {
        std::uint64_t epoch = cache_.epoch();
        // Short: a hit must not wait long for what is only an extra header (an unreachable
        // upstream means answering without checksums, as a hit always did before).
        const auto learn_timeout = std::min<std::chrono::milliseconds>(config.upstream_read_timeout,
                                                                       std::chrono::seconds(2));
        auto reply = co_await upstream_request(pool_, config, shared_.signing, http::verb::head, target,
                                               variant_headers(key), learn_timeout);
        if (reply) {
          auto& h = reply->parser->get();
          const int st = h.result_int();
          const bool same = st == 200 && h[http::field::etag] == meta->etag;
          if (same) {
            meta->checksums = checksums_from(h.base());
            meta->checksums_known = true;
            (void)cache_.publish(key, *meta, epoch);
          }
          if (reply->parser->is_done() && reply->parser->keep_alive()) pool_.release(std::move(reply->conn));
          if (st == 404 || (st == 200 && !same)) {
            cache_.invalidate(key.bucket, key.key);
            continue;
          }
        }
        // Otherwise (upstream unavailable): answered without checksums, as before.
      }
      auto served = co_await respond(ex, key, *meta, "HIT", false, decision.checksum_mode);
      if (served) {
        m.cache_hits.inc();
        co_return *served;
      }
      continue;
    }
    if (meta) {
      // Stale, or the client asked for revalidation: a conditional HEAD upstream.
      std::uint64_t epoch = cache_.epoch();
      auto reval_headers = variant_headers(key);
      reval_headers.emplace_back("If-None-Match", meta->etag);
      auto reply = co_await upstream_request(pool_, config, shared_.signing, http::verb::head, target, reval_headers);
      if (!reply || reply->parser->get().result_int() >= 500) {
        std::int64_t stale_limit = meta->fresh_until_ms + cache_.options().stale_if_error.count();
        if (now_ms() < stale_limit) {
          spdlog::warn("request {}: upstream unavailable for revalidation of {}/{}; serving stale copy",
                       ex.request_id, key.bucket, key.key);
          auto served = co_await respond(ex, key, *meta, "HIT", true, decision.checksum_mode);
          if (served) {
            m.cache_stale_served.inc();
            m.cache_hits.inc();
            co_return *served;
          }
          continue;
        }
        co_return as_miss();  // forwarding reports the upstream failure
      }
      auto& h = reply->parser->get();
      const bool same = h.result_int() == 304 || (h.result_int() == 200 && h[http::field::etag] == meta->etag);
      if (same) {
        auto fresh = cache::freshness(h[http::field::cache_control], h[http::field::expires], h[http::field::date],
                                      std::chrono::system_clock::now(),
                                      std::chrono::duration_cast<std::chrono::seconds>(cache_.options().ttl));
        meta->fresh_until_ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(fresh.until.time_since_epoch()).count();
        if (cache::immutable_variant(key.variant)) meta->fresh_until_ms = std::numeric_limits<std::int64_t>::max();
        if (h.result_int() == 200) {
          // A whole-object HEAD in checksum mode: it names the checksums.
          meta->checksums = checksums_from(h.base());
          meta->checksums_known = true;
        }
      }
      if (reply->parser->is_done() && reply->parser->keep_alive()) pool_.release(std::move(reply->conn));
      if (same) {
        (void)cache_.publish(key, *meta, epoch);
        auto served = co_await respond(ex, key, *meta, "REVALIDATED", false, decision.checksum_mode);
        if (served) {
          m.cache_revalidated.inc();
          co_return *served;
        }
        continue;
      }
      // Changed or gone: forget it and treat the request as a miss.
      cache_.invalidate(key.bucket, key.key);
    }

    // Miss. Requests with conditionals are forwarded as they are (the upstream answers
    // them); suffix ranges ("bytes=-n") need the size first, so they are forwarded too.
    // (Their X-Cache is MISS: the object was not in the cache, and this request does not
    // fill it.)
    const bool conditional = req.find(http::field::if_match) != req.end() ||
                             req.find(http::field::if_none_match) != req.end() ||
                             req.find(http::field::if_modified_since) != req.end() ||
                             req.find(http::field::if_unmodified_since) != req.end();
    std::uint64_t first_block = 0;
    std::optional<std::uint64_t> last_wanted_block;  // a closed range needs no more than its blocks
    if (auto it = req.find(http::field::range); it != req.end()) {
      std::string_view r = it->value();
      if (r.rfind("bytes=", 0) != 0 || r.size() < 7 || r[6] == '-' || r.find(',') != std::string_view::npos) {
        co_return as_miss();
      }
      try {
        std::string spec(r.substr(6));
        first_block = std::stoull(spec) / cache_.options().block_size;
        if (auto dash = spec.find('-'); dash != std::string::npos && dash + 1 < spec.size()) {
          last_wanted_block = std::stoull(spec.substr(dash + 1)) / cache_.options().block_size;
        }
      } catch (...) {
        co_return as_miss();
      }
    }
    // A HEAD miss is forwarded: filling would download the whole object to answer it.
    if (conditional || req.method() == http::verb::head) co_return as_miss();

    auto [pending, owner] = cache_.find_or_start_object(key);
    if (!owner) {
      // Another request is fetching this object's head: wait for it, then read blocks.
      m.cache_joined_fills.inc();
      auto timer = std::make_shared<asio::steady_timer>(ex.client.stream.get_executor());
      timer->expires_after(config.upstream_read_timeout);
      if (pending->signal.wait_for_progress(0, ex.client.stream.get_executor(), timer)) {
        co_await timer->async_wait(kTuple);
      }
      if (round + 1 < 3) continue;  // look the metadata up again
      co_return as_miss();
    }

    // This request fetches the head and the first run of blocks.
    // Waiters are released as soon as the metadata is published and the blocks are
    // registered — not when this request's own response ends, or a herd would wait for
    // the first client's whole transfer. On every early return the destructor does it.
    struct Finish {
      cache::ObjectCache& c;
      const ObjectKey& k;
      bool done = false;
      void release() {
        if (!done) c.finish_object(k);
        done = true;
      }
      ~Finish() { release(); }
    } finish{cache_, key};
    // A range miss fetches the blocks that cover it (a parquet footer costs one block, not
    // a whole run); an open-ended range or a whole object starts with a full run.
    const std::uint64_t bs = cache_.options().block_size;
    std::uint64_t run_bytes = std::max<std::uint64_t>(cache_.options().max_fetch, bs) / bs * bs;
    if (last_wanted_block && *last_wanted_block >= first_block) {
      run_bytes = std::min(run_bytes, (*last_wanted_block - first_block + 1) * bs);
    }
    if (!cache_.admission().try_admit(run_bytes)) {
      m.cache_fills_rejected.inc();
      // Once per 10 s at most: under a burst this would otherwise be one line per request.
      static std::atomic<std::int64_t> last_warned{0};
      std::int64_t now = now_ms(), last = last_warned.load();
      if (now - last > 10'000 && last_warned.compare_exchange_strong(last, now)) {
        spdlog::warn("cache fill budget spent (cache.fill_budget / cache.max_fills): serving without caching");
      }
      co_return as_miss();
    }
    cache::Admission admission(&cache_.admission(), run_bytes);
    std::uint64_t epoch = cache_.epoch();
    const std::uint64_t first = first_block * cache_.options().block_size;
    const bool ranged = req.find(http::field::range) != req.end();
    auto fill_headers = variant_headers(key);
    // A whole-object read fetches the whole object in one stream (one upstream request,
    // however large); a ranged read fetches the first run of blocks that covers it.
    if (ranged) {
      fill_headers.emplace_back("Range", "bytes=" + std::to_string(first) + "-" + std::to_string(first + run_bytes - 1));
    }
    auto reply = co_await upstream_request(pool_, config, shared_.signing, http::verb::get, target, fill_headers);
    count_miss();
    ex.x_cache = "MISS";
    if (!reply) co_return co_await send_error(config, ex, reply.error());
    auto& h = reply->parser->get();
    std::string why_not;
    std::optional<ObjectMeta> meta_new;
    if (h.result_int() == 206 || h.result_int() == 200) {
      meta_new = meta_from(h.base(), cache_.options(), cache::immutable_variant(key.variant), why_not);
    }
    // The body's extent: for a 206 exactly the run asked for (clipped to the object), for
    // a 200 the whole object (the upstream ignored the range).
    std::uint64_t body_first_block = first_block;
    std::uint64_t body_bytes = 0;
    if (meta_new && h.result_int() == 206) {
      auto cr = cache::parse_content_range(h[http::field::content_range]);
      const std::uint64_t want_last = std::min(first + run_bytes - 1, meta_new->size - 1);
      if (!ranged || !cr || cr->first != first || cr->last != want_last) {
        spdlog::warn("request {}: unexpected Content-Range '{}' for a cache fill of bytes {}-{}; forwarding",
                     ex.request_id, h[http::field::content_range], first, want_last);
        co_return std::nullopt;
      }
      body_bytes = cr->last - cr->first + 1;
    } else if (meta_new) {
      body_first_block = 0;
      body_bytes = meta_new->size;
    }
    if (!meta_new) {
      // Not cacheable (an error, an empty object, no-store, a weak ETag).
      spdlog::debug("request {}: {}/{} not cached: {}", ex.request_id, key.bucket, key.key,
                    why_not.empty() ? std::to_string(h.result_int()) : why_not);
      // Without a Range this was exactly the client's request (plus checksum mode, which
      // only adds headers): relay the answer rather than asking the upstream twice. A
      // ranged fetch was ours, so forward the client's.
      if (!ranged) {
        if (!decision.checksum_mode) {
          std::vector<std::string> drop;
          for (const auto& f : h) {
            if (cache::is_checksum_header(f.name_string())) drop.emplace_back(f.name_string());
          }
          for (const auto& name : drop) h.erase(name);
        }
        co_return co_await relay_response(config, pool_, ex, std::move(reply->conn), *reply->parser);
      }
      co_return std::nullopt;
    }
    (void)cache_.publish(key, *meta_new, epoch);

    // Hand the response body to a fill run that outlives this request.
    auto run = std::make_shared<Run>();
    run->cache = &cache_;
    run->pool = &pool_;
    run->bucket = key.bucket;
    run->key = key.key;
    run->key_hash = key.hash();
    run->etag = meta_new->etag;
    run->object_size = meta_new->size;
    run->first_block = body_first_block;
    run->read_timeout = config.upstream_read_timeout;
    std::uint64_t blocks_in_body = (body_bytes + meta_new->block_size - 1) / meta_new->block_size;
    for (std::uint64_t i = 0; i < blocks_in_body; ++i) {
      std::uint64_t b = run->first_block + i;
      auto [inflight, mine] = cache_.find_or_start(run->key_hash, run->etag, b, block_length(*meta_new, b));
      run->lengths.push_back(block_length(*meta_new, b));
      run->blocks.push_back(mine ? std::move(inflight) : nullptr);
    }
    run->mark_validated();  // this answer's head was checked above
    run->reply = std::move(reply.value());
    run->admission = std::move(admission);
    m.cache_fills_started.inc();
    asio::co_spawn(pool_.executor(), pump(run), asio::detached);
    finish.release();
    auto served = co_await respond(ex, key, *meta_new, "MISS", false, decision.checksum_mode);
    if (served) co_return *served;
    // Changed again between this answer and the next run: one more round.
  }
  co_return as_miss();
}

}  // namespace tagd::gateway
