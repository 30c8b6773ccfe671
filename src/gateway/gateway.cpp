#include "tagd/core/strings.hpp"
#include "tagd/gateway/gateway.hpp"

#include "cached_reads.hpp"
#include "exchange.hpp"

#include <spdlog/spdlog.h>
#include <strings.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/chunk_encode.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <random>

#include "tagd/core/logging.hpp"
#include "tagd/core/metrics.hpp"
#include "tagd/s3/request.hpp"
#include "tagd/upstream/aws_chunked_encoder.hpp"

namespace tagd::gateway {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

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

// Headers that describe one hop, or that tagd replaces when it re-signs; and headers an
// upstream or proxy might honour without tagd having authorized them: method overrides,
// and names with '_' (some servers map "x_amz_acl" to "x-amz-acl"; S3 defines none) —
// except user metadata ("x-amz-meta-my_key"), which stays metadata whatever the mapping.
bool drop_request_header(std::string_view name) {
  if (name.find('_') != std::string_view::npos &&
      !(name.size() > 11 && iequals(name.substr(0, 11), "x-amz-meta-"))) {
    return true;
  }
  for (auto d : {"x-http-method-override", "x-http-method", "x-method-override"}) {
    if (iequals(name, d)) return true;
  }
  static constexpr std::string_view kDrop[] = {
      "connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "trailer", "transfer-encoding",
      "upgrade", "host", "authorization", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token", "expect",
      "content-length", "x-amz-decoded-content-length", "x-amz-trailer"};
  for (auto d : kDrop) {
    if (iequals(name, d)) return true;
  }
  return false;
}

bool drop_response_header(std::string_view name) {
  static constexpr std::string_view kDrop[] = {"connection", "keep-alive", "proxy-connection", "te", "trailer",
                                               "transfer-encoding", "upgrade"};
  for (auto d : kDrop) {
    if (iequals(name, d)) return true;
  }
  return false;
}

// Content-Encoding without the aws-chunked token (it describes the framing tagd removed).
std::string strip_aws_chunked(std::string_view value) {
  std::string out;
  while (!value.empty()) {
    auto comma = value.find(',');
    std::string_view token = value.substr(0, comma);
    while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
    while (!token.empty() && token.back() == ' ') token.remove_suffix(1);
    if (!token.empty() && !iequals(token, "aws-chunked")) out += (out.empty() ? "" : ",") + std::string(token);
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return out;
}

// The x-amz-checksum-* trailer an aws-chunked upload announced, if any: it is forwarded
// as a trailer. (The decoder has refused algorithms tagd cannot compute.)
std::optional<std::string> forwarded_trailer(const auth::BodyPlan& plan) {
  if (!plan.chunked) return std::nullopt;
  for (const auto& name : plan.chunked->expected_trailers) {
    if (name.rfind("x-amz-checksum-", 0) == 0) return name;
  }
  return std::nullopt;
}

// Base64 length of the digest a checksum trailer carries (base64 is strict, so exact).
std::size_t trailer_value_length(std::string_view trailer_name) {
  auto algorithm = auth::checksum_algorithm_from_name(trailer_name.substr(std::string_view("x-amz-checksum-").size()));
  const std::size_t digest = algorithm ? auth::digest_size(*algorithm) : 0;
  return (digest + 2) / 3 * 4;
}

std::string_view trailer_value(const auth::BodyVerifier& verifier, std::string_view name) {
  for (const auto& [n, v] : verifier.trailers()) {
    if (n == name) return v;
  }
  // finish() succeeded, so the announced trailer was received and checked.
  assert(false && "verified trailer missing");
  return {};
}

// Whether an upstream request carries a checksum value (a header or a trailer).
bool carries_checksum(const http::request<http::empty_body>& up, bool trailer) {
  return trailer || std::any_of(up.begin(), up.end(),
                                [](const auto& f) { return auth::is_checksum_value_header(f.name_string()); });
}

bool idempotent(http::verb v) {
  return v == http::verb::get || v == http::verb::head || v == http::verb::delete_ || v == http::verb::put ||
         v == http::verb::options;
}

void count_status(int status) {
  auto& m = metrics();
  if (status < 300) m.responses_2xx.inc();
  else if (status < 400) m.responses_3xx.inc();
  else if (status < 500) m.responses_4xx.inc();
  else m.responses_5xx.inc();
}

}  // namespace


bool body_pending(const Exchange& ex) { return !ex.parser.is_done(); }

// Writes a small locally generated response. The connection stays open only if the
// request body was consumed (or there was none) and the client wants keep-alive.
asio::awaitable<bool> send_local(const config::Config& config, Exchange& ex, http::status status,
                                 std::string content_type, std::string body, bool head_only) {
  bool keep_alive = ex.parser.get().keep_alive() && !body_pending(ex) && metrics().draining.get() == 0;
  http::response<http::string_body> res{status, 11};
  res.set(http::field::server, "tagd");
  res.set("x-amz-request-id", ex.request_id);
  if (!content_type.empty()) res.set(http::field::content_type, content_type);
  res.body() = std::move(body);
  res.keep_alive(keep_alive);
  res.prepare_payload();
  if (head_only) res.body().clear();
  ex.status = static_cast<int>(status);
  ex.client.stream.expires_after(config.idle_timeout);
  boost::system::error_code ec;
  if (head_only) {
    http::response_serializer<http::string_body> sr{res};
    std::tie(ec, std::ignore) = co_await http::async_write_header(ex.client.stream, sr, kTuple);
  } else {
    std::tie(ec, std::ignore) = co_await http::async_write(ex.client.stream, res, kTuple);
  }
  if (!ec) ex.bytes_out += res.body().size();
  co_return keep_alive && !ec;
}

asio::awaitable<bool> send_error(const config::Config& config, Exchange& ex, const Status& error) {
  ex.error = s3_code(error.code());
  std::string resource = ex.parser.get().target();
  if (auto q = resource.find('?'); q != std::string::npos) resource.resize(q);
  std::string xml = s3::error_xml(s3_code(error.code()), error.message(), resource, ex.request_id);
  bool head = ex.parser.get().method() == http::verb::head;
  co_return co_await send_local(config, ex, static_cast<http::status>(http_status(error.code())), "application/xml",
                                std::move(xml), head);
}

namespace {

void access_log(const config::Config& config, const Exchange& ex, std::string_view method) {
  if (!config.access_log) return;
  auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - ex.start).count();
  std::string_view who = ex.verified.identity ? std::string_view(ex.verified.identity->access_key_id) : "-";
  logging::access().info(
      "{} bucket={} key={} status={} in={} out={} ms={:.2f} id={} akid={} op={}{}{}{}{}", log_field(method),
      ex.target.bucket.empty() ? "-" : log_field(ex.target.bucket), ex.target.key.empty() ? "-" : log_field(ex.target.key),
      ex.status, ex.bytes_in, ex.bytes_out, ms, ex.request_id, log_field(who), ex.op.name.empty() ? "-" : ex.op.name,
      ex.x_cache.empty() ? "" : " cache=", ex.x_cache, ex.error.empty() ? "" : " error=", ex.error);
}

}  // namespace

