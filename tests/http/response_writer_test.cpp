#include "tagd/http/response_writer.hpp"

#include <gtest/gtest.h>

#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/http/read.hpp>
#include <csignal>
#include <deque>
#include <functional>
#include <map>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

#include "tagd/core/metrics.hpp"
#include "tagd/core/strings.hpp"
#include "tagd/s3/request.hpp"

#include "support/raw_response.hpp"

// Each test runs one exchange over a real loopback TCP connection in one io_context:
// the test plays the client (a raw request; it reads the raw response until EOF or an
// error), the server side parses the request head with RequestParser and hands a
// ResponseWriter to the test's script. Waits are bounded (socket timeouts, run_for).

namespace tagd::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using asio::ip::tcp;
using namespace std::chrono_literals;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
constexpr const char* kRequestId = "REQ0123456789";

using Script = std::function<asio::awaitable<void>(ResponseWriter&)>;

struct Outcome : tagd::testing::RawResponse {
  bool server_ran = false;       // the request head parsed and the script returned
};

// `blocking`: the socket is left in blocking mode for the script, as Asio's io_uring
// backend leaves its sockets (its epoll reactor makes them non-blocking).
asio::awaitable<void> serve(tcp::socket socket, const Script& script, bool* ran, bool blocking = false) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  RequestParser parser;
  stream.expires_after(5s);
  auto [ec, n] = co_await bhttp::async_read_header(stream, buffer, parser, kTuple);
  if (ec) {
    ADD_FAILURE() << "server could not read the request head: " << ec.message();
    co_return;
  }
  if (blocking) stream.socket().native_non_blocking(false);
  {
    ResponseWriter writer(stream, parser, kRequestId, 2s);
    co_await script(writer);
  }
  // What the session does after a response: a graceful close (unless the writer reset).
  if (stream.socket().is_open()) {
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream.close();
  }
  *ran = true;
}



// A client that sends nothing more and reads only after `delay`: the server's writes
// fill the socket buffers first.
asio::awaitable<void> read_all_after(tcp::socket client, std::chrono::milliseconds delay, Outcome* out) {
  asio::steady_timer timer(client.get_executor());
  timer.expires_after(delay);
  co_await timer.async_wait(kTuple);
  co_await testing::read_all(std::move(client), out);
}

