#include "tagd/http/response_writer.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/chunk_encode.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/write.hpp>
#include <fcntl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cassert>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <utility>
#include <vector>

#include "tagd/core/metrics.hpp"
#include "tagd/core/strings.hpp"
#include "tagd/s3/request.hpp"

namespace tagd::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

namespace {

// Headers that describe one hop (RFC 9110 7.6.1, plus the non-standard ones proxies use).
bool hop_by_hop(std::string_view name) {
  static constexpr std::string_view kHop[] = {"connection", "keep-alive", "proxy-connection", "te",
                                              "trailer",    "transfer-encoding", "upgrade"};
  for (auto h : kHop) {
    if (iequals(name, h)) return true;
  }
  return false;
}

// Drops the hop-by-hop headers of `head`, including every header the Connection header
// names ("Connection: close, X-Foo" drops X-Foo).
void drop_hop_by_hop(bhttp::response_header<>& head) {
  std::vector<std::string> drop;
  for (const auto& f : head) {
    if (!iequals(f.name_string(), "connection")) continue;
    std::string_view value = f.value();
    while (!value.empty()) {
      auto comma = value.find(',');
      std::string_view token = trim_ows(value.substr(0, comma));
      if (!token.empty()) drop.emplace_back(token);
      if (comma == std::string_view::npos) break;
      value.remove_prefix(comma + 1);
    }
  }
  for (const auto& f : head) {
    if (hop_by_hop(f.name_string())) drop.emplace_back(f.name_string());
  }
  for (const auto& name : drop) head.erase(name);  // erases every field of that name, case-insensitively
}

// 1xx interim heads are not final responses and have no class counter.
void count_status_class(int status) {
  auto& m = metrics();
  if (status < 200) return;
  if (status < 300) m.responses_2xx.inc();
  else if (status < 400) m.responses_3xx.inc();
  else if (status < 500) m.responses_4xx.inc();
  else m.responses_5xx.inc();
}

bool bodyless_status(int status) { return status < 200 || status == 204 || status == 304; }

// Whether the head's Connection header(s) name `name` ("Connection: close, X-Foo" makes
// X-Foo hop-by-hop).
bool named_in_connection(const bhttp::response_header<>& head, std::string_view name) {
  for (const auto& f : head) {
    if (f.name() != bhttp::field::connection) continue;
    std::string_view value = f.value();
    while (!value.empty()) {
      auto comma = value.find(',');
      if (iequals(trim_ows(value.substr(0, comma)), name)) return true;
      if (comma == std::string_view::npos) break;
      value.remove_prefix(comma + 1);
    }
  }
  return false;
}

}  // namespace

ResponseWriter::ResponseWriter(ClientStream stream, const RequestParser& parser, std::string_view request_id,
                               std::chrono::milliseconds idle_timeout)
    : stream_(stream), parser_(parser), idle_timeout_(idle_timeout) {
  if (request_id.size() <= request_id_.size()) {
    std::memcpy(request_id_.data(), request_id.data(), request_id.size());
    request_id_size_ = request_id.size();
  } else {
    request_id_long_ = std::string(request_id);
  }
}