Gateway::Gateway(const Shared& shared, std::unique_ptr<upstream::Pool> pool, cache::ObjectCache* cache)
    : shared_(shared), pool_(std::move(pool)) {
  if (cache != nullptr) cached_reads_ = std::make_unique<CachedReads>(shared_, *pool_, *cache);
  cache_ = cache;
}

Gateway::~Gateway() = default;

asio::awaitable<bool> Gateway::handle(ClientConnection& client, RequestParser& parser) {
  Exchange ex{client, parser};
  auto& m = metrics();
  m.requests_total.inc();
  m.inflight_requests.add(1);
  bool keep_alive = co_await dispatch(ex);
  // One request, one response: a body left unread (a GET answered from the cache, a
  // local error, a refusal) would be parsed as the next request. Close instead.
  if (keep_alive && body_pending(ex)) keep_alive = false;
  m.inflight_requests.add(-1);
  count_status(ex.status);
  access_log(shared_.config, ex, parser.get().method_string());
  co_return keep_alive;
}

asio::awaitable<bool> Gateway::dispatch(Exchange& ex) {
  const auto& config = shared_.config;
  auto& req = ex.parser.get();
  std::string_view raw_target = req.target();
  const bool get_or_head = req.method() == http::verb::get || req.method() == http::verb::head;
  const bool head = req.method() == http::verb::head;

  // Local endpoints. A signed request for a bucket named "health" still goes upstream.
  if (get_or_head && req.find(http::field::authorization) == req.end() &&
      raw_target.find("X-Amz-Signature") == std::string_view::npos) {
    if (raw_target == "/health") co_return co_await send_local(config, ex, http::status::ok, "text/plain", "ok\n", head);
    if (raw_target == "/ready") {
      bool ready = !shared_.ready || shared_.ready();
      co_return co_await send_local(config, ex, ready ? http::status::ok : http::status::service_unavailable,
                                    "text/plain", ready ? "ready\n" : "not ready\n", head);
    }
    if (raw_target == "/metrics") {
      co_return co_await send_local(config, ex, http::status::ok, "text/plain; version=0.0.4",
                                    metrics().render_prometheus(), head);
    }
  }

  if (metrics().inflight_requests.get() > static_cast<std::int64_t>(config.max_inflight_requests)) {
    metrics().slow_down_rejections.inc();
    co_return co_await send_error(config, ex, Status(ErrorCode::kSlowDown, "Please reduce your request rate."));
  }

  std::string_view host;
  if (auto it = req.find(http::field::host); it != req.end()) host = it->value();
  auto target = s3::resolve_target(host, raw_target, config.virtual_host_domain);
  if (!target) co_return co_await send_error(config, ex, target.error());
  ex.target = std::move(target.value());

  auth::HeaderList headers;
  for (const auto& f : req) headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
  auto op = s3::classify(req.method_string(), ex.target, headers);
  if (!op) co_return co_await send_error(config, ex, op.error());
  ex.op = std::move(op.value());

  if (req.method() == http::verb::options) {
    // CORS preflight: browsers never sign it. It goes upstream unsigned (identity stays
    // null), where the bucket's CORS configuration answers; it reads and writes nothing.
    co_return co_await forward(ex);
  }

  // SigV2 signs "/bucket" + path: a virtual-hosted request names its bucket in Host.
  auth::RequestHead head_view{req.method_string(), ex.target.raw_path, ex.target.raw_query, &headers,
                              ex.target.virtual_hosted ? std::string_view(ex.target.bucket) : std::string_view()};
  auto verified = shared_.verifier.verify(head_view, std::chrono::system_clock::now());
  if (!verified) {
    metrics().auth_failures.inc();
    spdlog::debug("request {} refused: {}", ex.request_id, verified.error().message());
    co_return co_await send_error(config, ex, verified.error());
  }
  ex.verified = std::move(verified.value());

  if (const auth::Identity* id = ex.verified.identity; id != nullptr && !auth::authorize(*id, ex.op)) {
    metrics().policy_denials.inc();
    co_return co_await send_error(config, ex, Status(ErrorCode::kAccessDenied, "Access Denied"));
  }
  if (ex.op.object_read) {
    if (ex.verified.identity == nullptr) {
      // Anonymous reads are the upstream's to authorize: never from, or into, the cache.
      ex.x_cache = "BYPASS";
      metrics().cache_bypass.inc();
    } else if (cached_reads_ == nullptr) {
      ex.x_cache = "DISABLED";
      metrics().cache_disabled.inc();
    } else {
      std::optional<bool> served = co_await cached_reads_->serve(ex);
      if (served) co_return *served;
    }
  }
  co_return co_await forward(ex);
}

