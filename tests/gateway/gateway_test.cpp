// Gateway::handle end to end over a real loopback TCP connection: the test writes a raw
// HTTP request on the client side; the server side reads the head with RequestParser (as
// the server's session does) and calls handle(); the test reads the raw response until the
// server closes. The upstream is a tagd::testing::ScriptedClient (what it was asked is
// recorded); where the cache matters, an ObjectCache over the memory device and index.
//
// Clients sign with tagd's own SigV4 signer (upstream::sign_request) at a fixed date; the
// gateway's clock is a ManualClock at that date, so the skew check passes.
//
// Every coroutine runs on one io_context, run in bounded slices: a test fails rather than
// hangs.
#include "tagd/gateway/gateway.hpp"

#include <gtest/gtest.h>

#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/none.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "support/raw_response.hpp"
#include "support/scripted_client.hpp"
#include "tagd/auth/credentials.hpp"
#include "tagd/auth/hashing.hpp"
#include "tagd/auth/request_verifier.hpp"
#include "tagd/auth/sigv4.hpp"
#include "tagd/cache/block_device.hpp"
#include "tagd/cache/eviction.hpp"
#include "tagd/cache/index.hpp"
#include "tagd/cache/object_cache.hpp"
#include "tagd/core/clock.hpp"
#include "tagd/core/strings.hpp"
#include "tagd/upstream/signer.hpp"

namespace tagd::gateway {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using asio::ip::tcp;
using namespace std::chrono_literals;
using tagd::testing::ScriptedClient;
using tagd::testing::ScriptedReply;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

constexpr const char* kKey = "AKIDGATEWAYTEST";
constexpr const char* kSecret = "gateway-test-secret/KEY";
constexpr const char* kAmzDate = "20240102T030405Z";
constexpr const char* kHost = "tagd.test";  // not under virtual_host_domain: path-style

std::chrono::system_clock::time_point signing_time() { return *auth::parse_amz_date(kAmzDate); }

// ---------------------------------------------------------------------------------------
// Requests as raw bytes.

using Headers = std::vector<std::pair<std::string, std::string>>;

// A request signed with SigV4 (Authorization header) by kKey at kAmzDate. `extra`
// headers are added before signing (x-amz-* and Content-Type ones get signed).
// Content-Length is added (unsigned) when there is a body or the method is PUT.
std::string signed_request(const std::string& method, const std::string& target, const std::string& body = "",
                           const Headers& extra = {}, const std::string& version = "HTTP/1.1") {
  bhttp::fields fields;
  for (const auto& [name, value] : extra) fields.insert(name, value);
  const upstream::SigningCredentials creds{kKey, kSecret, "us-east-1"};
  upstream::sign_request(fields, method, target, kHost, auth::sha256_hex(body), creds, signing_time());
  std::string raw = method + " " + target + " " + version + "\r\n";
  for (const auto& f : fields) raw += std::string(f.name_string()) + ": " + std::string(f.value()) + "\r\n";
  if (!body.empty() || method == "PUT") raw += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  raw += "\r\n" + body;
  return raw;
}

std::string plain_request(const std::string& method, const std::string& target, const Headers& extra = {},
                          const std::string& body = "") {
  std::string raw = method + " " + target + " HTTP/1.1\r\nHost: " + kHost + "\r\n";
  for (const auto& [name, value] : extra) raw += name + ": " + value + "\r\n";
  if (!body.empty()) raw += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  raw += "\r\n" + body;
  return raw;
}

// ---------------------------------------------------------------------------------------
// One exchange as both ends saw it.

struct Outcome : tagd::testing::RawResponse {
  bool server_done = false;     // handle() returned (or the head could not be read)
  bool handled = false;         // handle() was called and returned
  bool keep_alive = false;      // what handle() returned
};


// The server side: what src/server/server.cpp's session does for one request, then a
// graceful close (whatever handle() returned: the test reads until EOF).
asio::awaitable<void> serve(Gateway& gateway, tcp::socket socket, Outcome* out) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  http::RequestParser parser;
  parser.header_limit(64 * 1024);
  parser.body_limit(boost::none);
  stream.expires_after(5s);
  auto [ec, n] = co_await bhttp::async_read_header(stream, buffer, parser, kTuple);
  if (ec) {
    ADD_FAILURE() << "server could not read the request head: " << ec.message();
    out->server_done = true;
    co_return;
  }
  ClientConnection client{stream, buffer, "127.0.0.1"};
  const bool keep = co_await gateway.handle(client, parser);
  out->keep_alive = keep;
  out->handled = true;
  if (stream.socket().is_open()) {
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream.close();
  }
  out->server_done = true;
}