// One loopback connection in its own io_context, the client's request already sent.
struct Connected {
  asio::io_context ctx;
  tcp::socket client{ctx};
  tcp::socket server{ctx};
  explicit Connected(const std::string& request) {
    tcp::acceptor acceptor(ctx, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    client.connect(acceptor.local_endpoint());
    server = acceptor.accept();
    asio::write(client, asio::buffer(request));
  }
};

// `client_closes`: the client sends the request and closes its socket without reading.
// `client_delay`: the client starts reading only after it.
Outcome run_exchange(const std::string& request, const Script& script, bool client_closes = false,
                     std::chrono::milliseconds client_delay = 0ms, bool blocking_server = false) {
  Connected c(request);
  asio::io_context& ctx = c.ctx;
  tcp::socket& client = c.client;
  tcp::socket& server = c.server;
  Outcome out;
  if (client_closes) {
    client.close();
    out.client_done = true;
  } else if (client_delay > 0ms) {
    asio::co_spawn(ctx, read_all_after(std::move(client), client_delay, &out), asio::detached);
  } else {
    asio::co_spawn(ctx, testing::read_all(std::move(client), &out), asio::detached);
  }
  asio::co_spawn(ctx, serve(std::move(server), script, &out.server_ran, blocking_server), asio::detached);
  ctx.run_for(10s);
  EXPECT_TRUE(out.server_ran) << "server side did not finish";
  EXPECT_TRUE(out.client_done) << "client side did not finish";
  out.parse();
  return out;
}

bhttp::response_header<> make_head(bhttp::status status) {
  bhttp::response_header<> head;
  head.result(status);
  return head;
}

const std::string kGet11 = "GET /bucket/key HTTP/1.1\r\nHost: tagd\r\n\r\n";
const std::string kHead11 = "HEAD /bucket/key HTTP/1.1\r\nHost: tagd\r\n\r\n";

struct Counts {
  std::uint64_t r2, r3, r4, r5, hit, miss, reval, bypass, disabled, aborts, body_bytes;
  static Counts now() {
    auto& m = metrics();
    return {m.responses_2xx.get(), m.responses_3xx.get(), m.responses_4xx.get(), m.responses_5xx.get(),
            m.cache_hits.get(),    m.cache_misses.get(),  m.cache_revalidated.get(), m.cache_bypass.get(),
            m.cache_disabled.get(), m.client_aborts.get(), m.response_body_bytes.get()};
  }
};

struct DrainingGuard {
  DrainingGuard() { metrics().draining.set(1); }
  ~DrainingGuard() { metrics().draining.set(0); }
};

// ---------------------------------------------------------------------------------------
// Versions and framing

TEST(ResponseWriter, Http10ClientUnknownLengthIsCloseDelimited) {
  Status head_status{ErrorCode::kInternalError, "not run"}, a = head_status, b = head_status, fin = head_status;
  bool keep_alive = true;
  Outcome out = run_exchange("GET /bucket/key HTTP/1.0\r\nHost: tagd\r\nConnection: keep-alive\r\n\r\n",
                         [&](ResponseWriter& w) -> asio::awaitable<void> {
                           auto head = make_head(bhttp::status::ok);
                           head_status = co_await w.write_head(head, std::nullopt);
                           a = co_await w.write_body("hello ");
                           b = co_await w.write_body("world");
                           fin = co_await w.finish();
                           keep_alive = w.keep_alive();
                         });
  EXPECT_TRUE(head_status.is_ok() && a.is_ok() && b.is_ok() && fin.is_ok()) << fin.message();
  EXPECT_EQ(out.status_line, "HTTP/1.0 200 OK");
  EXPECT_EQ(out.count("transfer-encoding"), 0u);
  EXPECT_EQ(out.count("content-length"), 0u);
  EXPECT_NE(to_lower(out.header("connection")), "keep-alive");
  EXPECT_EQ(out.body, "hello world");
  EXPECT_EQ(out.end, asio::error::eof);
  EXPECT_FALSE(keep_alive);
}

TEST(ResponseWriter, Http10ClientWithLengthKeepsAlive) {
  bool keep_alive = false;
  Outcome out = run_exchange("GET /bucket/key HTTP/1.0\r\nHost: tagd\r\nConnection: keep-alive\r\n\r\n",
                         [&](ResponseWriter& w) -> asio::awaitable<void> {
                           auto head = make_head(bhttp::status::ok);
                           { Status st_ = co_await w.write_head(head, 5); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
                           { Status st_ = co_await w.write_body("hello"); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
                           { Status st_ = co_await w.finish(); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
                           keep_alive = w.keep_alive();
                         });
  EXPECT_EQ(out.status_line, "HTTP/1.0 200 OK");
  EXPECT_EQ(out.header("content-length"), "5");
  EXPECT_EQ(to_lower(out.header("connection")), "keep-alive");
  EXPECT_EQ(out.body, "hello");
  EXPECT_TRUE(keep_alive);
}

TEST(ResponseWriter, Http11UnknownLengthIsChunked) {
  bool before_finish = true, after_finish = false;
  Status fin{ErrorCode::kInternalError, "not run"};
  Outcome out = run_exchange(kGet11, [&](ResponseWriter& w) -> asio::awaitable<void> {
    auto head = make_head(bhttp::status::ok);
    head.set(bhttp::field::content_length, "999");  // stale: the length is unknown now
    { Status st_ = co_await w.write_head(head, std::nullopt); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
    { Status st_ = co_await w.write_body("hello"); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
    { Status st_ = co_await w.write_body(""); EXPECT_TRUE(st_.is_ok()) << st_.message(); }  // must not end the body
    { Status st_ = co_await w.write_body(" world"); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
    before_finish = w.keep_alive();
    fin = co_await w.finish();
    after_finish = w.keep_alive();
    { Status st_ = co_await w.finish(); EXPECT_TRUE(st_.is_ok()) << st_.message(); }  // idempotent: no second last chunk
    EXPECT_EQ(w.body_bytes(), 11u);
  });
  EXPECT_TRUE(fin.is_ok()) << fin.message();
  EXPECT_EQ(out.status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(to_lower(out.header("transfer-encoding")), "chunked");
  EXPECT_EQ(out.count("content-length"), 0u);
  EXPECT_EQ(out.count("connection"), 0u);
  EXPECT_EQ(out.body, "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
  EXPECT_EQ(out.end, asio::error::eof);
  EXPECT_FALSE(before_finish);
  EXPECT_TRUE(after_finish);
}

TEST(ResponseWriter, ContentLengthBody) {
  const Counts before = Counts::now();
  bool keep_alive = false;
  Outcome out = run_exchange(kGet11, [&](ResponseWriter& w) -> asio::awaitable<void> {
    auto head = make_head(bhttp::status::ok);
    head.set(bhttp::field::content_type, "text/plain");
    { Status st_ = co_await w.write_head(head, 11); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
    { Status st_ = co_await w.write_body("hello "); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
    { Status st_ = co_await w.write_body("world"); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
    { Status st_ = co_await w.finish(); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
    keep_alive = w.keep_alive();
    EXPECT_EQ(w.status(), 200);
    EXPECT_TRUE(w.head_written());
    // What went out is checked on the wire below (the head is serialised from `head`).
  });
  EXPECT_EQ(out.status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(out.header("content-length"), "11");
  EXPECT_EQ(out.header("content-type"), "text/plain");
  EXPECT_EQ(out.header("server"), "tagd");
  EXPECT_EQ(out.header("x-amz-request-id"), kRequestId);
  EXPECT_EQ(out.count("transfer-encoding"), 0u);
  EXPECT_EQ(out.count("x-cache"), 0u);
  EXPECT_EQ(out.body, "hello world");
  EXPECT_TRUE(keep_alive);
  EXPECT_EQ(Counts::now().body_bytes - before.body_bytes, 11u);
}

TEST(ResponseWriter, RelayedServerAndRequestIdAreKept) {
  Outcome out = run_exchange(kGet11, [&](ResponseWriter& w) -> asio::awaitable<void> {
    auto head = make_head(bhttp::status::ok);
    head.set(bhttp::field::server, "AmazonS3");
    head.set("x-amz-request-id", "UPSTREAMID");
    { Status st_ = co_await w.send(bhttp::status::ok, "", ""); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
  });
  // send() builds its own head: Server/x-amz-request-id are tagd's.
  EXPECT_EQ(out.header("server"), "tagd");
  EXPECT_EQ(out.header("x-amz-request-id"), kRequestId);
  EXPECT_EQ(out.header("content-length"), "0");
  EXPECT_EQ(out.count("content-type"), 0u);

  Outcome relayed = run_exchange(kGet11, [&](ResponseWriter& w) -> asio::awaitable<void> {
    auto head = make_head(bhttp::status::ok);
    head.set(bhttp::field::server, "AmazonS3");
    head.set("x-amz-request-id", "UPSTREAMID");
    { Status st_ = co_await w.write_head(head, 0); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
    { Status st_ = co_await w.finish(); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
  });
  EXPECT_EQ(relayed.header("server"), "AmazonS3");
  EXPECT_EQ(relayed.count("server"), 1u);
  EXPECT_EQ(relayed.header("x-amz-request-id"), "UPSTREAMID");
  EXPECT_EQ(relayed.count("x-amz-request-id"), 1u);
}

TEST(ResponseWriter, HeadRequestKeepsContentLengthAndSendsNoBody) {
  for (std::optional<std::uint64_t> length : {std::optional<std::uint64_t>(1234), std::optional<std::uint64_t>()}) {
    bool keep_alive = false;
    Outcome out = run_exchange(kHead11, [&](ResponseWriter& w) -> asio::awaitable<void> {
      auto head = make_head(bhttp::status::ok);
      head.set(bhttp::field::content_length, "1234");  // the object's length, as upstream answered
      { Status st_ = co_await w.write_head(head, length); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
      { Status st_ = co_await w.finish(); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
      keep_alive = w.keep_alive();
    });
    SCOPED_TRACE(length ? "known length" : "unknown length");
    EXPECT_EQ(out.status_line, "HTTP/1.1 200 OK");
    EXPECT_EQ(out.header("content-length"), "1234");
    EXPECT_EQ(out.count("transfer-encoding"), 0u);
    EXPECT_EQ(out.body, "");
    EXPECT_TRUE(keep_alive);
  }
}

TEST(ResponseWriter, NotModifiedSendsNoBody) {
  bool keep_alive = false;
  Outcome out = run_exchange(kGet11, [&](ResponseWriter& w) -> asio::awaitable<void> {
    auto head = make_head(bhttp::status::not_modified);
    head.set(bhttp::field::etag, "\"abc\"");
    head.set(bhttp::field::content_length, "50");
    { Status st_ = co_await w.write_head(head, 50); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
    { Status st_ = co_await w.finish(); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
    keep_alive = w.keep_alive();
  });
  EXPECT_EQ(out.status_line, "HTTP/1.1 304 Not Modified");
  EXPECT_EQ(out.header("content-length"), "50");
  EXPECT_EQ(out.count("transfer-encoding"), 0u);
  EXPECT_EQ(out.body, "");
  EXPECT_TRUE(keep_alive);

  // Without a Content-Length in the head and an unknown length: still no framing at all.
  Outcome bare = run_exchange(kGet11, [&](ResponseWriter& w) -> asio::awaitable<void> {
    auto head = make_head(bhttp::status::not_modified);
    { Status st_ = co_await w.write_head(head, std::nullopt); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
    { Status st_ = co_await w.finish(); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
    EXPECT_TRUE(w.keep_alive());
  });
  EXPECT_EQ(bare.count("content-length"), 0u);
  EXPECT_EQ(bare.count("transfer-encoding"), 0u);
  EXPECT_EQ(bare.body, "");
}

TEST(ResponseWriter, BodyBytesOnABodylessResponseAreRefused) {
  Status s;
  Outcome out = run_exchange(kHead11, [&](ResponseWriter& w) -> asio::awaitable<void> {
    auto head = make_head(bhttp::status::ok);
    { Status st_ = co_await w.write_head(head, 3); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
    s = co_await w.write_body("abc");
    EXPECT_FALSE(w.keep_alive());
  });
  EXPECT_EQ(s.code(), ErrorCode::kInternalError);
  EXPECT_EQ(out.body, "");
  EXPECT_EQ(out.end, asio::error::connection_reset);
}

// ---------------------------------------------------------------------------------------
// Keep-alive

TEST(ResponseWriter, UnreadRequestBodyCloses) {
  bool keep_alive = true;
  // The body is announced but never read (nor sent).
  Outcome out = run_exchange("PUT /bucket/key HTTP/1.1\r\nHost: tagd\r\nContent-Length: 10\r\n\r\n",
                         [&](ResponseWriter& w) -> asio::awaitable<void> {
                           { Status st_ = co_await w.send(bhttp::status::ok, "text/plain", "ok"); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
                           keep_alive = w.keep_alive();
                         });
  EXPECT_EQ(out.status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(to_lower(out.header("connection")), "close");
  EXPECT_EQ(out.body, "ok");
  EXPECT_FALSE(keep_alive);
}

TEST(ResponseWriter, ClientConnectionCloseCloses) {
  bool keep_alive = true;
  Outcome out = run_exchange("GET /bucket/key HTTP/1.1\r\nHost: tagd\r\nConnection: close\r\n\r\n",
                         [&](ResponseWriter& w) -> asio::awaitable<void> {
                           { Status st_ = co_await w.send(bhttp::status::ok, "text/plain", "ok"); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
                           keep_alive = w.keep_alive();
                         });
  EXPECT_EQ(to_lower(out.header("connection")), "close");
  EXPECT_FALSE(keep_alive);
}

TEST(ResponseWriter, DrainingCloses) {
  bool keep_alive = true;
  Outcome out;
  {
    DrainingGuard draining;
    out = run_exchange(kGet11, [&](ResponseWriter& w) -> asio::awaitable<void> {
      { Status st_ = co_await w.send(bhttp::status::ok, "text/plain", "ok"); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
      keep_alive = w.keep_alive();
    });
  }
  EXPECT_EQ(to_lower(out.header("connection")), "close");
  EXPECT_EQ(out.body, "ok");
  EXPECT_FALSE(keep_alive);
}

TEST(ResponseWriter, HopByHopHeadersDropped) {
  bool keep_alive = false;
  Outcome out = run_exchange(kGet11, [&](ResponseWriter& w) -> asio::awaitable<void> {
    auto head = make_head(bhttp::status::ok);
    head.set(bhttp::field::connection, "X-Secret, close");
    head.insert(bhttp::field::connection, "x-other");  // a second Connection line
    head.set(bhttp::field::keep_alive, "timeout=5");
    head.set("Proxy-Connection", "keep-alive");
    head.set(bhttp::field::te, "trailers");
    head.set(bhttp::field::trailer, "x-amz-checksum-crc32");
    head.set(bhttp::field::transfer_encoding, "chunked");
    head.set(bhttp::field::upgrade, "h2c");
    head.set("X-Secret", "1");
    head.set("X-Other", "2");
    head.set("X-Kept", "yes");
    { Status st_ = co_await w.write_head(head, 2); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
    { Status st_ = co_await w.write_body("ok"); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
    { Status st_ = co_await w.finish(); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
    keep_alive = w.keep_alive();
  });
  for (const char* name : {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
                           "upgrade", "x-secret", "x-other"}) {
    EXPECT_EQ(out.count(name), 0u) << name;
  }
  EXPECT_EQ(out.header("x-kept"), "yes");
  EXPECT_EQ(out.header("content-length"), "2");
  EXPECT_EQ(out.body, "ok");
  // The upstream's "Connection: close" described its hop, not the client's.
  EXPECT_TRUE(keep_alive);
}

// ---------------------------------------------------------------------------------------
// X-Cache and counters

TEST(ResponseWriter, XCacheFromOutcomeCountsExactlyOne) {
  struct Case {
    CacheOutcome outcome;
    const char* label;
    std::uint64_t Counts::*counter;
  };
  const Case cases[] = {{CacheOutcome::kHit, "HIT", &Counts::hit},
                        {CacheOutcome::kMiss, "MISS", &Counts::miss},
                        {CacheOutcome::kRevalidated, "REVALIDATED", &Counts::reval},
                        {CacheOutcome::kBypass, "BYPASS", &Counts::bypass},
                        {CacheOutcome::kDisabled, "DISABLED", &Counts::disabled}};
  std::uint64_t Counts::*all[] = {&Counts::hit, &Counts::miss, &Counts::reval, &Counts::bypass, &Counts::disabled};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    const Counts before = Counts::now();
    std::string x_cache;
    Outcome out = run_exchange(kGet11, [&](ResponseWriter& w) -> asio::awaitable<void> {
      auto head = make_head(bhttp::status::ok);
      head.set("X-Cache", "Hit from cloudfront");  // an upstream's own X-Cache
      { Status st_ = co_await w.write_head(head, 1, c.outcome); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
      { Status st_ = co_await w.write_body("x"); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
      { Status st_ = co_await w.finish(); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
      x_cache = std::string(w.x_cache());
    });
    const Counts after = Counts::now();
    EXPECT_EQ(out.count("x-cache"), 1u);
    EXPECT_EQ(out.header("x-cache"), c.label);
    EXPECT_EQ(x_cache, c.label);
    for (auto counter : all) {
      EXPECT_EQ(after.*counter - before.*counter, counter == c.counter ? 1u : 0u);
    }
  }
}

TEST(ResponseWriter, NoOutcomeStripsUpstreamXCacheAndCountsNothing) {
  const Counts before = Counts::now();
  Outcome out = run_exchange(kGet11, [&](ResponseWriter& w) -> asio::awaitable<void> {
    auto head = make_head(bhttp::status::ok);
    head.set("X-Cache", "Hit from cloudfront");
    head.insert("x-cache", "MISS");
    { Status st_ = co_await w.write_head(head, 0); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
    { Status st_ = co_await w.finish(); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
    EXPECT_EQ(w.x_cache(), "");
  });
  const Counts after = Counts::now();
  EXPECT_EQ(out.status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(out.count("x-cache"), 0u);
  EXPECT_EQ(after.hit + after.miss + after.reval + after.bypass + after.disabled,
            before.hit + before.miss + before.reval + before.bypass + before.disabled);
}

// A head with a Content-Length body (the hit path) is serialised from the caller's fields:
// the caller's own Content-Length and X-Cache never reach the wire, the writer's do, once.
TEST(ResponseWriter, ContentLengthHeadReplacesLengthAndXCache) {
  Outcome out = run_exchange(kGet11, [&](ResponseWriter& w) -> asio::awaitable<void> {
    auto head = make_head(bhttp::status::partial_content);
    head.set(bhttp::field::content_length, "999");
    head.set("X-Cache", "Hit from cloudfront");
    head.set(bhttp::field::content_range, "bytes 0-1/10");
    head.set("x-amz-request-id", "UPSTREAMID");
    { Status st_ = co_await w.write_head(head, 2, CacheOutcome::kHit); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
    { Status st_ = co_await w.write_body("ok"); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
    { Status st_ = co_await w.finish(); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
  });
  EXPECT_EQ(out.status_line, "HTTP/1.1 206 Partial Content");
  EXPECT_EQ(out.count("content-length"), 1u);
  EXPECT_EQ(out.header("content-length"), "2");
  EXPECT_EQ(out.count("x-cache"), 1u);
  EXPECT_EQ(out.header("x-cache"), std::string(x_cache_label(CacheOutcome::kHit)));
  EXPECT_EQ(out.header("content-range"), "bytes 0-1/10");
  EXPECT_EQ(out.count("x-amz-request-id"), 1u);
  EXPECT_EQ(out.header("x-amz-request-id"), "UPSTREAMID");
  EXPECT_EQ(out.count("connection"), 0u);
  EXPECT_EQ(out.body, "ok");
}

// A prepared head (a cached object's fields serialised once) must put on the wire exactly
// what write_head sends for a head with the same fields: every version and connection
// choice, 200 and 206.
TEST(ResponseWriter, PreparedHeadSendsTheBytesWriteHeadSends) {
  const std::string requests[] = {kGet11, "GET /bucket/key HTTP/1.1\r\nHost: tagd\r\nConnection: close\r\n\r\n",
                                  "GET /bucket/key HTTP/1.0\r\nHost: tagd\r\n\r\n",
                                  "GET /bucket/key HTTP/1.0\r\nHost: tagd\r\nConnection: keep-alive\r\n\r\n"};
  for (const auto& request : requests) {
    for (bhttp::status status : {bhttp::status::ok, bhttp::status::partial_content}) {
      const Counts before = Counts::now();
      Outcome by_fields = run_exchange(request, [&](ResponseWriter& w) -> asio::awaitable<void> {
        auto head = make_head(status);
        head.set(bhttp::field::etag, "\"abc\"");
        head.set("x-amz-meta-k", "v");
        head.set(bhttp::field::accept_ranges, "bytes");
        if (status == bhttp::status::partial_content) head.set(bhttp::field::content_range, "bytes 1-5/10");
        head.set(bhttp::field::content_length, "5");
        { Status st_ = co_await w.write_head(head, 5, CacheOutcome::kHit); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
        { Status st_ = co_await w.write_body("hello"); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
        { Status st_ = co_await w.finish(); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
      });
      const Counts middle = Counts::now();
      bool keep_alive = false;
      Outcome prepared = run_exchange(request, [&](ResponseWriter& w) -> asio::awaitable<void> {
        const std::string range =
            status == bhttp::status::partial_content ? "Content-Range: bytes 1-5/10\r\n" : "";
        const std::string_view fields[] = {"ETag: \"abc\"\r\nx-amz-meta-k: v\r\n", "",
                                           "Accept-Ranges: bytes\r\n", range};
        { Status st_ = w.write_head_prepared(status, fields, 5, CacheOutcome::kHit); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
        EXPECT_TRUE(w.head_written());
        EXPECT_EQ(w.status(), static_cast<int>(status));
        { Status st_ = co_await w.write_body("hello"); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
        { Status st_ = co_await w.finish(); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
        keep_alive = w.keep_alive();
      });
      const Counts after = Counts::now();
      EXPECT_EQ(prepared.response, by_fields.response) << request;
      EXPECT_EQ(prepared.body, "hello");
      EXPECT_EQ(keep_alive, request.find("close") == std::string::npos &&
                                (request.find("HTTP/1.1") != std::string::npos ||
                                 request.find("keep-alive") != std::string::npos))
          << request;
      // Counted as write_head counts: one hit, one 2xx.
      EXPECT_EQ(middle.hit - before.hit, 1u);
      EXPECT_EQ(after.hit - middle.hit, 1u);
      EXPECT_EQ(after.r2 - middle.r2, 1u);
    }
  }
}

TEST(ResponseWriter, PreparedHeadOnlyForAGetWithABody) {
  Outcome out = run_exchange(kHead11, [&](ResponseWriter& w) -> asio::awaitable<void> {
    const std::string_view fields[] = {"ETag: \"abc\"\r\n"};
    EXPECT_FALSE(w.write_head_prepared(bhttp::status::ok, fields, 5, CacheOutcome::kHit).is_ok());
    EXPECT_FALSE(w.head_written());
    auto head = make_head(bhttp::status::ok);
    head.set(bhttp::field::content_length, "5");
    { Status st_ = co_await w.write_head(head, 5); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
  });
  EXPECT_EQ(out.status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(out.body, "");
  Outcome get = run_exchange(kGet11, [&](ResponseWriter& w) -> asio::awaitable<void> {
    const std::string_view fields[] = {"ETag: \"abc\"\r\n"};
    EXPECT_FALSE(w.write_head_prepared(bhttp::status::not_modified, fields, 5).is_ok());
    EXPECT_FALSE(w.write_head_prepared(bhttp::status::ok, fields, 0).is_ok());
    EXPECT_FALSE(w.head_written());
    { Status st_ = co_await w.send(bhttp::status::ok, "text/plain", "x"); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
  });
  EXPECT_EQ(get.body, "x");
}

TEST(ResponseWriter, StatusClassCountedOncePerHead) {
  struct Case {
    bhttp::status status;
    std::uint64_t Counts::*counter;
  };
  const Case cases[] = {{bhttp::status::ok, &Counts::r2},
                        {bhttp::status::not_modified, &Counts::r3},
                        {bhttp::status::not_found, &Counts::r4},
                        {bhttp::status::bad_gateway, &Counts::r5}};
  std::uint64_t Counts::*all[] = {&Counts::r2, &Counts::r3, &Counts::r4, &Counts::r5};
  for (const auto& c : cases) {
    SCOPED_TRACE(static_cast<int>(c.status));
    const Counts before = Counts::now();
    Status second;
    run_exchange(kGet11, [&](ResponseWriter& w) -> asio::awaitable<void> {
      { Status st_ = co_await w.send(c.status, "text/plain", "x", CacheOutcome::kHit); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
      auto head = make_head(c.status);
      second = co_await w.write_head(head, 0, CacheOutcome::kHit);  // a bug: refused, not counted
    });
    const Counts after = Counts::now();
    EXPECT_EQ(second.code(), ErrorCode::kInternalError);
    for (auto counter : all) {
      EXPECT_EQ(after.*counter - before.*counter, counter == c.counter ? 1u : 0u);
    }
    EXPECT_EQ(after.hit - before.hit, 1u);
  }
}

// ---------------------------------------------------------------------------------------
// send / send_error

TEST(ResponseWriter, SendErrorWritesS3ErrorDocument) {
  bool keep_alive = false;
  Outcome out = run_exchange("GET /bucket/some/key?versionId=3&x=1 HTTP/1.1\r\nHost: tagd\r\n\r\n",
                         [&](ResponseWriter& w) -> asio::awaitable<void> {
                           { Status st_ = co_await w.send_error(Status(ErrorCode::kAccessDenied, "Access Denied"), CacheOutcome::kBypass); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
                           keep_alive = w.keep_alive();
                           EXPECT_EQ(w.status(), 403);
                         });
  const std::string xml = s3::error_xml("AccessDenied", "Access Denied", "/bucket/some/key", kRequestId);
  EXPECT_EQ(out.status_line, "HTTP/1.1 403 Forbidden");
  EXPECT_EQ(out.header("content-type"), "application/xml");
  EXPECT_EQ(out.header("content-length"), std::to_string(xml.size()));
  EXPECT_EQ(out.header("x-amz-request-id"), kRequestId);
  EXPECT_EQ(out.header("x-cache"), "BYPASS");
  EXPECT_EQ(out.body, xml);
  EXPECT_NE(out.body.find("<Code>AccessDenied</Code>"), std::string::npos);
  EXPECT_NE(out.body.find("<Resource>/bucket/some/key</Resource>"), std::string::npos);
  EXPECT_NE(out.body.find(std::string("<RequestId>") + kRequestId + "</RequestId>"), std::string::npos);
  EXPECT_TRUE(keep_alive);
}

TEST(ResponseWriter, SendErrorStatusFollowsCode) {
  Outcome out = run_exchange(kGet11, [&](ResponseWriter& w) -> asio::awaitable<void> {
    { Status st_ = co_await w.send_error(Status(ErrorCode::kServiceUnavailable, "upstream unreachable")); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
  });
  EXPECT_EQ(out.status_line.substr(0, 12), "HTTP/1.1 " + std::to_string(http_status(ErrorCode::kServiceUnavailable)));
  EXPECT_NE(out.body.find(std::string("<Code>") + s3_code(ErrorCode::kServiceUnavailable) + "</Code>"),
            std::string::npos);
}

TEST(ResponseWriter, SendErrorToHeadRequestHasLengthButNoBody) {
  bool keep_alive = false;
  Outcome out = run_exchange("HEAD /bucket/key?acl HTTP/1.1\r\nHost: tagd\r\n\r\n",
                         [&](ResponseWriter& w) -> asio::awaitable<void> {
                           { Status st_ = co_await w.send_error(Status(ErrorCode::kInvalidRange, "not satisfiable")); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
                           keep_alive = w.keep_alive();
                           EXPECT_EQ(w.body_bytes(), 0u);
                         });
  const std::string xml = s3::error_xml("InvalidRange", "not satisfiable", "/bucket/key", kRequestId);
  EXPECT_EQ(out.status_line, "HTTP/1.1 416 Range Not Satisfiable");
  EXPECT_EQ(out.header("content-length"), std::to_string(xml.size()));
  EXPECT_EQ(out.body, "");
  EXPECT_TRUE(keep_alive);
}

// ---------------------------------------------------------------------------------------
// Aborts

TEST(ResponseWriter, AbortResetsTheConnection) {
  bool keep_alive = true;
  Outcome out = run_exchange(kGet11, [&](ResponseWriter& w) -> asio::awaitable<void> {
    auto head = make_head(bhttp::status::ok);
    { Status st_ = co_await w.write_head(head, 100); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
    { Status st_ = co_await w.write_body("partial"); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
    w.abort();
    w.abort();  // idempotent
    keep_alive = w.keep_alive();
    { Status st_ = co_await w.write_body("more"); EXPECT_FALSE(st_.is_ok()) << st_.message(); }
  });
  EXPECT_EQ(out.end, asio::error::connection_reset) << out.end.message();
  EXPECT_FALSE(keep_alive);
}

TEST(ResponseWriter, AbortOfACloseDelimitedBodyIsNotAnEof) {
  // HTTP/1.0, unknown length: only the reset tells the client the body is incomplete.
  Outcome out = run_exchange("GET /bucket/key HTTP/1.0\r\n\r\n", [&](ResponseWriter& w) -> asio::awaitable<void> {
    auto head = make_head(bhttp::status::ok);
    { Status st_ = co_await w.write_head(head, std::nullopt); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
    { Status st_ = co_await w.write_body("partial"); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
    w.abort();
  });
  EXPECT_EQ(out.end, asio::error::connection_reset) << out.end.message();
}

TEST(ResponseWriter, ShortContentLengthBodyFailsAndResets) {
  Status fin, again;
  bool keep_alive = true;
  Outcome out = run_exchange(kGet11, [&](ResponseWriter& w) -> asio::awaitable<void> {
    auto head = make_head(bhttp::status::ok);
    { Status st_ = co_await w.write_head(head, 100); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
    { Status st_ = co_await w.write_body("short"); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
    fin = co_await w.finish();
    again = co_await w.finish();
    keep_alive = w.keep_alive();
  });
  EXPECT_EQ(fin.code(), ErrorCode::kInternalError);
  EXPECT_FALSE(again.is_ok());
  EXPECT_FALSE(keep_alive);
  EXPECT_EQ(out.end, asio::error::connection_reset) << out.end.message();
}

TEST(ResponseWriter, BodyLongerThanContentLengthIsRefused) {
  Status s;
  Outcome out = run_exchange(kGet11, [&](ResponseWriter& w) -> asio::awaitable<void> {
    auto head = make_head(bhttp::status::ok);
    { Status st_ = co_await w.write_head(head, 3); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
    s = co_await w.write_body("toolong");
    EXPECT_FALSE(w.keep_alive());
    EXPECT_EQ(w.body_bytes(), 0u);
  });
  EXPECT_EQ(s.code(), ErrorCode::kInternalError);
  EXPECT_EQ(out.body.find("toolong"), std::string::npos);
  EXPECT_EQ(out.end, asio::error::connection_reset) << out.end.message();
}

TEST(ResponseWriter, ClientGoneIsATimeoutStatusAndCounted) {
  const Counts before = Counts::now();
  Status s;
  bool keep_alive = true;
  run_exchange(
      kGet11,
      [&](ResponseWriter& w) -> asio::awaitable<void> {
        auto head = make_head(bhttp::status::ok);
        constexpr std::uint64_t kPiece = 64 * 1024, kPieces = 1024;
        Status h = co_await w.write_head(head, kPiece * kPieces);
        if (!h) {
          s = h;
          co_return;
        }
        const std::string piece(kPiece, 'x');
        for (std::uint64_t i = 0; i < kPieces && s.is_ok(); ++i) s = co_await w.write_body(piece);
        keep_alive = w.keep_alive();
      },
      /*client_closes=*/true);
  EXPECT_EQ(s.code(), ErrorCode::kRequestTimeout) << s.message();
  EXPECT_FALSE(keep_alive);
  EXPECT_EQ(Counts::now().aborts - before.aborts, 1u);
}

// ---------------------------------------------------------------------------------------
// write_body_from

class FakeSource : public BodySource {
 public:
  FakeSource(std::vector<std::string> pieces, std::optional<Status> error)
      : pieces_(pieces.begin(), pieces.end()), error_(std::move(error)) {}

  asio::awaitable<Result<std::size_t>> read(std::span<char> out) override {
    ++reads;
    max_out = std::max(max_out, out.size());
    if (pieces_.empty()) {
      if (error_) co_return *error_;
      co_return std::size_t{0};
    }
    std::string& piece = pieces_.front();
    std::size_t n = std::min(piece.size(), out.size());
    std::copy_n(piece.data(), n, out.data());
    piece.erase(0, n);
    if (piece.empty()) pieces_.pop_front();
    co_return n;
  }
  std::optional<std::uint64_t> length() const override { return std::nullopt; }

  int reads = 0;
  std::size_t max_out = 0;

 private:
  std::deque<std::string> pieces_;
  std::optional<Status> error_;
};

TEST(ResponseWriter, WriteBodyFromStreamsToTheEnd) {
  Status s;
  bool keep_alive = false;
  FakeSource source({"ab", "cdefg"}, std::nullopt);
  Outcome out = run_exchange(kGet11, [&](ResponseWriter& w) -> asio::awaitable<void> {
    auto head = make_head(bhttp::status::ok);
    { Status st_ = co_await w.write_head(head, std::nullopt); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
    std::array<char, 4> buffer;
    s = co_await w.write_body_from(source, buffer);
    keep_alive = w.keep_alive();
  });
  EXPECT_TRUE(s.is_ok()) << s.message();
  // "cdefg" through a 4-byte buffer: two pieces.
  EXPECT_EQ(out.body, "2\r\nab\r\n4\r\ncdef\r\n1\r\ng\r\n0\r\n\r\n");
  EXPECT_EQ(source.max_out, 4u);
  EXPECT_EQ(source.reads, 4);
  EXPECT_TRUE(keep_alive);
}

TEST(ResponseWriter, WriteBodyFromSourceErrorAborts) {
  Status s;
  bool keep_alive = true;
  FakeSource source({"ab", "cd"}, Status(ErrorCode::kBadGateway, "upstream truncated"));
  Outcome out = run_exchange(kGet11, [&](ResponseWriter& w) -> asio::awaitable<void> {
    auto head = make_head(bhttp::status::ok);
    { Status st_ = co_await w.write_head(head, std::nullopt); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
    std::array<char, 64> buffer;
    s = co_await w.write_body_from(source, buffer);
    keep_alive = w.keep_alive();
  });
  EXPECT_EQ(s.code(), ErrorCode::kBadGateway);
  EXPECT_EQ(s.message(), "upstream truncated");
  EXPECT_FALSE(keep_alive);
  EXPECT_EQ(out.body.find("0\r\n\r\n"), std::string::npos) << "a last chunk would pass for a whole body";
  EXPECT_EQ(out.end, asio::error::connection_reset) << out.end.message();
}

TEST(ResponseWriter, WriteBodyFromShortSourceForContentLengthResets) {
  Status s;
  FakeSource source({"abc"}, std::nullopt);  // ends cleanly, but short of the announced 10
  Outcome out = run_exchange(kGet11, [&](ResponseWriter& w) -> asio::awaitable<void> {
    auto head = make_head(bhttp::status::ok);
    { Status st_ = co_await w.write_head(head, 10); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
    std::array<char, 64> buffer;
    s = co_await w.write_body_from(source, buffer);
    EXPECT_FALSE(w.keep_alive());
  });
  EXPECT_EQ(s.code(), ErrorCode::kInternalError);
  EXPECT_EQ(out.end, asio::error::connection_reset) << out.end.message();
}

// ---------------------------------------------------------------------------------------
// Pieces sent from a file (sendfile)

// Lends `pieces` (lengths) of a memfd holding a known pattern, in order, as a cached body
// in memfd slots does: each piece a view of the file's mapping, lend_piece_file() where it lies.
class FileSource : public BodySource {
 public:
  explicit FileSource(std::vector<std::size_t> pieces) : pieces_(std::move(pieces)) {
    for (std::size_t n : pieces_) total_ += n;
    fd_ = ::memfd_create("writer-test", MFD_CLOEXEC);
    EXPECT_GE(fd_, 0);
    bytes_.resize(total_);
    for (std::size_t i = 0; i < total_; ++i) bytes_[i] = static_cast<char>('a' + (i * 7 + i / 4096) % 26);
    EXPECT_EQ(::pwrite(fd_, bytes_.data(), total_, 0), static_cast<ssize_t>(total_));
    map_ = static_cast<const char*>(::mmap(nullptr, total_, PROT_READ, MAP_SHARED, fd_, 0));
    EXPECT_NE(map_, MAP_FAILED);
  }
  ~FileSource() override {
    ::munmap(const_cast<char*>(map_), total_);
    ::close(fd_);
  }
  asio::awaitable<Result<std::size_t>> read(std::span<char>) override {
    co_return Status(ErrorCode::kInternalError, "FileSource lends its pieces");
  }
  asio::awaitable<Result<std::span<const char>>> next(std::span<char>) override {
    if (next_ == pieces_.size()) co_return std::span<const char>();
    lent_at_ = offset_;
    offset_ += pieces_[next_];
    co_return std::span<const char>(map_ + lent_at_, pieces_[next_++]);
  }
  PieceFile lend_piece_file() override {
    ++files_lent;
    return PieceFile{fd_, lent_at_};
  }
  std::optional<std::uint64_t> length() const override { return total_; }
  const std::string& bytes() const { return bytes_; }
  std::uint64_t total() const { return total_; }

  int files_lent = 0;

 private:
  std::vector<std::size_t> pieces_;
  std::size_t next_ = 0;
  std::uint64_t total_ = 0;
  std::uint64_t offset_ = 0;
  std::uint64_t lent_at_ = 0;
  int fd_ = -1;
  const char* map_ = nullptr;
  std::string bytes_;
};

TEST(ResponseWriter, LargePiecesLyingInAFileAreSentFromItAndSmallOnesCopied) {
  FileSource source({100, 256 * 1024, 1000, 1 << 20});
  const std::uint64_t sendfile_before = metrics().response_body_bytes_sendfile.get();
  Status s;
  bool keep_alive = false;
  Outcome out = run_exchange(kGet11, [&](ResponseWriter& w) -> asio::awaitable<void> {
    auto head = make_head(bhttp::status::ok);
    { Status st_ = co_await w.write_head(head, source.total()); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
    std::array<char, 64> buffer;
    s = co_await w.write_body_from(source, buffer);
    keep_alive = w.keep_alive();
  });
  EXPECT_TRUE(s.is_ok()) << s.message();
  EXPECT_TRUE(keep_alive);
  EXPECT_EQ(out.status_line, "HTTP/1.1 200 OK");
  ASSERT_EQ(out.body.size(), source.total());
  EXPECT_TRUE(out.body == source.bytes()) << "body bytes differ from the file's";
  // Only the two large pieces went by file; the small ones were copied.
  EXPECT_EQ(source.files_lent, 2);
  EXPECT_EQ(metrics().response_body_bytes_sendfile.get() - sendfile_before, 256u * 1024 + (1u << 20));
}

TEST(ResponseWriter, FileSentToASlowClientWaitsForItInsteadOfBlockingTheLoop) {
  // 16 MiB is more than the loopback socket buffers hold: sendfile runs out of room, and
  // the writer must wait for the socket on the loop (the client reads on the same thread;
  // a blocking sendfile would never return). Both socket modes: left non-blocking (epoll)
  // and blocking (io_uring), where the writer makes it non-blocking for each call.
  for (const bool blocking : {false, true}) {
    SCOPED_TRACE(blocking ? "blocking socket" : "non-blocking socket");
    FileSource source(std::vector<std::size_t>(16, 1 << 20));
    Status s;
    Outcome out = run_exchange(
        kGet11,
        [&](ResponseWriter& w) -> asio::awaitable<void> {
          auto head = make_head(bhttp::status::ok);
          { Status st_ = co_await w.write_head(head, source.total()); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
          std::array<char, 64> buffer;
          s = co_await w.write_body_from(source, buffer);
        },
        /*client_closes=*/false, /*client_delay=*/200ms, blocking);
    EXPECT_TRUE(s.is_ok()) << s.message();
    ASSERT_EQ(out.body.size(), source.total());
    EXPECT_TRUE(out.body == source.bytes()) << "body bytes differ from the file's";
    EXPECT_EQ(source.files_lent, 16);
  }
}

TEST(ResponseWriter, AClientThatNeverReadsAFileBodyTimesOutOnTheConnectionsDeadline) {
  // The server's way: a ConnectionDeadline times the connection. A client that reads
  // nothing fills the socket; the writer's wait for room must end at the writer's idle
  // timeout (2 s here), not hold the connection.
  std::signal(SIGPIPE, SIG_IGN);
  FileSource source(std::vector<std::size_t>(64, 1 << 20));
  Connected c(kGet11);  // its client never reads
  asio::io_context& ctx = c.ctx;
  Status s;
  bool done = false;
  bool timed_out = false;
  asio::co_spawn(
      ctx,
      [&]() -> asio::awaitable<void> {
        beast::tcp_stream stream(std::move(c.server));
        ConnectionDeadline deadline(stream.get_executor(), stream.socket());
        ClientStream client_stream(stream, &deadline);
        beast::flat_buffer buffer;
        RequestParser parser;
        auto [ec, n] = co_await bhttp::async_read_header(client_stream, buffer, parser, kTuple);
        EXPECT_FALSE(ec) << ec.message();
        ResponseWriter w(client_stream, parser, kRequestId, 2s);
        auto head = make_head(bhttp::status::ok);
        { Status st_ = co_await w.write_head(head, source.total()); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
        std::array<char, 64> scratch;
        s = co_await w.write_body_from(source, scratch);
        timed_out = deadline.expired();
        done = true;
      },
      asio::detached);
  const auto start = std::chrono::steady_clock::now();
  ctx.run_for(15s);
  EXPECT_TRUE(done) << "the writer still waits for a client that reads nothing";
  EXPECT_EQ(s.code(), ErrorCode::kRequestTimeout) << s.message();
  EXPECT_TRUE(timed_out);
  EXPECT_GT(source.files_lent, 0);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
}

TEST(ResponseWriter, ClientGoneDuringAFileSendIsATimeoutStatusAndCounted) {
  // tagd's main ignores SIGPIPE (sendfile to a reset peer raises it); so does this test.
  std::signal(SIGPIPE, SIG_IGN);
  FileSource source(std::vector<std::size_t>(64, 1 << 20));
  const Counts before = Counts::now();
  Status s;
  bool keep_alive = true;
  run_exchange(
      kGet11,
      [&](ResponseWriter& w) -> asio::awaitable<void> {
        auto head = make_head(bhttp::status::ok);
        { Status st_ = co_await w.write_head(head, source.total()); EXPECT_TRUE(st_.is_ok()) << st_.message(); }
        std::array<char, 64> buffer;
        s = co_await w.write_body_from(source, buffer);
        keep_alive = w.keep_alive();
      },
      /*client_closes=*/true);
  EXPECT_EQ(s.code(), ErrorCode::kRequestTimeout) << s.message();
  EXPECT_FALSE(keep_alive);
  EXPECT_EQ(Counts::now().aborts - before.aborts, 1u);
}

}  // namespace
}  // namespace tagd::http
