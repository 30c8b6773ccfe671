// http::ClientStream over TLS: the response writer's writes (a head held back and sent
// with the first body bytes, bodies of several TLS records, chunked coding) arrive whole
// at a TLS client, as they do over plain TCP (response_writer_test.cpp). And the
// connection's one-timer deadline (ConnectionDeadline) on reads over plain TCP.
#include "tagd/http/client_stream.hpp"

#include <gtest/gtest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/write.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <atomic>
#include <functional>
#include <optional>
#include <thread>

#include "support/test_certificate.hpp"
#include "tagd/http/response_writer.hpp"

namespace tagd::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace ssl = asio::ssl;
using asio::ip::tcp;
using namespace std::chrono_literals;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

using Script = std::function<asio::awaitable<void>(ResponseWriter&)>;

// One request over TLS on loopback: the server side handshakes, parses the head and runs
// `script` with a ResponseWriter on a ClientStream; the client reads the whole response.
bhttp::response<bhttp::string_body> exchange(const Script& script, bool* server_ok) {
  tagd::testing::TestCertificate cert;
  ssl::context server_ctx(ssl::context::tls_server);
  server_ctx.use_certificate_chain_file(cert.cert_file());
  server_ctx.use_private_key_file(cert.key_file(), ssl::context::pem);

  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const auto port = acceptor.local_endpoint().port();
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        auto [aec, socket] = co_await acceptor.async_accept(kTuple);
        if (aec) co_return;
        ClientStream::TlsStream tls(beast::tcp_stream(std::move(socket)), server_ctx);
        beast::get_lowest_layer(tls).expires_after(5s);
        auto [hec] = co_await tls.async_handshake(ssl::stream_base::server, kTuple);
        if (hec) co_return;
        ClientStream stream(tls);
        EXPECT_TRUE(stream.is_tls());
        beast::flat_buffer buffer;
        RequestParser parser;
        auto [ec, n] = co_await bhttp::async_read_header(stream, buffer, parser, kTuple);
        if (ec) co_return;
        {
          ResponseWriter writer(stream, parser, "REQ", 2s);
          co_await script(writer);
        }
        auto [sec] = co_await tls.async_shutdown(kTuple);
        (void)sec;
        *server_ok = true;
      },
      asio::detached);
  std::thread server([&] { io.run_for(10s); });

  asio::io_context client_io;
  ssl::context client_ctx(ssl::context::tls_client);
  client_ctx.set_verify_mode(ssl::verify_none);
  ssl::stream<tcp::socket> client(client_io, client_ctx);
  client.next_layer().connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  client.handshake(ssl::stream_base::client);
  bhttp::request<bhttp::empty_body> req(bhttp::verb::get, "/object", 11);
  req.set(bhttp::field::host, "localhost");
  bhttp::write(client, req);
  beast::flat_buffer buffer;
  bhttp::response<bhttp::string_body> res;
  boost::system::error_code ec;
  bhttp::read(client, buffer, res, ec);
  EXPECT_FALSE(ec) << ec.message();
  client.shutdown(ec);
  server.join();
  return res;
}

std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7) % 26);
  return s;
}

TEST(ClientStreamTlsTest, HeadWithFirstBodyBytesAndABodyOfManyRecords) {
  const std::string body = pattern(300 * 1024 + 5);  // ~19 TLS records
  bool ok = false;
  auto res = exchange(
      [&](ResponseWriter& w) -> asio::awaitable<void> {
        EXPECT_TRUE(co_await w.send(bhttp::status::ok, "application/octet-stream", body));
      },
      &ok);
  EXPECT_TRUE(ok);
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_EQ(res.body().size(), body.size());
  EXPECT_TRUE(res.body() == body);
}

TEST(ClientStreamTlsTest, ContentLengthBodyInPiecesAndChunkedBody) {
  const std::string body = pattern(150 * 1024);
  for (bool chunked : {false, true}) {
    bool ok = false;
    auto res = exchange(
        [&](ResponseWriter& w) -> asio::awaitable<void> {
          bhttp::response_header<> head;
          head.result(bhttp::status::ok);
          std::optional<std::uint64_t> length;
          if (!chunked) length = body.size();
          EXPECT_TRUE(co_await w.write_head(head, length));
          for (std::size_t at = 0; at < body.size(); at += 64 * 1024) {
            EXPECT_TRUE(co_await w.write_body(std::string_view(body).substr(at, 64 * 1024)));
          }
          EXPECT_TRUE(co_await w.finish());
        },
        &ok);
    EXPECT_TRUE(ok) << "chunked=" << chunked;
    EXPECT_EQ(res.body().size(), body.size()) << "chunked=" << chunked;
    EXPECT_TRUE(res.body() == body) << "chunked=" << chunked;
  }
}

// ---------------------------------------------------------------------------------------
// ConnectionDeadline: a plain loopback connection whose server side reads through a
// ClientStream with a deadline; `client` (a coroutine on the same loop) plays the peer.

