#include "tagd/server/server.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <atomic>
#include <functional>
#include <thread>
#include <unordered_set>

#include "tagd/core/metrics.hpp"
#include "tagd/http/framing.hpp"
#include "tagd/gateway/gateway.hpp"
#include "tagd/http/client_stream.hpp"
#include "tagd/http/response_writer.hpp"
#include "tagd/notify/notifier.hpp"
#include "tagd/server/systemd_notify.hpp"
#include "tagd/server/tls_listener.hpp"
#include "tagd/upstream/client.hpp"

namespace tagd::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using asio::ip::tcp;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

namespace {

struct SessionEntry {
  tcp::socket* socket = nullptr;
  bool in_request = false;
};

// The request head from what is already buffered: true when it was whole there (or is
// malformed: `ec`), false when more must be read (nothing consumed). Not inlined into the
// session coroutine (GCC 12 then warns about the coroutine frame's own operator delete).
[[gnu::noinline]] bool parse_buffered_head(tagd::http::RequestParser& parser, beast::flat_buffer& buffer,
                                           boost::system::error_code& ec) {
  if (buffer.size() == 0) return false;
  const std::size_t used = parser.put(buffer.data(), ec);
  buffer.consume(used);
  if (ec == bhttp::error::need_more) ec = {};
  return ec || parser.is_header_done();
}

// A TLS session's close_notify exchange gets this long; a peer that never answers it
// must not hold a drain (or a connection slot) any longer.
constexpr std::chrono::seconds kTlsShutdownTimeout{1};

struct Loop {
  explicit Loop(const config::Config&) : ctx(1), acceptor(ctx), drain_timer(ctx) {}
  asio::io_context ctx;
  tcp::acceptor acceptor;
  std::unique_ptr<gateway::Gateway> gateway;
  std::unordered_set<SessionEntry*> sessions;
  asio::steady_timer drain_timer;
  bool draining = false;
};

// Upload notifications, when notify.config_file names endpoints (src/notify/README.md).
std::unique_ptr<notify::Notifier> start_notifier(const config::Config& config, const Clock& clock) {
  if (config.notify_config_file.empty()) return nullptr;
  notify::Settings settings;
  try {
    settings = notify::load_settings(config.notify_config_file, config.cache_disk_path + "/notify.v1");
  } catch (const std::runtime_error& e) {
    throw config::ConfigError(
        std::string("invalid setting notify.config_file (flag --notify-config-file, env TAG_NOTIFY_CONFIG_FILE): ") +
        e.what());
  }
  return notify::Notifier::start(std::move(settings), notify::make_http_transport(), clock);
}

}  // namespace

struct Server::Impl {
  const config::Config& config;
  SystemClock clock;
  upstream::SigningCredentials signing;
  // Before `shared` and the loops: gateways use it until they are destroyed.
  std::unique_ptr<notify::Notifier> notifier;
  gateway::Shared shared;
  std::vector<std::unique_ptr<Loop>> loops;
  std::uint16_t port = 0;
  std::atomic<bool> stopping{false};
  std::unique_ptr<asio::signal_set> signals;  // loop 0 only
  std::unique_ptr<TlsListener> tls;           // null: plain HTTP
  std::function<bool()> reload_hook;

  Impl(const config::Config& c, const auth::RequestVerifier& v, upstream::SigningCredentials s)
      : config(c), signing(std::move(s)), notifier(start_notifier(c, clock)), shared{c, v, clock, {}} {
    shared.notifier = notifier.get();
  }

  asio::awaitable<void> accept_loop(Loop& loop);
  // limits.max_connections: whether a connection just accepted may be served.
  bool admit_connection();
  std::atomic<std::uint64_t> refused_in_burst{0};
  asio::awaitable<void> session(Loop& loop, tcp::socket socket);
  asio::awaitable<void> serve(Loop& loop, SessionEntry& entry, http::ClientStream stream, const std::string& peer);
  void drain(Loop& loop);
};

