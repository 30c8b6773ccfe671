#include "tagd/upstream/client.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/chunk_encode.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <chrono>
#include <random>
#include <utility>

#include "tagd/auth/sigv4.hpp"
#include "tagd/core/metrics.hpp"
#include "tagd/core/strings.hpp"

namespace tagd::upstream {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using boost::system::error_code;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

namespace {

using Parser = http::response_parser<http::buffer_body>;

// An upstream that keeps answering 1xx never gets to its real answer.
constexpr unsigned kMaxInterimResponses = 32;

bool idempotent(http::verb v) {
  return v == http::verb::get || v == http::verb::head || v == http::verb::delete_ || v == http::verb::put ||
         v == http::verb::options;
}

// The peer closed (or reset) the connection instead of answering.
bool peer_closed(const error_code& ec) {
  return ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset ||
         ec == asio::error::broken_pipe || ec == asio::ssl::error::stream_truncated;
}

Status upstream_status(const error_code& ec, std::string_view what) {
  if (ec == beast::error::timeout) return Status(ErrorCode::kGatewayTimeout, "upstream timed out " + std::string(what));
  return Status(ErrorCode::kBadGateway, "upstream failed " + std::string(what) + ": " + ec.message());
}

template <class Stream>
asio::awaitable<error_code> write_piece(Stream& stream, std::string_view data, bool chunked) {
  if (data.empty()) co_return error_code{};  // an empty chunk would end a chunked body
  error_code ec;
  if (chunked) {
    std::tie(ec, std::ignore) =
        co_await asio::async_write(stream, http::make_chunk(asio::buffer(data.data(), data.size())), kTuple);
  } else {
    std::tie(ec, std::ignore) = co_await asio::async_write(stream, asio::buffer(data.data(), data.size()), kTuple);
  }
  co_return ec;
}

template <class Stream>
asio::awaitable<error_code> write_last_chunk(Stream& stream) {
  auto [ec, n] = co_await asio::async_write(stream, http::make_chunk_last(), kTuple);
  co_return ec;
}

// Holds its connection until the body was read; releases it into the client's Pool, so
// the Client (which owns the Pool) must outlive every Response it returned.
class PooledResponse final : public Response {
 public:
  // `reusable`: false when the request was not sent whole (the answer came early).
  PooledResponse(Pool& pool, std::unique_ptr<Connection> conn, std::unique_ptr<Parser> parser, bool head_request,
                 bool reusable, std::chrono::milliseconds timeout)
      : pool_(pool),
        conn_(std::move(conn)),
        parser_(std::move(parser)),
        head_request_(head_request),
        reusable_(reusable),
        timeout_(timeout) {
    // Each read parses every chunk the buffer holds, not one chunk per read.
    parser_->eager(true);
    // Nothing follows a bodyless answer (or a Content-Length: 0 one): the connection can
    // serve the next exchange right away.
    if (parser_->is_done()) release();
  }
  // Dropping conn_ (if still held) closes it: an unread body must never be parsed as the
  // next response.
  ~PooledResponse() override = default;

  const http::response_header<>& head() const override { return parser_->get(); }
  http::response_header<>& head() override { return parser_->get(); }

  bool chunked() const override { return parser_->chunked(); }
  bool bodyless() const override {
    const int s = parser_->get().result_int();
    return head_request_ || s < 200 || s == 204 || s == 304;
  }
  std::optional<std::uint64_t> length() const override {
    if (bodyless()) return 0;
    if (auto cl = parser_->content_length(); cl && !parser_->chunked()) return *cl;
    return std::nullopt;
  }

  asio::awaitable<Result<std::size_t>> read(std::span<char> out) override {
    if (error_) co_return *error_;
    if (parser_->is_done()) {
      release();
      co_return std::size_t{0};
    }
    if (out.empty()) co_return Status(ErrorCode::kInternalError, "upstream body read into an empty buffer");
    auto& body = parser_->get().body();
    std::size_t got = 0;
    error_code ec;
    // One socket read per step (async_read_some), not "until the span is full"
    // (async_read): a fill hands bytes to its readers as they cross the WAN instead of
    // holding back a span's worth (store and forward). Whatever the socket holds is taken
    // in one step, so a fast upstream still gives large pieces. A step can end without
    // body bytes (a chunk header, the last chunk): bounded by the parser's progress, since
    // every completed step consumed input. The timeout bounds each step: a body that
    // stops arriving for that long fails, however much of the span it filled.
    while (got == 0 && !ec && !parser_->is_done()) {
      body.data = out.data();
      body.size = out.size();
      conn_->tcp().expires_after(timeout_);
      std::tie(ec, std::ignore) =
          co_await conn_->visit([&](auto& s) { return http::async_read_some(s, conn_->buffer(), *parser_, kTuple); });
      if (ec == http::error::need_buffer) ec = {};
      got = out.size() - body.size;
    }
    if (ec) {
      metrics().upstream_truncated_bodies.inc();
      spdlog::warn("upstream body ended early: {}", ec.message());
      conn_.reset();
      error_ = upstream_status(ec, "while sending the response body");
      // Bytes that did arrive are handed over first; the error follows on the next read.
      if (got == 0) co_return *error_;
      co_return got;
    }
    if (parser_->is_done()) release();
    co_return got;
  }