namespace {

// Reads the next piece of the client body through the verifier into `payload`.
asio::awaitable<Status> read_body_piece(const config::Config& config, Exchange& ex, auth::BodyVerifier& verifier,
                                        std::string& payload) {
  auto& body = ex.parser.get().body();
  body.data = ex.piece.get();
  body.size = kPiece;
  // The stream's own timeout would close the socket, leaving no way to send the client
  // its RequestTimeout: a separate timer cancels the read instead. Its state is shared
  // because the handler may run after this frame is gone; `done` (same thread) keeps a
  // late handler away from a stream that may no longer exist.
  struct Watch {
    explicit Watch(asio::any_io_executor e) : timer(std::move(e)) {}
    asio::steady_timer timer;
    bool fired = false;
    bool done = false;
  };
  auto watch = std::make_shared<Watch>(ex.client.stream.get_executor());
  watch->timer.expires_after(config.idle_timeout);
  watch->timer.async_wait([watch, &stream = ex.client.stream](boost::system::error_code wec) {
    if (wec || watch->done) return;  // the read finished first
    watch->fired = true;
    boost::system::error_code ignored;
    stream.socket().cancel(ignored);
  });
  ex.client.stream.expires_never();
  auto [ec, n] = co_await http::async_read(ex.client.stream, ex.client.buffer, ex.parser, kTuple);
  watch->done = true;
  watch->timer.cancel();
  if (ec == http::error::need_buffer) ec = {};
  if (ec && watch->fired) ec = beast::error::timeout;
  std::size_t got = kPiece - body.size;
  body.data = nullptr;
  if (ec) {
    if (ec == beast::error::timeout) {
      metrics().client_timeouts.inc();
      co_return Status(ErrorCode::kRequestTimeout, "Your socket connection to the server was not read from or written "
                                                   "to within the timeout period.");
    }
    co_return Status(ErrorCode::kIncompleteBody, "request body ended early: " + ec.message());
  }
  ex.bytes_in += got;
  co_return verifier.feed(std::string_view(ex.piece.get(), got), payload);
}

template <class Stream>
asio::awaitable<boost::system::error_code> write_payload(Stream& stream, std::string_view data, bool chunked) {
  if (data.empty()) co_return boost::system::error_code{};
  boost::system::error_code ec;
  if (chunked) {
    std::tie(ec, std::ignore) =
        co_await asio::async_write(stream, http::make_chunk(asio::buffer(data.data(), data.size())), kTuple);
  } else {
    std::tie(ec, std::ignore) = co_await asio::async_write(stream, asio::buffer(data.data(), data.size()), kTuple);
  }
  co_return ec;
}

template <class Stream>
asio::awaitable<boost::system::error_code> write_last_chunk(Stream& stream) {
  auto [ec, n] = co_await asio::async_write(stream, http::make_chunk_last(), kTuple);
  co_return ec;
}

Status upstream_failure(const boost::system::error_code& ec, std::string_view what) {
  metrics().upstream_errors.inc();
  if (ec == beast::error::timeout) return Status(ErrorCode::kGatewayTimeout, "upstream timed out " + std::string(what));
  return Status(ErrorCode::kBadGateway, "upstream failed " + std::string(what) + ": " + ec.message());
}

}  // namespace

