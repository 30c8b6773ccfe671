#pragma once
// The listener: one event loop per thread, each with its own SO_REUSEPORT acceptor,
// gateway and upstream client, so a request never crosses threads. The top of the stack:
// it owns the loops and sessions and hands each request head to its loop's gateway.
//
// Lifecycle: construct (binds, throws on failure) → run() (blocks) → stop() from any
// thread or SIGINT/SIGTERM starts a drain: acceptors close, idle connections close,
// requests in flight finish (their responses carry Connection: close) until
// drain_timeout, then the loops stop and run() returns.
#include <boost/asio/ssl/context.hpp>
#include <cstdint>
#include <memory>

#include "tagd/auth/request_verifier.hpp"
#include "tagd/cache/object_cache.hpp"
#include "tagd/config/config.hpp"
#include "tagd/upstream/signer.hpp"

namespace tagd::server {

class Server {
 public:
  // `cache` may be null (cache disabled); it must outlive the server.
  Server(const config::Config& config, const auth::RequestVerifier& verifier, upstream::SigningCredentials signing,
         boost::asio::ssl::context* upstream_tls, cache::ObjectCache* cache);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  std::uint16_t port() const noexcept;
  void run();
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tagd::server