 private:
  void release() {
    if (!conn_) return;
    // Bytes beyond the end of this response were never asked for: not a clean connection.
    if (reusable_ && parser_->keep_alive() && conn_->buffer().size() == 0) pool_.release(std::move(conn_));
    conn_.reset();
  }

  Pool& pool_;
  std::unique_ptr<Connection> conn_;
  std::unique_ptr<Parser> parser_;
  const bool head_request_;
  const bool reusable_;
  const std::chrono::milliseconds timeout_;
  std::optional<Status> error_;
};

// How one attempt ended: a response head, the RequestBody's own error, or a failure the
// retry policy judges.
// The condition an operator greps for, by phase.
const char* describe(const Failure& f) {
  if (f.phase == FailurePhase::kConnect) return "upstream unavailable";
  if (f.phase == FailurePhase::kSend && f.timeout) return "upstream stopped reading the request body";
  return "upstream failed";
}

struct AttemptResult {
  std::unique_ptr<Parser> parser;  // set on success
  std::optional<Status> body_error;
  bool reusable = true;  // false: answered before the request body was written whole
  Failure failure;
  error_code ec;
  const char* what = "";
};

class PooledClient final : public Client {
 public:
  PooledClient(std::unique_ptr<Pool> pool, const SigningCredentials& signing, const Clock& clock,
               ClientOptions options)
      : pool_(std::move(pool)), signing_(signing), clock_(clock), options_(options), random_(std::random_device{}()) {}

  asio::awaitable<Result<std::unique_ptr<Response>>> exchange(Request request) override;
  void close_idle() override { pool_->clear(); }

 private:
  asio::awaitable<AttemptResult> run_attempt(Connection& conn, const http::request<http::empty_body>& head,
                                         const Request& request, bool chunked, std::chrono::milliseconds timeout);