asio::awaitable<bool> relay_response(const config::Config& config, upstream::Pool& pool, Exchange& ex,
                                     std::unique_ptr<upstream::Connection> conn,
                                     http::response_parser<http::buffer_body>& rp) {
  auto& req = ex.parser.get();
  auto& m = metrics();
  auto& upres = rp.get();
  const int status = upres.result_int();
  ex.status = status;
  bool client_keep_alive = req.keep_alive() && !body_pending(ex) && metrics().draining.get() == 0;
  // An HTTP/1.0 client gets an HTTP/1.0 response: it cannot decode chunked coding.
  const bool client_http11 = req.version() >= 11;
  http::response<http::empty_body> res{upres.result(), client_http11 ? 11u : 10u};
  for (const auto& f : upres) {
    if (!drop_response_header(f.name_string())) res.insert(f.name(), f.name_string(), f.value());
  }
  if (res.find("x-amz-request-id") == res.end()) res.set("x-amz-request-id", ex.request_id);
  if (!ex.x_cache.empty()) res.set("X-Cache", ex.x_cache);
  const bool no_body = req.method() == http::verb::head || status == 204 || status == 304 || status < 200;
  bool client_chunked = false;
  if (!no_body && !(rp.content_length() && !rp.chunked())) {
    if (client_http11) {
      res.chunked(true);
      client_chunked = true;
    } else {
      client_keep_alive = false;  // the end of the connection marks the end of the body
    }
  }
  res.keep_alive(client_keep_alive);
  if (status >= 500) m.upstream_errors.inc();

  ex.client.stream.expires_after(config.idle_timeout);
  http::response_serializer<http::empty_body> rs{res};
  auto [wec, wn] = co_await http::async_write_header(ex.client.stream, rs, kTuple);
  if (wec) {
    m.client_aborts.inc();
    co_return false;
  }
  if (!no_body) {
    auto& body = upres.body();
    while (!rp.is_done()) {
      body.data = ex.piece.get();
      body.size = kPiece;
      conn->tcp().expires_after(config.upstream_read_timeout);
      auto [ec, n] = co_await conn->visit([&](auto& s) { return http::async_read(s, conn->buffer(), rp, kTuple); });
      if (ec == http::error::need_buffer) ec = {};
      std::size_t got = kPiece - body.size;
      if (got > 0) {
        // Backpressure: the next upstream read waits for this write, so a slow client
        // slows the upstream transfer instead of growing a buffer.
        ex.client.stream.expires_after(config.idle_timeout);
        auto wec2 = co_await write_payload(ex.client.stream, std::string_view(ex.piece.get(), got), client_chunked);
        if (wec2) {
          m.client_aborts.inc();
          ex.error = "ClientAborted";
          co_return false;
        }
        ex.bytes_out += got;
        m.response_body_bytes.inc(got);
      }
      if (ec) {
        // Headers are gone already: the only honest signal left is a truncated response.
        m.upstream_truncated_bodies.inc();
        ex.error = "UpstreamTruncated";
        spdlog::warn("request {}: upstream body ended early after {} bytes: {}", ex.request_id, ex.bytes_out,
                     ec.message());
        boost::system::error_code ignored;
        ex.client.stream.socket().set_option(asio::socket_base::linger(true, 0), ignored);
        ex.client.stream.socket().close(ignored);
        co_return false;
      }
    }
    if (client_chunked) {
      auto lec = co_await write_last_chunk(ex.client.stream);
      if (lec) co_return false;
    }
  }
  if (rp.is_done() && rp.keep_alive() && conn) pool.release(std::move(conn));
  co_return client_keep_alive;
}

