#pragma once
// An object GET or HEAD through the cache, as an explicit state machine that decides and
// never writes to the client: it returns a head and a body source (a cached range, or an
// upstream answer relayed as it is), an S3 error, or "forward this request".
//
//   kLookup ──fresh──────────▶ kFresh ─────────────▶ answer from blocks      (HIT)
//      │   └─fresh, checksums unknown▶ kLearnChecksums ─▶ kFresh
//      ├──stale / no-cache──▶ kRevalidate ─304/same─▶ answer from blocks      (REVALIDATED)
//      │                          ├─another request is revalidating─▶ kJoin ─▶ kLookup
//      │                          │      (or kServeStale when that one found the upstream down)
//      │                          ├─upstream down, within stale-if-error▶ kServeStale (HIT)
//      │                          └─changed/gone─▶ kMiss
//      └──not cached────────▶ kMiss ─another request is fetching─▶ kJoin ─▶ kLookup
//                                 ├─several ranges─▶ forward                  (MISS)
//                                 ├─HEAD, If-None-Match, If-Modified-Since─▶ kFillMeta:
//                                 │    HEAD upstream, publish the metadata ─▶ answer (MISS)
//                                 └─▶ kFill: GET the first part (a range; a suffix as
//                                      asked), publish, hand the body to the FillEngine
//                                      ─▶ answer (MISS): conditionals are evaluated
//                                      against the metadata the fill brought back
//   An answer whose body needs a block in flight waits in kPrepare; a fresh hit whose
//   blocks are cached goes kLookup → kFresh → done without waiting (start()).
//   Every answer with a body reads through a CachedBody, which keeps the parts ahead of
//   the reader in flight; a ranged GET that continues a sequential stream also starts
//   read-ahead past its range (SequentialDetector), in whole aligned parts, unless the
//   client has other ranged GETs of the object in flight (it reads in parallel itself).
//   (a cached copy found to have changed upstream before its head went out → kLookup)
//
// Requests the cache may not answer (allow-listed headers and parameters only, no-store)
// are forwarded as BYPASS. Every result carries the one CacheOutcome from which the
// writer derives X-Cache and the outcome counter.
//
// Threading: one ReadPath per event loop (it owns that loop's FillEngine).
#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/message.hpp>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tagd/cache/cached_body.hpp"
#include "tagd/cache/fetcher.hpp"
#include "tagd/cache/fill_engine.hpp"
#include "tagd/cache/http_semantics.hpp"
#include "tagd/cache/object_cache.hpp"
#include "tagd/core/body_source.hpp"
#include "tagd/core/cache_outcome.hpp"
#include "tagd/core/clock.hpp"
#include "tagd/core/status.hpp"

namespace tagd::cache {

struct ReadRequest {
  bool head = false;  // HEAD (else GET)
  std::string bucket;
  std::string key;
  const std::vector<std::pair<std::string, std::string>>* query = nullptr;  // decoded parameters
  const boost::beast::http::fields* headers = nullptr;                      // the client's headers
};

struct ReadResult {
  enum class Action {
    kRespond,  // write `head` (+ `body`), or `error` when it is not ok
    kForward,  // send the client's request upstream as it is
  };
  Action action = Action::kForward;
  CacheOutcome outcome = CacheOutcome::kNone;
  Status error;                               // kRespond: an S3 error instead of head/body
  boost::beast::http::response_header<> head;  // kRespond without error, unless `prepared`
  // kRespond, a GET of a cached object with a body: its head from the object's prepared
  // one (ResponseWriter::write_head_prepared); `head` then carries the status only.
  std::optional<PreparedAnswer> prepared;
  std::unique_ptr<BodySource> body;           // null: no body
  std::optional<std::uint64_t> body_length;   // the body's length when known
  // kForward because the fill budget (cache.fill_budget / cache.max_fills) was spent: the
  // object is cacheable, and a caller that can wait (a warm job) should retry, not give up.
  bool fill_budget_spent = false;
};

// The states of one read (see the diagram above); exposed for tests and logs.
enum class ReadState {
  kLookup,
  kLearnChecksums,
  kFresh,
  kRevalidate,
  kServeStale,
  kMiss,
  kJoin,
  kFill,
  kFillMeta,
  kPrepare,  // an answer's body waits for blocks in flight (CachedBody::prepare)
  kDone
};
const char* read_state_name(ReadState state);

class ReadPath {
 public:
  // `cache`, `fetcher` and `clock` outlive the read path. `upstream_timeout` bounds each
  // wait for the upstream (a fill's progress, a revalidation). `fill_write_queue_bytes`:
  // finished blocks queued for the fill engine's writer thread before the loop writes
  // them itself.
  ReadPath(ObjectCache& cache, Fetcher& fetcher, const Clock& clock, boost::asio::any_io_executor executor,
           std::chrono::milliseconds upstream_timeout, std::uint64_t fill_write_queue_bytes = kDefaultWriteQueueBytes);

