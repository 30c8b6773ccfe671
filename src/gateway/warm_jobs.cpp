#include "warm_jobs.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/this_coro.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_set>
#include <vector>

#include "client_upload.hpp"
#include "tagd/cache/object_cache.hpp"
#include "tagd/auth/sigv4.hpp"
#include "tagd/core/logging.hpp"
#include "tagd/core/metrics.hpp"
#include "tagd/core/strings.hpp"
#include "tagd/core/uri.hpp"
#include "tagd/s3/operation.hpp"
#include "tagd/s3/request.hpp"

namespace tagd::gateway {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
using json = nlohmann::json;

namespace {

constexpr std::string_view kPrefix = "/_tagd/warm";
constexpr std::string_view kPinsPath = "/_tagd/pins";
constexpr std::size_t kMaxListedPins = 1000;  // GET /_tagd/pins lists at most this many
constexpr std::size_t kMaxRequestBody = 16u << 20;      // a key list of ~250k keys of ~60 bytes
constexpr std::size_t kMaxListingBody = 16u << 20;      // one ListObjectsV2 page
constexpr std::size_t kMaxJobObjects = 1'000'000;       // keys one job may hold (about 100 MB at most)
constexpr std::size_t kMaxReportedFailures = 100;       // per job; the count is exact
constexpr std::size_t kMaxFailureText = 512;            // of one reported error (keys are at most 1024)
constexpr std::size_t kMaxFinishedJobs = 64;            // kept for GET after they end
constexpr unsigned kDefaultConcurrency = 16;
constexpr unsigned kMaxConcurrency = 256;
// How long one object waits for the fill budget before the job reports it failed.
constexpr std::chrono::milliseconds kBudgetWaitLimit(60'000);
// How long a pin waits for the object's last blocks to be written (a disk that slow is
// reported: the object fails with NotCached).
constexpr std::chrono::milliseconds kSettleLimit(10'000);

struct WarmItem {
  std::string key;
  std::optional<std::uint64_t> size;  // from the listing; a key list has none
};

// What a job does with the objects it fills: nothing, pins them until unpinned (--pin),
// or pins them until a client has read them (a key list running ahead of its readers).
enum class PinMode { kNone, kHeld, kUntilRead };

const char* pin_mode_name(PinMode m) {
  switch (m) {
    case PinMode::kHeld: return "held";
    case PinMode::kUntilRead: return "until_read";
    default: return "none";
  }
}

struct WarmJob {
  std::string id;
  PinMode pin = PinMode::kNone;
  std::string owner;  // access key that started it
  std::string bucket, prefix;
  bool from_list = false;
  unsigned concurrency = kDefaultConcurrency;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();

  std::atomic<bool> cancelled{false};
  std::atomic<int> state{0};  // 0 listing, 1 running, 2 done, 3 cancelled, 4 failed
  std::atomic<std::uint64_t> objects_total{0}, objects_done{0}, objects_cached{0}, objects_failed{0};
  // bytes_done = bytes_fetched (from the upstream: a MISS) + bytes_cached (found in the
  // cache: a HIT or a revalidated copy); rates are of fetched bytes, or a pass over a
  // cached dataset would report the disk's speed as the upstream's.
  std::atomic<std::uint64_t> bytes_total{0}, bytes_done{0}, bytes_fetched{0}, bytes_cached{0};
  std::uint64_t duplicate_keys = 0;  // dropped from the key list (set before the job is shared)
  // Keys the job holds in memory: its list until it ends, then none (a finished job keeps
  // only its counters and at most kMaxReportedFailures failures).
  std::atomic<std::uint64_t> keys_held{0};
  std::atomic<std::int64_t> finished_ms{-1};  // elapsed at the end
  std::atomic<bool> truncated{false};         // the listing stopped at kMaxJobObjects
  std::atomic<std::uint64_t> objects_pinned{0}, pins_refused{0};

  // Only the job's own loop touches these two.
  std::vector<WarmItem> items;
  std::size_t next = 0;
  unsigned workers = 0;

  mutable std::mutex mu;  // guards the two below (GET reads them from any loop)
  std::vector<std::pair<std::string, std::string>> failures;
  std::string error;  // why the job failed (a listing that failed)

  void fail_object(const std::string& key, std::string why) {
    objects_failed.fetch_add(1);
    metrics().warm_objects_failed.inc();
    if (why.size() > kMaxFailureText) why.resize(kMaxFailureText);
    std::lock_guard lock(mu);
    if (failures.size() < kMaxReportedFailures) failures.emplace_back(key, std::move(why));
  }
};

const char* state_name(int s) {
  switch (s) {
    case 0: return "listing";
    case 1: return "running";
    case 2: return "done";
    case 3: return "cancelled";
    default: return "failed";
  }
}

class Registry {
 public:
  static Registry& instance() {
    static Registry r;
    return r;
  }
  // Null when `max_running` jobs are listing or filling already (warm.max_jobs).
  std::shared_ptr<WarmJob> add(std::shared_ptr<WarmJob> job, unsigned max_running) {
    std::lock_guard lock(mu_);
    std::size_t running = 0;
    for (const auto& [id, j] : jobs_) running += j->state.load() < 2;
    if (running >= max_running) return nullptr;
    const std::uint64_t seq = ++sequence_;
    job->id = "w" + std::to_string(seq);
    jobs_[seq] = job;
    // Finished jobs stay readable for a while; the oldest finished ones go first.
    std::size_t finished = 0;
    for (const auto& [id, j] : jobs_) finished += j->state.load() >= 2;
    for (auto it = jobs_.begin(); it != jobs_.end() && finished > kMaxFinishedJobs;) {
      if (it->second->state.load() >= 2) {
        it = jobs_.erase(it);
        --finished;
      } else {
        ++it;
      }
    }
    return job;
  }
  std::shared_ptr<WarmJob> find(const std::string& id) {
    if (id.size() < 2 || id[0] != 'w') return nullptr;
    const auto seq = parse_u64(std::string_view(id).substr(1));
    if (!seq || "w" + std::to_string(*seq) != id) return nullptr;  // "w01" names no job
    std::lock_guard lock(mu_);
    auto it = jobs_.find(*seq);
    return it == jobs_.end() ? nullptr : it->second;
  }
  std::vector<std::shared_ptr<WarmJob>> all() {
    std::lock_guard lock(mu_);
    std::vector<std::shared_ptr<WarmJob>> out;
    for (const auto& [id, j] : jobs_) out.push_back(j);
    return out;
  }

 private:
  std::mutex mu_;
  std::uint64_t sequence_ = 0;
  // By sequence number, so "the oldest finished ones" are the lowest numbers (ordered as
  // strings, "w100" came before "w41" and each new job evicted the newest finished ones).
  std::map<std::uint64_t, std::shared_ptr<WarmJob>> jobs_;
};

json status_of(const WarmJob& job) {
  const std::int64_t finished = job.finished_ms.load();
  const double elapsed =
      finished >= 0 ? finished / 1000.0
                    : std::chrono::duration<double>(std::chrono::steady_clock::now() - job.started).count();
  const std::uint64_t fetched = job.bytes_fetched.load();
  json j{{"id", job.id},
         {"state", state_name(job.state.load())},
         {"bucket", job.bucket},
         {"prefix", job.prefix},
         {"from_list", job.from_list},
         {"concurrency", job.concurrency},
         {"objects_total", job.objects_total.load()},
         {"objects_done", job.objects_done.load()},
         {"objects_cached", job.objects_cached.load()},
         {"objects_failed", job.objects_failed.load()},
         {"bytes_total", job.bytes_total.load()},
         {"bytes_done", job.bytes_done.load()},
         {"bytes_fetched", fetched},
         {"bytes_cached", job.bytes_cached.load()},
         {"elapsed_seconds", elapsed},
         // Upstream bytes only: what was found cached took no fetch (bytes_done counts both).
         {"bytes_per_second", elapsed > 0 ? fetched / elapsed : 0.0},
         {"duplicate_keys", job.duplicate_keys},
         {"keys_held", job.keys_held.load()},
         {"pin", pin_mode_name(job.pin)},
         {"objects_pinned", job.objects_pinned.load()},
         {"pins_refused", job.pins_refused.load()}};
  std::lock_guard lock(job.mu);
  json failures = json::array();
  for (const auto& [key, why] : job.failures) failures.push_back({{"key", key}, {"error", why}});
  j["failures"] = std::move(failures);
  if (!job.error.empty()) j["error"] = job.error;
  if (job.truncated.load()) j["listing_truncated"] = true;  // more objects than one job takes
  return j;
}

// An element's text (s3::decode_xml_text); text that is not well-formed is kept as it is.
std::string xml_text(std::string_view s) { return s3::decode_xml_text(s).value_or(std::string(s)); }

std::optional<std::string_view> element(std::string_view xml, std::string_view name, std::size_t& from) {
  const std::string open = "<" + std::string(name) + ">", close = "</" + std::string(name) + ">";
  const auto a = xml.find(open, from);
  if (a == std::string_view::npos) return std::nullopt;
  const auto b = xml.find(close, a + open.size());
  if (b == std::string_view::npos) return std::nullopt;
  from = b + close.size();
  return xml.substr(a + open.size(), b - a - open.size());
}

// One ListObjectsV2 page: its objects, and the token for the next (empty: the last page).
struct Page {
  std::vector<WarmItem> items;
  std::string next_token;
};

Result<Page> parse_listing(std::string_view xml) {
  Page page;
  std::size_t pos = 0;
  while (auto contents = element(xml, "Contents", pos)) {
    std::size_t p = 0;
    auto key = element(*contents, "Key", p);
    p = 0;
    auto size = element(*contents, "Size", p);
    if (!key) return Status(ErrorCode::kBadGateway, "listing entry without a Key");
    WarmItem item{xml_text(*key), std::nullopt};
    if (size) item.size = parse_u64(*size);
    page.items.push_back(std::move(item));
  }
  std::size_t p = 0;
  auto truncated = element(xml, "IsTruncated", p);
  p = 0;
  auto token = element(xml, "NextContinuationToken", p);
  if (truncated && *truncated == "true") {
    if (!token || token->empty()) return Status(ErrorCode::kBadGateway, "truncated listing without a continuation token");
    page.next_token = xml_text(*token);
  }
  return page;
}

asio::awaitable<Result<Page>> list_page(upstream::Client& client, const std::string& bucket, const std::string& prefix,
                                        const std::string& token) {
  upstream::Request req;
  req.method = bhttp::verb::get;
  // Parameters in canonical (sorted) order; values encoded as a query wants them.
  std::string target = "/" + uri_encode(bucket, true) + "?";
  if (!token.empty()) target += "continuation-token=" + uri_encode(token, true) + "&";
  target += "list-type=2&prefix=" + uri_encode(prefix, true);
  req.target = std::move(target);
  req.payload_hash = std::string(auth::kEmptySha256);
  auto response = co_await client.exchange(std::move(req));
  if (!response) co_return response.error();
  auto& r = *response.value();
  std::string body;
  std::vector<char> piece(64 * 1024);
  for (;;) {
    auto n = co_await r.read(std::span<char>(piece.data(), piece.size()));
    if (!n) co_return n.error();
    if (n.value() == 0) break;
    if (body.size() + n.value() > kMaxListingBody) co_return Status(ErrorCode::kBadGateway, "listing page too large");
    body.append(piece.data(), n.value());
  }
  if (r.status() != 200) {
    co_return Status(ErrorCode::kBadGateway, "listing answered " + std::to_string(r.status()) + ": " +
                                                 std::string(body.substr(0, 300)));
  }
  co_return parse_listing(body);
}

// One object through the read path, as a GET of the whole object would; the body is read
// (that is what drives its parts into the cache) and dropped.
// The cache the admin API pins in: the one this loop's read path reads through (null:
// the cache is disabled).
cache::ObjectCache* pin_cache(cache::ReadPath* read_path) { return read_path ? &read_path->cache() : nullptr; }

// A warm of one object with pins: the object's fill is pinned as it is written
// (begin_pin), and whatever pin_object did not confirm is given back at the end.
struct PinScope {
  cache::ObjectCache* cache = nullptr;
  cache::ObjectKey key;
  PinScope(cache::ObjectCache* c, cache::ObjectKey k) : cache(c), key(std::move(k)) {
    if (cache != nullptr) cache->begin_pin(key);
  }
  ~PinScope() {
    if (cache != nullptr) cache->end_pin(key);
  }
  PinScope(const PinScope&) = delete;
  PinScope& operator=(const PinScope&) = delete;
};

asio::awaitable<void> warm_one(std::shared_ptr<WarmJob> job, cache::ReadPath& read_path, std::size_t index) {
  static const std::vector<std::pair<std::string, std::string>> kNoQuery;
  static const bhttp::fields kNoHeaders;
  const WarmItem& item = job->items[index];
  cache::ObjectCache* cache = job->pin != PinMode::kNone ? pin_cache(&read_path) : nullptr;
  PinScope pin_scope(cache, cache::ObjectKey{job->bucket, item.key, ""});
  cache::ReadRequest request{false, job->bucket, item.key, &kNoQuery, &kNoHeaders};
  cache::ReadResult result = co_await read_path.serve(request);
  // The fill budget is shared with the clients' own misses: a warm job running more
  // fetches than cache.max_fills allows (or beside many readers) is told "spent". That is
  // back-pressure, not a property of the object: wait and ask again (bounded), instead of
  // failing the object and racing through the rest of the list uncached.
  std::chrono::milliseconds backoff(20);
  auto waited = std::chrono::milliseconds(0);
  while (result.action == cache::ReadResult::Action::kForward && result.fill_budget_spent && !job->cancelled.load() &&
         waited < kBudgetWaitLimit) {
    metrics().warm_budget_waits.inc();
    asio::steady_timer wait(co_await asio::this_coro::executor, backoff);
    (void)co_await wait.async_wait(asio::as_tuple(asio::use_awaitable));
    waited += backoff;
    backoff = std::min(backoff * 2, std::chrono::milliseconds(500));
    result = co_await read_path.serve(request);
  }
  if (result.action == cache::ReadResult::Action::kForward) {
    if (result.fill_budget_spent) {
      job->fail_object(item.key, "SlowDown: the cache fill budget (cache.max_fills, cache.fill_budget) stayed spent "
                                 "for " + std::to_string(kBudgetWaitLimit.count() / 1000) + " s");
      co_return;
    }
    job->fail_object(item.key, "not cacheable (" + std::string(x_cache_label(result.outcome)) + ")");
    co_return;
  }
  if (!result.error.is_ok()) {
    job->fail_object(item.key, std::string(s3_code(result.error.code())) + ": " + result.error.message());
    co_return;
  }
  const int status = result.head.result_int();
  if (status != 200 && status != 206) {
    job->fail_object(item.key, "upstream answered " + std::to_string(status));
    co_return;
  }
  if (!item.size && result.body_length) job->bytes_total.fetch_add(*result.body_length);
  // A MISS went upstream (a partly cached object too: the read path reports it as one);
  // a HIT or a revalidated copy was read from the cache.
  const bool fetched = result.outcome == CacheOutcome::kMiss;
  if (result.body) {
    std::vector<char> scratch(256 * 1024);
    for (;;) {
      if (job->cancelled.load()) co_return;
      auto piece = co_await result.body->next(std::span<char>(scratch.data(), scratch.size()));
      if (!piece) {
        job->fail_object(item.key, piece.error().message());
        co_return;
      }
      if (piece.value().empty()) break;
      job->bytes_done.fetch_add(piece.value().size());
      (fetched ? job->bytes_fetched : job->bytes_cached).fetch_add(piece.value().size());
      (fetched ? metrics().warm_bytes_fetched : metrics().warm_bytes_cached).inc(piece.value().size());
    }
  }
  if (cache != nullptr) {
    // A prefix job's pins are its prefix record's (objects filled under it later are
    // pinned too); a key list's --pin pins its keys; a run ahead pins until read.
    const cache::PinOwner owner = job->pin == PinMode::kUntilRead ? cache::PinOwner::kUntilRead
                                  : job->from_list                ? cache::PinOwner::kKey
                                                                  : cache::PinOwner::kPrefix;
    cache::PinOutcome pinned = cache->pin_object(pin_scope.key, owner, job->id);
    if (pinned == cache::PinOutcome::kNotCached && !job->cancelled.load()) {
      // Finished blocks may still be queued for the fill's writer when the body has been
      // read: wait until they are written (up to 10 s), then pin what is there.
      co_await cache->settle_fill(pin_scope.key, kSettleLimit);
      pinned = cache->pin_object(pin_scope.key, owner, job->id);
    }
    if (pinned == cache::PinOutcome::kPinned) {
      job->objects_pinned.fetch_add(1);
      // Cancelled while this object was being pinned: the cancel's release may have run
      // before this pin existed, so the job gives back its run-ahead share itself.
      if (job->cancelled.load() && job->pin == PinMode::kUntilRead) cache->release_until_read(pin_scope.key, job->id);
    } else if (pinned == cache::PinOutcome::kUnpinned) {
      // `tagd unpin` of the job's prefix while it runs: what it warms is no longer pinned.
    } else if (job->pin == PinMode::kHeld) {
      // Asked to pin and could not: the object is cached but not protected, a failure.
      job->fail_object(item.key, pinned == cache::PinOutcome::kQuotaExceeded
                                     ? "QuotaExceeded: the pin quota (cache.pin_quota) is spent; the object is "
                                       "cached but not pinned"
                                     : std::string(cache::pin_outcome_name(pinned)) + ": not pinned");
      co_return;
    } else if (pinned == cache::PinOutcome::kQuotaExceeded) {
      job->pins_refused.fetch_add(1);  // run ahead beyond the quota: cached, evictable
    }
  }
  job->objects_done.fetch_add(1);
  if (result.outcome == CacheOutcome::kHit) {
    job->objects_cached.fetch_add(1);
    metrics().warm_objects_cached.inc();
  } else {
    metrics().warm_objects_filled.inc();
  }
}

void finish(WarmJob& job, int state) {
  int running = 1;
  if (!job.state.compare_exchange_strong(running, state)) {
    int listing = 0;
    (void)job.state.compare_exchange_strong(listing, state);
  }
  job.finished_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - job.started)
                        .count();
  metrics().warm_jobs_running.add(-1);
  // Only the counters and the bounded failure list outlive the job: a finished job kept
  // for GET must not hold its (up to 1,000,000) keys. Every worker is done with them.
  std::vector<WarmItem>().swap(job.items);
  job.keys_held = 0;
  spdlog::info("warm job {} ({}/{}{}) {}: {} objects, {} cached, {} failed, {} bytes ({} fetched, {} found cached)",
               job.id, log_field(job.bucket), log_field(job.prefix), job.from_list ? ", key list" : "",
               state_name(job.state.load()), job.objects_done.load(), job.objects_cached.load(),
               job.objects_failed.load(), job.bytes_done.load(), job.bytes_fetched.load(), job.bytes_cached.load());
}

asio::awaitable<void> worker(std::shared_ptr<WarmJob> job, cache::ReadPath* read_path) {
  // Items are taken in order: a key list is the order the readers will want them.
  while (!job->cancelled.load() && job->next < job->items.size()) {
    const std::size_t index = job->next++;
    co_await warm_one(job, *read_path, index);
  }
  if (--job->workers == 0) finish(*job, job->cancelled.load() ? 3 : 2);
}

asio::awaitable<void> run_job(std::shared_ptr<WarmJob> job, cache::ReadPath* read_path, upstream::Client* client) {
  if (job->pin == PinMode::kHeld && !job->from_list) {
    // The prefix itself is pinned (a record in the index), not only what the listing finds;
    // before the listing, so what clients fill meanwhile is pinned too.
    if (Status s = pin_cache(read_path)->pin_prefix(job->bucket, job->prefix); !s) {
      {
        std::lock_guard lock(job->mu);
        job->error = "the prefix could not be pinned: " + s.message();
      }
      spdlog::warn("warm job {}: {}", job->id, job->error);
      finish(*job, 4);
      co_return;
    }
  }
  if (!job->from_list) {
    std::string token;
    do {
      auto page = co_await list_page(*client, job->bucket, job->prefix, token);
      if (!page) {
        {
          std::lock_guard lock(job->mu);
          job->error = "listing failed: " + page.error().message();
        }
        spdlog::warn("warm job {}: {}", job->id, job->error);
        finish(*job, 4);
        co_return;
      }
      for (auto& item : page.value().items) {
        if (job->items.size() >= kMaxJobObjects) {
          job->truncated = true;
          break;
        }
        if (item.size) job->bytes_total.fetch_add(*item.size);
        job->items.push_back(std::move(item));
      }
      job->objects_total = job->items.size();
      job->keys_held = job->items.size();
      token = std::move(page.value().next_token);
    } while (!token.empty() && !job->cancelled.load() && job->items.size() < kMaxJobObjects);
  }
  if (job->cancelled.load()) {
    finish(*job, 3);
    co_return;
  }
  int listing = 0;
  (void)job->state.compare_exchange_strong(listing, 1);
  const unsigned n = std::max<unsigned>(1, std::min<std::size_t>(job->concurrency, job->items.size()));
  if (job->items.empty()) {
    finish(*job, 2);
    co_return;
  }
  job->workers = n;
  auto executor = co_await asio::this_coro::executor;
  for (unsigned i = 0; i < n; ++i) asio::co_spawn(executor, worker(job, read_path), asio::detached);
}

Status bucket_and_prefix_ok(std::string_view bucket, std::string_view prefix) {
  if (Status s = s3::check_bucket_name(bucket); !s) return s;
  if (!prefix.empty()) return s3::check_key(prefix, "the prefix");
  return Status::ok();
}

bool has_admin_grant(const auth::Identity& id) {
  return std::any_of(id.grants.begin(), id.grants.end(), [](const auto& g) { return g.admin; });
}

// A job spec is an object of scalars and one array of keys. Checked in one pass before
// the JSON is parsed: the parser builds a node per element, and millions of tiny elements
// or nested arrays cost hundreds of MB and a second of the event loop per request.
const char* spec_shape_problem(std::string_view body) {
  constexpr int kMaxDepth = 3;
  std::size_t elements = 0;
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : body) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    switch (c) {
      case '"':
        in_string = true;
        break;
      case '[':
      case '{':
        if (++depth > kMaxDepth) return "the job spec nests too deeply (an object with one array of keys)";
        break;
      case ']':
      case '}':
        --depth;
        break;
      case ',':
        if (++elements > kMaxJobObjects + 64) return "the job spec holds more than 1000000 keys";
        break;
      default:
        break;
    }
  }
  return nullptr;
}

// An admin grant that covers the bucket and every key under `prefix`.
bool admin_over(const auth::Identity& id, const std::string& bucket, std::string_view prefix) {
  for (const auto& g : id.grants) {
    if (!g.admin) continue;
    if (g.bucket != "*" && g.bucket != bucket) continue;
    if (prefix.substr(0, g.prefix.size()) == g.prefix) return true;
  }
  return false;
}

bool may_see(const auth::Identity& id, const WarmJob& job) {
  if (job.owner == id.access_key_id) return true;
  if (!job.from_list) return admin_over(id, job.bucket, job.prefix);
  return admin_over(id, job.bucket, "");
}

asio::awaitable<void> send_json(Exchange& ex, bhttp::status status, const json& body) {
  (void)co_await ex.writer.send(status, "application/json", body.dump() + "\n");
}

asio::awaitable<void> send_error(Exchange& ex, const Status& error) {
  ex.error = s3_code(error.code());
  (void)co_await ex.writer.send_error(error, CacheOutcome::kNone);
}

// POST /_tagd/warm: a job from a JSON spec (docs/warm.md), authorized, started, reported.
// The job a spec describes, checked against the caller's grants (a plain function, not
// part of the coroutine: GCC 12 misreads a coroutine with this many suspension points
// (-Wmismatched-new-delete) and the checks need none).
Status build_job(std::string_view body, const auth::Identity& id, bool pinning, WarmJob& job) {
  if (const char* problem = spec_shape_problem(body)) return Status(ErrorCode::kInvalidArgument, problem);
  const json spec = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!spec.is_object() || !spec.contains("bucket") || !spec["bucket"].is_string() ||
      spec["bucket"].get<std::string>().empty()) {
    return Status(ErrorCode::kInvalidArgument, "a JSON object with \"bucket\" is required");
  }
  job.owner = id.access_key_id;
  job.bucket = spec["bucket"].get<std::string>();
  if (spec.contains("prefix")) {
    if (!spec["prefix"].is_string()) {
      return Status(ErrorCode::kInvalidArgument, "\"prefix\" must be a string");
    }
    job.prefix = spec["prefix"].get<std::string>();
  }
  // The S3 path's rules for what goes upstream: a prefix-scoped admin's "team-a/../team-b/x"
  // would be another object to a path-normalizing upstream.
  if (Status s = bucket_and_prefix_ok(job.bucket, job.prefix); !s) {
    return s;
  }
  if (spec.contains("concurrency")) {
    if (!spec["concurrency"].is_number_unsigned() || spec["concurrency"].get<std::uint64_t>() == 0 ||
        spec["concurrency"].get<std::uint64_t>() > kMaxConcurrency) {
      return Status(ErrorCode::kInvalidArgument, "\"concurrency\" must be 1 to 256");
    }
    job.concurrency = spec["concurrency"].get<unsigned>();
  }
  std::optional<PinMode> pin;
  if (spec.contains("pin")) {
    const json& p = spec["pin"];
    if (p.is_boolean()) {
      pin = p.get<bool>() ? PinMode::kHeld : PinMode::kNone;
    } else if (p.is_string() && p.get<std::string>() == "until_read") {
      pin = PinMode::kUntilRead;
    } else {
      return Status(ErrorCode::kInvalidArgument, "\"pin\" must be true, false or \"until_read\"");
    }
  }
  if (pin && *pin != PinMode::kNone && !pinning) {
    return Status(ErrorCode::kInvalidRequest, "pinning is off: cache.pin_quota is 0");
  }
  if (spec.contains("keys")) {
    if (!spec["keys"].is_array() || spec["keys"].size() > kMaxJobObjects) {
      return Status(ErrorCode::kInvalidArgument, "\"keys\" must be an array of keys");
    }
    job.from_list = true;
    // A key listed twice is fetched once, where it first appears (the readers' order);
    // the status counts what was dropped (duplicate_keys). Views into `spec`, which
    // outlives the set.
    std::unordered_set<std::string_view> seen;
    seen.reserve(spec["keys"].size());
    for (const auto& k : spec["keys"]) {
      if (!k.is_string() || k.get_ref<const std::string&>().empty()) {
        return Status(ErrorCode::kInvalidArgument, "every key must be a non-empty string");
      }
      if (!seen.insert(k.get_ref<const std::string&>()).second) {
        ++job.duplicate_keys;
        continue;
      }
      std::string key = k.get<std::string>();
      if (Status s = s3::check_key(key, "the key " + log_field(key)); !s) {
        return s;
      }
      // Every listed key under the prefix (if one was given) and under the caller's grant.
      if (key.substr(0, job.prefix.size()) != job.prefix || !admin_over(id, job.bucket, key)) {
        return Status(ErrorCode::kAccessDenied, "Access Denied");
      }
      job.items.push_back(WarmItem{std::move(key), std::nullopt});
    }
    job.objects_total = job.items.size();
    job.keys_held = job.items.size();
  }
  // A key list is the readers' order: by default what it fetches is pinned until read.
  job.pin = pin.value_or(job.from_list && pinning ? PinMode::kUntilRead : PinMode::kNone);
  if (!job.from_list && !admin_over(id, job.bucket, job.prefix)) {
    return Status(ErrorCode::kAccessDenied, "Access Denied");
  }
  return Status::ok();
}

