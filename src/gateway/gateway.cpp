#include "tagd/gateway/gateway.hpp"

#include <spdlog/spdlog.h>

#include <atomic>
#include <random>

#include "admitted_body.hpp"
#include "exchange.hpp"
#include "object_fetcher.hpp"
#include "warm_jobs.hpp"
#include "tagd/cache/read_path.hpp"
#include "tagd/core/logging.hpp"
#include "tagd/core/metrics.hpp"
#include "tagd/core/strings.hpp"

namespace tagd::gateway {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;

RequestId make_request_id() {
  static std::atomic<std::uint64_t> counter{0};
  static const std::uint64_t salt = std::random_device{}() ^ (static_cast<std::uint64_t>(std::random_device{}()) << 32);
  std::uint64_t v = salt + counter.fetch_add(1, std::memory_order_relaxed) * 0x9E3779B97F4A7C15ull;
  RequestId out;
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (int i = 15; i >= 0; --i) {
    out.digits[static_cast<std::size_t>(i)] = kHex[v & 0xF];
    v >>= 4;
  }
  return out;
}

std::string next_request_id() { return std::string(make_request_id().view()); }

namespace {

void access_log(const config::Config& config, const Exchange& ex, std::string_view method) {
  if (!config.access_log) return;
  auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - ex.start).count();
  std::string_view who = ex.verified.identity ? std::string_view(ex.verified.identity->access_key_id) : "-";
  const std::string_view x_cache = ex.writer.x_cache();
  logging::access().info("{} bucket={} key={} status={} in={} out={} ms={:.2f} id={} akid={} op={}{}{}{}{}",
                         log_field(method), ex.target.bucket.empty() ? "-" : log_field(ex.target.bucket),
                         ex.target.key.empty() ? "-" : log_field(ex.target.key), ex.writer.status(), ex.bytes_in,
                         ex.writer.body_bytes(), ms, ex.request_id(), log_field(who),
                         ex.op.name.empty() ? "-" : ex.op.name, x_cache.empty() ? "" : " cache=", x_cache,
                         ex.error.empty() ? "" : " error=", ex.error);
}

// Local endpoints answer before admission and are not S3 requests: no request-duration
// observation. A signed request for a bucket named "health" still goes upstream.
bool local_endpoint(const http::RequestParser& parser) {
  const auto& req = parser.get();
  if (req.method() != bhttp::verb::get && req.method() != bhttp::verb::head) return false;
  // The exact paths only (a presigned URL has a query, so it is never one of them); this
  // runs twice per request, so no search of the target.
  const std::string_view target = req.target();
  if (target != "/health" && target != "/ready" && target != "/metrics") return false;
  return req.find(bhttp::field::authorization) == req.end();
}

std::size_t op_label(const s3::Operation& op) {
  using Op = metric_label::Op;
  const std::string_view name = op.name;
  if (name == "GetObject") return Op::kGet;
  if (name == "HeadObject") return Op::kHead;
  if (name == "PutObject" || name == "UploadPart" || name == "CopyObject" || name == "UploadPartCopy") return Op::kPut;
  if (name.starts_with("List")) return Op::kList;
  return Op::kOther;
}

// The CacheOutcome the writer sent (its X-Cache label; empty = none).
CacheOutcome written_outcome(const http::ResponseWriter& writer) {
  const std::string_view label = writer.x_cache();
  for (CacheOutcome o : {CacheOutcome::kHit, CacheOutcome::kMiss, CacheOutcome::kRevalidated, CacheOutcome::kBypass,
                         CacheOutcome::kDisabled}) {
    if (label == x_cache_label(o)) return o;
  }
  return CacheOutcome::kNone;
}

}  // namespace

Gateway::Gateway(const Shared& shared, std::unique_ptr<upstream::Client> client, cache::ObjectCache* cache,
                 asio::any_io_executor executor)
    : shared_(shared), client_(std::move(client)), cache_(cache) {
  // The limits beside the values they cap, so a dashboard can draw both (every loop sets
  // the same values).
  auto& m = metrics();
  m.max_inflight_requests.set(shared_.config.max_inflight_requests);
  m.max_inflight_bytes.set(static_cast<std::int64_t>(shared_.config.max_inflight_bytes));
  m.max_connections.set(shared_.config.max_connections);
  if (cache_ != nullptr) {
    fetcher_ = std::make_unique<ObjectFetcher>(*client_);
    read_path_ = std::make_unique<cache::ReadPath>(*cache_, *fetcher_, shared_.clock, std::move(executor),
                                                   shared_.config.upstream_read_timeout);
  }
}

Gateway::~Gateway() = default;

