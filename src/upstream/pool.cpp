#include "tagd/upstream/pool.hpp"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <stdexcept>

#include "tagd/core/metrics.hpp"
#include "tagd/core/strings.hpp"

namespace tagd::upstream {

namespace asio = boost::asio;
namespace beast = boost::beast;
using asio::ip::tcp;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

Endpoint Endpoint::parse(const std::string& url) {
  Endpoint e;
  std::string rest;
  if (url.rfind("https://", 0) == 0) {
    e.tls = true;
    rest = url.substr(8);
  } else if (url.rfind("http://", 0) == 0) {
    rest = url.substr(7);
  } else {
    throw std::invalid_argument("endpoint must start with http:// or https://");
  }
  if (auto slash = rest.find('/'); slash != std::string::npos) rest.resize(slash);
  std::string host = rest;
  std::uint16_t port = e.tls ? 443 : 80;
  bool explicit_port = false;
  auto colon = rest.rfind(':');
  if (colon != std::string::npos && rest.find(']', colon) == std::string::npos) {
    host = rest.substr(0, colon);
    auto p = parse_u64(std::string_view(rest).substr(colon + 1));
    if (!p) throw std::invalid_argument("endpoint port is not a number");
    if (*p == 0 || *p > 65535) throw std::invalid_argument("endpoint port out of range");
    port = static_cast<std::uint16_t>(*p);
    explicit_port = true;
  }
  if (host.empty()) throw std::invalid_argument("endpoint has no host");
  e.host = host;
  e.port = port;
  e.host_header = explicit_port && port != (e.tls ? 443 : 80) ? host + ":" + std::to_string(port) : host;
  if (!e.host.empty() && e.host.front() == '[') e.host = e.host.substr(1, e.host.size() - 2);
  return e;
}

Connection::TcpStream& Connection::tcp() {
  return visit([](auto& s) -> TcpStream& { return beast::get_lowest_layer(s); });
}

void Connection::reset() {
  auto& sock = tcp().socket();
  boost::system::error_code ec;
  // SO_LINGER 0: close sends RST, so the upstream discards a partial request body
  // rather than waiting for (or accepting) its end.
  sock.set_option(asio::socket_base::linger(true, 0), ec);
  sock.close(ec);
}

Pool::Pool(asio::any_io_executor executor, Endpoint endpoint, asio::ssl::context* tls, PoolOptions options)
    : executor_(std::move(executor)), endpoint_(std::move(endpoint)), tls_(tls), options_(options) {}

namespace {
// True if an idle connection has neither data nor EOF pending: anything readable on an
// idle HTTP/1.1 connection means the peer closed it or broke the protocol.
bool looks_alive(Connection& c) {
  auto& sock = c.tcp().socket();
  if (!sock.is_open()) return false;
  char byte;
  ssize_t n = ::recv(sock.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}
}  // namespace

asio::awaitable<Result<std::unique_ptr<Connection>>> Pool::acquire() {
  auto now = std::chrono::steady_clock::now();
  while (!idle_.empty()) {
    auto c = std::move(idle_.back());
    idle_.pop_back();
    if (now - c->idle_since < options_.max_idle_age && looks_alive(*c)) {
      c->reused = true;
      metrics().upstream_connections_reused.inc();
      co_return std::move(c);
    }
  }
  auto fresh = co_await connect();
  co_return fresh;
}

asio::awaitable<Result<std::unique_ptr<Connection>>> Pool::connect() {
  auto now = std::chrono::steady_clock::now();
  if (resolved_.empty() || now - resolved_at_ > std::chrono::seconds(30)) {
    tcp::resolver resolver(executor_);
    auto [ec, results] =
        co_await resolver.async_resolve(endpoint_.host, std::to_string(endpoint_.port), kTuple);
    if (ec) {
      metrics().upstream_connect_errors.inc();
      co_return Status(ErrorCode::kServiceUnavailable, "cannot resolve upstream " + endpoint_.host + ": " + ec.message());
    }
    resolved_ = results;
    resolved_at_ = now;
  }
  beast::tcp_stream stream(executor_);
  stream.expires_after(options_.connect_timeout);
  auto [ec, ep] = co_await stream.async_connect(resolved_, kTuple);
  if (ec) {
    metrics().upstream_connect_errors.inc();
    if (ec == beast::error::timeout) {
      co_return Status(ErrorCode::kGatewayTimeout, "upstream connect timed out");
    }
    co_return Status(ErrorCode::kServiceUnavailable,
                     "cannot connect to upstream " + endpoint_.host_header + ": " + ec.message());
  }
  stream.socket().set_option(tcp::no_delay(true));
  metrics().upstream_connections_opened.inc();
  if (!endpoint_.tls) {
    stream.expires_never();
    co_return std::make_unique<Connection>(std::move(stream));
  }
  Connection::TlsStream tls(std::move(stream), *tls_);
  // The certificate must name the endpoint: OpenSSL's own check (rather than a verify
  // callback) so a mismatch is reported as X509_V_ERR_HOSTNAME_MISMATCH / IP mismatch.
  // IP literals get an IP check and no SNI (RFC 6066 allows only host names there).
  boost::system::error_code ip_ec;
  asio::ip::make_address(endpoint_.host, ip_ec);
  X509_VERIFY_PARAM* param = SSL_get0_param(tls.native_handle());
  if (!ip_ec) {
    if (X509_VERIFY_PARAM_set1_ip_asc(param, endpoint_.host.c_str()) != 1) {
      co_return Status(ErrorCode::kBadGateway, "cannot set the TLS peer address check for upstream");
    }
  } else {
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (SSL_set1_host(tls.native_handle(), endpoint_.host.c_str()) != 1 ||
        !SSL_set_tlsext_host_name(tls.native_handle(), endpoint_.host.c_str())) {
      co_return Status(ErrorCode::kBadGateway, "cannot set TLS SNI / host name check for upstream");
    }
  }
  auto [hec] = co_await tls.async_handshake(asio::ssl::stream_base::client, kTuple);
  if (hec == beast::error::timeout) {
    // Accepted but never completed the handshake: a slow upstream, not a bad certificate.
    metrics().upstream_tls_errors.inc();
    spdlog::warn("upstream TLS handshake with {} timed out", endpoint_.host_header);
    co_return Status(ErrorCode::kGatewayTimeout, "upstream TLS handshake with " + endpoint_.host_header + " timed out");
  }
  if (hec) {
    metrics().upstream_tls_errors.inc();
    long verify = SSL_get_verify_result(tls.native_handle());
    // Name a certificate problem as such: it is the one an operator can act on (CA file).
    std::string why = verify != X509_V_OK
                          ? std::string("certificate verification failed: ") + X509_verify_cert_error_string(verify)
                          : hec.message();
    spdlog::warn("upstream TLS handshake with {} failed: {}", endpoint_.host_header, why);
    co_return Status(ErrorCode::kBadGateway,
                     "upstream TLS handshake with " + endpoint_.host_header + " failed: " + why);
  }
  beast::get_lowest_layer(tls).expires_never();
  co_return std::make_unique<Connection>(std::move(tls));
}

void Pool::release(std::unique_ptr<Connection> connection) {
  if (idle_.size() >= options_.max_idle) return;  // dropping closes it
  connection->idle_since = std::chrono::steady_clock::now();
  connection->tcp().expires_never();
  idle_.push_back(std::move(connection));
}

std::unique_ptr<asio::ssl::context> make_tls_context(const std::string& ca_file, bool verify) {
  auto ctx = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
  ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                   asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
  boost::system::error_code ec;
  ctx->set_default_verify_paths(ec);
  if (ec) spdlog::warn("no system CA store: {}", ec.message());
  if (!ca_file.empty()) {
    ctx->load_verify_file(ca_file, ec);
    if (ec) throw std::runtime_error("invalid setting upstream.ca_file: cannot load " + ca_file + ": " + ec.message());
  }
  ctx->set_verify_mode(verify ? asio::ssl::verify_peer : asio::ssl::verify_none);
  return ctx;
}

}  // namespace tagd::upstream