asio::awaitable<void> start_job(AdminContext& ctx, Exchange& ex, const auth::Identity& id) {
  // Before the body is read: a key without any admin grant must not make tagd buffer and
  // parse 16 MiB of JSON (each grant is checked against the spec once it is parsed).
  if (!has_admin_grant(id)) {
    metrics().policy_denials.inc();
    co_await send_error(ex, Status(ErrorCode::kAccessDenied, "Access Denied"));
    co_return;
  }
  if (ctx.read_path == nullptr) {
    co_await send_error(ex, Status(ErrorCode::kInvalidRequest, "the cache is disabled: nothing to warm"));
    co_return;
  }
  ClientUpload upload(ctx.config, ex);
  if (Status s = co_await upload.start(/*whole=*/true, kMaxRequestBody); !s) {
    co_await send_error(ex, s);
    co_return;
  }
  auto job = std::make_shared<WarmJob>();
  cache::ObjectCache* cache = pin_cache(ctx.read_path);
  const bool pinning = cache != nullptr && cache->pinning_enabled();
  if (Status s = build_job(upload.held(), id, pinning, *job); !s) {
    if (s.code() == ErrorCode::kAccessDenied) metrics().policy_denials.inc();
    co_await send_error(ex, s);
    co_return;
  }
  if (!Registry::instance().add(job, ctx.config.warm_max_jobs)) {
    // A bound on the fetches, listings and key lists admins can keep going at once; the
    // caller may retry when one ends (SlowDown, as S3 answers a request rate it sheds).
    metrics().warm_jobs_refused.inc();
    static logging::WarnThrottle throttle(std::chrono::seconds(10));
    const std::int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                    std::chrono::steady_clock::now().time_since_epoch())
                                    .count();
    if (throttle.allow(now_ms)) {
      spdlog::warn("warm job by {} refused: {} jobs are running (warm.max_jobs; at most one such warning per 10 s)",
                   log_field(id.access_key_id), ctx.config.warm_max_jobs);
    }
    co_await send_error(ex, Status(ErrorCode::kSlowDown,
                                   std::to_string(ctx.config.warm_max_jobs) +
                                       " warm jobs are running (warm.max_jobs): wait for one to end or cancel one"));
    co_return;
  }
  metrics().warm_jobs_started.inc();
  metrics().warm_jobs_running.add(1);
  spdlog::info("warm job {} started by {}: {}/{}{}, {} at a time, pins: {}", job->id, log_field(job->owner),
               log_field(job->bucket), log_field(job->prefix),
               job->from_list ? ", " + std::to_string(job->items.size()) + " listed keys" : "", job->concurrency,
               pin_mode_name(job->pin));
  auto executor = co_await asio::this_coro::executor;
  asio::co_spawn(executor, run_job(job, ctx.read_path, &ctx.client), asio::detached);
  co_await send_json(ex, bhttp::status::accepted, status_of(*job));
  co_return;
}