using ServerScript = std::function<asio::awaitable<void>(ClientStream&)>;
using PeerScript = std::function<asio::awaitable<void>(tcp::socket&)>;

void with_deadline(const ServerScript& server, const PeerScript& peer) {
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const auto endpoint = acceptor.local_endpoint();
  bool server_done = false;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        auto [aec, socket] = co_await acceptor.async_accept(kTuple);
        if (aec) co_return;
        beast::tcp_stream tcp(std::move(socket));
        ConnectionDeadline deadline(io.get_executor(), tcp.socket());
        ClientStream stream(tcp, &deadline);
        co_await server(stream);
        server_done = true;
        io.stop();  // the peer may still be sleeping
      },
      asio::detached);
  tcp::socket client(io);
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        auto [cec] = co_await client.async_connect(endpoint, kTuple);
        if (cec) co_return;
        co_await peer(client);
      },
      asio::detached);
  io.run_for(20s);  // a bound for a broken deadline; each test ends in a few seconds
  EXPECT_TRUE(server_done);
}

asio::awaitable<void> sleep_for(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(kTuple);
}

asio::awaitable<void> send_byte(tcp::socket& s) {
  auto [ec, n] = co_await asio::async_write(s, asio::buffer("x", 1), kTuple);
  EXPECT_FALSE(ec) << ec.message();
}

using SteadyClock = std::chrono::steady_clock;

// A peer that sends one byte after `delay`, then stays connected.
PeerScript sends_a_byte_after(std::chrono::milliseconds delay) {
  return [delay](tcp::socket& s) -> asio::awaitable<void> {
    co_await sleep_for(delay);
    co_await send_byte(s);
  };
}

// A peer that says nothing for `quiet` (then its end of the test is over).
PeerScript silent_for(std::chrono::milliseconds quiet) {
  return [quiet](tcp::socket&) -> asio::awaitable<void> { co_await sleep_for(quiet); };
}

TEST(ConnectionDeadlineTest, AReadPastItsDeadlineIsCancelledAndReportedAsATimeout) {
  with_deadline(
      [](ClientStream& stream) -> asio::awaitable<void> {
        char b[16];
        const auto start = SteadyClock::now();
        stream.expires_after(100ms);
        auto [ec, n] = co_await stream.async_read_some(asio::buffer(b), kTuple);
        EXPECT_TRUE(ec);
        EXPECT_TRUE(stream.timed_out(ec)) << ec.message();
        // (Up to a scheduler tick early: the deadline is taken from the coarse clock.)
        EXPECT_GE(SteadyClock::now() - start, 80ms);
      },
      silent_for(3s));
}

TEST(ConnectionDeadlineTest, AnEarlierDeadlineThanTheOneWaitedForComesForward) {
  // An idle wait's long deadline, then a header's short one: the short one holds.
  with_deadline(
      [](ClientStream& stream) -> asio::awaitable<void> {
        char b[16];
        stream.expires_after(60s);
        stream.expires_after(100ms);
        const auto start = SteadyClock::now();
        auto [ec, n] = co_await stream.async_read_some(asio::buffer(b), kTuple);
        EXPECT_TRUE(stream.timed_out(ec)) << ec.message();
        EXPECT_LT(SteadyClock::now() - start, 10s);
      },
      silent_for(12s));
}

TEST(ConnectionDeadlineTest, DeadlinesMovedOnByEachReadNeverFire) {
  // Six reads 250 ms apart, each with a 1 s deadline: 1.5 s in all, no timeout.
  with_deadline(
      [](ClientStream& stream) -> asio::awaitable<void> {
        char b[16];
        for (int i = 0; i < 6; ++i) {
          stream.expires_after(1s);
          auto [ec, n] = co_await stream.async_read_some(asio::buffer(b), kTuple);
          EXPECT_FALSE(ec) << "read " << i << ": " << ec.message();
          EXPECT_FALSE(stream.timed_out(ec));
        }
      },
      [](tcp::socket& s) -> asio::awaitable<void> {
        for (int i = 0; i < 6; ++i) {
          co_await sleep_for(250ms);
          co_await send_byte(s);
        }
      });
}

TEST(ConnectionDeadlineTest, ExpiresNeverLiftsTheDeadline) {
  with_deadline(
      [](ClientStream& stream) -> asio::awaitable<void> {
        char b[16];
        stream.expires_after(100ms);
        stream.expires_never();
        auto [ec, n] = co_await stream.async_read_some(asio::buffer(b), kTuple);
        EXPECT_FALSE(ec) << ec.message();
      },
      sends_a_byte_after(500ms));
}

TEST(ConnectionDeadlineTest, ADeadlinePassingWithNothingInFlightCancelsNoLaterRead) {
  // A write's deadline passes while the request waits on something else (the upstream):
  // the next read sets its own and is served.
  with_deadline(
      [](ClientStream& stream) -> asio::awaitable<void> {
        char b[16];
        stream.expires_after(50ms);
        co_await sleep_for(400ms);
        stream.expires_after(5s);
        EXPECT_FALSE(stream.timed_out(boost::asio::error::operation_aborted));
        auto [ec, n] = co_await stream.async_read_some(asio::buffer(b), kTuple);
        EXPECT_FALSE(ec) << ec.message();
        EXPECT_EQ(n, 1u);
      },
      sends_a_byte_after(600ms));
}

