#pragma once
// The request handler: verify → authorize → re-sign → forward, streaming both bodies.
// One Gateway per event loop (it owns that loop's upstream pool); everything it touches
// from other loops (config, credentials) is read-only after start-up.
#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <functional>
#include <memory>
#include <string>

#include "tagd/auth/request_verifier.hpp"
#include "tagd/cache/object_cache.hpp"
#include "tagd/config/config.hpp"
#include "tagd/upstream/pool.hpp"
#include "tagd/upstream/signer.hpp"

namespace tagd::gateway {

using RequestParser = boost::beast::http::request_parser<boost::beast::http::buffer_body>;

// The client side of one connection, as the handler sees it.
struct ClientConnection {
  boost::beast::tcp_stream& stream;
  boost::beast::flat_buffer& buffer;
  std::string peer;
};

struct Shared {
  const config::Config& config;
  const auth::RequestVerifier& verifier;
  upstream::SigningCredentials signing;
  std::function<bool()> ready;  // readiness for GET /ready
};

struct Exchange;  // one request's state (gateway.cpp)

class CachedReads;  // cached_reads.hpp (module-internal)

class Gateway {
 public:
  // `cache` may be null (cache disabled); it outlives the gateway.
  Gateway(const Shared& shared, std::unique_ptr<upstream::Pool> pool, cache::ObjectCache* cache);
  ~Gateway();
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  // Handles one request whose head `parser` has read. Returns whether the client
  // connection may carry another request (false: the caller closes it).
  boost::asio::awaitable<bool> handle(ClientConnection& client, RequestParser& parser);

  upstream::Pool& pool() { return *pool_; }

 private:
  boost::asio::awaitable<bool> dispatch(Exchange& ex);
  boost::asio::awaitable<bool> forward(Exchange& ex);

  const Shared& shared_;
  std::unique_ptr<upstream::Pool> pool_;
  std::unique_ptr<CachedReads> cached_reads_;
  cache::ObjectCache* cache_ = nullptr;
};

// Request ids: 16 upper-case hex characters, unique per process run.
std::string next_request_id();

}  // namespace tagd::gateway