asio::awaitable<Status> ResponseWriter::write_head(bhttp::response_header<>& head,
                                                   std::optional<std::uint64_t> body_length, CacheOutcome outcome) {
  if (head_written_) co_return Status(ErrorCode::kInternalError, "response head written twice");
  if (aborted_) co_return Status(ErrorCode::kInternalError, "response already aborted");
  const auto& req = parser_.get();
  const bool http11 = req.version() >= 11;
  status_ = head.result_int();
  no_body_ = req.method() == bhttp::verb::head || bodyless_status(status_);
  keep_alive_ = req.keep_alive() && parser_.is_done() && metrics().draining.get() == 0;

  // The hit path: a body of known, non-zero length. Its head is serialised from `head`
  // as it stands (plus the writer's own fields), leaving with the first body bytes.
  if (!no_body_ && body_length && *body_length > 0) {
    expected_body_ = body_length;
    outcome_ = outcome;
    head_written_ = true;
    count_cache_outcome(outcome);
    count_status_class(status_);
    serialize_pending(head, http11);
    co_return Status::ok();
  }

  // Framed as a message (content_length/chunked/keep_alive live there); the caller's
  // head is moved back afterwards, so it sees the head as it went out.
  bhttp::response<bhttp::empty_body> res{std::move(head)};
  res.version(http11 ? 11 : 10);  // before keep_alive(): its encoding depends on the version
  drop_hop_by_hop(res.base());
  if (no_body_) {
    // The head's Content-Length (if any) is the length of the entity a GET would get
    // (HEAD, 304). 1xx and 204 must not carry one (RFC 9110 8.6).
    if (status_ < 200 || status_ == 204) res.erase(bhttp::field::content_length);
    finished_ = true;
  } else if (body_length) {
    res.content_length(*body_length);
    expected_body_ = body_length;
  } else {
    res.erase(bhttp::field::content_length);
    if (http11) {
      res.chunked(true);
      chunked_ = true;
    } else {
      keep_alive_ = false;  // HTTP/1.0 cannot decode chunked: the close ends the body
    }
  }
  res.keep_alive(keep_alive_);
  if (res.find(bhttp::field::server) == res.end()) res.set(bhttp::field::server, "tagd");
  if (res.find("x-amz-request-id") == res.end()) res.set("x-amz-request-id", request_id());
  outcome_ = outcome;
  res.erase("X-Cache");
  if (outcome != CacheOutcome::kNone) res.set("X-Cache", x_cache_label(outcome));

  // Committed: counted once, whether or not the client takes the head.
  head_written_ = true;
  count_cache_outcome(outcome);
  count_status_class(status_);

  stream_.expires_after(idle_timeout_);
  bhttp::response_serializer<bhttp::empty_body> sr{res};
  auto [ec, n] = co_await bhttp::async_write_header(stream_, sr, kTuple);
  head = std::move(res.base());
  if (ec) co_return client_went_away("before the response head", ec);
  co_return Status::ok();
}

void ResponseWriter::append_pending(std::string_view text) {
  if (pending_head_.empty() && pending_inline_size_ + text.size() <= pending_inline_.size()) {
    std::memcpy(pending_inline_.data() + pending_inline_size_, text.data(), text.size());
    pending_inline_size_ += text.size();
    return;
  }
  if (pending_head_.empty()) pending_head_.assign(pending_inline_.data(), pending_inline_size_);
  pending_head_.append(text);
}

std::string_view ResponseWriter::pending_head() const noexcept {
  if (!pending_head_.empty()) return pending_head_;
  return std::string_view(pending_inline_.data(), pending_inline_size_);
}

void ResponseWriter::clear_pending() noexcept {
  pending_inline_size_ = 0;
  pending_head_.clear();
}

// The same head the Beast path below would write for a Content-Length body: the
// caller's fields in order, less the hop-by-hop ones, Content-Length and X-Cache; then
// Content-Length, the Connection token the version needs, Server and x-amz-request-id
// when missing, X-Cache.
void ResponseWriter::serialize_pending(const bhttp::response_header<>& head, bool http11) {
  clear_pending();
  append_status_line(http11, head.result_int(), head.reason());
  bool has_server = false;
  bool has_request_id = false;
  for (const auto& f : head) {
    const std::string_view name = f.name_string();
    if (hop_by_hop(name) || named_in_connection(head, name)) continue;
    if (f.name() == bhttp::field::content_length || iequals(name, "X-Cache")) continue;
    if (f.name() == bhttp::field::server) has_server = true;
    if (iequals(name, "x-amz-request-id")) has_request_id = true;
    append_pending(name);
    append_pending(": ");
    append_pending(f.value());
    append_pending("\r\n");
  }
  append_writer_fields(http11, has_server, has_request_id);
}

void ResponseWriter::append_status_line(bool http11, unsigned status, std::string_view reason) {
  append_pending(http11 ? "HTTP/1.1 " : "HTTP/1.0 ");
  char number[24];
  const auto end = std::to_chars(number, number + sizeof number, status);
  append_pending(std::string_view(number, static_cast<std::size_t>(end.ptr - number)));
  append_pending(" ");
  append_pending(reason);
  append_pending("\r\n");
}

