// The pooled upstream client against a real loopback server scripted by each test (same
// io_context, so every test is single-threaded and deterministic), plus ScriptedClient.
#include "tagd/upstream/client.hpp"

#include <gtest/gtest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <deque>
#include <functional>
#include <vector>

#include "support/scripted_client.hpp"
#include "tagd/auth/sigv4.hpp"
#include "tagd/core/metrics.hpp"

namespace tagd::upstream {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;
using std::chrono::milliseconds;
using boost::system::error_code;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

// ---- The scripted loopback upstream ----------------------------------------------------

enum class Then { kKeepOpen, kClose, kReset, kHold };

// What the server does with the next request it reads (in arrival order, whatever the
// connection): write `bytes` (raw, may be empty), then keep the connection, close it
// (FIN), reset it (RST) or hand it to the test (ServerState::held), which writes the rest
// of the answer when it chooses.
struct Act {
  std::string bytes;
  Then then = Then::kKeepOpen;
};

struct Seen {
  http::verb method{};
  std::string target;
  http::fields headers;
  std::string body;
};

struct ServerState {
  std::deque<Act> acts;
  std::vector<Seen> seen;                // every request read whole
  std::vector<error_code> read_errors;   // why a connection's next request could not be read
  int connections = 0;
  std::vector<std::shared_ptr<tcp::socket>> held;  // Then::kHold connections, oldest first
};

asio::awaitable<void> serve_connection(std::shared_ptr<ServerState> st, tcp::socket sock) {
  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(boost::none);
    auto [ec, n] = co_await http::async_read(sock, buffer, parser, kTuple);
    if (ec) {
      st->read_errors.push_back(ec);
      co_return;
    }
    const auto& req = parser.get();
    st->seen.push_back({req.method(), std::string(req.target()), static_cast<const http::fields&>(req), req.body()});
    if (st->acts.empty()) co_return;  // unscripted: close
    Act act = std::move(st->acts.front());
    st->acts.pop_front();
    if (!act.bytes.empty()) co_await asio::async_write(sock, asio::buffer(act.bytes), kTuple);
    error_code ignored;
    if (act.then == Then::kClose) {
      sock.shutdown(tcp::socket::shutdown_both, ignored);
      sock.close(ignored);
      co_return;
    }
    if (act.then == Then::kReset) {
      sock.set_option(asio::socket_base::linger(true, 0), ignored);
      sock.close(ignored);
      co_return;
    }
    if (act.then == Then::kHold) {
      st->held.push_back(std::make_shared<tcp::socket>(std::move(sock)));
      co_return;
    }
  }
}

asio::awaitable<void> accept_loop(std::shared_ptr<ServerState> st, std::shared_ptr<tcp::acceptor> acceptor) {
  for (;;) {
    auto [ec, sock] = co_await acceptor->async_accept(kTuple);
    if (ec) co_return;
    ++st->connections;
    asio::co_spawn(acceptor->get_executor(), serve_connection(st, std::move(sock)), asio::detached);
  }
}

const std::string kOk = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

// ---- Request bodies --------------------------------------------------------------------

class PiecesBody final : public RequestBody {
 public:
  PiecesBody(std::vector<std::string> pieces, bool replayable) : pieces_(std::move(pieces)), replayable_(replayable) {}
  // next() fails with `error` instead of returning piece number `index`.
  void fail_at(std::size_t index, Status error) {
    fail_at_ = index;
    error_ = std::move(error);
  }
  bool replayable() const override { return replayable_; }
  void rewind() override {
    ++rewinds;
    next_ = 0;
  }
  asio::awaitable<Result<std::string_view>> next() override {
    if (fail_at_ && next_ == *fail_at_) co_return error_;
    if (next_ == pieces_.size()) co_return std::string_view{};
    co_return std::string_view(pieces_[next_++]);
  }
  int rewinds = 0;