// A cancelled run ahead gives back its share of its until-read pins (the cache keeps those
// another job or a pinned prefix still holds). The cache knows which objects the job
// pinned (its key list is the job's loop's, and gone once the job ends); an object the job
// pins after this is given back by the job itself (warm_one).
void release_job_pins(cache::ObjectCache& cache, const WarmJob& job) {
  if (job.pin != PinMode::kUntilRead) return;
  for (const auto& [key, jobs] : cache.until_read_pins(job.bucket, job.prefix)) {
    if (std::find(jobs.begin(), jobs.end(), job.id) != jobs.end()) cache.release_until_read(key, job.id);
  }
}

// 404 NoSuchJob: a job id that names no job (never started, dropped after it ended, or
// one the caller may not see). An S3-style code of tagd's own (S3 has no jobs here).
asio::awaitable<void> send_no_such_job(Exchange& ex, const std::string& job_id) {
  ex.error = "NoSuchJob";
  const std::string_view target = ex.parser.get().target();
  std::string xml = s3::error_xml("NoSuchJob", "no such warm job: " + job_id, target.substr(0, target.find('?')),
                                  ex.writer.request_id());
  (void)co_await ex.writer.send(bhttp::status::not_found, "application/xml", std::move(xml));
}

const std::string* query_value(const QueryParams& query, std::string_view name) {
  for (const auto& [k, v] : query) {
    if (k == name) return &v;
  }
  return nullptr;
}