void ResponseWriter::append_writer_fields(bool http11, bool has_server, bool has_request_id) {
  char number[24];
  append_pending("Content-Length: ");
  const auto length = std::to_chars(number, number + sizeof number, *expected_body_);
  append_pending(std::string_view(number, static_cast<std::size_t>(length.ptr - number)));
  append_pending("\r\n");
  if (http11 && !keep_alive_) append_pending("Connection: close\r\n");
  if (!http11 && keep_alive_) append_pending("Connection: keep-alive\r\n");
  if (!has_server) append_pending("Server: tagd\r\n");
  if (!has_request_id) {
    append_pending("x-amz-request-id: ");
    append_pending(request_id());
    append_pending("\r\n");
  }
  if (outcome_ != CacheOutcome::kNone) {
    append_pending("X-Cache: ");
    append_pending(x_cache_label(outcome_));
    append_pending("\r\n");
  }
  append_pending("\r\n");
}

Status ResponseWriter::write_head_prepared(bhttp::status status, std::span<const std::string_view> fields,
                                           std::uint64_t body_length, CacheOutcome outcome) {
  if (head_written_) return Status(ErrorCode::kInternalError, "response head written twice");
  if (aborted_) return Status(ErrorCode::kInternalError, "response already aborted");
  const auto& req = parser_.get();
  const int code = static_cast<int>(status);
  if (req.method() == bhttp::verb::head || bodyless_status(code) || body_length == 0) {
    return Status(ErrorCode::kInternalError, "a prepared head needs a GET with a body");
  }
  // As write_head does on its Content-Length path, in the same order.
  const bool http11 = req.version() >= 11;
  status_ = code;
  no_body_ = false;
  keep_alive_ = req.keep_alive() && parser_.is_done() && metrics().draining.get() == 0;
  expected_body_ = body_length;
  outcome_ = outcome;
  head_written_ = true;
  count_cache_outcome(outcome);
  count_status_class(status_);
  clear_pending();
  append_status_line(http11, static_cast<unsigned>(code), bhttp::obsolete_reason(status));
  for (std::string_view f : fields) append_pending(f);
  append_writer_fields(http11, false, false);
  return Status::ok();
}

Status ResponseWriter::check_body_piece(std::size_t n) {
  if (aborted_) return Status(ErrorCode::kInternalError, "response already aborted");
  if (!head_written_) return Status(ErrorCode::kInternalError, "response body before its head");
  if (finished_) {
    // A bodyless response or one already ended: these bytes would be read as the next
    // response.
    abort();
    return Status(ErrorCode::kInternalError, "response body bytes after its end");
  }
  if (expected_body_ && n > *expected_body_ - body_bytes_) {
    abort();
    return Status(ErrorCode::kInternalError, "response body longer than its Content-Length");
  }
  return Status::ok();
}

asio::awaitable<Status> ResponseWriter::write_body(std::string_view bytes) {
  if (aborted_) co_return Status(ErrorCode::kInternalError, "response already aborted");
  if (!head_written_) co_return Status(ErrorCode::kInternalError, "response body before its head");
  if (bytes.empty()) co_return Status::ok();  // an empty chunk would end a chunked body
  if (Status s = check_body_piece(bytes.size()); !s) co_return s;
  stream_.expires_after(idle_timeout_);
  boost::system::error_code ec;
  if (const std::string_view pending = pending_head(); !pending.empty()) {
    // A head followed by a Content-Length body waits for the first body bytes, so a small
    // response leaves in one send (head and body in one sendmsg instead of two).
    const std::array<asio::const_buffer, 2> head_and_body{asio::buffer(pending.data(), pending.size()),
                                                          asio::buffer(bytes.data(), bytes.size())};
    std::tie(ec, std::ignore) = co_await asio::async_write(stream_, head_and_body, kTuple);
    clear_pending();
  } else if (chunked_) {
    std::tie(ec, std::ignore) =
        co_await asio::async_write(stream_, bhttp::make_chunk(asio::buffer(bytes.data(), bytes.size())), kTuple);
  } else {
    std::tie(ec, std::ignore) = co_await asio::async_write(stream_, asio::buffer(bytes.data(), bytes.size()), kTuple);
  }
  if (ec) co_return client_went_away("or stopped reading", ec);
  body_bytes_ += bytes.size();
  metrics().response_body_bytes.inc(bytes.size());
  co_return Status::ok();
}

asio::awaitable<Status> ResponseWriter::finish() {
  if (finished_) co_return Status::ok();
  if (aborted_) co_return Status(ErrorCode::kInternalError, "response already aborted");
  if (!head_written_) co_return Status(ErrorCode::kInternalError, "response finished before its head");
  if (chunked_) {
    stream_.expires_after(idle_timeout_);
    auto [ec, n] = co_await asio::async_write(stream_, bhttp::make_chunk_last(), kTuple);
    if (ec) co_return client_went_away("before the last chunk", ec);
  } else {
    co_return finish_unchunked();
  }
  finished_ = true;
  co_return Status::ok();
}

