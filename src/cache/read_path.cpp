#include "tagd/cache/read_path.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <limits>

#include "tagd/cache/cached_body.hpp"
#include "tagd/cache/http_semantics.hpp"
#include "tagd/core/logging.hpp"
#include "tagd/core/metrics.hpp"
#include "tagd/core/strings.hpp"

namespace tagd::cache {

namespace asio = boost::asio;
namespace http = boost::beast::http;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

const char* read_state_name(ReadState state) {
  switch (state) {
    case ReadState::kLookup: return "lookup";
    case ReadState::kLearnChecksums: return "learn-checksums";
    case ReadState::kFresh: return "fresh";
    case ReadState::kRevalidate: return "revalidate";
    case ReadState::kServeStale: return "serve-stale";
    case ReadState::kMiss: return "miss";
    case ReadState::kJoin: return "join";
    case ReadState::kFill: return "fill";
    case ReadState::kFillMeta: return "fill-meta";
    case ReadState::kPrepare: return "prepare";
    case ReadState::kDone: return "done";
  }
  return "?";
}

namespace {

// A cached copy is looked up at most this many times per request (each time it turned out
// to have changed upstream, or another request was fetching it); then the request is
// forwarded.
constexpr int kMaxRounds = 3;

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
  // where S3 would (return_checksums).
  return !is_checksum_header(name);
}

// A multipart object (ETag "...-N") has either a composite checksum (the value ends in
// "-N") or a full-object one (x-amz-checksum-type: FULL_OBJECT). A value that is neither
// does not describe the object's bytes — moto's HEAD drops the part count — and a client
// validating it would reject a correct body, so none of them is kept.
bool consistent_multipart_checksums(const http::response_header<>& h) {
  const std::string_view etag = h[http::field::etag];
  const auto dash = etag.rfind('-');
  if (dash == std::string_view::npos) return true;  // not a multipart ETag
  if (iequals(h["x-amz-checksum-type"], "FULL_OBJECT")) return true;
  for (const auto& f : h) {
    const std::string_view name = f.name_string();
    if (!is_checksum_header(name) || iequals(name, "x-amz-checksum-type") || iequals(name, "x-amz-checksum-algorithm")) {
      continue;
    }
    if (std::string_view(f.value()).find('-') == std::string_view::npos) return false;
  }
  return true;
}

std::vector<std::pair<std::string, std::string>> checksums_from(const http::response_header<>& h) {
  std::vector<std::pair<std::string, std::string>> out;
  if (!consistent_multipart_checksums(h)) {
    spdlog::debug("checksum headers of a multipart object neither composite nor full-object; not kept");
    return out;
  }
  for (const auto& f : h) {
    if (is_checksum_header(f.name_string())) out.emplace_back(to_lower(f.name_string()), std::string(f.value()));
  }
  return out;
}

std::int64_t to_ms(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

// Metadata from an upstream 200/206 head, or nullopt if the response must not be cached.
std::optional<ObjectMeta> meta_from(const http::response_header<>& h, const ObjectCacheOptions& options,
                                    bool immutable, std::chrono::system_clock::time_point now, std::string& why_not) {
  ObjectMeta m;
  m.etag = std::string(h[http::field::etag]);
  // Empty and weak ETags cannot key blocks (TAG bug 3).
  if (m.etag.empty() || m.etag.rfind("W/", 0) == 0) {
    why_not = "no strong ETag";
    return std::nullopt;
  }
  bool whole_object = true;
  if (h.result_int() == 206) {
    auto cr = parse_content_range(h[http::field::content_range]);
    if (!cr) {
      why_not = "no object size in Content-Range";
      return std::nullopt;
    }
    m.size = cr->size;
    whole_object = cr->first == 0 && cr->last + 1 == cr->size;
  } else {
    auto size = parse_u64(h[http::field::content_length]);
    if (!size) {
      why_not = "no Content-Length";
      return std::nullopt;
    }
    m.size = *size;
  }
  auto fresh = freshness(h[http::field::cache_control], h[http::field::expires], h[http::field::date], now,
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
  m.fetched_at_ms = to_ms(now);
  m.fresh_until_ms = to_ms(fresh.until);
  // A read as of a past snapshot never changes: it is not expired by the TTL (a write
  // through tagd still invalidates it, with every other variant of the key).
  if (immutable) m.fresh_until_ms = std::numeric_limits<std::int64_t>::max();
  m.block_size = options.block_size;
  return m;
}

// Releases the requests waiting on an object's single flight (ObjectCache::
// find_or_start_object) exactly once: explicitly once the metadata is published, or on
// any early return.
struct FinishObject {
  FinishObject(ObjectCache& c, const ObjectKey& k) : cache(c), key(k) {}
  ObjectCache& cache;
  const ObjectKey& key;
  bool done = false;
  void release() {
    if (!done) cache.finish_object(key);
    done = true;
  }
  ~FinishObject() { release(); }
  FinishObject(const FinishObject&) = delete;
  FinishObject& operator=(const FinishObject&) = delete;
};

}  // namespace

struct ReadPath::Session {
  explicit Session(const ReadRequest& r) : request(r) {}
  const ReadRequest& request;
  CacheKeyDecision decision;
  ClientDirective directive = ClientDirective::kNone;
  ObjectKey key;
  // The cached copy being answered from: the index's own version, shared (a hit copies no
  // metadata); a state that changes it publishes a changed copy.
  std::shared_ptr<const ObjectMeta> meta;
  int round = 0;
  std::shared_ptr<ObjectCache::PendingObject> pending;  // kJoin: the fetch being waited for
  // Waited for another request's revalidation: a client's no-cache is satisfied by it.
  bool joined_revalidation = false;
  // kPrepare: the answer's body, waiting for blocks in flight.
  std::unique_ptr<CachedBody> preparing;
  bool answer_stale = false;  // the answer being built is of a stale copy (kServeStale)
  ReadResult result;

  std::string_view header(http::field f) const {
    auto it = request.headers->find(f);
    return it == request.headers->end() ? std::string_view() : std::string_view(it->value());
  }
  bool has(http::field f) const { return request.headers->find(f) != request.headers->end(); }
  ReadState forward(CacheOutcome outcome) {
    result.action = ReadResult::Action::kForward;
    result.outcome = outcome;
    return ReadState::kDone;
  }
  ReadState respond_error(CacheOutcome outcome, Status error) {
    result.action = ReadResult::Action::kRespond;
    result.outcome = outcome;
    result.error = std::move(error);
    return ReadState::kDone;
  }
};

ReadPath::ReadPath(ObjectCache& cache, Fetcher& fetcher, const Clock& clock, asio::any_io_executor executor,
                   std::chrono::milliseconds upstream_timeout, std::uint64_t fill_write_queue_bytes)
    : cache_(cache),
      fetcher_(fetcher),
      clock_(clock),
      upstream_timeout_(upstream_timeout),
      fills_(cache, fetcher, std::move(executor), upstream_timeout, fill_write_queue_bytes) {}

struct ReadPath::Continuation {
  explicit Continuation(Session&& s, ReadState st) : session(std::move(s)), state(st) {}
  Session session;
  ReadState state;
};

void ReadPath::ContinuationDeleter::operator()(Continuation* c) const noexcept { delete c; }

ReadPath::Started ReadPath::start(const ReadRequest& request) {
  Session s(request);
  s.decision = cache_key_for(*request.query, *request.headers);
  s.directive = client_directive(s.header(http::field::cache_control), s.header(http::field::pragma));
  if (!s.decision.cacheable || s.directive == ClientDirective::kBypass) {
    spdlog::debug("cache bypass for {}/{}: {}", log_field(request.bucket), log_field(request.key),
                  s.decision.cacheable ? std::string("Cache-Control: no-store") : s.decision.reason);
    s.forward(CacheOutcome::kBypass);
    return {finish(s), nullptr};
  }
  s.key = ObjectKey{request.bucket, request.key, s.decision.variant};
  // The states that never wait, for as long as the read stays in them.
  ReadState state = ReadState::kLookup;
  for (;;) {
    if (state == ReadState::kLookup) {
      state = lookup(s);
    } else if (state == ReadState::kFresh) {
      state = answer(s, CacheOutcome::kHit, false);
    } else {
      break;
    }
  }
  if (state == ReadState::kDone) return {finish(s), nullptr};
  return {{}, std::unique_ptr<Continuation, ContinuationDeleter>(new Continuation(std::move(s), state))};
}

asio::awaitable<ReadResult> ReadPath::resume(std::unique_ptr<Continuation, ContinuationDeleter> rest) {
  co_return co_await run(rest->session, rest->state);
}

asio::awaitable<ReadResult> ReadPath::serve(const ReadRequest& request) {
  Started started = start(request);
  if (!started.rest) co_return std::move(started.result);
  co_return co_await resume(std::move(started.rest));
}

asio::awaitable<ReadResult> ReadPath::run(Session& s, ReadState state) {
  while (state != ReadState::kDone) {
    switch (state) {
      case ReadState::kLookup: state = lookup(s); break;
      case ReadState::kLearnChecksums: state = co_await learn_checksums(s); break;
      case ReadState::kFresh: state = answer(s, CacheOutcome::kHit, false); break;
      case ReadState::kRevalidate: state = co_await revalidate(s); break;
      case ReadState::kServeStale: state = answer(s, CacheOutcome::kHit, true); break;
      case ReadState::kPrepare: state = co_await prepare(s); break;
      case ReadState::kMiss: state = co_await miss(s); break;
      case ReadState::kJoin: state = co_await join(s); break;
      case ReadState::kFill: state = co_await fill(s); break;
      case ReadState::kFillMeta: state = co_await fill_meta(s); break;
      case ReadState::kDone: break;
    }
  }
  co_return finish(s);
}

ReadResult ReadPath::finish(Session& s) {
  if (s.answer_stale && s.result.action == ReadResult::Action::kRespond && s.result.error.is_ok()) {
    metrics().cache_stale_served.inc();
  }
  return std::move(s.result);
}

ReadState ReadPath::lookup(Session& s) {
  if (++s.round > kMaxRounds) return s.forward(CacheOutcome::kMiss);
  s.meta = cache_.lookup_shared(s.key);
  if (s.meta && s.meta->block_size != cache_.options().block_size) s.meta.reset();  // another geometry
  if (!s.meta) return ReadState::kMiss;
  const bool client_wants_revalidation = s.directive == ClientDirective::kRevalidate && !s.joined_revalidation;
  if (clock_.now_ms() >= s.meta->fresh_until_ms || client_wants_revalidation) {
    return ReadState::kRevalidate;
  }
  // A checksum-mode client gets the object's checksums on whole-object answers; a fill of
  // a range did not learn them: ask once (HEAD in checksum mode) and keep them.
  if (s.decision.checksum_mode && !s.meta->checksums_known) {
    ChecksumContext c{true, false, {}, s.meta->size, s.meta->etag};
    if (s.has(http::field::range)) {
      auto r = parse_range(s.header(http::field::range), s.meta->size);
      if (r.kind == RangeKind::kSatisfiable) {
        c.partial = true;
        c.range = r.range;
      }
    }
    if (return_checksums(c)) return ReadState::kLearnChecksums;
  }
  return ReadState::kFresh;
}

asio::awaitable<ReadState> ReadPath::learn_checksums(Session& s) {
  const std::uint64_t epoch = cache_.epoch();
  // Short: a hit must not wait long for what is only an extra header (an unreachable
  // upstream means answering without checksums, as a hit always did before).
  FetchRequest head{http::verb::head, s.key, std::nullopt, "", "",
                    std::min<std::chrono::milliseconds>(upstream_timeout_, std::chrono::seconds(2))};
  auto reply = co_await fetcher_.fetch(std::move(head));
  if (!reply) co_return ReadState::kFresh;
  auto& h = reply.value()->head();
  const int status = h.result_int();
  const bool same = status == 200 && h[http::field::etag] == s.meta->etag;
  if (same) {
    auto learnt = std::make_shared<ObjectMeta>(*s.meta);
    learnt->checksums = checksums_from(h);
    learnt->checksums_known = true;
    learnt->prepared.reset();  // it lacks the checksums (the index prepares the published copy)
    (void)cache_.publish(s.key, *learnt, epoch);
    s.meta = std::move(learnt);
  }
  if (status == 404 || (status == 200 && !same)) {
    cache_.invalidate(s.key.bucket, s.key.key);
    co_return ReadState::kLookup;
  }
  co_return ReadState::kFresh;
}

asio::awaitable<ReadState> ReadPath::revalidate(Session& s) {
  // Stale, or the client asked for revalidation: a conditional HEAD upstream, one per
  // object at a time. The object's single flight (the one misses use) holds concurrent
  // readers in kJoin until this answer is published: a herd on a stale object costs the
  // upstream one HEAD, and, if the object changed, one fill. A client's own no-cache joins
  // a revalidation in flight too: that answer comes from the upstream after it arrived.
  auto [pending, owner] = cache_.find_or_start_object(s.key);
  if (!owner) {
    metrics().cache_revalidations_joined.inc();
    s.joined_revalidation = true;
    s.pending = std::move(pending);
    co_return ReadState::kJoin;
  }
  FinishObject finish{cache_, s.key};
  const std::uint64_t epoch = cache_.epoch();
  // (A named request: GCC 12 mishandles aggregate temporaries in a co_await operand.)
  FetchRequest conditional_head{http::verb::head, s.key, std::nullopt, "", s.meta->etag, {}};
  auto reply = co_await fetcher_.fetch(std::move(conditional_head));
  if (!reply || reply.value()->status() >= 500) {
    pending->upstream_failed.store(true, std::memory_order_release);
    finish.release();
    co_return serve_stale_or_forward(s);
  }
  auto& h = reply.value()->head();
  const int status = h.result_int();
  const bool same = status == 304 || (status == 200 && h[http::field::etag] == s.meta->etag);
  if (same) {
    auto fresh = freshness(h[http::field::cache_control], h[http::field::expires], h[http::field::date], clock_.now(),
                           std::chrono::duration_cast<std::chrono::seconds>(cache_.options().ttl));
    auto refreshed = std::make_shared<ObjectMeta>(*s.meta);
    refreshed->fresh_until_ms = to_ms(fresh.until);
    if (immutable_variant(s.key.variant)) refreshed->fresh_until_ms = std::numeric_limits<std::int64_t>::max();
    if (status == 200) {
      // A whole-object HEAD in checksum mode: it names the checksums.
      refreshed->checksums = checksums_from(h);
      refreshed->checksums_known = true;
      refreshed->prepared.reset();  // it may lack them (the index prepares the published copy)
    }
    s.meta = std::move(refreshed);
  }
  if (!same) {
    // Changed or gone: forget it and treat the request as a miss (the waiters then find no
    // copy and join the fill this request or another one starts).
    cache_.invalidate(s.key.bucket, s.key.key);
    finish.release();
    co_return ReadState::kMiss;
  }
  (void)cache_.publish(s.key, *s.meta, epoch);
  finish.release();  // before the body: the waiters read the refreshed copy themselves
  co_return answer(s, CacheOutcome::kRevalidated, false);
}

asio::awaitable<ReadState> ReadPath::miss(Session& s) {
  // Every cacheable miss fills (conditionals, suffix ranges and HEAD included): a client
  // that always sends If-Match (s3transfer) or starts with a HEAD must not be a miss
  // forever. Only several ranges in one request are forwarded (S3 answers one range only).
  if (s.has(http::field::range)) {
    auto spec = parse_range_spec(s.header(http::field::range));
    if (!spec || spec->multiple || (spec->suffix && *spec->suffix == 0)) co_return s.forward(CacheOutcome::kMiss);
  }
  auto [pending, owner] = cache_.find_or_start_object(s.key);
  if (!owner) {
    metrics().cache_joined_fills.inc();
    s.pending = std::move(pending);
    co_return ReadState::kJoin;
  }
  // fill() and fill_meta() finish the object's single flight on every path. A HEAD needs
  // only the metadata; so, usually, does a revalidation by a client that holds a copy
  // (If-None-Match, If-Modified-Since: a 304 has no body) — its blocks come on demand.
  const bool metadata_first = s.request.head || s.has(http::field::if_none_match) ||
                              s.has(http::field::if_modified_since);
  co_return metadata_first ? ReadState::kFillMeta : ReadState::kFill;
}

asio::awaitable<ReadState> ReadPath::join(Session& s) {
  // Another request is fetching this object's head, or revalidating the stale copy this
  // request found: wait for it, then look the metadata up again.
  auto executor = co_await asio::this_coro::executor;
  auto timer = std::make_shared<asio::steady_timer>(executor);
  timer->expires_after(upstream_timeout_);
  if (s.pending->signal.wait_for_progress(0, executor, timer)) co_await timer->async_wait(kTuple);
  const bool upstream_failed = s.pending->upstream_failed.load(std::memory_order_acquire);
  s.pending.reset();
  // The revalidation waited for could not reach the upstream: do as it did, rather than
  // each waiter trying (and timing out) in turn.
  if (upstream_failed && s.meta) co_return serve_stale_or_forward(s);
  co_return ReadState::kLookup;
}

ReadState ReadPath::serve_stale_or_forward(Session& s) {
  if (clock_.now_ms() < s.meta->fresh_until_ms + cache_.options().stale_if_error.count()) {
    static logging::WarnThrottle throttle(std::chrono::seconds(10));
    if (throttle.allow(clock_.now_ms())) {
      spdlog::warn("upstream unavailable for revalidation of {}/{}; serving stale copy", log_field(s.key.bucket),
                   log_field(s.key.key));
    }
    return ReadState::kServeStale;
  }
  return s.forward(CacheOutcome::kMiss);  // forwarding reports the upstream failure
}

asio::awaitable<ReadState> ReadPath::fill(Session& s) {
  // This request (the owner of the object's single flight) fetches the head and the first run of blocks. Waiters are released as
  // soon as the metadata is published and the blocks are registered — not when this
  // request's own response ends, or a herd would wait for the first client's whole
  // transfer. On every early return the destructor does it.
  FinishObject finish{cache_, s.key};

  const std::uint64_t bs = cache_.options().block_size;
  std::uint64_t first_block = 0;
  std::optional<std::uint64_t> last_wanted_block;  // a closed range needs no more than its blocks
  std::optional<std::uint64_t> suffix;             // bytes=-n
  const bool ranged = s.has(http::field::range);
  if (ranged) {
    auto spec = parse_range_spec(s.header(http::field::range));  // checked by miss()
    if (spec->suffix) {
      suffix = *spec->suffix;
    } else {
      first_block = *spec->first / bs;
      if (spec->last) last_wanted_block = *spec->last / bs;
    }
  }
  const bool conditional = s.has(http::field::if_match) || s.has(http::field::if_unmodified_since);
  const FillCause cause = suffix         ? FillCause::kSuffix
                          : ranged       ? FillCause::kRange
                          : conditional ? FillCause::kConditional
                                         : FillCause::kMiss;
  // The first part: a range miss fetches the blocks that cover it (a parquet footer costs
  // one block, not a whole run); an open-ended range or a whole object starts with a part
  // of cache.max_fetch, and the body fetches the following parts in parallel ahead of the
  // reader. A suffix asks for one block more than the client did, so the bytes it needs
  // start at a block boundary the answer is sure to hold (the object's size is not known).
  std::uint64_t run_bytes = std::max<std::uint64_t>(cache_.options().max_fetch, bs) / bs * bs;
  if (last_wanted_block && *last_wanted_block >= first_block) {
    run_bytes = std::min(run_bytes, (*last_wanted_block - first_block + 1) * bs);
  }
  if (suffix) run_bytes = *suffix > UINT64_MAX - bs ? UINT64_MAX : *suffix + bs;
  const AdmitResult admitted = cache_.admission().admit(run_bytes);
  // Declined by the eviction policy (scan resistance): counted there; not a fault.
  if (admitted == AdmitResult::kDeclined) co_return s.forward(CacheOutcome::kMiss);
  if (admitted != AdmitResult::kAdmitted) {
    metrics().cache_fills_rejected.inc();
    static logging::WarnThrottle throttle(std::chrono::seconds(10));
    if (throttle.allow(clock_.now_ms())) {
      spdlog::warn("cache fill budget spent (cache.fill_budget / cache.max_fills): serving without caching");
    }
    s.result.fill_budget_spent = true;
    co_return s.forward(CacheOutcome::kMiss);
  }
  Admission admission(&cache_.admission(), run_bytes);
  const std::uint64_t epoch = cache_.epoch();
  const std::uint64_t first = first_block * bs;
  FetchRequest request{http::verb::get, s.key, std::nullopt, "", "", {}};
  if (suffix) {
    request.suffix_length = run_bytes;
  } else {
    request.range = ByteRange{first, first + run_bytes - 1};
  }
  auto reply = co_await fetcher_.fetch(std::move(request));
  if (!reply) co_return s.respond_error(CacheOutcome::kMiss, reply.error());
  auto response = std::move(reply.value());
  auto& h = response->head();
  std::string why_not;
  std::optional<ObjectMeta> meta;
  if (h.result_int() == 206 || h.result_int() == 200) {
    meta = meta_from(h, cache_.options(), immutable_variant(s.key.variant), clock_.now(), why_not);
  }
  // The body's extent: for a 206 exactly the part asked for (clipped to the object), for
  // a 200 the whole object (the upstream ignored the range).
  std::uint64_t body_first_block = first_block;
  std::uint64_t body_bytes = 0;
  std::uint64_t skip = 0;
  if (meta && h.result_int() == 206) {
    auto cr = parse_content_range(h[http::field::content_range]);
    bool expected = false;
    if (cr && suffix) {
      // The last min(n, size) bytes; blocks start at the first boundary inside them.
      expected = cr->last + 1 == cr->size && cr->last - cr->first + 1 == std::min(run_bytes, cr->size);
      const std::uint64_t aligned = (cr->first + bs - 1) / bs * bs;
      skip = aligned - cr->first;
      body_first_block = aligned / bs;
      body_bytes = cr->size - std::min(aligned, cr->size);
    } else if (cr) {
      const std::uint64_t want_last = std::min(first + run_bytes - 1, meta->size - 1);
      expected = cr->first == first && cr->last == want_last;
      body_bytes = cr->last - cr->first + 1;
    }
    if (!expected) {
      spdlog::warn("unexpected Content-Range '{}' for a cache fill of {}; forwarding",
                   log_field(h[http::field::content_range]),
                   suffix ? "the last " + std::to_string(run_bytes) + " bytes"
                          : "bytes " + std::to_string(first) + "-" + std::to_string(first + run_bytes - 1));
      co_return s.forward(CacheOutcome::kMiss);
    }
  } else if (meta) {
    body_first_block = 0;
    body_bytes = meta->size;
  }
  if (!meta) {
    // Not cacheable (an error, an empty object, no-store, a weak ETag).
    spdlog::debug("{}/{} not cached: {}", log_field(s.key.bucket), log_field(s.key.key),
                  why_not.empty() ? std::to_string(h.result_int()) : why_not);
    // The fill's request differs from the client's (a Range, no conditionals): a 200/206
    // or a 416 depends on that, so the client's own request is forwarded. Any other answer
    // (no such key, access denied, slow down) is what the client's request would get too,
    // unless it carried conditionals: relay it rather than asking the upstream twice.
    const int status = h.result_int();
    // An upstream that ignores Range answers 200 with the whole object: what the client
    // asked for.
    if (status == 200 && !ranged && !conditional) co_return relay(s, std::move(response));
    if (status == 206 && !ranged && !conditional) {
      // A first part that holds the whole object is the 200 the client asked for.
      auto cr = parse_content_range(h[http::field::content_range]);
      if (cr && cr->first == 0 && cr->last + 1 == cr->size) {
        h.result(http::status::ok);
        h.erase(http::field::content_range);
        co_return relay(s, std::move(response));
      }
    }
    if (status == 200 || status == 206 || status == 416 || conditional) co_return s.forward(CacheOutcome::kMiss);
    co_return relay(s, std::move(response));
  }
  (void)cache_.publish(s.key, *meta, epoch);
  // Hand the response body to a fill that outlives this request.
  fills_.adopt(s.key, *meta, body_first_block, body_bytes, std::move(response), std::move(admission), cause, skip);
  finish.release();
  s.meta = std::make_shared<const ObjectMeta>(std::move(*meta));
  // Changed again between this answer and the next run: answer() sends it round again.
  co_return answer(s, CacheOutcome::kMiss, false);
}

asio::awaitable<ReadState> ReadPath::fill_meta(Session& s) {
  FinishObject finish{cache_, s.key};  // as in fill(): waiters go once the metadata is published
  const std::uint64_t epoch = cache_.epoch();
  FetchRequest head{http::verb::head, s.key, std::nullopt, "", "", {}};
  auto reply = co_await fetcher_.fetch(std::move(head));
  if (!reply) co_return s.respond_error(CacheOutcome::kMiss, reply.error());
  auto response = std::move(reply.value());
  auto& h = response->head();
  std::string why_not;
  std::optional<ObjectMeta> meta;
  if (h.result_int() == 200) meta = meta_from(h, cache_.options(), immutable_variant(s.key.variant), clock_.now(), why_not);
  if (!meta) {
    spdlog::debug("{}/{} not cached: {}", log_field(s.key.bucket), log_field(s.key.key),
                  why_not.empty() ? std::to_string(h.result_int()) : why_not);
    // A HEAD without conditionals asked exactly this: relay the answer. Anything else is
    // forwarded as the client sent it (a GET needs a body; a condition may change it).
    const bool conditional = s.has(http::field::if_match) || s.has(http::field::if_none_match) ||
                             s.has(http::field::if_modified_since) || s.has(http::field::if_unmodified_since);
    if (s.request.head && !conditional && !s.has(http::field::range)) co_return relay(s, std::move(response));
    co_return s.forward(CacheOutcome::kMiss);
  }
  metrics().fill_cause_head.inc();
  (void)cache_.publish(s.key, *meta, epoch);
  finish.release();
  s.meta = std::make_shared<const ObjectMeta>(std::move(*meta));
  co_return answer(s, CacheOutcome::kMiss, false);
}

ReadState ReadPath::relay(Session& s, std::unique_ptr<ResponseSource> response) {
  auto& h = response->head();
  // The fill asked in checksum mode; a client that did not gets no checksum headers.
  if (!s.decision.checksum_mode) {
    std::vector<std::string> drop;
    for (const auto& f : h) {
      if (is_checksum_header(f.name_string())) drop.emplace_back(f.name_string());
    }
    for (const auto& name : drop) h.erase(name);
  }
  s.result.action = ReadResult::Action::kRespond;
  s.result.outcome = CacheOutcome::kMiss;
  s.result.head = h;
  s.result.body_length = response->length();
  s.result.body = std::move(response);
  return ReadState::kDone;
}

ReadState ReadPath::answer(Session& s, CacheOutcome outcome, bool stale) {
  s.answer_stale = stale;
  const ObjectMeta& meta = *s.meta;
  std::string im, inm, ims, ius;
  ConditionalHeaders cond;
  if (s.has(http::field::if_match)) cond.if_match = &(im = std::string(s.header(http::field::if_match)));
  if (s.has(http::field::if_none_match)) cond.if_none_match = &(inm = std::string(s.header(http::field::if_none_match)));
  if (s.has(http::field::if_modified_since)) {
    cond.if_modified_since = &(ims = std::string(s.header(http::field::if_modified_since)));
  }
  if (s.has(http::field::if_unmodified_since)) {
    cond.if_unmodified_since = &(ius = std::string(s.header(http::field::if_unmodified_since)));
  }
  const auto conditional = evaluate_conditionals(cond, meta.etag, meta.last_modified);
  if (conditional == ConditionalOutcome::kPreconditionFailed) {
    return s.respond_error(outcome, Status(ErrorCode::kPreconditionFailed,
                                              "At least one of the pre-conditions you specified did not hold"));
  }
  s.result.action = ReadResult::Action::kRespond;
  s.result.outcome = outcome;
  auto& res = s.result.head;
  // The head field by field (every answer but a GET hit with a body, which sends the
  // object's prepared head: the same fields, serialised once per object version).
  auto set_fixed_fields = [&](http::status status) {
    res = {};
    res.result(status);
    res.set(http::field::etag, meta.etag);
    if (!meta.last_modified.empty()) res.set(http::field::last_modified, meta.last_modified);
    if (stale) res.set(http::field::warning, "110 tagd \"Response is Stale\"");
    for (const auto& [name, value] : meta.headers) res.set(name, value);
  };
  if (conditional == ConditionalOutcome::kNotModified) {
    set_fixed_fields(http::status::not_modified);
    s.result.body_length = 0;
    return ReadState::kDone;
  }

  ByteRange range{0, meta.size == 0 ? 0 : meta.size - 1};
  bool partial = false;
  if (s.has(http::field::range)) {
    auto r = parse_range(s.header(http::field::range), meta.size);
    if (r.kind == RangeKind::kUnsatisfiable) {
      return s.respond_error(outcome, Status(ErrorCode::kInvalidRange, "The requested range is not satisfiable"));
    }
    if (r.kind == RangeKind::kSatisfiable) {
      range = r.range;
      partial = true;
    }
  }
  const bool checksums =
      return_checksums(ChecksumContext{s.decision.checksum_mode, partial, range, meta.size, meta.etag});
  const std::uint64_t length = meta.size == 0 ? 0 : range.length();
  s.result.body_length = length;
  if (!stale && !s.request.head && length > 0 && meta.prepared && meta.prepared->usable) {
    s.result.prepared = PreparedAnswer::make(meta.prepared, checksums, partial, range, meta.size);
    res = {};  // the status only, for callers that read the body themselves (warm jobs)
    res.result(partial ? http::status::partial_content : http::status::ok);
  } else {
    set_fixed_fields(partial ? http::status::partial_content : http::status::ok);
    if (checksums) {
      for (const auto& [name, value] : meta.checksums) res.set(name, value);
    }
    res.set(http::field::accept_ranges, "bytes");
    if (partial) {
      res.set(http::field::content_range, "bytes " + std::to_string(range.first) + "-" + std::to_string(range.last) +
                                              "/" + std::to_string(meta.size));
    }
    res.set(http::field::content_length, std::to_string(length));
  }
  if (s.request.head || length == 0) {
    return ReadState::kDone;
  }
  // The metadata stayed but the first block needed was evicted: fetching it caches the
  // object again, which the eviction policy may decline (scan resistance).
  if (cache_.admission().gates_objects() &&
      !cache_.present_or_inflight(s.key.hash(), meta.etag, range.first / meta.block_size) &&
      !cache_.admission().wants_object()) {
    s.result = {};
    return s.forward(CacheOutcome::kMiss);
  }
  // A ranged GET that continues a sequential stream: fetch ahead past its range. Not for a
  // client with other ranged GETs of the object in flight: it reads in parallel itself.
  ActiveReader reader;
  if (partial) {
    auto& detector = cache_.sequential_detector();
    const std::uint64_t kh = s.key.hash();
    reader = ActiveReader(detector, kh);
    if (reader.others() > 0) metrics().cache_readahead_parallel_reads.inc();
    if (auto ahead = detector.observe(kh, range, meta.size, reader.others() > 0)) {
      // From the block after this read's last (the reader's own blocks are its own fetch)
      // to the end of the part the window ends in: whole, aligned parts of
      // cache.max_fetch, not 1, 2, 4 MiB runs.
      const std::uint32_t bs = meta.block_size;
      const std::uint64_t part = std::max<std::uint64_t>(1, cache_.options().max_fetch / bs);
      const std::uint64_t from = std::max(ahead->first / bs, range.last / bs + 1);
      const std::uint64_t to = std::min(last_block(meta), (ahead->last / bs / part + 1) * part - 1);
      if (from <= to) {
        const std::uint64_t next = fills_.fetch_ahead(s.key, meta, from, to, SIZE_MAX, FillCause::kReadAhead);
        // Held back (per-object limit, budget): the next read asks again from there.
        detector.covered(kh, std::min(meta.size, next * bs));
      }
    }
  }
  // The head is built: the metadata moves into the body (a hit copies no header lists).
  auto body = std::make_unique<CachedBody>(cache_, fills_, s.key, std::move(s.meta), range, upstream_timeout_,
                                           std::move(reader));
  // Nothing is committed yet: an object that changed upstream is served as a miss.
  if (const auto ready = body->prepare_cached()) return settle(s, std::move(body), *ready);
  s.preparing = std::move(body);
  return ReadState::kPrepare;
}

asio::awaitable<ReadState> ReadPath::prepare(Session& s) {
  const CachedBody::Preparation preparation = co_await s.preparing->prepare();
  co_return settle(s, std::move(s.preparing), preparation);
}

ReadState ReadPath::settle(Session& s, std::unique_ptr<CachedBody> body, CachedBody::Preparation preparation) {
  const CacheOutcome outcome = s.result.outcome;
  switch (preparation) {
    case CachedBody::Preparation::kOk:
      break;
    case CachedBody::Preparation::kChanged:
      spdlog::info("{}/{} changed upstream since it was cached; serving it as a miss", log_field(s.key.bucket),
                   log_field(s.key.key));
      s.result = {};
      s.answer_stale = false;
      return ReadState::kLookup;
    case CachedBody::Preparation::kTimeout:
      return s.respond_error(outcome, Status(ErrorCode::kGatewayTimeout, "upstream timed out filling the cache"));
    case CachedBody::Preparation::kFailed:
      return s.respond_error(outcome, Status(ErrorCode::kBadGateway, "upstream failed filling the cache"));
  }
  // Metadata alone (a HEAD filled it, or blocks were evicted) is not a hit.
  if (outcome == CacheOutcome::kHit && body->needs_upstream()) s.result.outcome = CacheOutcome::kMiss;
  s.result.body = std::move(body);
  return ReadState::kDone;
}

}  // namespace tagd::cache