// ---------------------------------------------------------------------------------------
// A gateway over a ScriptedClient, optionally with a cache over the memory device/index.
// Members are destroyed in reverse order: the gateway (and its read path) before the
// io_context, the io_context (and any detached fill left) before the cache.

struct Options {
  bool cache = false;
  bool allow_anonymous = false;
};

config::Config make_config(const Options& o) {
  config::Config c;
  c.allow_anonymous = o.allow_anonymous;
  c.cache_disabled = !o.cache;
  c.access_log = false;
  c.idle_timeout = 5s;
  c.upstream_read_timeout = 5s;
  return c;
}

std::unique_ptr<cache::ObjectCache> make_cache(bool enabled) {
  if (!enabled) return nullptr;
  cache::ObjectCacheOptions options{64 * 1024, 60s, 300s, 128 * 1024};
  return std::make_unique<cache::ObjectCache>(std::make_unique<cache::MemoryBlockDevice>(8 << 20, 4096),
                                              cache::make_memory_index(), cache::make_fifo_eviction(),
                                              cache::make_fill_budget(1 << 30, 8), 1 << 20, 1 << 20, options);
}

struct Harness {
  explicit Harness(Options o = {})
      : config(make_config(o)),
        verifier(store_with_key(), config.max_clock_skew, o.allow_anonymous),
        clock(signing_time()),
        shared{config, verifier, clock, nullptr},
        cache(make_cache(o.cache)) {
    auto client = std::make_unique<ScriptedClient>();
    upstream = client.get();
    gateway = std::make_unique<Gateway>(shared, std::move(client), cache.get(), io.get_executor());
  }
  ~Harness() {
    gateway.reset();
    settle();
  }

  auth::CredentialStore& store_with_key() {
    store.add_full_access(kKey, kSecret);
    return store;
  }

  // Runs until no work is left (detached fills finished), bounded.
  void settle(std::chrono::milliseconds limit = 5s) {
    io.restart();
    io.run_for(limit);
  }

  // One request on a fresh loopback connection; bounded by 10 s.
  Outcome run(const std::string& request) {
    tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    tcp::socket client(io);
    client.connect(acceptor.local_endpoint());
    tcp::socket server = acceptor.accept();
    acceptor.close();
    asio::write(client, asio::buffer(request));
    auto out = std::make_shared<Outcome>();
    asio::co_spawn(io, testing::read_all(std::move(client), out.get()), [out](std::exception_ptr e) {
      if (e) ADD_FAILURE() << "client side threw";
      out->client_done = true;
    });
    asio::co_spawn(io, serve(*gateway, std::move(server), out.get()), [out](std::exception_ptr e) {
      if (e) ADD_FAILURE() << "server side (Gateway::handle) threw";
      out->server_done = true;
    });
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!(out->server_done && out->client_done) && std::chrono::steady_clock::now() < deadline) {
      io.restart();
      io.run_for(5ms);
    }
    EXPECT_TRUE(out->server_done) << "server side did not finish";
    EXPECT_TRUE(out->client_done) << "client side did not finish";
    settle(200ms);  // detached work (fills) finishes before the next request
    out->parse();
    return *out;
  }

  config::Config config;
  auth::CredentialStore store;
  auth::RequestVerifier verifier;
  ManualClock clock;
  Shared shared;
  std::unique_ptr<cache::ObjectCache> cache;
  asio::io_context io;
  ScriptedClient* upstream = nullptr;  // owned by the gateway
  std::unique_ptr<Gateway> gateway;
};

bool has_header(const bhttp::fields& fields, std::string_view name) { return fields.find(name) != fields.end(); }

ScriptedReply object_reply(const std::string& body, const std::string& etag = "\"e1\"") {
  ScriptedReply r;
  r.status = 200;
  r.headers = {{"ETag", etag}, {"Content-Length", std::to_string(body.size())}, {"Content-Type", "text/plain"}};
  r.body = body;
  return r;
}

// ---------------------------------------------------------------------------------------
// 1. Local endpoints.