Status ResponseWriter::client_went_away(std::string_view when, const boost::system::error_code& ec) {
  metrics().client_aborts.inc();
  abort();
  std::string message = "client went away ";
  message.append(when).append(": ").append(ec.message());
  return Status(ErrorCode::kRequestTimeout, std::move(message));
}

Status ResponseWriter::finish_unchunked() {
  if (finished_) return Status::ok();
  if (aborted_) return Status(ErrorCode::kInternalError, "response already aborted");
  if (!head_written_) return Status(ErrorCode::kInternalError, "response finished before its head");
  assert(!chunked_);
  if (expected_body_ && body_bytes_ != *expected_body_) {
    // A close after a short body could pass for a whole one: reset instead.
    abort();
    return Status(ErrorCode::kInternalError, "response body ended after " + std::to_string(body_bytes_) + " of " +
                                                 std::to_string(*expected_body_) + " bytes");
  }
  finished_ = true;
  return Status::ok();
}

namespace {
// Pieces shorter than this are copied: sendfile's set-up (and the non-blocking flag's)
// costs more than copying a few pages.
constexpr std::size_t kMinSendfilePiece = 32 * 1024;

// O_NONBLOCK on the socket while sendfile runs (sendfile has no per-call flag). Asio's
// epoll reactor keeps its sockets non-blocking already; its io_uring backend leaves them
// blocking and must keep them so (it would otherwise switch to polling and sending by
// itself), so the flag is set for the call and restored after it.
class NonBlockingForCall {
 public:
  explicit NonBlockingForCall(int fd) : fd_(fd) {
    flags_ = ::fcntl(fd_, F_GETFL);
    if (flags_ >= 0 && (flags_ & O_NONBLOCK) == 0 && ::fcntl(fd_, F_SETFL, flags_ | O_NONBLOCK) == 0) set_ = true;
  }
  ~NonBlockingForCall() {
    if (set_) ::fcntl(fd_, F_SETFL, flags_);
  }
  NonBlockingForCall(const NonBlockingForCall&) = delete;
  NonBlockingForCall& operator=(const NonBlockingForCall&) = delete;
  bool ok() const noexcept { return flags_ >= 0 && (set_ || (flags_ & O_NONBLOCK) != 0); }

 private:
  int fd_;
  int flags_ = -1;
  bool set_ = false;
};

bool would_block(int err) { return err == EAGAIN || err == EWOULDBLOCK; }
}  // namespace

asio::awaitable<Status> ResponseWriter::write_body_file(std::span<const char> piece, PieceFile file) {
  if (Status s = check_body_piece(piece.size()); !s) co_return s;
  stream_.expires_after(idle_timeout_);
  const int socket = stream_.socket().native_handle();
  boost::system::error_code ec;
  if (const std::string_view pending = pending_head(); !pending.empty()) {
    // The head first, held back (MSG_MORE) so it leaves in one segment with the body's
    // first bytes.
    std::size_t sent = 0;
    const ssize_t n = ::send(socket, pending.data(), pending.size(), MSG_DONTWAIT | MSG_NOSIGNAL | MSG_MORE);
    if (n > 0) {
      sent = static_cast<std::size_t>(n);
    } else if (n < 0 && !would_block(errno) && errno != EINTR) {
      ec.assign(errno, boost::system::system_category());
    }
    if (!ec && sent < pending.size()) {
      std::tie(ec, std::ignore) =
          co_await asio::async_write(stream_, asio::buffer(pending.data() + sent, pending.size() - sent), kTuple);
    }
    clear_pending();
  }
  auto offset = static_cast<off_t>(file.offset);
  std::size_t left = piece.size();
  while (!ec && left > 0) {
    if (stream_.deadline_passed()) {
      ec = asio::error::operation_aborted;
      break;
    }
    int err = 0;
    {
      // Non-blocking for this stretch of sendfile calls only: the flag must not outlive
      // them into the wait below (see NonBlockingForCall).
      NonBlockingForCall non_blocking(socket);
      if (!non_blocking.ok()) {
        ec.assign(errno, boost::system::system_category());
        break;
      }
      while (left > 0) {
        const ssize_t n = ::sendfile(socket, file.fd, &offset, left);
        if (n > 0) {
          left -= static_cast<std::size_t>(n);
          continue;
        }
        err = n == 0 ? 0 : errno;
        if (n == 0) ec = asio::error::eof;  // the file is shorter than the piece: cannot happen for a lent slot
        if (err != EINTR) break;
      }
    }
    if (ec || left == 0) break;
    if (!would_block(err)) {
      ec.assign(err, boost::system::system_category());
      break;
    }
    // The socket's buffer is full: backpressure, as a write would wait.
    std::tie(ec) = co_await stream_.async_wait_writable(kTuple);
  }
  if (ec) co_return client_went_away("or stopped reading", ec);
  body_bytes_ += piece.size();
  metrics().response_body_bytes.inc(piece.size());
  metrics().response_body_bytes_sendfile.inc(piece.size());
  co_return Status::ok();
}

