#pragma once
// One upstream exchange: acquire a connection, sign, write the head and the body, read
// the response head (skipping 1xx), retrying by retry_policy.hpp. Every request tagd
// sends upstream — forwarded, a cache fill, a revalidation — goes through a Client.
//
// Threading: one Client per event loop (it owns that loop's Pool); not thread-safe.
#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/verb.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "tagd/core/body_source.hpp"
#include "tagd/core/clock.hpp"
#include "tagd/core/status.hpp"
#include "tagd/upstream/pool.hpp"
#include "tagd/upstream/retry_policy.hpp"
#include "tagd/upstream/signer.hpp"

namespace tagd::upstream {

// The request body as it goes upstream (already framed: aws-chunked re-encoding is the
// caller's; HTTP chunked transfer coding is the client's).
class RequestBody {
 public:
  virtual ~RequestBody() = default;
  // Every byte is held in memory: the exchange may be replayed on a retry.
  [[nodiscard]] virtual bool replayable() const = 0;
  // Back to the first byte (called before a replay; only when replayable()).
  virtual void rewind() = 0;
  // The next bytes to send; an empty view once the body is done. An error aborts the
  // upload: the connection is reset (the upstream never sees the end of the body) and
  // the exchange fails with this Status unchanged.
  [[nodiscard]] virtual boost::asio::awaitable<Result<std::string_view>> next() = 0;
};

struct Request {
  boost::beast::http::verb method = boost::beast::http::verb::get;
  std::string target;  // origin-form, already encoded ("/bucket/key?versionId=...")
  // Headers to send. Host, Authorization, x-amz-date and x-amz-content-sha256 are set by
  // the client when it signs; Content-Length / Transfer-Encoding from body_length.
  boost::beast::http::fields headers;
  std::string payload_hash;        // x-amz-content-sha256 (empty-body hash when there is no body)
  bool sign = true;                // false: anonymous pass-through, sent unsigned
  RequestBody* body = nullptr;     // null: no body
  // With a body: its exact length, or nullopt to send it chunked. Without a body,
  // PUT and POST get Content-Length: 0.
  std::optional<std::uint64_t> body_length;
  std::chrono::milliseconds timeout{0};  // per read/write; 0: the client's default
};

// A response whose head has arrived. Reading the body to its end on a keep-alive
// connection returns the connection to the pool (a response without a body — HEAD, 304,
// Content-Length: 0 — returns it as soon as its head is read); destroying the response
// earlier closes it (an unread body must never be parsed as the next response).
// length() is 0 when bodyless(), the Content-Length otherwise, nullopt when chunked or
// delimited by the end of the connection.
class Response : public ResponseSource {
 public:
  // The body is chunked on the wire (unknown length until its end).
  [[nodiscard]] virtual bool chunked() const = 0;
  // A HEAD answer, 1xx, 204 or 304: no body follows, whatever the head says.
  [[nodiscard]] virtual bool bodyless() const = 0;
};

class Client {
 public:
  virtual ~Client() = default;
  // Errors (after retries): kServiceUnavailable (no connection), kGatewayTimeout
  // (timed out), kBadGateway (reset, garbage, TLS), or the RequestBody's own Status.
  // Each failed exchange counts once in upstream_errors_total; each retry in
  // upstream_retries_total.
  [[nodiscard]] virtual boost::asio::awaitable<Result<std::unique_ptr<Response>>> exchange(Request request) = 0;
  // Drops idle connections (drain).
  virtual void close_idle() = 0;
};

struct ClientOptions {
  RetryOptions retry;
  std::chrono::milliseconds timeout{60000};  // default per read/write timeout
};

// The real client over a keep-alive pool. `signing` and `clock` must outlive it.
std::unique_ptr<Client> make_pooled_client(std::unique_ptr<Pool> pool, const SigningCredentials& signing,
                                           const Clock& clock, ClientOptions options);

}  // namespace tagd::upstream
