// The webhook POST over Beast: plain TCP or TLS, a fresh connection per batch, everything
// (resolve, connect, handshake, write, read) inside one deadline. It runs on its own
// io_context on the calling delivery thread, so a slow receiver only delays that
// endpoint's own queue.
#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <map>
#include <mutex>

#include "tagd/notify/transport.hpp"

namespace tagd::notify {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;

struct Url {
  bool tls = false;
  std::string host;
  std::string port;
  std::string target;
};

Result<Url> parse_url(const std::string& url) {
  Url u;
  std::string_view rest = url;
  if (rest.rfind("https://", 0) == 0) {
    u.tls = true;
    rest.remove_prefix(8);
  } else if (rest.rfind("http://", 0) == 0) {
    rest.remove_prefix(7);
  } else {
    return Status(ErrorCode::kInvalidArgument, "not an http(s) URL: " + url);
  }
  auto slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  u.target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  if (!authority.empty() && authority.front() == '[') {  // [v6]:port
    auto close = authority.find(']');
    if (close == std::string_view::npos) return Status(ErrorCode::kInvalidArgument, "bad host in " + url);
    u.host = std::string(authority.substr(1, close - 1));
    authority.remove_prefix(close + 1);
    if (!authority.empty() && authority.front() == ':') u.port = std::string(authority.substr(1));
  } else {
    auto colon = authority.rfind(':');
    u.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) u.port = std::string(authority.substr(colon + 1));
  }
  if (u.host.empty()) return Status(ErrorCode::kInvalidArgument, "no host in " + url);
  if (u.port.empty()) u.port = u.tls ? "443" : "80";
  return u;
}

class HttpTransport final : public Transport {
 public:
  Status post(const Endpoint& endpoint, const std::string& body, const HeaderPairs& headers,
              std::chrono::milliseconds timeout) override {
    auto url = parse_url(endpoint.url);
    if (!url) return url.error();
    asio::ssl::context* tls = nullptr;
    if (url->tls) {
      auto ctx = tls_context(endpoint);
      if (!ctx) return ctx.error();
      tls = *ctx;
    }
    bhttp::request<bhttp::string_body> req{bhttp::verb::post, url->target, 11};
    const bool default_port = url->port == (url->tls ? "443" : "80");
    req.set(bhttp::field::host, default_port ? url->host : url->host + ":" + url->port);
    req.set(bhttp::field::user_agent, "tagd-notify/1");
    for (const auto& [name, value] : headers) req.set(name, value);
    req.body() = body;
    req.prepare_payload();

    asio::io_context ctx(1);
    Status result(ErrorCode::kGatewayTimeout,
                  "webhook did not answer within " + std::to_string(timeout.count()) + " ms");
    bool done = false;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    asio::co_spawn(
        ctx,
        [&]() -> asio::awaitable<void> {
          result = co_await exchange(*url, tls, endpoint.tls_verify, req, deadline);
          done = true;
        },
        asio::detached);
    ctx.run_for(timeout + std::chrono::milliseconds(100));
    if (!done) ctx.stop();
    return result;
  }

 private:
  static asio::awaitable<Status> exchange(const Url& url, asio::ssl::context* tls, bool verify,
                                          bhttp::request<bhttp::string_body>& req,
                                          std::chrono::steady_clock::time_point deadline) {
    auto ex = co_await asio::this_coro::executor;
    tcp::resolver resolver(ex);
    auto tuple = asio::as_tuple(asio::use_awaitable);
    auto [rec, endpoints] = co_await resolver.async_resolve(url.host, url.port, tuple);
    if (rec) co_return Status(ErrorCode::kServiceUnavailable, "resolve " + url.host + ": " + rec.message());
    beast::flat_buffer buffer;
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(1 << 20);
    auto finish = [&](const boost::system::error_code& ec, const char* stage) -> Status {
      if (ec == beast::error::timeout)
        return Status(ErrorCode::kGatewayTimeout, std::string("webhook timed out (") + stage + ")");
      if (ec) return Status(ErrorCode::kBadGateway, std::string("webhook ") + stage + ": " + ec.message());
      const unsigned code = parser.get().result_int();
      if (code >= 200 && code < 300) return Status::ok();
      return Status(ErrorCode::kBadGateway, "webhook answered " + std::to_string(code));
    };
    if (tls == nullptr) {
      beast::tcp_stream stream(ex);
      stream.expires_at(deadline);
      auto [cec, ep] = co_await stream.async_connect(endpoints, tuple);
      if (cec) co_return finish(cec, "connect");
      auto [wec, wn] = co_await bhttp::async_write(stream, req, tuple);
      if (wec) co_return finish(wec, "write");
      auto [rdec, rn] = co_await bhttp::async_read(stream, buffer, parser, tuple);
      boost::system::error_code ignored;
      stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
      co_return finish(rdec, "read");
    }
    beast::ssl_stream<beast::tcp_stream> stream(ex, *tls);
    beast::get_lowest_layer(stream).expires_at(deadline);
    if (!SSL_set_tlsext_host_name(stream.native_handle(), url.host.c_str())) {
      co_return Status(ErrorCode::kBadGateway, "webhook TLS: cannot set SNI");
    }
    if (verify) stream.set_verify_callback(asio::ssl::host_name_verification(url.host));
    auto [cec, ep] = co_await beast::get_lowest_layer(stream).async_connect(endpoints, tuple);
    if (cec) co_return finish(cec, "connect");
    auto [hec] = co_await stream.async_handshake(asio::ssl::stream_base::client, tuple);
    if (hec) co_return finish(hec, "TLS handshake");
    auto [wec, wn] = co_await bhttp::async_write(stream, req, tuple);
    if (wec) co_return finish(wec, "write");
    auto [rdec, rn] = co_await bhttp::async_read(stream, buffer, parser, tuple);
    co_return finish(rdec, "read");
  }

  Result<asio::ssl::context*> tls_context(const Endpoint& endpoint) {
    std::lock_guard lock(mu_);
    auto& slot = tls_[endpoint.name];
    if (slot) return slot.get();
    auto ctx = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
    ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                     asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
    boost::system::error_code ec;
    ctx->set_default_verify_paths(ec);
    if (!endpoint.ca_file.empty()) {
      ctx->load_verify_file(endpoint.ca_file, ec);
      if (ec) return Status(ErrorCode::kInternalError, "cannot load " + endpoint.ca_file + ": " + ec.message());
    }
    ctx->set_verify_mode(endpoint.tls_verify ? asio::ssl::verify_peer : asio::ssl::verify_none);
    slot = std::move(ctx);
    return slot.get();
  }

  std::mutex mu_;
  std::map<std::string, std::unique_ptr<asio::ssl::context>> tls_;
};

}  // namespace

std::unique_ptr<Transport> make_http_transport() {
  return std::make_unique<HttpTransport>();
}

}  // namespace tagd::notify