 private:
  std::vector<std::string> pieces_;
  bool replayable_;
  std::optional<std::size_t> fail_at_;
  Status error_;
  std::size_t next_ = 0;
};

// ---- Metrics deltas --------------------------------------------------------------------

struct Counts {
  std::uint64_t requests, retries, errors, truncated, reused;
  static Counts now() {
    auto& m = metrics();
    return {m.upstream_requests.get(), m.upstream_retries.get(), m.upstream_errors.get(),
            m.upstream_truncated_bodies.get(), m.upstream_connections_reused.get()};
  }
  Counts since(const Counts& before) const {
    return {requests - before.requests, retries - before.retries, errors - before.errors,
            truncated - before.truncated, reused - before.reused};
  }
};

// ---- Driving coroutines from a test ----------------------------------------------------

template <class T>
asio::awaitable<void> store(asio::awaitable<T> a, std::shared_ptr<std::optional<T>> out) {
  out->emplace(co_await std::move(a));
}

asio::awaitable<Result<std::string>> read_all(Response* response, std::size_t piece = 1000) {
  std::string out;
  std::vector<char> buffer(piece);
  for (int i = 0; i < 100000; ++i) {
    auto n = co_await response->read(buffer);
    if (!n) co_return n.error();
    if (*n == 0) co_return out;
    out.append(buffer.data(), *n);
  }
  co_return Status(ErrorCode::kInternalError, "body never ended");
}

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    acceptor = std::make_shared<tcp::acceptor>(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    asio::co_spawn(io, accept_loop(server, acceptor), asio::detached);
  }
  void TearDown() override {
    client.reset();
    error_code ignored;
    acceptor->close(ignored);
    io.poll();
  }

  static ClientOptions fast(unsigned retries = 2) {
    ClientOptions o;
    o.retry.max_retries = retries;
    o.retry.base_backoff = milliseconds(1);
    o.retry.max_backoff = milliseconds(5);
    o.timeout = milliseconds(3000);
    return o;
  }

  void make_client(ClientOptions options = fast(), std::uint16_t port = 0) {
    Endpoint e;
    e.host = "127.0.0.1";
    e.port = port != 0 ? port : acceptor->local_endpoint().port();
    e.host_header = "127.0.0.1:" + std::to_string(e.port);
    auto p = std::make_unique<Pool>(io.get_executor(), e, nullptr, PoolOptions{});
    pool = p.get();
    client = make_pooled_client(std::move(p), signing, clock, options);
  }

  void act(std::string bytes, Then then = Then::kKeepOpen) { server->acts.push_back({std::move(bytes), then}); }

  // Runs the loop until `done` (at most 5 s).
  bool run_until(const std::function<bool()>& done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!done() && std::chrono::steady_clock::now() < deadline) io.run_one_for(milliseconds(10));
    return done();
  }

  template <class T>
  T run(asio::awaitable<T> a) {
    auto out = std::make_shared<std::optional<T>>();
    auto done = std::make_shared<bool>(false);
    auto error = std::make_shared<std::exception_ptr>();
    asio::co_spawn(io, store(std::move(a), out), [done, error](std::exception_ptr e) {
      *error = e;
      *done = true;
    });
    if (!run_until([&] { return *done; })) throw std::runtime_error("coroutine did not finish in 5 s");
    if (*error) std::rethrow_exception(*error);
    return std::move(**out);
  }

  Result<std::unique_ptr<Response>> exchange(Request request) { return run(client->exchange(std::move(request))); }
  Result<std::string> body_of(Response& response, std::size_t piece = 1000) { return run(read_all(&response, piece)); }

  static Request get(std::string target = "/bucket/key") {
    Request r;
    r.method = http::verb::get;
    r.target = std::move(target);
    r.payload_hash = std::string(auth::kEmptySha256);
    return r;
  }

  asio::io_context io;
  std::shared_ptr<ServerState> server = std::make_shared<ServerState>();
  std::shared_ptr<tcp::acceptor> acceptor;
  SigningCredentials signing{"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "us-east-1"};
  ManualClock clock;
  Pool* pool = nullptr;
  std::unique_ptr<Client> client;
};