// GET /_tagd/pins?bucket=B[&prefix=P]: the pinned objects; DELETE: unpins them (`tagd
// unpin`). An admin grant over the bucket and prefix, as for starting a warm job.
asio::awaitable<void> serve_pins(AdminContext& ctx, Exchange& ex, const auth::Identity& id, const QueryParams& query) {
  const auto method = ex.parser.get().method();
  if (method != bhttp::verb::get && method != bhttp::verb::delete_) {
    co_await send_error(ex, Status(ErrorCode::kMethodNotAllowed, "GET or DELETE /_tagd/pins?bucket=B&prefix=P"));
    co_return;
  }
  const std::string* bucket = query_value(query, "bucket");
  const std::string* prefix_value = query_value(query, "prefix");
  const std::string prefix = prefix_value != nullptr ? *prefix_value : "";
  if (bucket == nullptr || bucket->empty()) {
    co_await send_error(ex, Status(ErrorCode::kInvalidArgument, "the \"bucket\" query parameter is required"));
    co_return;
  }
  if (Status s = bucket_and_prefix_ok(*bucket, prefix); !s) {
    co_await send_error(ex, s);
    co_return;
  }
  if (!admin_over(id, *bucket, prefix)) {
    metrics().policy_denials.inc();
    co_await send_error(ex, Status(ErrorCode::kAccessDenied, "Access Denied"));
    co_return;
  }
  cache::ObjectCache* cache = pin_cache(ctx.read_path);
  if (ctx.read_path == nullptr || cache == nullptr) {
    co_await send_error(ex, Status(ErrorCode::kInvalidRequest, "the cache is disabled: nothing is pinned"));
    co_return;
  }
  json answer{{"bucket", *bucket}, {"prefix", prefix}};
  if (method == bhttp::verb::delete_) {
    // An empty prefix is every pin of every job in the bucket: said explicitly, never by
    // leaving the prefix out.
    const std::string* all_value = query_value(query, "all");
    const bool all = all_value != nullptr && (*all_value == "true" || *all_value == "1");
    if (prefix.empty() && !all) {
      co_await send_error(ex, Status(ErrorCode::kInvalidArgument,
                                     "an empty prefix unpins the whole bucket: add all=true (tagd unpin --all)"));
      co_return;
    }
    if (!prefix.empty() && all) {
      co_await send_error(ex,
                          Status(ErrorCode::kInvalidArgument, "all=true is for an empty prefix (the whole bucket)"));
      co_return;
    }
    const std::string* recursive_value = query_value(query, "recursive");
    const bool recursive = recursive_value != nullptr && (*recursive_value == "true" || *recursive_value == "1");
    auto released = cache->unpin(*bucket, prefix, recursive);
    if (!released) {
      co_await send_error(ex, Status(ErrorCode::kInternalError, released.error().message()));
      co_return;
    }
    spdlog::info("unpin by {}: {}/{}{}: {} prefixes, {} objects, {} bytes released; {} objects still pinned by "
                 "another prefix",
                 log_field(id.access_key_id), log_field(*bucket), log_field(prefix), recursive ? " (recursive)" : "",
                 released->prefixes, released->objects, released->bytes, released->objects_kept);
    answer["prefixes_unpinned"] = released->prefixes;
    answer["objects_unpinned"] = released->objects;
    answer["bytes_unpinned"] = released->bytes;
    answer["objects_kept"] = released->objects_kept;
    answer["still_pinned_by"] = released->still_pinned_by;
  } else {
    answer["prefixes"] = cache->pinned_prefixes(*bucket, prefix);
    auto pins = cache->pins(*bucket, prefix);
    if (!pins) {
      co_await send_error(ex, Status(ErrorCode::kInternalError, pins.error().message()));
      co_return;
    }
    // Who holds each object: its key (a key list's --pin), the pinned prefixes covering
    // it, and the run ahead of the jobs that pinned it until read ("jobs"; none after a
    // restart: then only a read or an unpin releases it). Until-read pins hold quota like
    // the others, so they are listed like them.
    std::map<std::pair<std::string, std::string>, std::vector<std::string>> until_read;  // by key and variant
    for (auto& [key, jobs] : cache->until_read_pins(*bucket, prefix)) {
      until_read[{key.key, key.variant}] = std::move(jobs);
    }
    const std::vector<std::string> prefixes = answer["prefixes"].get<std::vector<std::string>>();
    json objects = json::array();
    std::uint64_t bytes = 0, until_read_objects = 0;
    for (const auto& [key, record] : pins.value()) {
      bytes += record.size;
      const bool run_ahead = (record.flags & cache::kPinUntilRead) != 0;
      until_read_objects += run_ahead;
      if (objects.size() >= kMaxListedPins) continue;
      json owners = json::array();
      if ((record.flags & cache::kPinNotByKey) == 0) owners.push_back("key");
      json covering = json::array();
      for (const auto& p : prefixes) {
        if (key.key.starts_with(p)) covering.push_back(p);
      }
      json o{{"key", key.key}, {"size", record.size}, {"etag", record.etag}};
      if (!covering.empty()) {
        owners.push_back("prefix");
        o["prefixes"] = std::move(covering);
      }
      if (run_ahead) {
        owners.push_back("until_read");
        auto it = until_read.find({key.key, key.variant});
        o["jobs"] = it != until_read.end() ? it->second : std::vector<std::string>{};
      }
      o["owners"] = std::move(owners);
      objects.push_back(std::move(o));
    }
    answer["objects_until_read"] = until_read_objects;
    answer["objects_pinned"] = pins->size();
    answer["object_bytes_pinned"] = bytes;
    answer["objects"] = std::move(objects);
    if (pins->size() > kMaxListedPins) answer["objects_truncated"] = true;
  }
  // Whole regions, the cache's own figure (what the quota counts).
  answer["pinned_bytes"] = cache->pinned_bytes();
  answer["pin_quota_bytes"] = cache->pin_quota_bytes();
  co_await send_json(ex, bhttp::status::ok, answer);
}

}  // namespace