asio::awaitable<void> Server::Impl::accept_loop(Loop& loop) {
  for (;;) {
    auto [ec, socket] = co_await loop.acceptor.async_accept(kTuple);
    if (ec) {
      if (!loop.acceptor.is_open() || loop.draining) co_return;
      // EMFILE and friends: back off briefly instead of spinning.
      spdlog::warn("accept failed: {}", ec.message());
      asio::steady_timer t(loop.ctx, std::chrono::milliseconds(50));
      co_await t.async_wait(kTuple);
      continue;
    }
    boost::system::error_code ignored;
    if (!admit_connection()) {
      // Over limits.max_connections: accepted and reset at once (linger 0, no TIME_WAIT
      // here) rather than left in the backlog, so the client fails fast and retries.
      socket.set_option(asio::socket_base::linger(true, 0), ignored);
      socket.close(ignored);
      continue;
    }
    socket.set_option(tcp::no_delay(true), ignored);
    asio::co_spawn(loop.ctx, session(loop, std::move(socket)), asio::detached);
  }
}

bool Server::Impl::admit_connection() {
  auto& m = metrics();
  const unsigned cap = config.max_connections;
  if (cap == 0 || m.open_connections.get() < static_cast<std::int64_t>(cap)) {
    if (const std::uint64_t refused = refused_in_burst.exchange(0); refused > 0) {
      spdlog::info("connection cap: accepting again ({} connections refused in the burst)", refused);
    }
    return true;
  }
  m.shed_connections.inc();
  // One warning per burst: the first refusal after connections were accepted again.
  if (refused_in_burst.fetch_add(1) == 0) {
    spdlog::warn("connection cap reached (limits.max_connections={}): new connections are closed until some end", cap);
  }
  return false;
}

namespace {
// cache.sendfile: "always", "off", or "remote" (peers whose address is not a loopback one:
// other hosts, and containers on a bridge).
[[gnu::noinline]] bool sendfile_to(const std::string& mode, const tcp::socket& socket) {
  if (mode != "remote") return mode == "always";
  boost::system::error_code ec;
  const asio::ip::address peer = socket.remote_endpoint(ec).address();
  if (ec) return false;
  if (peer.is_v6() && peer.to_v6().is_v4_mapped()) {
    return !asio::ip::make_address_v4(asio::ip::v4_mapped, peer.to_v6()).is_loopback();
  }
  return !peer.is_loopback();
}
}  // namespace