TEST_F(ClientTest, InterimResponsesAreSkipped) {
  make_client();
  act("HTTP/1.1 100 Continue\r\n\r\n"
      "HTTP/1.1 102 Processing\r\n\r\n"
      "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"e1\"\r\n\r\nhello");
  auto response = exchange(get());
  ASSERT_TRUE(response.has_value()) << response.error().message();
  EXPECT_EQ((*response)->status(), 200);
  EXPECT_EQ((*response)->head()[http::field::etag], "\"e1\"");
  EXPECT_EQ((*response)->length(), 5u);
  auto body = body_of(**response);
  ASSERT_TRUE(body.has_value());
  EXPECT_EQ(*body, "hello");
}

TEST_F(ClientTest, StalePooledConnectionIsRetriedAtOnceOnAFreshOne) {
  // No retries and a long backoff: only the immediate stale-connection retry can save it.
  ClientOptions options = fast(0);
  options.retry.base_backoff = options.retry.max_backoff = milliseconds(10000);
  make_client(options);
  act(kOk);                // first exchange, kept alive
  act("", Then::kClose);   // the pooled connection is closed as the next request arrives
  act(kOk);                // the retry, on a new connection
  auto first = exchange(get());
  ASSERT_TRUE(first.has_value());
  ASSERT_EQ(body_of(**first).value(), "ok");
  first->reset();
  ASSERT_EQ(pool->idle_count(), 1u);

  const auto before = Counts::now();
  const auto started = std::chrono::steady_clock::now();
  auto second = exchange(get("/bucket/other"));
  ASSERT_TRUE(second.has_value()) << second.error().message();
  EXPECT_EQ(body_of(**second).value(), "ok");
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(2));
  const auto d = Counts::now().since(before);
  EXPECT_EQ(d.reused, 1u);
  EXPECT_EQ(d.retries, 1u);
  EXPECT_EQ(d.requests, 2u);
  EXPECT_EQ(d.errors, 0u);
  EXPECT_EQ(server->connections, 2);
  ASSERT_EQ(server->seen.size(), 3u);
  EXPECT_EQ(server->seen[2].target, "/bucket/other");
}