bool is_admin_target(std::string_view raw_target, std::string_view host, std::string_view virtual_host_domain) {
  if (!raw_target.starts_with("/_tagd/")) return false;
  // A virtual-hosted request ("<bucket>.<domain>") names an object "_tagd/..." of that
  // bucket, never the admin API (as resolve_target reads the Host: port off, any case).
  if (virtual_host_domain.empty() || host.empty() || host.front() == '[') return true;
  if (auto colon = host.rfind(':'); colon != std::string_view::npos) host = host.substr(0, colon);
  const bool virtual_hosted = host.size() > virtual_host_domain.size() + 1 &&
                              host[host.size() - virtual_host_domain.size() - 1] == '.' &&
                              iequals(host.substr(host.size() - virtual_host_domain.size()), virtual_host_domain);
  return !virtual_hosted;
}

asio::awaitable<void> serve_admin(AdminContext ctx, Exchange& ex) {
  auto& req = ex.parser.get();
  const std::string_view raw_target = req.target();
  const std::string_view path = raw_target.substr(0, raw_target.find('?'));
  const std::string_view raw_query =
      raw_target.find('?') == std::string_view::npos ? std::string_view() : raw_target.substr(raw_target.find('?') + 1);
  if (!(path == kPrefix || path == kPinsPath || path.starts_with(std::string(kPrefix) + "/"))) {
    co_await send_error(ex, Status(ErrorCode::kInvalidRequest, "unknown admin API path"));
    co_return;
  }
  auto query = parse_query(raw_query);
  if (!query) {
    co_await send_error(ex, Status(ErrorCode::kInvalidArgument, "malformed query string"));
    co_return;
  }
  // Signed like any S3 request, by a key the credentials file knows; never anonymous.
  auth::HeaderList headers;
  for (const auto& f : req) headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
  auth::RequestHead head{req.method_string(), path, raw_query, &headers, std::string_view(), &*query};
  auto verified = ctx.verifier.verify(head, ctx.clock.now());
  if (!verified) {
    metrics().auth_failures.inc();
    co_await send_error(ex, verified.error());
    co_return;
  }
  ex.verified = std::move(verified.value());
  const auth::Identity* id = ex.verified.identity;
  if (id == nullptr) {
    metrics().policy_denials.inc();
    co_await send_error(ex, Status(ErrorCode::kAccessDenied, "the admin API needs a signed request"));
    co_return;
  }
  if (path == kPinsPath) {
    co_await serve_pins(ctx, ex, *id, *query);
    co_return;
  }
  const std::string job_id = path.size() > kPrefix.size() + 1 ? std::string(path.substr(kPrefix.size() + 1)) : "";
  const auto method = req.method();

  if (method == bhttp::verb::post && job_id.empty()) {
    co_await start_job(ctx, ex, *id);
    co_return;
  }
  if (method == bhttp::verb::get && job_id.empty()) {
    json jobs = json::array();
    for (const auto& job : Registry::instance().all()) {
      if (may_see(*id, *job)) jobs.push_back(status_of(*job));
    }
    // (Named first: GCC 12 cannot put an initializer list's array in a co_await operand.)
    json listing;
    listing["jobs"] = std::move(jobs);
    co_await send_json(ex, bhttp::status::ok, listing);
    co_return;
  }
  if ((method == bhttp::verb::get || method == bhttp::verb::delete_) && !job_id.empty()) {
    auto job = Registry::instance().find(job_id);
    if (!job || !may_see(*id, *job)) {
      // The same answer for a job that does not exist and one the caller may not see.
      co_await send_no_such_job(ex, job_id);
      co_return;
    }
    if (method == bhttp::verb::delete_) {
      job->cancelled = true;
      // What a cancelled run ahead pinned for its readers is given back with it.
      if (cache::ObjectCache* cache = pin_cache(ctx.read_path)) release_job_pins(*cache, *job);
    }
    co_await send_json(ex, bhttp::status::ok, status_of(*job));
    co_return;
  }
  co_await send_error(ex, Status(ErrorCode::kMethodNotAllowed, "POST /_tagd/warm, GET or DELETE /_tagd/warm/<id>"));
}

}  // namespace tagd::gateway