asio::awaitable<void> Server::Impl::session(Loop& loop, tcp::socket socket) {
  auto& m = metrics();
  m.open_connections.add(1);
  SessionEntry entry;
  boost::system::error_code ignored;
  const std::string peer = socket.remote_endpoint(ignored).address().to_string();
  // A client on this host reads a hit faster from a fresh copy than from the block's own
  // pages (docs/architecture.md, "Disk I/O"): sendfile only for other hosts by default.
  const bool sendfile = sendfile_to(config.cache_sendfile, socket);
  if (!tls) {
    beast::tcp_stream stream(std::move(socket));
    entry.socket = &stream.socket();
    loop.sessions.insert(&entry);
    http::ConnectionDeadline deadline(loop.ctx.get_executor(), stream.socket());
    co_await serve(loop, entry, http::ClientStream(stream, &deadline, sendfile), peer);
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream.close();
  } else {
    // The session keeps the context it was accepted with: a SIGHUP reload publishes a
    // new one for later connections and cannot free this one.
    const std::shared_ptr<asio::ssl::context> context = tls->current();
    http::ClientStream::TlsStream stream(beast::tcp_stream(std::move(socket)), *context);
    auto& tcp = beast::get_lowest_layer(stream);
    entry.socket = &tcp.socket();
    loop.sessions.insert(&entry);
    // The handshake is part of the request head's budget: a client that connects and
    // says nothing is cut after header_timeout, as on plain HTTP.
    tcp.expires_after(config.header_timeout);
    auto [ec] = co_await stream.async_handshake(asio::ssl::stream_base::server, kTuple);
    if (ec) {
      m.tls_handshake_failures.inc();
      spdlog::debug("TLS handshake with {} failed: {}", peer, ec.message());
    } else {
      // Reads and writes from here on are timed by the connection's deadline; Beast's own
      // expiry (the handshake's) must not linger under them.
      tcp.expires_never();
      http::ConnectionDeadline deadline(loop.ctx.get_executor(), tcp.socket());
      co_await serve(loop, entry, http::ClientStream(stream, &deadline), peer);
      // A peer that let a deadline pass gets no close_notify: it is not listening, and the
      // exchange would hold the slot another kTlsShutdownTimeout.
      if (tcp.socket().is_open() && !deadline.expired()) {
        // close_notify, so a close-delimited body cannot be taken for a truncated one.
        tcp.expires_after(kTlsShutdownTimeout);
        auto [shutdown_ec] = co_await stream.async_shutdown(kTuple);
        (void)shutdown_ec;  // the peer may well have gone already
      }
    }
    tcp.socket().shutdown(tcp::socket::shutdown_send, ignored);
    tcp.close();
  }
  loop.sessions.erase(&entry);
  m.open_connections.add(-1);
  if (loop.draining && loop.sessions.empty()) loop.drain_timer.cancel();
}

// GCC 12 warns that the coroutine frame's own operator delete does not match its
// allocation (a false positive of its inlining; which code trips it moves with unrelated
// edits, see parse_buffered_head). The frame is Asio's, allocated and freed by Asio.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
asio::awaitable<void> Server::Impl::serve(Loop& loop, SessionEntry& entry, http::ClientStream stream,
                                          const std::string& peer) {
  auto& m = metrics();
  // The read buffer holds at most one request head (plus what arrived with it).
  beast::flat_buffer buffer(config.max_header_bytes + 64 * 1024);
  buffer.reserve(64 * 1024);  // request bodies are read through it: keep reads large
  gateway::ClientConnection client{stream, buffer, peer};

  while (!loop.draining) {
    entry.in_request = false;
    if (buffer.size() == 0) {
      // Keep-alive idle wait for the first byte of the next request.
      stream.expires_after(config.idle_timeout);
      auto [ec, n] = co_await stream.async_read_some(buffer.prepare(4096), kTuple);
      if (ec) break;
      buffer.commit(n);
    }
    entry.in_request = true;
    tagd::http::RequestParser parser;
    parser.header_limit(static_cast<std::uint32_t>(config.max_header_bytes));
    parser.body_limit(boost::none);
    // The head is usually whole in what the idle wait read: parsed here, without Beast's
    // read operation (which posts its completion through the loop even when it reads
    // nothing). The parser takes a head only whole, so what is left is read as before.
    boost::system::error_code ec;
    if (!parse_buffered_head(parser, buffer, ec)) {
      // The whole head must arrive within header_timeout, however it is trickled.
      stream.expires_after(config.header_timeout);
      auto [read_ec, read_n] = co_await bhttp::async_read_header(stream, buffer, parser, kTuple);
      (void)read_n;
      ec = read_ec;
    }
    Status error;
    if (ec) {
      if (ec == bhttp::error::header_limit) {
        error = Status(ErrorCode::kRequestHeaderSectionTooLarge, "Your request header section exceeds the maximum allowed size.");
      } else if (stream.timed_out(ec)) {
        m.client_timeouts.inc();
        spdlog::debug("client {} too slow sending a request head", client.peer);
      } else if (ec.category() == bhttp::make_error_code(bhttp::error::end_of_stream).category() && ec != bhttp::error::end_of_stream &&
                 ec != bhttp::error::partial_message) {
        error = Status(ErrorCode::kInvalidRequest, "malformed HTTP request: " + ec.message());
      }
    } else {
      // A body tagd cannot frame exactly must not be read as "no body" and run as the
      // next request: refuse and close.
      error = tagd::http::check_request_framing(parser.get().base(), parser.get().version());
      // And the parser that reads the body must agree that it is chunked.
      if (error.is_ok() && parser.get().base().find(bhttp::field::transfer_encoding) != parser.get().base().end() &&
          !parser.chunked()) {
        error = Status(ErrorCode::kInvalidRequest, "Transfer-Encoding: the body cannot be framed");
      }
    }
    if (ec || !error.is_ok()) {
      if (!error.is_ok()) {
        m.requests_total.inc();
        tagd::http::ResponseWriter writer(stream, parser, gateway::next_request_id(), config.idle_timeout);
        (void)co_await writer.send_error(error);
      }
      break;
    }
    bool keep_alive = co_await loop.gateway->handle(client, parser);
    if (!keep_alive) break;
  }
}
#pragma GCC diagnostic pop

