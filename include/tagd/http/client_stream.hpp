#pragma once
// The client side of one connection as every reader and writer of it sees it: a plain TCP
// stream, or TLS over one. A small non-owning handle (the listener owns the streams), so
// the gateway and the response writer are written once for both, and a plain connection
// costs one predictable branch per read or write instead of a second copy of every
// coroutine that touches a socket.
//
// It is an AsyncReadStream and AsyncWriteStream (Beast's and Asio's algorithms take it);
// timeouts (expires_after) and the socket (abort, cancel) are always those of the TCP
// stream underneath, so they behave the same with and without TLS.
#include <boost/asio/async_result.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <cstddef>

namespace tagd::http {

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

  // Implicit: a plain connection (and what tests that build a tcp_stream pass).
  ClientStream(TcpStream& tcp) noexcept : tcp_(&tcp) {}  // NOLINT(google-explicit-constructor)
  explicit ClientStream(TlsStream& tls) noexcept : tcp_(&boost::beast::get_lowest_layer(tls)), tls_(&tls) {}

  bool is_tls() const noexcept { return tls_ != nullptr; }
  TcpStream& tcp() const noexcept { return *tcp_; }
  boost::asio::ip::tcp::socket& socket() const noexcept { return tcp_->socket(); }
  executor_type get_executor() const noexcept { return tcp_->get_executor(); }
  template <class Duration>
  void expires_after(Duration d) const {
    tcp_->expires_after(d);
  }
  void expires_never() const { tcp_->expires_never(); }

  template <class MutableBufferSequence, class ReadToken>
  auto async_read_some(const MutableBufferSequence& buffers, ReadToken&& token) const {
    return boost::asio::async_initiate<ReadToken, void(boost::system::error_code, std::size_t)>(
        [tcp = tcp_, tls = tls_](auto handler, const MutableBufferSequence& b) {
          if (tls != nullptr) {
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
        [tcp = tcp_, tls = tls_](auto handler, const ConstBufferSequence& b) {
          if (tls != nullptr) {
            tls->async_write_some(b, std::move(handler));
          } else {
            tcp->async_write_some(b, std::move(handler));
          }
        },
        token, buffers);
  }

 private:
  TcpStream* tcp_;
  TlsStream* tls_ = nullptr;
};

}  // namespace tagd::http