asio::awaitable<bool> Gateway::forward(Exchange& ex) {
  const auto& config = shared_.config;
  auto& req = ex.parser.get();
  auth::BodyVerifier verifier(ex.verified.body);
  auto& m = metrics();

  const bool has_body = body_pending(ex);
  if (has_body && iequals(req[http::field::expect], "100-continue")) {
    static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    ex.client.stream.expires_after(config.idle_timeout);
    auto [ec, n] = co_await asio::async_write(ex.client.stream, asio::buffer(kContinue.data(), kContinue.size()), kTuple);
    if (ec) co_return false;
  }

  // The first piece is read before the upstream is contacted: a body that fits in it is
  // verified whole before a single byte leaves, and can be replayed on a retry.
  std::string held;
  if (has_body) {
    if (ex.op.keys_in_body) {
      // DeleteObjects: every key must be authorized, so the (bounded) body is read first.
      while (body_pending(ex)) {
        Status s = co_await read_body_piece(config, ex, verifier, held);
        if (!s) co_return co_await send_error(config, ex, s);
        if (held.size() > config.max_delete_objects_body) {
          co_return co_await send_error(config, ex, Status(ErrorCode::kMalformedXML, "DeleteObjects body too large"));
        }
      }
    } else {
      Status s = co_await read_body_piece(config, ex, verifier, held);
      if (!s) {
        if (s.code() != ErrorCode::kRequestTimeout && s.code() != ErrorCode::kIncompleteBody) {
          m.body_verification_failures.inc();
        }
        co_return co_await send_error(config, ex, s);
      }
    }
  }
  bool body_complete = !body_pending(ex);
  if (body_complete) {
    // Also for a request with no body at all: an aws-chunked upload without its body, or
    // one shorter than x-amz-decoded-content-length, is refused here and nothing is
    // committed upstream.
    Status s = verifier.finish();
    if (!s) {
      m.body_verification_failures.inc();
      spdlog::warn("request {}: body verification failed before forwarding: {}", ex.request_id, s.message());
      co_return co_await send_error(config, ex, s);
    }
  }
  // Objects this request may change (body, tags, ACL, a move's source, DeleteObjects'
  // keys, ...), invalidated in the cache before forwarding and again after a success (a
  // fill that raced with the write then cannot publish the old bytes).
  std::vector<s3::ObjectRef> written = ex.op.writes;
  if (ex.op.keys_in_body) {
    auto keys = s3::delete_objects_keys(held);
    if (!keys) co_return co_await send_error(config, ex, keys.error());
    if (ex.verified.identity != nullptr) {
      for (const auto& key : *keys) {
        if (!ex.verified.identity->may(s3::Action::kDelete, ex.target.bucket, key)) {
          m.policy_denials.inc();
          co_return co_await send_error(config, ex, Status(ErrorCode::kAccessDenied, "Access Denied for key " + key));
        }
      }
    }
    for (auto& key : *keys) written.push_back({ex.target.bucket, std::move(key)});
  }
  if (cache_ != nullptr) {
    for (const auto& w : written) cache_->invalidate(w.bucket, w.key);
  }

  // A checksum the client sent as an aws-chunked trailer goes on as a trailer (the body
  // re-framed as unsigned aws-chunked), so the upstream stores and checks it too.
  const std::optional<std::string> trailer = forwarded_trailer(ex.verified.body);
  std::optional<upstream::AwsChunkedEncoder> encoder;
  if (trailer) encoder.emplace(kPiece, *trailer);

  // The upstream request head.
  http::request<http::empty_body> up{req.method(), s3::upstream_target(ex.target), 11};
  for (const auto& f : req) {
    if (drop_request_header(f.name_string())) continue;
    if (f.name() == http::field::content_encoding && verifier.is_aws_chunked()) {
      std::string rest = strip_aws_chunked(f.value());
      if (trailer) rest = rest.empty() ? "aws-chunked" : "aws-chunked," + rest;
      if (!rest.empty()) up.insert(f.name(), f.name_string(), rest);
      continue;
    }
    up.insert(f.name(), f.name_string(), f.value());
  }
  if (!carries_checksum(up, trailer.has_value())) {
    // An algorithm without its value is an error to S3 (400 InvalidRequest).
    up.erase("x-amz-sdk-checksum-algorithm");
  }
  bool upstream_chunked = false;
  if (!has_body) {
    if (req.method() == http::verb::put || req.method() == http::verb::post) up.content_length(0);
  } else if (trailer) {
    const std::uint64_t decoded = body_complete ? held.size() : ex.verified.body.decoded_length.value_or(0);
    up.set("x-amz-decoded-content-length", std::to_string(decoded));
    up.set("x-amz-trailer", *trailer);
    up.content_length(encoder->encoded_length(decoded, trailer_value_length(*trailer)));
  } else if (body_complete) {
    up.content_length(held.size());
  } else if (ex.verified.body.decoded_length) {
    up.content_length(*ex.verified.body.decoded_length);
  } else if (auto cl = ex.parser.content_length(); cl && !ex.parser.chunked()) {
    up.content_length(*cl);
  } else {
    up.chunked(true);
    upstream_chunked = true;
  }
  std::string payload_hash = trailer ? std::string(auth::kStreamingUnsignedPayloadTrailer)
                             : ex.verified.body.mode == auth::PayloadMode::kSignedSha256 ? ex.verified.body.expected_sha256
                             : has_body ? std::string(auth::kUnsignedPayload)
                                        : std::string(auth::kEmptySha256);
  // An anonymous request (allowed by auth.allow_anonymous) goes upstream unsigned: the
  // upstream's own ACLs decide, and tagd's credentials never make a private object public
  // (TAG bug 6).
  static const upstream::SigningCredentials kAnonymous{};
  upstream::sign_request(up.base(), req.method_string(), up.target(), pool_->endpoint().host_header, payload_hash,
                         ex.verified.identity != nullptr ? shared_.signing : kAnonymous,
                         std::chrono::system_clock::now());
  // The bytes that carry `payload` upstream: itself, or its aws-chunked framing (with the
  // final chunk and the verified trailer once `last`).
  std::string framed;
  auto frame = [&](std::string_view payload, bool last) -> std::string_view {
    if (!encoder) return payload;
    framed.clear();
    encoder->encode(payload, framed);
    if (last) encoder->finish(trailer_value(verifier, *trailer), framed);
    return framed;
  };

  const bool replayable = body_complete;
  std::unique_ptr<upstream::Connection> conn;
  std::optional<http::response_parser<http::buffer_body>> rp;
  std::mt19937 jitter(std::random_device{}());
  for (unsigned attempt = 0;; ++attempt) {
    const bool can_retry = replayable && attempt < config.upstream_retries;
    if (attempt > 0) {
      m.upstream_retries.inc();
      // Jittered exponential backoff: 25–50 ms, 50–100 ms, ...
      auto base = std::chrono::milliseconds(25) * (1u << std::min(attempt - 1, 6u));
      auto wait = base + std::chrono::milliseconds(std::uniform_int_distribution<long>(0, base.count())(jitter));
      asio::steady_timer timer(ex.client.stream.get_executor(), wait);
      co_await timer.async_wait(kTuple);
    }
    // (No co_await inside ?: — GCC 12 miscompiles it.)
    Result<std::unique_ptr<upstream::Connection>> acquired = Status(ErrorCode::kInternalError, "unset");
    if (attempt == 0) {
      acquired = co_await pool_->acquire();
    } else {
      acquired = co_await pool_->connect();
    }
    if (!acquired) {
      spdlog::warn("request {}: upstream unavailable (attempt {}): {}", ex.request_id, attempt + 1,
                   acquired.error().message());
      if (can_retry) continue;
      m.upstream_errors.inc();
      co_return co_await send_error(config, ex, acquired.error());
    }
    conn = std::move(acquired.value());
    m.upstream_requests.inc();
    conn->tcp().expires_after(config.upstream_read_timeout);
    http::request_serializer<http::empty_body> sr{up};
    boost::system::error_code ec;
    std::tie(ec, std::ignore) =
        co_await conn->visit([&](auto& s) { return http::async_write_header(s, sr, kTuple); });
    if (!ec && replayable && has_body) {
      if (trailer) encoder.emplace(kPiece, *trailer);  // a retry frames the body anew
      std::string_view bytes = frame(held, true);
      conn->tcp().expires_after(config.upstream_read_timeout);
      ec = co_await conn->visit([&](auto& s) { return write_payload(s, bytes, upstream_chunked); });
    }
    if (!ec && replayable && upstream_chunked) {
      conn->tcp().expires_after(config.upstream_read_timeout);
      ec = co_await conn->visit([&](auto& s) { return write_last_chunk(s); });
    }
    if (ec) {
      conn.reset();
      if (can_retry && (idempotent(req.method()) || attempt == 0)) continue;
      co_return co_await send_error(config, ex, upstream_failure(ec, "while sending the request"));
    }

    if (!replayable) {
      // Stream the rest of the body, always holding back the newest piece: the upstream
      // sees the end of the body only after every digest checked out.
      while (body_pending(ex)) {
        std::string next;
        Status s = co_await read_body_piece(config, ex, verifier, next);
        if (!s) {
          conn->reset();
          if (s.code() != ErrorCode::kRequestTimeout && s.code() != ErrorCode::kIncompleteBody) {
            m.body_verification_failures.inc();
          }
          spdlog::warn("request {}: upload aborted upstream: {}", ex.request_id, s.message());
          co_return co_await send_error(config, ex, s);
        }
        if (next.empty()) continue;
        if (!held.empty()) {
          // The upstream timeout bounds each write, not the whole (arbitrarily long) upload.
          std::string_view bytes = frame(held, false);
          conn->tcp().expires_after(config.upstream_read_timeout);
          ec = co_await conn->visit([&](auto& st) { return write_payload(st, bytes, upstream_chunked); });
          if (ec) break;
        }
        held = std::move(next);
      }
      if (!ec) {
        Status s = verifier.finish();
        if (!s) {
          conn->reset();
          m.body_verification_failures.inc();
          spdlog::warn("request {}: upload aborted upstream: {}", ex.request_id, s.message());
          co_return co_await send_error(config, ex, s);
        }
        std::string_view bytes = frame(held, true);
        conn->tcp().expires_after(config.upstream_read_timeout);
        ec = co_await conn->visit([&](auto& st) { return write_payload(st, bytes, upstream_chunked); });
        if (!ec && upstream_chunked) {
          conn->tcp().expires_after(config.upstream_read_timeout);
          ec = co_await conn->visit([&](auto& st) { return write_last_chunk(st); });
        }
      }
      if (ec == beast::error::timeout) {
        // The stream closed the socket on the timeout: there is no answer to read.
        conn.reset();
        spdlog::warn("request {}: upstream stopped reading the request body", ex.request_id);
        co_return co_await send_error(config, ex, upstream_failure(ec, "while receiving the request body"));
      }
      // Any other write error can mean the upstream answered early (e.g. NoSuchBucket)
      // and closed: try to read that answer before giving up.
      if (ec) spdlog::debug("request {}: upstream write failed: {}", ex.request_id, ec.message());
    }

    // Response head (skipping interim 1xx responses).
    for (;;) {
      rp.emplace();
      rp->body_limit(boost::none);
      if (req.method() == http::verb::head) rp->skip(true);
      conn->tcp().expires_after(config.upstream_read_timeout);
      std::tie(ec, std::ignore) =
          co_await conn->visit([&](auto& s) { return http::async_read_header(s, conn->buffer(), *rp, kTuple); });
      if (ec || rp->get().result_int() >= 200) break;
    }
    if (ec) {
      bool was_reused = conn->reused;
      conn.reset();
      // A kept-alive connection the upstream closed just before our request: retry once
      // on a fresh connection when that is safe.
      if (can_retry && idempotent(req.method()) && ec != beast::error::timeout) continue;
      if (was_reused && replayable && attempt == 0 && ec == http::error::end_of_stream) continue;
      co_return co_await send_error(config, ex, upstream_failure(ec, "before answering"));
    }
    break;
  }

  // Relay the response.
  const int status = rp->get().result_int();
  if (cache_ != nullptr && status >= 200 && status < 300) {
    for (const auto& w : written) cache_->invalidate(w.bucket, w.key);
  }
  m.request_body_bytes.inc(verifier.payload_bytes());
  co_return co_await relay_response(config, *pool_, ex, std::move(conn), *rp);
}


}  // namespace tagd::gateway