TEST(GatewayTest, HealthAnswersOkAndKeepsTheConnection) {
  Harness h;
  Outcome out = h.run(plain_request("GET", "/health"));
  ASSERT_TRUE(out.handled);
  EXPECT_EQ(out.status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(out.body, "ok\n");
  EXPECT_EQ(out.header("content-length"), "3");
  EXPECT_EQ(out.header("content-type"), "text/plain");
  EXPECT_NE(to_lower(out.header("connection")), "close");
  EXPECT_TRUE(out.keep_alive) << "a whole response to a bodyless request keeps the connection";
  EXPECT_EQ(out.end, asio::error::eof);
  EXPECT_TRUE(h.upstream->requests().empty());
}

TEST(GatewayTest, HeadMetricsAnswersWithoutABody) {
  Harness h;
  Outcome out = h.run(plain_request("HEAD", "/metrics"));
  ASSERT_TRUE(out.handled);
  EXPECT_EQ(out.status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(out.header("content-type"), "text/plain; version=0.0.4");
  EXPECT_EQ(out.body, "");
  EXPECT_TRUE(out.keep_alive);
  EXPECT_TRUE(h.upstream->requests().empty());
  // A GET of the same endpoint does carry the exposition.
  Outcome get = h.run(plain_request("GET", "/metrics"));
  EXPECT_EQ(get.status_line, "HTTP/1.1 200 OK");
  EXPECT_NE(get.body.find("tagd_"), std::string::npos) << get.body.substr(0, 200);
}

// ---------------------------------------------------------------------------------------
// 2. Unsigned request, anonymous access off.

TEST(GatewayTest, UnsignedRequestIsRefusedWithS3ErrorAndNothingGoesUpstream) {
  Harness h;
  h.upstream->push(object_reply("must not be asked"));
  Outcome out = h.run(plain_request("GET", "/bucket/key"));
  ASSERT_TRUE(out.handled);
  EXPECT_EQ(out.status_line, "HTTP/1.1 403 Forbidden");
  const std::string id = out.header("x-amz-request-id");
  ASSERT_NE(id, "<absent>");
  EXPECT_EQ(id.size(), 16u);
  EXPECT_NE(out.header("content-type").find("xml"), std::string::npos) << out.header("content-type");
  EXPECT_NE(out.body.find("<Code>AccessDenied</Code>"), std::string::npos) << out.body;
  EXPECT_NE(out.body.find("<RequestId>" + id + "</RequestId>"), std::string::npos) << out.body;
  EXPECT_EQ(out.header("content-length"), std::to_string(out.body.size()));
  EXPECT_TRUE(h.upstream->requests().empty());
  EXPECT_EQ(h.upstream->pending(), 1u);
}

// ---------------------------------------------------------------------------------------
// 3. Signed GET forwarded with the cache disabled.

TEST(GatewayTest, SignedGetIsForwardedPathStyleWithoutClientCredentials) {
  Harness h;
  ScriptedReply reply = object_reply("hello from upstream");
  reply.headers.emplace_back("x-amz-request-id", "UPSTREAMID");
  h.upstream->push(reply);
  Outcome out = h.run(signed_request("GET", "/bucket/dir/obj.txt", "", {{"Range", "bytes=0-4"}}));
  ASSERT_TRUE(out.handled);

  ASSERT_EQ(h.upstream->requests().size(), 1u);
  const auto& up = h.upstream->requests()[0];
  EXPECT_EQ(up.method, bhttp::verb::get);
  EXPECT_EQ(up.target, "/bucket/dir/obj.txt");
  EXPECT_TRUE(up.sign) << "an authenticated request is re-signed by the upstream client";
  EXPECT_FALSE(has_header(up.headers, "authorization"));
  EXPECT_FALSE(has_header(up.headers, "x-amz-date"));
  EXPECT_FALSE(has_header(up.headers, "x-amz-content-sha256"));
  EXPECT_FALSE(has_header(up.headers, "host"));
  EXPECT_EQ(up.headers["range"], "bytes=0-4") << "end-to-end headers are forwarded";
  EXPECT_TRUE(up.body.empty());

  EXPECT_EQ(out.status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(out.header("x-cache"), "DISABLED");
  EXPECT_EQ(out.header("etag"), "\"e1\"");
  EXPECT_EQ(out.header("x-amz-request-id"), "UPSTREAMID") << "the upstream's request id is relayed";
  EXPECT_EQ(out.body, "hello from upstream");
  EXPECT_TRUE(out.keep_alive);
}

TEST(GatewayTest, Http10ClientGetsACloseDelimitedBodyOfUnknownLength) {
  Harness h;
  ScriptedReply reply;
  reply.status = 200;
  reply.headers = {{"ETag", "\"e2\""}, {"Transfer-Encoding", "chunked"}};
  reply.body = std::string(100000, 'z') + "end";
  h.upstream->push(reply);
  Outcome out = h.run(signed_request("GET", "/bucket/stream", "", {}, "HTTP/1.0"));
  ASSERT_TRUE(out.handled);
  ASSERT_EQ(h.upstream->requests().size(), 1u);
  EXPECT_TRUE(h.upstream->requests()[0].sign);
  EXPECT_EQ(out.status_line, "HTTP/1.0 200 OK");
  EXPECT_EQ(out.count("content-length"), 0u);
  EXPECT_EQ(out.count("transfer-encoding"), 0u) << "HTTP/1.0 cannot decode chunked";
  EXPECT_EQ(out.header("x-cache"), "DISABLED");
  EXPECT_EQ(out.body, reply.body) << "the body is the raw bytes up to the close";
  EXPECT_EQ(out.end, asio::error::eof);
  EXPECT_FALSE(out.keep_alive) << "the close is what ends the body";
}

// ---------------------------------------------------------------------------------------
// 4. Anonymous reads, allowed.

TEST(GatewayTest, AnonymousReadIsForwardedUnsignedAsBypass) {
  Harness h({.cache = true, .allow_anonymous = true});
  h.upstream->push(object_reply("public bytes"));
  h.upstream->push(object_reply("public bytes"));
  Outcome out = h.run(plain_request("GET", "/bucket/public.txt"));
  ASSERT_TRUE(out.handled);
  ASSERT_EQ(h.upstream->requests().size(), 1u);
  const auto& up = h.upstream->requests()[0];
  EXPECT_EQ(up.target, "/bucket/public.txt");
  EXPECT_FALSE(up.sign) << "tagd's credentials must never make an anonymous read succeed";
  EXPECT_EQ(out.status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(out.header("x-cache"), "BYPASS");
  EXPECT_EQ(out.body, "public bytes");
  // Never into the cache: the next anonymous read goes upstream again.
  EXPECT_FALSE(h.cache->lookup(cache::ObjectKey{"bucket", "public.txt", ""}).has_value());
  Outcome again = h.run(plain_request("GET", "/bucket/public.txt"));
  EXPECT_EQ(again.header("x-cache"), "BYPASS");
  EXPECT_EQ(h.upstream->requests().size(), 2u);
}

// ---------------------------------------------------------------------------------------
// 5. Signed PUT with a small body.

TEST(GatewayTest, SignedPutForwardsTheBodyAndInvalidatesTheCachedObject) {
  Harness h({.cache = true});
  // Prime the cache.
  h.upstream->push(object_reply("old contents", "\"old\""));
  Outcome first = h.run(signed_request("GET", "/bucket/doc"));
  EXPECT_EQ(first.header("x-cache"), "MISS");
  ASSERT_TRUE(h.cache->lookup(cache::ObjectKey{"bucket", "doc", ""}).has_value()) << "the GET should have cached";

  ScriptedReply put_reply;
  put_reply.status = 200;
  put_reply.headers = {{"ETag", "\"new\""}};
  h.upstream->push(put_reply);
  const std::string body = "new contents, 27 bytes long";
  Outcome put = h.run(signed_request("PUT", "/bucket/doc", body, {{"Content-Type", "text/plain"}}));
  ASSERT_TRUE(put.handled);
  ASSERT_EQ(h.upstream->requests().size(), 2u);
  const auto& up = h.upstream->requests()[1];
  EXPECT_EQ(up.method, bhttp::verb::put);
  EXPECT_EQ(up.target, "/bucket/doc");
  EXPECT_TRUE(up.sign);
  EXPECT_EQ(up.body, body);
  EXPECT_EQ(up.body_length, std::optional<std::uint64_t>(body.size())) << "Content-Length comes from body_length";
  EXPECT_FALSE(has_header(up.headers, "content-length")) << "the upstream client sets it from body_length";
  EXPECT_FALSE(has_header(up.headers, "authorization"));
  EXPECT_EQ(up.headers["content-type"], "text/plain");
  EXPECT_EQ(put.status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(put.header("etag"), "\"new\"");
  EXPECT_EQ(put.count("x-cache"), 0u) << "a write has no cache outcome";
  EXPECT_TRUE(put.keep_alive) << "the body was read whole";

  EXPECT_FALSE(h.cache->lookup(cache::ObjectKey{"bucket", "doc", ""}).has_value()) << "the PUT invalidates";
  h.upstream->push(object_reply(body, "\"new\""));
  Outcome after = h.run(signed_request("GET", "/bucket/doc"));
  EXPECT_EQ(after.header("x-cache"), "MISS");
  EXPECT_EQ(after.body, body);
  EXPECT_EQ(h.upstream->requests().size(), 3u);
}

// ---------------------------------------------------------------------------------------
// 6. Cache enabled: MISS then HIT, one upstream GET.

TEST(GatewayTest, SecondSignedGetIsAHitAndTheUpstreamSawOneGet) {
  Harness h({.cache = true});
  const std::string content = "cached object body";
  h.upstream->push(object_reply(content, "\"c1\""));
  Outcome first = h.run(signed_request("GET", "/bucket/obj"));
  ASSERT_TRUE(first.handled);
  EXPECT_EQ(first.status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(first.header("x-cache"), "MISS");
  EXPECT_EQ(first.header("etag"), "\"c1\"");
  EXPECT_EQ(first.body, content);
  EXPECT_TRUE(first.keep_alive);

  Outcome second = h.run(signed_request("GET", "/bucket/obj"));
  ASSERT_TRUE(second.handled);
  EXPECT_EQ(second.status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(second.header("x-cache"), "HIT");
  EXPECT_EQ(second.header("etag"), "\"c1\"");
  EXPECT_EQ(second.header("content-length"), std::to_string(content.size()));
  EXPECT_EQ(second.body, content);
  EXPECT_TRUE(second.keep_alive);

  ASSERT_EQ(h.upstream->requests().size(), 1u);
  const auto& up = h.upstream->requests()[0];
  EXPECT_EQ(up.method, bhttp::verb::get);
  EXPECT_EQ(up.target, "/bucket/obj");
  EXPECT_TRUE(up.sign);
  EXPECT_EQ(up.headers["x-amz-checksum-mode"], "ENABLED");
  // A whole-object miss asks for its first part (cache.max_fetch); a small object is all of it.
  ASSERT_TRUE(has_header(up.headers, "range"));
  EXPECT_EQ(std::string(up.headers["range"]).rfind("bytes=0-", 0), 0u) << up.headers["range"];
  EXPECT_FALSE(has_header(up.headers, "authorization"));

  // A HEAD is answered from the cache too.
  Outcome head = h.run(signed_request("HEAD", "/bucket/obj"));
  EXPECT_EQ(head.status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(head.header("x-cache"), "HIT");
  EXPECT_EQ(head.header("content-length"), std::to_string(content.size()));
  EXPECT_EQ(head.body, "");
  EXPECT_EQ(h.upstream->requests().size(), 1u);
}

// ---------------------------------------------------------------------------------------
// 7. The upstream exchange fails.

TEST(GatewayTest, UpstreamFailureIsServiceUnavailable) {
  Harness h;
  ScriptedReply refused;
  refused.error = Status(ErrorCode::kServiceUnavailable, "connection refused");
  h.upstream->push(refused);
  Outcome out = h.run(signed_request("GET", "/bucket/key"));
  ASSERT_TRUE(out.handled);
  EXPECT_EQ(h.upstream->requests().size(), 1u);
  EXPECT_EQ(out.status_line, "HTTP/1.1 503 Service Unavailable");
  EXPECT_NE(out.body.find("<Code>ServiceUnavailable</Code>"), std::string::npos) << out.body;
  EXPECT_NE(out.header("x-amz-request-id"), "<absent>");
  EXPECT_EQ(out.header("x-cache"), "DISABLED");
}

TEST(GatewayTest, UpstreamFailureOnAWriteIsServiceUnavailable) {
  Harness h({.cache = true});
  ScriptedReply refused;
  refused.error = Status(ErrorCode::kServiceUnavailable, "connection refused");
  h.upstream->push(refused);
  Outcome out = h.run(signed_request("PUT", "/bucket/key", "abc"));
  ASSERT_TRUE(out.handled);
  EXPECT_EQ(h.upstream->requests().size(), 1u);
  EXPECT_EQ(out.status_line, "HTTP/1.1 503 Service Unavailable");
  EXPECT_NE(out.body.find("<Code>ServiceUnavailable</Code>"), std::string::npos) << out.body;
}

TEST(GatewayTest, UpstreamFailureOnACacheMissIsServiceUnavailable) {
  Harness h({.cache = true});
  ScriptedReply refused;
  refused.error = Status(ErrorCode::kServiceUnavailable, "connection refused");
  h.upstream->push(refused);
  Outcome out = h.run(signed_request("GET", "/bucket/cold"));
  ASSERT_TRUE(out.handled);
  EXPECT_GE(h.upstream->requests().size(), 1u);
  EXPECT_EQ(out.status_line, "HTTP/1.1 503 Service Unavailable");
  EXPECT_NE(out.body.find("<Code>ServiceUnavailable</Code>"), std::string::npos) << out.body;
}

// ---------------------------------------------------------------------------------------
// 8. A request body the gateway does not read.

TEST(GatewayTest, UnreadRequestBodyClosesTheConnectionAfterALocalError) {
  Harness h;
  Outcome out = h.run(plain_request("GET", "/bucket/key", {}, "GET /health HTTP/1.1\r\n\r\n"));
  ASSERT_TRUE(out.handled);
  EXPECT_EQ(out.status_line, "HTTP/1.1 403 Forbidden");
  EXPECT_EQ(to_lower(out.header("connection")), "close");
  EXPECT_FALSE(out.keep_alive) << "the unread body would be parsed as the next request";
  EXPECT_TRUE(h.upstream->requests().empty());
}

TEST(GatewayTest, UnreadRequestBodyClosesTheConnectionAfterALocalEndpoint) {
  Harness h;
  Outcome out = h.run(plain_request("GET", "/health", {}, "abcde"));
  ASSERT_TRUE(out.handled);
  EXPECT_EQ(out.status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(out.body, "ok\n");
  EXPECT_EQ(to_lower(out.header("connection")), "close");
  EXPECT_FALSE(out.keep_alive);
}

TEST(GatewayTest, UnreadRequestBodyClosesTheConnectionAfterASignatureFailure) {
  Harness h({.cache = true});
  h.upstream->push(object_reply("must not be asked"));
  // Signed for /bucket/signed, sent for /bucket/other: SignatureDoesNotMatch, body unread.
  std::string raw = signed_request("PUT", "/bucket/signed", "GET /health HTTP/1.1\r\n\r\n");
  raw.replace(0, std::string("PUT /bucket/signed").size(), "PUT /bucket/other");
  Outcome out = h.run(raw);
  ASSERT_TRUE(out.handled);
  EXPECT_EQ(out.status_line, "HTTP/1.1 403 Forbidden");
  EXPECT_NE(out.body.find("<Code>SignatureDoesNotMatch</Code>"), std::string::npos) << out.body;
  EXPECT_EQ(to_lower(out.header("connection")), "close");
  EXPECT_FALSE(out.keep_alive);
  EXPECT_TRUE(h.upstream->requests().empty());
}

// The other side of the rule: a GET with a body is not the cache's (BYPASS); it is
// forwarded with its body, which is then consumed, so the connection may be kept.
TEST(GatewayTest, GetWithABodyBypassesTheCacheAndIsForwardedWithIt) {
  Harness h({.cache = true});
  h.upstream->push(object_reply("cached", "\"h\""));
  Outcome first = h.run(signed_request("GET", "/bucket/h"));
  EXPECT_EQ(first.header("x-cache"), "MISS");
  h.upstream->push(object_reply("cached", "\"h\""));
  Outcome second = h.run(signed_request("GET", "/bucket/h", "junk"));
  ASSERT_TRUE(second.handled);
  EXPECT_EQ(second.status_line, "HTTP/1.1 200 OK") << second.body;
  EXPECT_EQ(second.header("x-cache"), "BYPASS");
  ASSERT_EQ(h.upstream->requests().size(), 2u);
  EXPECT_EQ(h.upstream->requests()[1].body, "junk");
  EXPECT_EQ(h.upstream->requests()[1].body_length, std::optional<std::uint64_t>(4));
  EXPECT_TRUE(second.keep_alive) << "the body was read (and forwarded) whole";
  EXPECT_NE(to_lower(second.header("connection")), "close");
}

}  // namespace
}  // namespace tagd::gateway
