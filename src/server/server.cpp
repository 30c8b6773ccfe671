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
#include <atomic>
#include <thread>
#include <unordered_set>

#include "tagd/core/metrics.hpp"
#include "tagd/http/framing.hpp"
#include "tagd/gateway/gateway.hpp"
#include "tagd/http/response_writer.hpp"
#include "tagd/upstream/client.hpp"

namespace tagd::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using asio::ip::tcp;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

namespace {

struct SessionEntry {
  beast::tcp_stream* stream = nullptr;
  bool in_request = false;
};

struct Loop {
  explicit Loop(const config::Config&) : ctx(1), acceptor(ctx), drain_timer(ctx) {}
  asio::io_context ctx;
  tcp::acceptor acceptor;
  std::unique_ptr<gateway::Gateway> gateway;
  std::unordered_set<SessionEntry*> sessions;
  asio::steady_timer drain_timer;
  bool draining = false;
};

}  // namespace

struct Server::Impl {
  const config::Config& config;
  SystemClock clock;
  upstream::SigningCredentials signing;
  gateway::Shared shared;
  std::vector<std::unique_ptr<Loop>> loops;
  std::uint16_t port = 0;
  std::atomic<bool> stopping{false};
  std::unique_ptr<asio::signal_set> signals;  // loop 0 only

  Impl(const config::Config& c, const auth::RequestVerifier& v, upstream::SigningCredentials s)
      : config(c), signing(std::move(s)), shared{c, v, clock, {}} {}

  asio::awaitable<void> accept_loop(Loop& loop);
  asio::awaitable<void> session(Loop& loop, tcp::socket socket);
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
    socket.set_option(tcp::no_delay(true), ignored);
    asio::co_spawn(loop.ctx, session(loop, std::move(socket)), asio::detached);
  }
}

asio::awaitable<void> Server::Impl::session(Loop& loop, tcp::socket socket) {
  auto& m = metrics();
  m.open_connections.add(1);
  SessionEntry entry;
  boost::system::error_code ignored;
  auto ep = socket.remote_endpoint(ignored);
  beast::tcp_stream stream(std::move(socket));
  entry.stream = &stream;
  loop.sessions.insert(&entry);
  // The read buffer holds at most one request head (plus what arrived with it).
  beast::flat_buffer buffer(config.max_header_bytes + 64 * 1024);
  buffer.reserve(64 * 1024);  // request bodies are read through it: keep reads large
  gateway::ClientConnection client{stream, buffer, ep.address().to_string()};

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
    // The whole head must arrive within header_timeout, however it is trickled.
    stream.expires_after(config.header_timeout);
    auto [ec, n] = co_await bhttp::async_read_header(stream, buffer, parser, kTuple);
    Status error;
    if (ec) {
      if (ec == bhttp::error::header_limit) {
        error = Status(ErrorCode::kRequestHeaderSectionTooLarge, "Your request header section exceeds the maximum allowed size.");
      } else if (ec == beast::error::timeout) {
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
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  stream.close();
  loop.sessions.erase(&entry);
  m.open_connections.add(-1);
  if (loop.draining && loop.sessions.empty()) loop.drain_timer.cancel();
}

void Server::Impl::drain(Loop& loop) {
  loop.draining = true;
  boost::system::error_code ignored;
  loop.acceptor.close(ignored);
  for (auto* s : loop.sessions) {
    if (!s->in_request) s->stream->socket().close(ignored);  // idle keep-alive: nothing to lose
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

void Server::stop() {
  if (impl_->stopping.exchange(true)) return;
  metrics().draining.set(1);
  spdlog::info("draining: no new connections; waiting up to {} ms for requests in flight",
               impl_->config.drain_timeout.count());
  for (auto& loop : impl_->loops) {
    asio::post(loop->ctx, [this, l = loop.get()] { impl_->drain(*l); });
  }
  asio::post(impl_->loops.front()->ctx, [this] {
    if (impl_->signals) impl_->signals->cancel();
  });
}

void Server::run() {
  impl_->signals = std::make_unique<asio::signal_set>(impl_->loops.front()->ctx, SIGINT, SIGTERM);
  impl_->signals->async_wait([this](boost::system::error_code ec, int sig) {
    if (ec) return;
    spdlog::info("signal {} received", sig);
    stop();
  });
  for (auto& loop : impl_->loops) asio::co_spawn(loop->ctx, impl_->accept_loop(*loop), asio::detached);
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
