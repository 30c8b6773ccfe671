#pragma once
// The listener: one event loop per thread, each with its own SO_REUSEPORT acceptor,
// gateway and upstream client, so a request never crosses threads. The top of the stack:
// it owns the loops and sessions and hands each request head to its loop's gateway.
//
// Plain HTTP, or HTTPS when tls.cert_file/tls.key_file are set (tls_listener.hpp): each
// connection's handshake runs first, then the same session code serves it through an
// http::ClientStream.
//
// Lifecycle: construct (binds, throws on failure) → run() (blocks; tells systemd READY=1)
// → stop() from any thread or SIGINT/SIGTERM starts a drain (STOPPING=1): acceptors close,
// idle connections close, requests in flight finish (their responses carry Connection:
// close) until drain_timeout, then the loops stop and run() returns. SIGHUP runs reload().
#include <boost/asio/ssl/context.hpp>
#include <cstdint>
#include <functional>
#include <memory>

#include "tagd/auth/request_verifier.hpp"
#include "tagd/cache/object_cache.hpp"
#include "tagd/config/config.hpp"
#include "tagd/upstream/signer.hpp"

namespace tagd::server {

class Server {
 public:
  // `cache` may be null (cache disabled); it must outlive the server. Throws
  // config::ConfigError when the TLS certificate or key cannot be loaded.
  Server(const config::Config& config, const auth::RequestVerifier& verifier, upstream::SigningCredentials signing,
         boost::asio::ssl::context* upstream_tls, cache::ObjectCache* cache);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  std::uint16_t port() const noexcept;
  bool tls() const noexcept;

  // What SIGHUP does besides the TLS certificate (main reloads the client keys there);
  // returns whether it succeeded. Set before run().
  void set_reload_hook(std::function<bool()> hook);
  // SIGHUP: systemd hears RELOADING=1; the TLS certificate (when TLS is on) and then the
  // hook reload, each keeping what it had on failure; then READY=1 with a STATUS= line.
  // Runs on loop 0 (the signal's loop); connections are neither dropped nor paused.
  void reload();

  void run();
  void stop();

 private:
  void wait_for_signal();

  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tagd::server