TEST(ConnectionDeadlineTest, AReadStartedAfterTheDeadlinePassedFailsAtOnce) {
  // (The next step of a composed read whose previous step completed just as the deadline
  // passed: it sets no deadline of its own.)
  with_deadline(
      [](ClientStream& stream) -> asio::awaitable<void> {
        char b[16];
        stream.expires_after(50ms);
        co_await sleep_for(300ms);
        const auto start = SteadyClock::now();
        auto [ec, n] = co_await stream.async_read_some(asio::buffer(b), kTuple);
        EXPECT_TRUE(stream.timed_out(ec)) << ec.message();
        EXPECT_LT(SteadyClock::now() - start, 2s);
        auto [wec, wn] = co_await stream.async_write_some(asio::buffer("x", 1), kTuple);
        EXPECT_TRUE(stream.timed_out(wec)) << wec.message();
      },
      silent_for(5s));
}

TEST(ConnectionDeadlineTest, WhatStartsOnTheSocketAfterTheDeadlineIsCancelledToo) {
  // A read started on the socket itself after the deadline passed (as TLS does under a
  // read that began before it) is cancelled by the next round, not left waiting.
  with_deadline(
      [](ClientStream& stream) -> asio::awaitable<void> {
        char b[16];
        stream.expires_after(50ms);
        co_await sleep_for(100ms);
        const auto start = SteadyClock::now();
        auto [ec, n] = co_await stream.tcp().async_read_some(asio::buffer(b), kTuple);
        EXPECT_EQ(ec, asio::error::operation_aborted) << ec.message();
        EXPECT_LT(SteadyClock::now() - start, 3s);
      },
      silent_for(8s));
}

TEST(ConnectionDeadlineTest, ATlsHeadTrickledInTinyRecordsTimesOut) {
  // End to end over TLS: one-byte records arrive in a few socket reads, so most reads of
  // the head are served from records already buffered, not from the socket; then silence.
  // The head read must end by the deadline. (The race this invites — the deadline passing
  // while no socket read waits — does not reproduce reliably here; the two tests above
  // pin down what closes it.)
  tagd::testing::TestCertificate cert;
  ssl::context server_ctx(ssl::context::tls_server);
  server_ctx.use_certificate_chain_file(cert.cert_file());
  server_ctx.use_private_key_file(cert.key_file(), ssl::context::pem);
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const auto port = acceptor.local_endpoint().port();
  std::atomic<bool> timed_out = false, server_done = false;  // set on the server thread
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        auto [aec, socket] = co_await acceptor.async_accept(kTuple);
        if (aec) co_return;
        ClientStream::TlsStream tls(beast::tcp_stream(std::move(socket)), server_ctx);
        beast::get_lowest_layer(tls).expires_after(5s);
        auto [hec] = co_await tls.async_handshake(ssl::stream_base::server, kTuple);
        if (hec) co_return;
        beast::get_lowest_layer(tls).expires_never();
        ConnectionDeadline deadline(io.get_executor(), beast::get_lowest_layer(tls).socket());
        ClientStream stream(tls, &deadline);
        beast::flat_buffer buffer;
        RequestParser parser;
        stream.expires_after(300ms);
        auto [ec, n] = co_await bhttp::async_read_header(stream, buffer, parser, kTuple);
        timed_out = stream.timed_out(ec);
        server_done = true;
      },
      asio::detached);
  std::thread server([&] { io.run_for(15s); });

  asio::io_context client_io;
  ssl::context client_ctx(ssl::context::tls_client);
  client_ctx.set_verify_mode(ssl::verify_none);
  ssl::stream<tcp::socket> client(client_io, client_ctx);
  client.next_layer().connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  client.handshake(ssl::stream_base::client);
  const std::string start = "GET / HTTP/1.1\r\n";
  asio::write(client, asio::buffer(start));
  std::string filler(6000, 'a');  // a header line that never ends
  filler.insert(0, "x-filler: ");
  const auto sent_from = SteadyClock::now();
  for (std::size_t i = 0; i < filler.size() && SteadyClock::now() - sent_from < 250ms; ++i) {
    boost::system::error_code wec;
    client.write_some(asio::buffer(&filler[i], 1), wec);  // one TLS record per byte
    if (wec) break;
  }
  // Silence, connection open, until the server gave up (or its loop's bound).
  const auto waited_from = SteadyClock::now();
  while (!server_done && SteadyClock::now() - waited_from < 12s) std::this_thread::sleep_for(20ms);
  EXPECT_TRUE(server_done) << "the head read did not end: the deadline was lost";
  EXPECT_TRUE(timed_out);
  EXPECT_LT(SteadyClock::now() - waited_from, 5s);
  boost::system::error_code ignored;
  client.next_layer().close(ignored);
  server.join();
}

}  // namespace
}  // namespace tagd::http