  [[nodiscard]] boost::asio::awaitable<ReadResult> serve(const ReadRequest& request);

  // serve() in two halves, so that a read with nothing to wait for — a bypass, a fresh hit
  // whose blocks are cached, an error from the metadata alone — costs no coroutine frame:
  // start() runs the read as far as it goes without waiting; `rest` is null when `result`
  // is final, else resume(rest) finishes the read. `request` must outlive both.
  struct Continuation;  // a started read that has to wait (read_path.cpp)
  struct ContinuationDeleter {
    void operator()(Continuation* c) const noexcept;
  };
  struct Started {
    ReadResult result;
    std::unique_ptr<Continuation, ContinuationDeleter> rest;
  };
  [[nodiscard]] Started start(const ReadRequest& request);
  [[nodiscard]] boost::asio::awaitable<ReadResult> resume(std::unique_ptr<Continuation, ContinuationDeleter> rest);

  // The cache this path reads through (the admin API pins and unpins in it).
  ObjectCache& cache() noexcept { return cache_; }

 private:
  struct Session;  // one read's state (read_path.cpp)
  // The state machine from `state` until kDone, waiting where a state has to.
  boost::asio::awaitable<ReadResult> run(Session& s, ReadState state);
  // The result of a read that reached kDone.
  ReadResult finish(Session& s);
  ReadState lookup(Session& s);
  boost::asio::awaitable<ReadState> learn_checksums(Session& s);
  boost::asio::awaitable<ReadState> revalidate(Session& s);
  boost::asio::awaitable<ReadState> miss(Session& s);
  boost::asio::awaitable<ReadState> join(Session& s);
  // A revalidation could not reach the upstream: the stale copy within stale-if-error,
  // else forward (which reports the failure).
  ReadState serve_stale_or_forward(Session& s);
  boost::asio::awaitable<ReadState> fill(Session& s);
  boost::asio::awaitable<ReadState> fill_meta(Session& s);
  // Answers with the upstream's reply to a fill's own request (not cacheable, and what the
  // client's request would have got).
  ReadState relay(Session& s, std::unique_ptr<ResponseSource> response);
  // Answers from the cached copy `s.meta` (conditionals, ranges, checksums, the body from
  // blocks). kLookup when the copy turned out to have changed upstream; kPrepare when the
  // body waits for blocks in flight (then prepare() finishes the answer).
  ReadState answer(Session& s, CacheOutcome outcome, bool stale);
  boost::asio::awaitable<ReadState> prepare(Session& s);
  ReadState settle(Session& s, std::unique_ptr<CachedBody> body, CachedBody::Preparation preparation);

  ObjectCache& cache_;
  Fetcher& fetcher_;
  const Clock& clock_;
  std::chrono::milliseconds upstream_timeout_;
  FillEngine fills_;
};

}  // namespace tagd::cache
