#pragma once
// Keep-alive connections to the upstream endpoint (HTTP or HTTPS). One Pool per event
// loop: it is only touched from its loop's thread, so it needs no locking.
//
// Lifecycle: a connection is acquired for exactly one exchange and released only when
// that exchange ended cleanly (request fully sent, response fully read, keep-alive);
// anything else drops it. Idle connections are checked with a non-blocking peek before
// reuse, so a peer that closed while idle costs no failed request.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <chrono>
#include <deque>
#include <memory>
#include <string>
#include <variant>

#include "tagd/core/status.hpp"

namespace tagd::upstream {

struct Endpoint {
  bool tls = false;
  std::string host;
  std::uint16_t port = 0;
  std::string host_header;  // "host" or "host:port" when the port is not the scheme's default

  // "https://t3.storage.dev" → {tls, host, 443}. Throws std::invalid_argument.
  static Endpoint parse(const std::string& url);
};

class Connection {
 public:
  using TcpStream = boost::beast::tcp_stream;
  using TlsStream = boost::beast::ssl_stream<boost::beast::tcp_stream>;

  // The read buffer starts at 64 KiB: Beast sizes each read by the buffer's free capacity,
  // and a small buffer turned a 1 MiB body into hundreds of 3 KiB recvmsg calls.
  explicit Connection(TcpStream stream) : stream_(std::move(stream)) { buffer_.reserve(kReadBuffer); }
  explicit Connection(TlsStream stream) : stream_(std::move(stream)) { buffer_.reserve(kReadBuffer); }
  static constexpr std::size_t kReadBuffer = 64 * 1024;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  TcpStream& tcp();
  // Calls fn with the concrete stream (TcpStream& or TlsStream&).
  template <class Fn>
  decltype(auto) visit(Fn&& fn) {
    return std::visit(std::forward<Fn>(fn), stream_);
  }
  boost::beast::flat_buffer& buffer() { return buffer_; }
  // Hard close: used to abort a request so the upstream never sees its end.
  void reset();

  bool reused = false;
  std::chrono::steady_clock::time_point idle_since{};

 private:
  std::variant<TcpStream, TlsStream> stream_;
  boost::beast::flat_buffer buffer_;
};

struct PoolOptions {
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds max_idle_age{15000};  // below common server keep-alive limits
  unsigned max_idle = 64;
};

class Pool {
 public:
  Pool(boost::asio::any_io_executor executor, Endpoint endpoint, boost::asio::ssl::context* tls,
       PoolOptions options);
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // An idle connection that still looks alive, or a newly connected one. Errors:
  // kServiceUnavailable (refused/unresolvable), kGatewayTimeout (connect timed out),
  // kBadGateway (TLS handshake or certificate verification failed).
  boost::asio::awaitable<Result<std::unique_ptr<Connection>>> acquire();
  // A fresh connection, never a pooled one (retries after a stale-connection failure).
  boost::asio::awaitable<Result<std::unique_ptr<Connection>>> connect();
  void release(std::unique_ptr<Connection> connection);
  void clear() { idle_.clear(); }

  const Endpoint& endpoint() const noexcept { return endpoint_; }
  const boost::asio::any_io_executor& executor() const noexcept { return executor_; }
  std::size_t idle_count() const noexcept { return idle_.size(); }

 private:
  boost::asio::any_io_executor executor_;
  Endpoint endpoint_;
  boost::asio::ssl::context* tls_;
  PoolOptions options_;
  std::deque<std::unique_ptr<Connection>> idle_;  // back = most recently used
  boost::asio::ip::tcp::resolver::results_type resolved_;
  std::chrono::steady_clock::time_point resolved_at_{};
};

// Builds the TLS client context: system trust store plus an optional PEM CA file.
// Throws std::runtime_error (start-up only).
std::unique_ptr<boost::asio::ssl::context> make_tls_context(const std::string& ca_file, bool verify);

}  // namespace tagd::upstream