  std::unique_ptr<Pool> pool_;
  const SigningCredentials& signing_;
  const Clock& clock_;
  ClientOptions options_;
  std::mt19937_64 random_;
};

asio::awaitable<AttemptResult> PooledClient::run_attempt(Connection& conn, const http::request<http::empty_body>& head,
                                                     const Request& request, bool chunked,
                                                     std::chrono::milliseconds timeout) {
  AttemptResult r;
  r.failure.connection_reused = conn.reused;
  auto fail = [&r](FailurePhase phase, const error_code& ec, const char* what) {
    r.failure.phase = phase;
    r.failure.timeout = ec == beast::error::timeout;
    r.failure.end_of_stream = peer_closed(ec);
    r.ec = ec;
    r.what = what;
  };

  http::request_serializer<http::empty_body> sr{head};
  conn.tcp().expires_after(timeout);
  error_code ec;
  std::tie(ec, std::ignore) = co_await conn.visit([&](auto& s) { return http::async_write_header(s, sr, kTuple); });
  if (ec) {
    fail(FailurePhase::kSend, ec, "while sending the request");
    co_return r;
  }

  if (RequestBody* body = request.body; body != nullptr) {
    const bool replayable = body->replayable();
    if (replayable) body->rewind();
    for (;;) {
      Result<std::string_view> piece = co_await body->next();
      if (!piece) {
        conn.reset();  // RST: the upstream never sees the end of the body
        r.body_error = piece.error();
        co_return r;
      }
      if (piece->empty()) break;
      const std::string_view bytes = *piece;
      conn.tcp().expires_after(timeout);
      ec = co_await conn.visit([&](auto& s) { return write_piece(s, bytes, chunked); });
      if (ec) break;
    }
    if (!ec && chunked) {
      conn.tcp().expires_after(timeout);
      ec = co_await conn.visit([&](auto& s) { return write_last_chunk(s); });
    }
    if (ec && (replayable || ec == beast::error::timeout)) {
      // (On a timeout the stream closed the socket: there is no answer to read.)
      fail(FailurePhase::kSend, ec, "while sending the request body");
      co_return r;
    }
    // A streamed body that could not be written to its end: the upstream may have answered
    // early (e.g. NoSuchBucket) and closed. Read that answer before giving up.
    if (ec) spdlog::debug("upstream write failed, reading its answer: {}", ec.message());
  }
  const error_code write_ec = ec;

  // The response head, skipping interim 1xx responses.
  for (unsigned interim = 0;; ++interim) {
    if (interim == kMaxInterimResponses) {
      ec = http::error::bad_status;
      break;
    }
    r.parser = std::make_unique<Parser>();
    r.parser->body_limit(boost::none);
    if (request.method == http::verb::head) r.parser->skip(true);
    conn.tcp().expires_after(timeout);
    std::tie(ec, std::ignore) =
        co_await conn.visit([&](auto& s) { return http::async_read_header(s, conn.buffer(), *r.parser, kTuple); });
    if (ec || r.parser->get().result_int() >= 200) break;
  }
  if (ec) {
    r.parser.reset();
    if (write_ec) {
      fail(FailurePhase::kSend, write_ec, "while sending the request body");
    } else {
      fail(FailurePhase::kReceiveHead, ec, "before answering");
    }
    co_return r;
  }
  // Answered without reading the whole body: the connection cannot be reused.
  r.reusable = !write_ec;
  co_return r;
}

asio::awaitable<Result<std::unique_ptr<Response>>> PooledClient::exchange(Request request) {
  auto& m = metrics();
  const std::chrono::milliseconds timeout = request.timeout.count() > 0 ? request.timeout : options_.timeout;

  http::request<http::empty_body> head{request.method, request.target, 11};
  for (const auto& f : request.headers) head.insert(f.name(), f.name_string(), f.value());
  bool chunked = false;
  if (request.body != nullptr) {
    if (request.body_length) {
      head.content_length(*request.body_length);
    } else {
      head.chunked(true);
      chunked = true;
    }
  } else if (request.method == http::verb::put || request.method == http::verb::post) {
    head.content_length(0);
  } else {
    head.erase(http::field::content_length);
    head.erase(http::field::transfer_encoding);
  }
  std::string_view payload_hash = request.payload_hash;
  if (payload_hash.empty()) payload_hash = request.body != nullptr ? auth::kUnsignedPayload : auth::kEmptySha256;
  // An anonymous request goes upstream unsigned (only Host is set): the upstream's own
  // ACLs decide, and tagd's credentials never make a private object public (TAG bug 6).
  static const SigningCredentials kAnonymous{};
  sign_request(head.base(), head.method_string(), head.target(), pool_->endpoint().host_header, payload_hash,
               request.sign ? signing_ : kAnonymous, clock_.now());

  Attempt attempt;
  attempt.replayable = request.body == nullptr || request.body->replayable();
  attempt.idempotent = idempotent(request.method);
  for (;; ++attempt.number) {
    // Upstream latency as a client of tagd feels it per attempt: connection set-up (when
    // none was idle) included, retries each counted on their own.
    const auto attempt_start = std::chrono::steady_clock::now();
    // (No co_await inside ?: — GCC 12 miscompiles it.)
    Result<std::unique_ptr<Connection>> acquired = Status(ErrorCode::kInternalError, "unset");
    if (attempt.number == 0) {
      acquired = co_await pool_->acquire();
    } else {
      acquired = co_await pool_->connect();
    }
    Failure failure;
    std::optional<Status> error;
    if (!acquired) {
      failure.phase = FailurePhase::kConnect;
      failure.timeout = acquired.error().code() == ErrorCode::kGatewayTimeout;
      error = acquired.error();
    } else {
      std::unique_ptr<Connection> conn = std::move(acquired.value());
      m.upstream_requests.inc();
      AttemptResult r = co_await run_attempt(*conn, head, request, chunked, timeout);
      if (r.body_error) {
        spdlog::warn("upstream {} {}: request body failed, upload aborted: {}", head.method_string(), log_field(head.target()),
                     r.body_error->message());
        co_return *r.body_error;
      }
      if (r.parser) {
        m.upstream_latency.at().observe(std::chrono::steady_clock::now() - attempt_start);
        co_return std::unique_ptr<Response>(std::make_unique<PooledResponse>(
            *pool_, std::move(conn), std::move(r.parser), request.method == http::verb::head, r.reusable, timeout));
      }
      conn.reset();
      failure = r.failure;
      error = upstream_status(r.ec, r.what);
    }

    const RetryAction action = decide_retry(options_.retry, attempt, failure);
    if (action == RetryAction::kNo) {
      m.upstream_errors.inc();
      spdlog::warn("{}: {} {} (attempt {}, giving up): {}", describe(failure), head.method_string(), log_field(head.target()),
                   attempt.number + 1, error->message());
      co_return *error;
    }
    m.upstream_retries.inc();
    if (action == RetryAction::kNow) {
      spdlog::warn("{} on a pooled connection: {} {} (attempt {}), retrying at once: {}", describe(failure),
                   head.method_string(), log_field(head.target()), attempt.number + 1, error->message());
      continue;
    }
    const auto wait = backoff(options_.retry, attempt.number + 1, random_());
    spdlog::warn("{}: {} {} (attempt {}), retrying in {} ms: {}", describe(failure), head.method_string(),
                 log_field(head.target()), attempt.number + 1, wait.count(), error->message());
    asio::steady_timer timer(pool_->executor(), wait);
    co_await timer.async_wait(kTuple);
  }
}

}  // namespace

std::unique_ptr<Client> make_pooled_client(std::unique_ptr<Pool> pool, const SigningCredentials& signing,
                                           const Clock& clock, ClientOptions options) {
  return std::make_unique<PooledClient>(std::move(pool), signing, clock, options);
}

}  // namespace tagd::upstream