TEST_F(ClientTest, ConnectionRefusedFailsAfterRetries) {
  std::uint16_t closed_port = 0;
  {
    tcp::acceptor probe(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    closed_port = probe.local_endpoint().port();
  }
  make_client(fast(2), closed_port);
  const auto before = Counts::now();
  auto response = exchange(get());
  ASSERT_FALSE(response.has_value());
  EXPECT_EQ(response.error().code(), ErrorCode::kServiceUnavailable) << response.error().message();
  const auto d = Counts::now().since(before);
  EXPECT_EQ(d.retries, 2u);
  EXPECT_EQ(d.requests, 0u);
  EXPECT_EQ(d.errors, 1u);
}

TEST_F(ClientTest, ResetBeforeTheHeadIsRetriedForGet) {
  make_client(fast(2));
  act("", Then::kReset);
  act("", Then::kReset);
  act(kOk);
  const auto before = Counts::now();
  auto response = exchange(get());
  ASSERT_TRUE(response.has_value()) << response.error().message();
  EXPECT_EQ(body_of(**response).value(), "ok");
  const auto d = Counts::now().since(before);
  EXPECT_EQ(d.requests, 3u);
  EXPECT_EQ(d.retries, 2u);
  EXPECT_EQ(d.errors, 0u);
  EXPECT_EQ(server->seen.size(), 3u);
  EXPECT_EQ(server->connections, 3);
}

TEST_F(ClientTest, ResetBeforeTheHeadGivesUpAfterMaxRetries) {
  make_client(fast(2));
  for (int i = 0; i < 4; ++i) act("", Then::kReset);
  const auto before = Counts::now();
  auto response = exchange(get());
  ASSERT_FALSE(response.has_value());
  EXPECT_EQ(response.error().code(), ErrorCode::kBadGateway);
  EXPECT_NE(response.error().message().find("upstream failed"), std::string::npos) << response.error().message();
  const auto d = Counts::now().since(before);
  EXPECT_EQ(d.requests, 3u);
  EXPECT_EQ(d.retries, 2u);
  EXPECT_EQ(d.errors, 1u);
  EXPECT_EQ(server->seen.size(), 3u);
}

TEST_F(ClientTest, ResetBeforeTheHeadIsNotRetriedForPost) {
  make_client(fast(2));
  act("", Then::kReset);
  act(kOk);
  PiecesBody body({"<Delete/>"}, true);
  Request r = get("/bucket?delete");
  r.method = http::verb::post;
  r.body = &body;
  r.body_length = 9;
  const auto before = Counts::now();
  auto response = exchange(std::move(r));
  ASSERT_FALSE(response.has_value());
  EXPECT_EQ(response.error().code(), ErrorCode::kBadGateway);
  const auto d = Counts::now().since(before);
  EXPECT_EQ(d.retries, 0u);
  EXPECT_EQ(d.errors, 1u);
  ASSERT_EQ(server->seen.size(), 1u);
  EXPECT_EQ(server->seen[0].body, "<Delete/>");
}

TEST_F(ClientTest, ResetBeforeTheHeadIsNotRetriedForAStreamedBody) {
  make_client(fast(2));
  act("", Then::kReset);
  act(kOk);
  PiecesBody body({"abc", "def"}, false);
  Request r = get();
  r.method = http::verb::put;  // idempotent, but the body cannot be sent again
  r.body = &body;
  r.body_length = 6;
  auto response = exchange(std::move(r));
  ASSERT_FALSE(response.has_value());
  EXPECT_EQ(response.error().code(), ErrorCode::kBadGateway);
  EXPECT_EQ(server->seen.size(), 1u);
  EXPECT_EQ(body.rewinds, 0);
}

TEST_F(ClientTest, ReplayableBodyIsSentAgainOnRetry) {
  make_client(fast(2));
  act("", Then::kReset);
  act(kOk);
  PiecesBody body({"hello ", "world"}, true);
  Request r = get();
  r.method = http::verb::put;
  r.body = &body;
  r.body_length = 11;
  auto response = exchange(std::move(r));
  ASSERT_TRUE(response.has_value()) << response.error().message();
  ASSERT_EQ(server->seen.size(), 2u);
  EXPECT_EQ(server->seen[0].body, "hello world");
  EXPECT_EQ(server->seen[1].body, "hello world");
  EXPECT_EQ(server->seen[1].headers[http::field::content_length], "11");
  EXPECT_EQ(body.rewinds, 2);
}

TEST_F(ClientTest, BodyWithoutLengthIsSentChunked) {
  make_client();
  act(kOk);
  PiecesBody body({"hello ", "world"}, false);
  Request r = get();
  r.method = http::verb::put;
  r.body = &body;
  auto response = exchange(std::move(r));
  ASSERT_TRUE(response.has_value()) << response.error().message();
  ASSERT_EQ(server->seen.size(), 1u);
  EXPECT_EQ(server->seen[0].body, "hello world");
  EXPECT_EQ(server->seen[0].headers[http::field::transfer_encoding], "chunked");
  EXPECT_EQ(server->seen[0].headers.count(http::field::content_length), 0u);
}

TEST_F(ClientTest, PutAndPostWithoutABodySendContentLengthZero) {
  make_client();
  act(kOk);
  act(kOk);
  Request put = get();
  put.method = http::verb::put;
  ASSERT_TRUE(exchange(std::move(put)).has_value());
  ASSERT_TRUE(exchange(get()).has_value());
  ASSERT_EQ(server->seen.size(), 2u);
  EXPECT_EQ(server->seen[0].headers[http::field::content_length], "0");
  EXPECT_EQ(server->seen[1].headers.count(http::field::content_length), 0u);
  EXPECT_EQ(server->seen[1].headers.count(http::field::transfer_encoding), 0u);
}

TEST_F(ClientTest, RequestBodyErrorResetsTheUpstreamAndIsReturnedUnchanged) {
  make_client(fast(2));
  act(kOk);
  PiecesBody body({"abc", "def"}, false);
  body.fail_at(1, Status(ErrorCode::kXAmzContentSHA256Mismatch, "the digest did not match"));
  Request r = get();
  r.method = http::verb::put;
  r.body = &body;
  r.body_length = 6;
  const auto before = Counts::now();
  auto response = exchange(std::move(r));
  ASSERT_FALSE(response.has_value());
  EXPECT_EQ(response.error().code(), ErrorCode::kXAmzContentSHA256Mismatch);
  EXPECT_EQ(response.error().message(), "the digest did not match");
  ASSERT_TRUE(run_until([&] { return !server->read_errors.empty(); }));
  EXPECT_EQ(server->read_errors[0], asio::error::connection_reset) << server->read_errors[0].message();
  EXPECT_TRUE(server->seen.empty());  // the upstream never saw the end of the request
  const auto d = Counts::now().since(before);
  EXPECT_EQ(d.errors, 0u);
  EXPECT_EQ(d.retries, 0u);
}

TEST_F(ClientTest, TimeoutIsNotRetried) {
  ClientOptions options = fast(2);
  options.timeout = milliseconds(80);
  make_client(options);
  act("");  // reads the request, never answers
  act(kOk);
  const auto before = Counts::now();
  auto response = exchange(get());
  ASSERT_FALSE(response.has_value());
  EXPECT_EQ(response.error().code(), ErrorCode::kGatewayTimeout);
  EXPECT_NE(response.error().message().find("upstream timed out"), std::string::npos);
  const auto d = Counts::now().since(before);
  EXPECT_EQ(d.retries, 0u);
  EXPECT_EQ(d.errors, 1u);
  EXPECT_EQ(server->seen.size(), 1u);
}

TEST_F(ClientTest, PerRequestTimeoutOverridesTheDefault) {
  make_client(fast(0));  // default 3 s
  act("");
  Request r = get();
  r.timeout = milliseconds(50);
  const auto started = std::chrono::steady_clock::now();
  auto response = exchange(std::move(r));
  ASSERT_FALSE(response.has_value());
  EXPECT_EQ(response.error().code(), ErrorCode::kGatewayTimeout);
  EXPECT_LT(std::chrono::steady_clock::now() - started, milliseconds(1500));
}

TEST_F(ClientTest, ContentLengthBodyIsReadThroughRead) {
  make_client();
  std::string payload(100000, '\0');
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>('a' + i % 23);
  act("HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + payload);
  auto response = exchange(get());
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ((*response)->length(), 100000u);
  EXPECT_FALSE((*response)->chunked());
  EXPECT_FALSE((*response)->bodyless());
  auto body = body_of(**response, 777);
  ASSERT_TRUE(body.has_value());
  EXPECT_TRUE(*body == payload);
  EXPECT_EQ(pool->idle_count(), 1u);
}

TEST_F(ClientTest, BodyBytesAreHandedOverAsTheyArriveNotWhenTheSpanIsFull) {
  // The upstream sends half the body, then nothing until the test says so: a read into a
  // span larger than what arrived returns those bytes at once (a fill passes them on to its
  // readers), it does not wait for the span to fill nor fail when the rest comes later.
  ClientOptions options = fast(0);
  options.timeout = milliseconds(2000);
  make_client(options);
  const std::size_t kHalf = 48 * 1024;
  std::string payload(2 * kHalf, '\0');
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>('a' + i % 19);
  act("HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(payload.size()) + "\r\n\r\n" + payload.substr(0, kHalf),
      Then::kHold);
  auto response = exchange(get());
  ASSERT_TRUE(response.has_value());
  ASSERT_EQ(server->held.size(), 1u);

  const auto before = Counts::now();
  const auto started = std::chrono::steady_clock::now();
  std::vector<char> span(1 << 20);
  std::string got;
  while (got.size() < kHalf) {
    auto n = run((*response)->read(span));
    ASSERT_TRUE(n.has_value()) << n.error().message();
    ASSERT_GT(*n, 0u);
    got.append(span.data(), *n);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - started, milliseconds(1000)) << "waited for more than had arrived";
  EXPECT_TRUE(got == payload.substr(0, kHalf));
  EXPECT_EQ(pool->idle_count(), 0u);

  // The rest arrives: the same response goes on to the end, and the connection is reused.
  auto rest = std::make_shared<std::string>(payload.substr(kHalf));
  asio::co_spawn(io, [sock = server->held[0], rest]() -> asio::awaitable<void> {
    co_await asio::async_write(*sock, asio::buffer(*rest), kTuple);
  }, asio::detached);
  auto tail = body_of(**response, span.size());
  ASSERT_TRUE(tail.has_value()) << tail.error().message();
  EXPECT_TRUE(got + *tail == payload);
  EXPECT_EQ(pool->idle_count(), 1u);
  EXPECT_EQ(Counts::now().since(before).truncated, 0u);
}

TEST_F(ClientTest, AStalledBodyTimesOutAfterTheBytesThatArrived) {
  // Handing bytes over early does not weaken the timeout: a body that stops arriving fails
  // with kGatewayTimeout (counted as truncated), after the bytes that came.
  ClientOptions options = fast(0);
  options.timeout = milliseconds(100);
  make_client(options);
  act("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234", Then::kHold);
  auto response = exchange(get());
  ASSERT_TRUE(response.has_value());
  const auto before = Counts::now();
  std::vector<char> span(1000);
  auto first = run((*response)->read(span));
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(std::string(span.data(), *first), "01234");
  auto second = run((*response)->read(span));
  ASSERT_FALSE(second.has_value());
  EXPECT_EQ(second.error().code(), ErrorCode::kGatewayTimeout) << second.error().message();
  EXPECT_EQ(Counts::now().since(before).truncated, 1u);
  EXPECT_EQ(pool->idle_count(), 0u);
}

TEST_F(ClientTest, ChunkedBodyIsReadThroughRead) {
  make_client();
  act("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
  auto response = exchange(get());
  ASSERT_TRUE(response.has_value());
  EXPECT_FALSE((*response)->length().has_value());
  EXPECT_TRUE((*response)->chunked());
  auto body = body_of(**response, 4);
  ASSERT_TRUE(body.has_value());
  EXPECT_EQ(*body, "hello world");
  EXPECT_EQ(pool->idle_count(), 1u);
}

TEST_F(ClientTest, ConnectionReturnsToThePoolOnlyAtTheEndOfTheBody) {
  make_client();
  act("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789");
  act(kOk);
  auto response = exchange(get());
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(pool->idle_count(), 0u);
  char piece[4];
  auto n = run((*response)->read(piece));
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(*n, 4u);
  EXPECT_EQ(pool->idle_count(), 0u);
  auto rest = body_of(**response);
  ASSERT_TRUE(rest.has_value());
  EXPECT_EQ(*rest, "456789");
  EXPECT_EQ(pool->idle_count(), 1u);
  // A further read stays at the end, and the connection is not released twice.
  EXPECT_EQ(run((*response)->read(piece)).value(), 0u);
  EXPECT_EQ(pool->idle_count(), 1u);
  response->reset();
  // The next exchange reuses that connection.
  auto next = exchange(get());
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(body_of(**next).value(), "ok");
  EXPECT_EQ(server->connections, 1);
}

TEST_F(ClientTest, DestroyingAnUnreadResponseClosesTheConnection) {
  make_client();
  act("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789");
  auto response = exchange(get());
  ASSERT_TRUE(response.has_value());
  char piece[4];
  ASSERT_EQ(run((*response)->read(piece)).value(), 4u);
  response->reset();
  EXPECT_EQ(pool->idle_count(), 0u);
  ASSERT_TRUE(run_until([&] { return !server->read_errors.empty(); }));
  EXPECT_EQ(server->read_errors[0], http::error::end_of_stream) << server->read_errors[0].message();
}

TEST_F(ClientTest, TruncatedBodyIsAnError) {
  make_client();
  act("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc", Then::kClose);
  auto response = exchange(get());
  ASSERT_TRUE(response.has_value());
  const auto before = Counts::now();
  std::vector<char> buffer(1000);
  auto first = run((*response)->read(buffer));
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(*first, 3u);
  auto second = run((*response)->read(buffer));
  ASSERT_FALSE(second.has_value());
  EXPECT_EQ(second.error().code(), ErrorCode::kBadGateway);
  auto third = run((*response)->read(buffer));  // stays failed
  EXPECT_FALSE(third.has_value());
  EXPECT_EQ(Counts::now().since(before).truncated, 1u);
  EXPECT_EQ(pool->idle_count(), 0u);
}

TEST_F(ClientTest, HeadResponseHasNoBody) {
  make_client();
  act("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nETag: \"e\"\r\n\r\n");
  act(kOk);
  Request r = get();
  r.method = http::verb::head;
  auto response = exchange(std::move(r));
  ASSERT_TRUE(response.has_value());
  EXPECT_TRUE((*response)->bodyless());
  EXPECT_EQ((*response)->length(), 0u);
  EXPECT_EQ((*response)->head()[http::field::content_length], "1234");
  EXPECT_EQ(pool->idle_count(), 1u);  // nothing left to read: back in the pool at once
  EXPECT_EQ(body_of(**response).value(), "");
  response->reset();
  // The connection carries on with the next exchange: no body was expected after the HEAD.
  auto next = exchange(get());
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(body_of(**next).value(), "ok");
  EXPECT_EQ(server->connections, 1);
}

TEST_F(ClientTest, SignedRequestCarriesAuthorization) {
  make_client();
  act(kOk);
  Request r = get("/bucket/key?versionId=v1");
  r.headers.set("x-amz-meta-colour", "blue");
  r.headers.set(http::field::range, "bytes=0-1");
  r.sign = true;
  ASSERT_TRUE(exchange(std::move(r)).has_value());
  ASSERT_EQ(server->seen.size(), 1u);
  const auto& h = server->seen[0].headers;
  EXPECT_EQ(server->seen[0].target, "/bucket/key?versionId=v1");
  const std::string date = auth::format_amz_date(clock.now());
  const std::string credential = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/" + date.substr(0, 8) + "/us-east-1/s3/aws4_request";
  EXPECT_EQ(h[http::field::authorization].substr(0, credential.size()), credential);
  EXPECT_NE(h[http::field::authorization].find("SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-meta-colour"),
            std::string_view::npos)
      << h[http::field::authorization];
  EXPECT_EQ(h["x-amz-date"], auth::format_amz_date(clock.now()));
  EXPECT_EQ(h["x-amz-content-sha256"], auth::kEmptySha256);
  EXPECT_EQ(h[http::field::host], "127.0.0.1:" + std::to_string(acceptor->local_endpoint().port()));
  EXPECT_EQ(h["x-amz-meta-colour"], "blue");
  EXPECT_EQ(h[http::field::range], "bytes=0-1");
}

TEST_F(ClientTest, AnonymousRequestIsSentUnsigned) {
  make_client();
  act(kOk);
  Request r = get();
  r.sign = false;
  ASSERT_TRUE(exchange(std::move(r)).has_value());
  ASSERT_EQ(server->seen.size(), 1u);
  const auto& h = server->seen[0].headers;
  EXPECT_EQ(h.count(http::field::authorization), 0u);
  EXPECT_EQ(h.count("x-amz-date"), 0u);
  EXPECT_EQ(h[http::field::host], "127.0.0.1:" + std::to_string(acceptor->local_endpoint().port()));
}

TEST_F(ClientTest, CloseIdleDropsPooledConnections) {
  make_client();
  act(kOk);
  auto response = exchange(get());
  ASSERT_TRUE(response.has_value());
  ASSERT_EQ(body_of(**response).value(), "ok");
  ASSERT_EQ(pool->idle_count(), 1u);
  client->close_idle();
  EXPECT_EQ(pool->idle_count(), 0u);
}

// ---- ScriptedClient --------------------------------------------------------------------

TEST_F(ClientTest, ScriptedClientAnswersInOrderAndRecords) {
  testing::ScriptedClient scripted;
  testing::ScriptedReply first;
  first.headers = {{"ETag", "\"e1\""}};
  first.body = "hello world";
  first.delay = milliseconds(1);
  scripted.push(first);
  testing::ScriptedReply refused;
  refused.error = Status(ErrorCode::kServiceUnavailable, "refused");
  scripted.push(refused);
  testing::ScriptedReply cut;
  cut.body = "0123456789";
  cut.reset_after = 4;
  scripted.push(cut);

  PiecesBody body({"up", "load"}, true);
  Request put = get("/b/k");
  put.method = http::verb::put;
  put.headers.set("x-amz-meta-a", "1");
  put.body = &body;
  put.body_length = 6;
  auto r1 = run(scripted.exchange(std::move(put)));
  ASSERT_TRUE(r1.has_value());
  EXPECT_EQ((*r1)->status(), 200);
  EXPECT_EQ((*r1)->head()[http::field::etag], "\"e1\"");
  EXPECT_EQ((*r1)->length(), 11u);
  EXPECT_EQ(body_of(**r1, 3).value(), "hello world");

  auto r2 = run(scripted.exchange(get()));
  ASSERT_FALSE(r2.has_value());
  EXPECT_EQ(r2.error().code(), ErrorCode::kServiceUnavailable);

  auto r3 = run(scripted.exchange(get()));
  ASSERT_TRUE(r3.has_value());
  std::vector<char> buffer(100);
  EXPECT_EQ(run((*r3)->read(buffer)).value(), 4u);
  auto failed = run((*r3)->read(buffer));
  ASSERT_FALSE(failed.has_value());
  EXPECT_EQ(failed.error().code(), ErrorCode::kBadGateway);

  Request head = get();
  head.method = http::verb::head;
  auto r4 = run(scripted.exchange(std::move(head)));  // the script is used up
  ASSERT_TRUE(r4.has_value());
  EXPECT_EQ((*r4)->status(), 500);
  EXPECT_EQ((*r4)->length(), 0u);
  EXPECT_EQ(body_of(**r4).value(), "");

  ASSERT_EQ(scripted.requests().size(), 4u);
  EXPECT_EQ(scripted.requests()[0].method, http::verb::put);
  EXPECT_EQ(scripted.requests()[0].target, "/b/k");
  EXPECT_EQ(scripted.requests()[0].headers["x-amz-meta-a"], "1");
  EXPECT_EQ(scripted.requests()[0].body, "upload");
  EXPECT_EQ(scripted.requests()[3].method, http::verb::head);
  EXPECT_EQ(scripted.pending(), 0u);
}

}  // namespace
}  // namespace tagd::upstream
