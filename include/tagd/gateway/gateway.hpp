#pragma once
// The request handler: verify → authorize → (object read: the cache's read path) → else
// forward through the upstream client; every answer goes out through one
// http::ResponseWriter. One Gateway per event loop (it owns that loop's upstream client
// and read path); what it shares with other loops (config, credentials, cache) is
// read-only or has its own locks.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <functional>
#include <memory>
#include <string>

#include "tagd/auth/request_verifier.hpp"
#include "tagd/cache/object_cache.hpp"
#include "tagd/config/config.hpp"
#include "tagd/core/clock.hpp"
#include "tagd/http/response_writer.hpp"
#include "tagd/upstream/client.hpp"

namespace tagd::cache {
class ReadPath;
}
namespace tagd::notify {
class Notifier;
}

namespace tagd::gateway {

// The client side of one connection, as the handler sees it.
struct ClientConnection {
  http::ClientStream stream;  // plain or TLS
  boost::beast::flat_buffer& buffer;
  std::string peer;
};

struct Shared {
  const config::Config& config;
  const auth::RequestVerifier& verifier;
  const Clock& clock;
  std::function<bool()> ready;  // readiness for GET /ready
  // Upload notifications (src/notify); null when none are configured. Thread-safe.
  notify::Notifier* notifier = nullptr;
};

struct Exchange;  // one request's state (exchange.hpp)
class ObjectFetcher;

class Gateway {
 public:
  // `cache` may be null (cache disabled); it outlives the gateway. `executor` is the
  // gateway's event loop (fills run detached on it).
  Gateway(const Shared& shared, std::unique_ptr<upstream::Client> client, cache::ObjectCache* cache,
          boost::asio::any_io_executor executor);
  ~Gateway();
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  // Handles one request whose head `parser` has read. Returns whether the client
  // connection may carry another request (false: the caller closes it).
  boost::asio::awaitable<bool> handle(ClientConnection& client, http::RequestParser& parser);

  // Drops idle upstream connections (drain).
  void close_idle() { client_->close_idle(); }

 private:
  boost::asio::awaitable<void> dispatch(Exchange& ex);
  // An object GET/HEAD: the cache's read path decides, this writes its answer.
  boost::asio::awaitable<void> read_through_cache(Exchange& ex);
  boost::asio::awaitable<void> forward(Exchange& ex, CacheOutcome outcome);
  // Writes a head and its body (an upstream answer or a cached one) through the writer.
  boost::asio::awaitable<void> respond(Exchange& ex, boost::beast::http::response_header<>& head,
                                       std::optional<std::uint64_t> body_length, BodySource* body,
                                       CacheOutcome outcome);

  const Shared& shared_;
  std::unique_ptr<upstream::Client> client_;
  cache::ObjectCache* cache_ = nullptr;
  std::unique_ptr<ObjectFetcher> fetcher_;
  std::unique_ptr<cache::ReadPath> read_path_;
};

// Request ids: 16 upper-case hex characters, unique per process run.
std::string next_request_id();

}  // namespace tagd::gateway