asio::awaitable<bool> Gateway::handle(ClientConnection& client, http::RequestParser& parser) {
  Exchange ex{client, parser, shared_.config.idle_timeout};
  auto& m = metrics();
  m.requests_total.inc();
  m.inflight_requests.add(1);
  co_await dispatch(ex);
  m.inflight_requests.add(-1);
  if (!local_endpoint(parser)) {
    m.request_duration.at(op_label(ex.op), written_outcome(ex.writer))
        .observe(std::chrono::steady_clock::now() - ex.start);
  }
  access_log(shared_.config, ex, parser.get().method_string());
  // One request, one response: the writer keeps the connection only if the response was
  // written whole and the request body was consumed (a body left unread — a GET answered
  // from the cache, a local error, a refusal — would be parsed as the next request).
  co_return ex.writer.keep_alive();
}

namespace {

asio::awaitable<void> send_error(Exchange& ex, const Status& error, CacheOutcome outcome = CacheOutcome::kNone) {
  ex.error = s3_code(error.code());
  (void)co_await ex.writer.send_error(error, outcome);
}

// SDKs back off on 503 SlowDown by themselves; Retry-After tells other clients (and
// load balancers) when to come back: soon, since a request slot or a window of bytes
// frees as fast as responses finish.
constexpr std::string_view kRetryAfterSeconds = "1";

asio::awaitable<void> send_slow_down(Exchange& ex) {
  ex.error = "SlowDown";
  const std::string_view target = ex.parser.get().target();
  std::string xml = s3::error_xml("SlowDown", "Please reduce your request rate.", target.substr(0, target.find('?')),
                                  ex.request_id());
  bhttp::response_header<> head;
  head.result(bhttp::status::service_unavailable);
  head.set(bhttp::field::content_type, "application/xml");
  head.set(bhttp::field::retry_after, kRetryAfterSeconds);
  head.set(bhttp::field::content_length, std::to_string(xml.size()));
  Status s = co_await ex.writer.write_head(head, xml.size());
  if (s && ex.parser.get().method() != bhttp::verb::head) s = co_await ex.writer.write_body(xml);
  if (s) s = co_await ex.writer.finish();
}

// The body after its head (`s`: how writing the head went), then the access log's error.
asio::awaitable<void> write_body(Exchange& ex, Status s, std::optional<std::uint64_t> body_length, BodySource* body);

}  // namespace

asio::awaitable<void> Gateway::dispatch(Exchange& ex) {
  const auto& config = shared_.config;
  auto& req = ex.parser.get();
  std::string_view raw_target = req.target();

  // Local endpoints, answered before admission so probes and scrapes work under overload.
  if (local_endpoint(ex.parser)) {
    if (raw_target == "/health") {
      (void)co_await ex.writer.send(bhttp::status::ok, "text/plain", "ok\n");
      co_return;
    }
    if (raw_target == "/ready") {
      const bool ready = !shared_.ready || shared_.ready();
      (void)co_await ex.writer.send(ready ? bhttp::status::ok : bhttp::status::service_unavailable, "text/plain",
                                    ready ? "ready\n" : "not ready\n");
      co_return;
    }
    if (raw_target == "/metrics") {
      (void)co_await ex.writer.send(bhttp::status::ok, "text/plain; version=0.0.4", metrics().render_prometheus());
      co_return;
    }
  }

  // The admin API (warm jobs): signed and authorized on its own terms (warm_jobs.hpp).
  std::string_view host;
  if (auto it = req.find(bhttp::field::host); it != req.end()) host = it->value();
  if (is_admin_target(raw_target, host, config.virtual_host_domain)) {
    co_await serve_admin(AdminContext{config, shared_.verifier, shared_.clock, read_path_.get(), *client_}, ex);
    co_return;
  }

  // Admission: requests in flight (this one included), then response bytes in flight
  // (admitted_body.hpp says what counts).
  auto& m = metrics();
  if (m.inflight_requests.get() > static_cast<std::int64_t>(config.max_inflight_requests)) {
    m.slow_down_rejections.inc();
    m.shed_requests.inc();
    co_await send_slow_down(ex);
    co_return;
  }
  if (config.max_inflight_bytes != 0 &&
      m.inflight_response_bytes.get() > static_cast<std::int64_t>(config.max_inflight_bytes)) {
    m.slow_down_rejections.inc();
    m.shed_bytes.inc();
    co_await send_slow_down(ex);
    co_return;
  }

  if (Status s = ex.scratch.resolve(host, raw_target, config.virtual_host_domain); !s) {
    co_await send_error(ex, s);
    co_return;
  }

  // Overwritten whole; its strings keep their capacity from this loop's earlier requests.
  auth::HeaderList& headers = ex.scratch.header_storage();
  headers.resize(static_cast<std::size_t>(std::distance(req.begin(), req.end())));
  auto header = headers.begin();
  for (const auto& f : req) {
    header->first.assign(f.name_string());
    header->second.assign(f.value());
    ++header;
  }
  auto op = s3::classify(req.method_string(), ex.target, headers);
  if (!op) {
    co_await send_error(ex, op.error());
    co_return;
  }
  ex.op = std::move(op.value());

  if (req.method() == bhttp::verb::options) {
    // CORS preflight: browsers never sign it. It goes upstream unsigned (identity stays
    // null), where the bucket's CORS configuration answers; it reads and writes nothing.
    {
    co_await forward(ex, CacheOutcome::kNone);
    co_return;
  }
  }

  // SigV2 signs "/bucket" + path: a virtual-hosted request names its bucket in Host.
  auth::RequestHead head_view{req.method_string(), ex.target.raw_path, ex.target.raw_query, &headers,
                              ex.target.virtual_hosted ? std::string_view(ex.target.bucket) : std::string_view(),
                              &ex.target.query};
  auto verified = shared_.verifier.verify(head_view, shared_.clock.now());
  if (!verified) {
    metrics().auth_failures.inc();
    spdlog::debug("request {} refused: {}", ex.request_id(), verified.error().message());
    {
    co_await send_error(ex, verified.error());
    co_return;
  }
  }
  ex.verified = std::move(verified.value());

  if (const auth::Identity* id = ex.verified.identity; id != nullptr && !auth::authorize(*id, ex.op)) {
    metrics().policy_denials.inc();
    {
    co_await send_error(ex, Status(ErrorCode::kAccessDenied, "Access Denied"));
    co_return;
  }
  }
  if (!ex.op.object_read) {
    co_await forward(ex, CacheOutcome::kNone);
    co_return;
  }
  // Anonymous reads are the upstream's to authorize: never from, or into, the cache.
  if (ex.verified.identity == nullptr) {
    co_await forward(ex, CacheOutcome::kBypass);
    co_return;
  }
  if (read_path_ == nullptr) {
    co_await forward(ex, CacheOutcome::kDisabled);
    co_return;
  }

  co_await read_through_cache(ex);
}