asio::awaitable<Status> ResponseWriter::write_body_from(BodySource& body, std::span<char> buffer) {
  if (buffer.empty()) co_return Status(ErrorCode::kInternalError, "write_body_from: empty buffer");
  for (;;) {
    // next(): a cached block is lent whole (one write per block, no copy); other sources
    // fill `buffer`. try_next() first: a block in memory costs no coroutine frame.
    std::optional<Result<std::span<const char>>> got = body.try_next(buffer);
    if (!got) got = co_await body.next(buffer);
    if (!*got) {
      Status error = got->error();
      abort();
      co_return error;
    }
    const std::span<const char> piece = got->value();
    if (piece.empty()) break;
    // A large piece of a DRAM-tier block to a plain socket: the kernel is handed the
    // block's pages (one copy in all, the client's receive) instead of a copy of them.
    if (piece.size() >= kMinSendfilePiece && stream_.sendfile_allowed() && !chunked_) {
      if (const PieceFile file = body.lend_piece_file(); file.fd >= 0) {
        Status s = co_await write_body_file(piece, file);
        if (!s) co_return s;
        continue;
      }
    }
    Status s = co_await write_body(std::string_view(piece.data(), piece.size()));
    if (!s) co_return s;
  }
  if (!chunked_) co_return finish_unchunked();
  co_return co_await finish();
}

void ResponseWriter::abort() {
  if (aborted_) return;
  aborted_ = true;
  keep_alive_ = false;
  // SO_LINGER 0: close sends a RST, so the client cannot take what it got for a whole
  // (close-delimited) body.
  boost::system::error_code ignored;
  stream_.socket().set_option(asio::socket_base::linger(true, 0), ignored);
  stream_.socket().close(ignored);
}

asio::awaitable<Status> ResponseWriter::send(bhttp::status status, std::string_view content_type, std::string body,
                                             CacheOutcome outcome) {
  bhttp::response_header<> head;
  head.result(status);
  if (!content_type.empty()) head.set(bhttp::field::content_type, content_type);
  // For a HEAD request this stays the length a GET would get; 1xx/204/304 carry none.
  if (!bodyless_status(static_cast<int>(status))) head.set(bhttp::field::content_length, std::to_string(body.size()));
  Status s = co_await write_head(head, body.size(), outcome);
  if (!s) co_return s;
  if (!no_body_) {
    s = co_await write_body(body);
    if (!s) co_return s;
  }
  co_return co_await finish();
}

asio::awaitable<Status> ResponseWriter::send_error(const Status& error, CacheOutcome outcome) {
  std::string_view target = parser_.get().target();
  std::string_view resource = target.substr(0, target.find('?'));
  std::string xml = s3::error_xml(s3_code(error.code()), error.message(), resource, request_id());
  co_return co_await send(static_cast<bhttp::status>(http_status(error.code())), "application/xml", std::move(xml),
                          outcome);
}

bool ResponseWriter::keep_alive() const {
  if (!head_written_ || aborted_ || !keep_alive_) return false;
  // Finished: bodyless, the last chunk sent, or a Content-Length body written whole.
  const bool complete = finished_ || (!chunked_ && expected_body_ && body_bytes_ == *expected_body_);
  // Re-checked: the handler may have left the request body unread after the head went out.
  return complete && parser_.is_done();
}

}  // namespace tagd::http
