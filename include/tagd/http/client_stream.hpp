#pragma once
// The client side of one connection as every reader and writer of it sees it: a plain TCP
// stream, or TLS over one. A small non-owning handle (the listener owns the streams), so
// the gateway and the response writer are written once for both, and a plain connection
// costs one predictable branch per read or write instead of a second copy of every
// coroutine that touches a socket.
//
// It is an AsyncReadStream and AsyncWriteStream (Beast's and Asio's algorithms take it);
// the socket (abort, cancel) is always the TCP stream's underneath, and timeouts
// (expires_after) are the connection's ConnectionDeadline when it has one, else the TCP
// stream's own, so they behave the same with and without TLS.
#include <boost/asio/append.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <chrono>
#include <cstddef>
#include <memory>

namespace tagd::http {

// One timer per connection for every read and write on it, instead of Beast's per
// operation: a basic_stream with an expiry starts a timer wait with each operation and
// cancels it after, which ran a cancelled-timer handler and updated the loop's timer queue
// twice per request (about 6 % of a 1 KiB hit's CPU). Setting a deadline here is a store;
// the timer wakes once per deadline period, moves itself to the latest deadline if that
// was extended, and only when the deadline has passed cancels the socket's operations.
//
// What a timeout does differs from Beast's in two ways callers must know: the operation in
// flight completes with operation_aborted (ClientStream::timed_out tells), and the socket
// is cancelled, not closed (a deadline that passes while the request waits on something
// else, the upstream, must not end the connection; every caller closes or aborts after a
// failed read or write anyway). Until a new deadline is set, the socket is cancelled again
// now and then (a step of a composed read may have been queued, not waiting on the
// socket, when the deadline passed) and ClientStream starts no read or write.
//
// Threading: the connection's loop only. Lifetime: the listener's session owns it beside
// the socket; the timer's handler holds its state, so a wait outstanding at destruction
// is harmless.
class ConnectionDeadline {
 public:
  ConnectionDeadline(const boost::asio::any_io_executor& executor, boost::asio::ip::tcp::socket& socket);
  ~ConnectionDeadline();
  ConnectionDeadline(const ConnectionDeadline&) = delete;
  ConnectionDeadline& operator=(const ConnectionDeadline&) = delete;

  void expires_after(std::chrono::steady_clock::duration d);
  void expires_never();
  // The last deadline passed and the socket's operations were cancelled (cleared by the
  // next expires_after / expires_never).
  bool expired() const noexcept;

 private:
  struct State;
  static void arm(const std::shared_ptr<State>& state);
  static void wait_until(const std::shared_ptr<State>& state, std::chrono::steady_clock::time_point t);
  static void on_timer(const std::shared_ptr<State>& state);
  std::shared_ptr<State> state_;
};

class ClientStream {
 public:
  using TcpStream = boost::beast::tcp_stream;
  // Asio's TLS stream, not Beast's ssl_stream: Beast 1.81's flat_stream layer writes
  // nothing for a buffer sequence that starts with an empty buffer, which is what
  // asio::async_write passes on once a two-buffer write (head + body) has sent the head,
  // so the body was silently dropped. Asio's own write path skips empty buffers and
  // coalesces small ones (a head with the first body bytes) into one record.
  using TlsStream = boost::asio::ssl::stream<boost::beast::tcp_stream>;
  using executor_type = TcpStream::executor_type;

  // Implicit: a plain connection (and what tests that build a tcp_stream pass). Without a
  // ConnectionDeadline, timeouts are the TCP stream's own (Beast's, per operation).
  // `sendfile`: see sendfile_allowed().
  ClientStream(TcpStream& tcp, ConnectionDeadline* deadline = nullptr,  // NOLINT(google-explicit-constructor)
               bool sendfile = true) noexcept
      : tcp_(&tcp), deadline_(deadline), sendfile_(sendfile) {}
  explicit ClientStream(TlsStream& tls, ConnectionDeadline* deadline = nullptr) noexcept
      : tcp_(&boost::beast::get_lowest_layer(tls)), tls_(&tls), deadline_(deadline) {}

