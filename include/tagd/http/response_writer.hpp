#pragma once
// Every response tagd sends a client goes through one ResponseWriter: local answers,
// S3 errors, relayed upstream responses and cached objects alike. The rules live here
// once: keep-alive (only if the client wants it, the request body was consumed and the
// server is not draining), HTTP/1.0 clients (an HTTP/1.0 head, never chunked: a body of
// unknown length is delimited by closing), hop-by-hop headers dropped, the X-Cache
// header and its counter from one CacheOutcome, the status-class counters, and an abort
// that resets the connection so a short body can never pass for a whole one.
//
// One writer per request; used from the connection's event loop only.
#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/status.hpp>
#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <array>
#include <string>
#include <string_view>

#include "tagd/core/body_source.hpp"
#include "tagd/core/cache_outcome.hpp"
#include "tagd/core/status.hpp"
#include "tagd/http/client_stream.hpp"

namespace tagd::http {

using RequestParser = boost::beast::http::request_parser<boost::beast::http::buffer_body>;

class ResponseWriter {
 public:
  // `parser` has read the request head (its body may be unread); `request_id` goes into
  // x-amz-request-id when the head has none (a relayed upstream id is kept).
  ResponseWriter(ClientStream stream, const RequestParser& parser, std::string_view request_id,
                 std::chrono::milliseconds idle_timeout);

  // Writes the head. `body_length`: the exact body length (Content-Length), or nullopt
  // for a body of unknown length (chunked to HTTP/1.1 clients, close-delimited to
  // HTTP/1.0). Responses without a body (HEAD requests, 1xx/204/304) keep the head's
  // Content-Length as the length of the entity and send no body. Hop-by-hop headers in
  // `head` are dropped; Server and x-amz-request-id are added when missing. What went out
  // is the writer's business: `head` may be left as it was given (a head with a
  // Content-Length body is serialised straight from it, without adding fields to it).
  [[nodiscard]] boost::asio::awaitable<Status> write_head(boost::beast::http::response_header<>& head,
                                                          std::optional<std::uint64_t> body_length,
                                                          CacheOutcome outcome = CacheOutcome::kNone);
  // The head of a GET's answer with a body of `body_length` (> 0) bytes whose fields were
  // serialised beforehand (a cached object's prepared head): the status line, `fields`
  // verbatim ("Name: value\r\n" each; none may be Content-Length, X-Cache, Server,
  // x-amz-request-id or hop-by-hop), then what write_head adds — the same bytes write_head
  // would send for a head with those fields. It leaves with the first body bytes; nothing
  // is allocated for a head that fits pending_inline_. kInternalError (nothing written)
  // when the request is a HEAD, the status has no body or `body_length` is 0: build a head
  // for write_head then.
  [[nodiscard]] Status write_head_prepared(boost::beast::http::status status, std::span<const std::string_view> fields,
                                           std::uint64_t body_length, CacheOutcome outcome = CacheOutcome::kNone);
  // Body bytes (framed as a chunk when the head chose chunked). Error: the client went
  // away or stopped reading (kRequestTimeout); counted in client_aborts_total.
  [[nodiscard]] boost::asio::awaitable<Status> write_body(std::string_view bytes);
  // Ends the body (the last chunk when chunked). Also checks that a Content-Length body
  // was written whole (kInternalError otherwise, and the connection is aborted).
  [[nodiscard]] boost::asio::awaitable<Status> finish();
  // Streams `body` to its end through `buffer`, one read then one write at a time (the
  // source is not read again until the client took the last piece). A source error
  // aborts the connection and is returned.
  [[nodiscard]] boost::asio::awaitable<Status> write_body_from(BodySource& body, std::span<char> buffer);
  // Resets the connection (RST): used once a head is out and the body cannot be completed.
  void abort();

  // A complete small response: head and body (no body sent for HEAD requests).
  [[nodiscard]] boost::asio::awaitable<Status> send(boost::beast::http::status status, std::string_view content_type,
                                                    std::string body, CacheOutcome outcome = CacheOutcome::kNone);
  // An S3 error document for `error` (Code, Message, Resource = the request path,
  // RequestId), with the status that belongs to its code.
  [[nodiscard]] boost::asio::awaitable<Status> send_error(const Status& error,
                                                          CacheOutcome outcome = CacheOutcome::kNone);

  // Whether the connection may carry another request: the head said keep-alive, the
  // response was written whole, nothing was aborted, and the request body was consumed.
  [[nodiscard]] bool keep_alive() const;
  bool head_written() const noexcept { return head_written_; }
  int status() const noexcept { return status_; }
  std::uint64_t body_bytes() const noexcept { return body_bytes_; }
  std::string_view x_cache() const noexcept { return x_cache_label(outcome_); }
  std::string_view request_id() const noexcept {
    return request_id_long_.empty() ? std::string_view(request_id_.data(), request_id_size_)
                                    : std::string_view(request_id_long_);
  }

 private:
  // write_body for a piece whose bytes lie in a file (BodySource::lend_piece_file): sent
  // from there with sendfile, so the socket queues the file's pages instead of a copy.
  boost::asio::awaitable<Status> write_body_file(std::span<const char> piece, PieceFile file);
  // What write_body checks before sending `n` bytes; an error aborts the connection.
  Status check_body_piece(std::size_t n);
  // A failed write to the client: counted, the connection reset, kRequestTimeout.
  Status client_went_away(std::string_view when, const boost::system::error_code& ec);
  // finish() for a head that did not choose chunked coding: nothing to write, so no
  // coroutine frame (write_body_from ends every cached body this way).
  Status finish_unchunked();
  ClientStream stream_;
  const RequestParser& parser_;
  // Held inline (tagd's ids are 16 characters): no allocation per request.
  std::array<char, 32> request_id_;
  std::size_t request_id_size_ = 0;
  std::string request_id_long_;  // an id longer than request_id_
  std::chrono::milliseconds idle_timeout_;
  bool head_written_ = false;
  bool keep_alive_ = false;
  bool chunked_ = false;
  bool no_body_ = false;
  bool finished_ = false;
  bool aborted_ = false;
  std::optional<std::uint64_t> expected_body_;
  // Serialises a Content-Length head straight from `head` into the pending head.
  void serialize_pending(const boost::beast::http::response_header<>& head, bool http11);
  void append_status_line(bool http11, unsigned status, std::string_view reason);
  // Content-Length, Connection, Server and x-amz-request-id when missing, X-Cache, the end.
  void append_writer_fields(bool http11, bool has_server, bool has_request_id);
  void append_pending(std::string_view text);
  std::string_view pending_head() const noexcept;
  void clear_pending() noexcept;

  // A Content-Length head not sent yet: it leaves with the first body bytes. Held inline
  // (the writer lives in the request's frame: no allocation per response) unless it
  // outgrows pending_inline_, then in pending_head_.
  std::array<char, 1024> pending_inline_;
  std::size_t pending_inline_size_ = 0;
  std::string pending_head_;
  int status_ = 0;
  std::uint64_t body_bytes_ = 0;
  CacheOutcome outcome_ = CacheOutcome::kNone;
};

}  // namespace tagd::http
