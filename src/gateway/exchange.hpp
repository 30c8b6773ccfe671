#pragma once
// Internal to the gateway module: one request's state and the local-response helpers
// shared by the forwarding path (gateway.cpp) and the cache path (cached_reads.cpp).
#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/status.hpp>
#include <chrono>
#include <memory>
#include <string>

#include "tagd/auth/request_verifier.hpp"
#include "tagd/gateway/gateway.hpp"
#include "tagd/s3/operation.hpp"
#include "tagd/upstream/pool.hpp"

namespace tagd::gateway {

// Per-direction transfer unit. Memory per request is two of these at most on the
// forwarding path, whatever the object size.
inline constexpr std::size_t kPiece = 64 * 1024;

struct Exchange {
  ClientConnection& client;
  RequestParser& parser;
  std::string request_id = next_request_id();
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  s3::Target target;
  s3::Operation op;
  auth::VerifiedRequest verified;
  std::unique_ptr<char[]> piece = std::make_unique<char[]>(kPiece);
  int status = 0;
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;
  std::string error;
  std::string x_cache;  // set on object GET/HEAD responses: HIT, MISS, REVALIDATED, BYPASS, DISABLED
};

bool body_pending(const Exchange& ex);

// A small locally generated response; keeps the connection only if the request body was
// consumed and the client wants keep-alive.
boost::asio::awaitable<bool> send_local(const config::Config& config, Exchange& ex, boost::beast::http::status status,
                                        std::string content_type, std::string body, bool head_only = false);
boost::asio::awaitable<bool> send_error(const config::Config& config, Exchange& ex, const Status& error);

// Streams an upstream response whose head `parser` has read to the client (hop-by-hop
// headers dropped, X-Cache added, backpressure both ways) and returns the connection to
// the pool when the exchange ended cleanly.
boost::asio::awaitable<bool> relay_response(
    const config::Config& config, upstream::Pool& pool, Exchange& ex, std::unique_ptr<upstream::Connection> conn,
    boost::beast::http::response_parser<boost::beast::http::buffer_body>& parser);

}  // namespace tagd::gateway