  bool is_tls() const noexcept { return tls_ != nullptr; }
  // Whether a writer may send file-backed pieces with sendfile: never over TLS; on plain
  // connections unless the server said otherwise (cache.sendfile "remote" keeps clients on
  // this host on the copy path).
  bool sendfile_allowed() const noexcept { return tls_ == nullptr && sendfile_; }
  TcpStream& tcp() const noexcept { return *tcp_; }
  boost::asio::ip::tcp::socket& socket() const noexcept { return tcp_->socket(); }
  executor_type get_executor() const noexcept { return tcp_->get_executor(); }
  template <class Duration>
  void expires_after(Duration d) const {
    if (deadline_ != nullptr) {
      deadline_->expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(d));
    } else {
      tcp_->expires_after(d);
    }
  }
  void expires_never() const {
    if (deadline_ != nullptr) {
      deadline_->expires_never();
    } else {
      tcp_->expires_never();
    }
  }
  // The last read or write failed because its deadline passed (with a ConnectionDeadline
  // it completes with operation_aborted; Beast's own timeout says error::timeout).
  bool timed_out(const boost::system::error_code& ec) const noexcept {
    return ec == boost::beast::error::timeout ||
           (ec == boost::asio::error::operation_aborted && deadline_ != nullptr && deadline_->expired());
  }

  // Waits until the socket can take more bytes, for a writer that sends by itself
  // (sendfile, plain connections only). Refused like a write once the deadline passed;
  // without a ConnectionDeadline it has no timeout of its own.
  template <class WaitToken>
  auto async_wait_writable(WaitToken&& token) const {
    return boost::asio::async_initiate<WaitToken, void(boost::system::error_code)>(
        [tcp = tcp_, deadline = deadline_](auto handler) {
          if (deadline != nullptr && deadline->expired()) {
            boost::asio::post(tcp->get_executor(),
                              boost::asio::append(std::move(handler), boost::asio::error::operation_aborted));
          } else {
            tcp->socket().async_wait(boost::asio::socket_base::wait_write, std::move(handler));
          }
        },
        token);
  }
  // The deadline passed (a writer that sends by itself checks before each send).
  bool deadline_passed() const noexcept { return deadline_ != nullptr && deadline_->expired(); }

  template <class MutableBufferSequence, class ReadToken>
  auto async_read_some(const MutableBufferSequence& buffers, ReadToken&& token) const {
    return boost::asio::async_initiate<ReadToken, void(boost::system::error_code, std::size_t)>(
        [tcp = tcp_, tls = tls_, deadline = deadline_](auto handler, const MutableBufferSequence& b) {
          if (deadline != nullptr && deadline->expired()) {
            refuse(*tcp, std::move(handler));
          } else if (tls != nullptr) {
            tls->async_read_some(b, std::move(handler));
          } else {
            tcp->async_read_some(b, std::move(handler));
          }
        },
        token, buffers);
  }

  template <class ConstBufferSequence, class WriteToken>
  auto async_write_some(const ConstBufferSequence& buffers, WriteToken&& token) const {
    return boost::asio::async_initiate<WriteToken, void(boost::system::error_code, std::size_t)>(
        [tcp = tcp_, tls = tls_, deadline = deadline_](auto handler, const ConstBufferSequence& b) {
          if (deadline != nullptr && deadline->expired()) {
            refuse(*tcp, std::move(handler));
          } else if (tls != nullptr) {
            tls->async_write_some(b, std::move(handler));
          } else {
            tcp->async_write_some(b, std::move(handler));
          }
        },
        token, buffers);
  }

 private:
  // A read or write past the deadline: completes at once, as cancelled.
  template <class Handler>
  static void refuse(TcpStream& tcp, Handler&& handler) {
    boost::asio::post(tcp.get_executor(), boost::asio::append(std::forward<Handler>(handler),
                                                              boost::asio::error::operation_aborted, std::size_t{0}));
  }

  TcpStream* tcp_;
  TlsStream* tls_ = nullptr;
  ConnectionDeadline* deadline_ = nullptr;
  bool sendfile_ = true;
};

}  // namespace tagd::http