asio::awaitable<void> Gateway::read_through_cache(Exchange& ex) {
  auto& req = ex.parser.get();
  cache::ReadRequest read{req.method() == bhttp::verb::head, ex.target.bucket, ex.target.key, &ex.target.query,
                          &req.base()};
  // A fresh hit from cached blocks is decided without a coroutine frame (start()).
  cache::ReadPath::Started started = read_path_->start(read);
  if (started.rest) started.result = co_await read_path_->resume(std::move(started.rest));
  cache::ReadResult& result = started.result;
  if (result.action == cache::ReadResult::Action::kForward) {
    co_await forward(ex, result.outcome);
    co_return;
  }
  if (!result.error.is_ok()) {
    co_await send_error(ex, result.error, result.outcome);
    co_return;
  }
  if (result.prepared) {
    // A hit's head from its object's prepared one: no header built field by field.
    const auto fields = result.prepared->fields();
    Status s = ex.writer.write_head_prepared(static_cast<bhttp::status>(result.prepared->status), fields,
                                             result.body_length.value_or(0), result.outcome);
    co_await write_body(ex, std::move(s), result.body_length, result.body.get());
    co_return;
  }
  co_await respond(ex, result.head, result.body_length, result.body.get(), result.outcome);
}

namespace {

// The access log's name for a body that could not be completed after its head went out.
const char* body_failure(const Status& s) {
  switch (s.code()) {
    case ErrorCode::kRequestTimeout: return "ClientAborted";
    case ErrorCode::kPreconditionFailed: return "ObjectChangedUpstream";
    case ErrorCode::kBadGateway:
    case ErrorCode::kGatewayTimeout: return "UpstreamTruncated";
    default: return s3_code(s.code());
  }
}

}  // namespace

asio::awaitable<void> Gateway::respond(Exchange& ex, bhttp::response_header<>& head,
                                       std::optional<std::uint64_t> body_length, BodySource* body,
                                       CacheOutcome outcome) {
  // Only an upstream answer carries a 5xx head (the cache's own failures are S3 errors).
  if (head.result_int() >= 500) metrics().upstream_errors.inc();
  Status s = co_await ex.writer.write_head(head, body_length, outcome);
  co_await write_body(ex, std::move(s), body_length, body);
}

namespace {

asio::awaitable<void> write_body(Exchange& ex, Status s, std::optional<std::uint64_t> body_length, BodySource* body) {
  // (write_body_from ends the body; without a source, finish() does.)
  if (s && body != nullptr) {
    AdmittedBody admitted(*body, body_length);
    const std::uint64_t before = ex.writer.body_bytes();
    s = co_await ex.writer.write_body_from(admitted, std::span<char>(ex.piece.get(), kPiece));
    // A relayed upstream answer; the cache's bodies count their sources themselves.
    if (dynamic_cast<const upstream::Response*>(body) != nullptr) {
      metrics().served_bytes_upstream.inc(ex.writer.body_bytes() - before);
    }
  } else if (s) {
    s = co_await ex.writer.finish();
  }
  if (!s) ex.error = body_failure(s);
}

}  // namespace

}  // namespace tagd::gateway