void Server::Impl::drain(Loop& loop) {
  loop.draining = true;
  boost::system::error_code ignored;
  loop.acceptor.close(ignored);
  for (auto* s : loop.sessions) {
    if (!s->in_request) s->socket->close(ignored);  // idle keep-alive: nothing to lose
  }
  loop.gateway->close_idle();
  if (loop.sessions.empty()) return;
  loop.drain_timer.expires_after(config.drain_timeout);
  loop.drain_timer.async_wait([&loop](boost::system::error_code ec) {
    if (ec) return;  // cancelled: the last session finished
    spdlog::warn("drain timeout: closing {} connections with requests in flight", loop.sessions.size());
    loop.ctx.stop();
  });
}

Server::Server(const config::Config& config, const auth::RequestVerifier& verifier,
               upstream::SigningCredentials signing, asio::ssl::context* upstream_tls, cache::ObjectCache* cache)
    : impl_(std::make_unique<Impl>(config, verifier, std::move(signing))) {
  if (!config.tls_cert_file.empty()) {
    try {
      impl_->tls = std::make_unique<TlsListener>(config.tls_cert_file, config.tls_key_file);
    } catch (const std::runtime_error& e) {
      throw config::ConfigError(
          std::string("invalid setting tls.cert_file/tls.key_file (env TAG_TLS_CERT_FILE/TAG_TLS_KEY_FILE): ") +
          e.what());
    }
    const auto& info = impl_->tls->info();
    spdlog::info("TLS listener: certificate {} (serial {}), key {}", info.subject, info.serial, config.tls_key_file);
  }
  metrics().tls_enabled.set(impl_->tls ? 1 : 0);
  unsigned n = config.threads != 0 ? config.threads : std::max(1u, std::thread::hardware_concurrency());
  auto endpoint = upstream::Endpoint::parse(config.upstream_endpoint);
  upstream::PoolOptions pool_options;
  pool_options.connect_timeout = config.upstream_connect_timeout;
  pool_options.max_idle = config.upstream_max_idle_per_loop;
  upstream::ClientOptions client_options;
  client_options.retry.max_retries = config.upstream_retries;
  client_options.timeout = config.upstream_read_timeout;
  auto address = asio::ip::make_address(config.listen_address);
  std::uint16_t port = config.port;
  for (unsigned i = 0; i < n; ++i) {
    auto loop = std::make_unique<Loop>(config);
    tcp::endpoint ep(address, port);
    loop->acceptor.open(ep.protocol());
    loop->acceptor.set_option(asio::socket_base::reuse_address(true));
    int one = 1;
    ::setsockopt(loop->acceptor.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    loop->acceptor.bind(ep);  // throws: address in use, permission
    loop->acceptor.listen(asio::socket_base::max_listen_connections);
    port = loop->acceptor.local_endpoint().port();  // later loops share the port chosen by the first
    auto pool = std::make_unique<upstream::Pool>(loop->ctx.get_executor(), endpoint, upstream_tls, pool_options);
    loop->gateway = std::make_unique<gateway::Gateway>(
        impl_->shared, upstream::make_pooled_client(std::move(pool), impl_->signing, impl_->clock, client_options),
        cache, loop->ctx.get_executor());
    impl_->loops.push_back(std::move(loop));
  }
  impl_->port = port;
}

Server::~Server() = default;

std::uint16_t Server::port() const noexcept { return impl_->port; }

bool Server::tls() const noexcept { return impl_->tls != nullptr; }

void Server::set_reload_hook(std::function<bool()> hook) { impl_->reload_hook = std::move(hook); }

void Server::reload() {
  systemd::notify_reloading("reloading (SIGHUP)");
  bool ok = true;
  if (impl_->tls) {
    if (Status s = impl_->tls->reload(); s) {
      const auto& info = impl_->tls->info();
      spdlog::info("TLS certificate reloaded: {} (serial {}); new connections get it", info.subject, info.serial);
    } else {
      ok = false;
      const auto& info = impl_->tls->info();
      spdlog::error("TLS certificate reload refused, keeping {} (serial {}): {}", info.subject, info.serial,
                    s.message());
    }
  }
  if (impl_->reload_hook && !impl_->reload_hook()) ok = false;
  // Notification endpoints: the file is re-read whole (the default outbox as at start-up).
  if (impl_->notifier &&
      !impl_->notifier->reload(impl_->config.notify_config_file, impl_->config.cache_disk_path + "/notify.v1")) {
    ok = false;
  }
  systemd::notify(ok ? "READY=1\nSTATUS=serving; configuration reloaded"
                     : "READY=1\nSTATUS=serving; last reload failed (see the log), previous configuration kept");
}

void Server::stop() {
  if (impl_->stopping.exchange(true)) return;
  metrics().draining.set(1);
  systemd::notify("STOPPING=1\nSTATUS=draining: requests in flight finish, then tagd exits");
  spdlog::info("draining: no new connections; waiting up to {} ms for requests in flight",
               impl_->config.drain_timeout.count());
  for (auto& loop : impl_->loops) {
    asio::post(loop->ctx, [this, l = loop.get()] { impl_->drain(*l); });
  }
  asio::post(impl_->loops.front()->ctx, [this] {
    if (impl_->signals) impl_->signals->cancel();
  });
}

void Server::wait_for_signal() {
  impl_->signals->async_wait([this](boost::system::error_code ec, int sig) {
    if (ec) return;
    spdlog::info("signal {} received", sig);
    if (sig == SIGHUP) {
      reload();
      wait_for_signal();
      return;
    }
    stop();
  });
}

void Server::run() {
  impl_->signals = std::make_unique<asio::signal_set>(impl_->loops.front()->ctx, SIGINT, SIGTERM, SIGHUP);
  wait_for_signal();
  for (auto& loop : impl_->loops) asio::co_spawn(loop->ctx, impl_->accept_loop(*loop), asio::detached);
  // Bound and listening since the constructor: connections made from now on are served.
  systemd::notify("READY=1\nSTATUS=serving on " + std::string(impl_->tls ? "https" : "http") + "://" +
                  impl_->config.listen_address + ":" + std::to_string(impl_->port));
  // Each loop's run() returns once it has no work left: acceptor closed, sessions done,
  // drain timer cancelled (or the drain timeout stopped it).
  std::vector<std::thread> threads;
  for (std::size_t i = 1; i < impl_->loops.size(); ++i) {
    threads.emplace_back([l = impl_->loops[i].get()] { l->ctx.run(); });
  }
  impl_->loops.front()->ctx.run();
  for (auto& t : threads) t.join();
  impl_->signals.reset();
  spdlog::info("stopped");
}

}  // namespace tagd::server
