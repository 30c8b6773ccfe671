#include "tagd/gateway/gateway.hpp"

#include <spdlog/spdlog.h>

#include <atomic>
#include <random>

#include "exchange.hpp"
#include "object_fetcher.hpp"
#include "tagd/cache/read_path.hpp"
#include "tagd/core/logging.hpp"
#include "tagd/core/metrics.hpp"
#include "tagd/core/strings.hpp"

namespace tagd::gateway {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;

std::string next_request_id() {
  static std::atomic<std::uint64_t> counter{0};
  static const std::uint64_t salt = std::random_device{}() ^ (static_cast<std::uint64_t>(std::random_device{}()) << 32);
  std::uint64_t v = salt + counter.fetch_add(1, std::memory_order_relaxed) * 0x9E3779B97F4A7C15ull;
  char out[17];
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (int i = 15; i >= 0; --i) {
    out[i] = kHex[v & 0xF];
    v >>= 4;
  }
  out[16] = '\0';
  return out;
}

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

}  // namespace

Gateway::Gateway(const Shared& shared, std::unique_ptr<upstream::Client> client, cache::ObjectCache* cache,
                 asio::any_io_executor executor)
    : shared_(shared), client_(std::move(client)), cache_(cache) {
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

}  // namespace

asio::awaitable<void> Gateway::dispatch(Exchange& ex) {
  const auto& config = shared_.config;
  auto& req = ex.parser.get();
  std::string_view raw_target = req.target();
  const bool get_or_head = req.method() == bhttp::verb::get || req.method() == bhttp::verb::head;

  // Local endpoints. A signed request for a bucket named "health" still goes upstream.
  if (get_or_head && req.find(bhttp::field::authorization) == req.end() &&
      raw_target.find("X-Amz-Signature") == std::string_view::npos) {
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

  if (metrics().inflight_requests.get() > static_cast<std::int64_t>(config.max_inflight_requests)) {
    metrics().slow_down_rejections.inc();
    {
    co_await send_error(ex, Status(ErrorCode::kSlowDown, "Please reduce your request rate."));
    co_return;
  }
  }

  std::string_view host;
  if (auto it = req.find(bhttp::field::host); it != req.end()) host = it->value();
  auto target = s3::resolve_target(host, raw_target, config.virtual_host_domain);
  if (!target) {
    co_await send_error(ex, target.error());
    co_return;
  }
  ex.target = std::move(target.value());

  auth::HeaderList headers;
  for (const auto& f : req) headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
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
  cache::ReadResult result = co_await read_path_->serve(read);
  if (result.action == cache::ReadResult::Action::kForward) {
    co_await forward(ex, result.outcome);
    co_return;
  }
  if (!result.error.is_ok()) {
    co_await send_error(ex, result.error, result.outcome);
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
  // (write_body_from ends the body; without a source, finish() does.)
  if (s && body != nullptr) {
    s = co_await ex.writer.write_body_from(*body, std::span<char>(ex.piece.get(), kPiece));
  } else if (s) {
    s = co_await ex.writer.finish();
  }
  if (!s) ex.error = body_failure(s);
}

}  // namespace tagd::gateway
