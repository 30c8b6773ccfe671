// A fill over the real upstream client (a loopback server standing in for the origin, no
// fake Fetcher): the bytes of a block reach a waiting reader as they arrive from the
// upstream, not once the block (or a fill's read buffer) is whole. This is what keeps a
// miss's time to first byte near the upstream's over a WAN: store and forward would add
// a block's transfer time to every miss.
#include <gtest/gtest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "support/test_bytes.hpp"
#include "tagd/auth/sigv4.hpp"
#include "tagd/cache/block_device.hpp"
#include "tagd/cache/eviction.hpp"
#include "tagd/cache/read_path.hpp"
#include "tagd/core/clock.hpp"
#include "tagd/core/metrics.hpp"
#include "tagd/upstream/client.hpp"

namespace tagd::cache {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;
using namespace std::chrono_literals;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

constexpr std::uint32_t kBlock = 64 * 1024;
constexpr std::size_t kHalf = kBlock / 2;
const std::string kEtag = "\"0123456789abcdef\"";

using tagd::testing::make_bytes;

// The origin: answers a ranged GET of its one object with a 206, sends the first half of
// the body, then the rest only once the test releases it (`release` cancelled).
struct Origin {
  std::string object;
  std::shared_ptr<asio::steady_timer> release;
  std::vector<std::string> ranges;  // the Range header of every request
  bool rest_sent = false;
};

asio::awaitable<void> serve(std::shared_ptr<Origin> origin, tcp::socket sock) {
  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::empty_body> parser;
    auto [ec, n] = co_await http::async_read(sock, buffer, parser, kTuple);
    if (ec) co_return;
    const std::string range(parser.get()[http::field::range]);
    origin->ranges.push_back(range);
    // "bytes=a-b", b clipped to the object.
    const auto dash = range.find('-');
    const std::uint64_t first = std::stoull(range.substr(6, dash - 6));
    const std::uint64_t last = std::min<std::uint64_t>(std::stoull(range.substr(dash + 1)), origin->object.size() - 1);
    const std::string body = origin->object.substr(first, last - first + 1);
    const std::string head = "HTTP/1.1 206 Partial Content\r\nContent-Length: " + std::to_string(body.size()) +
                             "\r\nContent-Range: bytes " + std::to_string(first) + "-" + std::to_string(last) + "/" +
                             std::to_string(origin->object.size()) + "\r\nETag: " + kEtag +
                             "\r\nLast-Modified: Wed, 01 Jan 2025 00:00:00 GMT\r\n\r\n";
    const std::size_t early = std::min(kHalf, body.size());
    std::string first_part = head + body.substr(0, early);
    std::tie(ec, n) = co_await asio::async_write(sock, asio::buffer(first_part), kTuple);
    if (ec) co_return;
    std::tie(ec) = co_await origin->release->async_wait(kTuple);  // cancelled: go on
    std::tie(ec, n) = co_await asio::async_write(sock, asio::buffer(body.data() + early, body.size() - early), kTuple);
    if (ec) co_return;
    origin->rest_sent = true;
  }
}

asio::awaitable<void> accept_loop(std::shared_ptr<Origin> origin, std::shared_ptr<tcp::acceptor> acceptor) {
  for (;;) {
    auto [ec, sock] = co_await acceptor->async_accept(kTuple);
    if (ec) co_return;
    asio::co_spawn(acceptor->get_executor(), serve(origin, std::move(sock)), asio::detached);
  }
}

// The cache's Fetcher over the upstream client, as the gateway's (unsigned here).
class ClientFetcher final : public Fetcher {
 public:
  explicit ClientFetcher(upstream::Client& client) : client_(client) {}
  asio::awaitable<Result<std::unique_ptr<ResponseSource>>> fetch(FetchRequest request) override {
    upstream::Request up;
    up.method = request.method;
    up.target = "/" + request.key.bucket + "/" + request.key.key;
    up.sign = false;
    up.payload_hash = std::string(auth::kEmptySha256);
    if (request.range) {
      up.headers.set(http::field::range,
                     "bytes=" + std::to_string(request.range->first) + "-" + std::to_string(request.range->last));
    }
    if (!request.if_match.empty()) up.headers.set(http::field::if_match, request.if_match);
    up.timeout = request.timeout;
    auto response = co_await client_.exchange(std::move(up));
    if (!response) co_return response.error();
    co_return std::unique_ptr<ResponseSource>(std::move(response.value()));
  }

 private:
  upstream::Client& client_;
};

struct Reader {
  ReadResult result;
  bool served = false;
  std::string bytes;
  bool done = false;
  Status error;
};

asio::awaitable<void> read_object(ReadPath& path, std::shared_ptr<Reader> out) {
  const std::vector<std::pair<std::string, std::string>> query;
  const http::fields headers;
  const ReadRequest request{false, "b", "k", &query, &headers};  // (no temporary in co_await: GCC 12)
  out->result = co_await path.serve(request);
  out->served = true;
  if (!out->result.body) co_return;
  std::vector<char> scratch(256 * 1024);
  for (;;) {
    auto piece = co_await out->result.body->next(std::span<char>(scratch));
    if (!piece) {
      out->error = piece.error();
      co_return;
    }
    if (piece->empty()) break;
    out->bytes.append(piece->data(), piece->size());
  }
  out->done = true;
}

class FillStreamingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    origin->object = make_bytes(kBlock);
    origin->release = std::make_shared<asio::steady_timer>(io, asio::steady_timer::time_point::max());
    acceptor = std::make_shared<tcp::acceptor>(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    asio::co_spawn(io, accept_loop(origin, acceptor), asio::detached);
    upstream::Endpoint e;
    e.host = "127.0.0.1";
    e.port = acceptor->local_endpoint().port();
    e.host_header = "127.0.0.1:" + std::to_string(e.port);
    upstream::ClientOptions options;
    options.retry.max_retries = 0;
    options.timeout = 3s;  // longer than the checks below wait: only streaming passes
    client = upstream::make_pooled_client(
        std::make_unique<upstream::Pool>(io.get_executor(), e, nullptr, upstream::PoolOptions{}), signing, clock,
        options);
    fetcher = std::make_unique<ClientFetcher>(*client);
    ObjectCacheOptions o;
    o.block_size = kBlock;
    o.max_fetch = 1 << 20;
    cache = std::make_unique<ObjectCache>(std::make_unique<MemoryBlockDevice>(8 << 20, 4096), make_memory_index(),
                                          make_fifo_eviction(), make_fill_budget(1 << 30, 8), 1 << 20, 1 << 20, o);
    path = std::make_unique<ReadPath>(*cache, *fetcher, clock, io.get_executor(), 3s);
  }
  void TearDown() override {
    origin->release->cancel();
    boost::system::error_code ignored;
    acceptor->close(ignored);
    io.restart();
    io.run_for(200ms);
    path.reset();
    cache.reset();
    fetcher.reset();
    client.reset();
  }

  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      io.restart();
      io.run_for(5ms);
    }
    return true;
  }

  asio::io_context io;
  std::shared_ptr<Origin> origin = std::make_shared<Origin>();
  std::shared_ptr<tcp::acceptor> acceptor;
  upstream::SigningCredentials signing{"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "us-east-1"};
  ManualClock clock;
  std::unique_ptr<upstream::Client> client;
  std::unique_ptr<ClientFetcher> fetcher;
  std::unique_ptr<ObjectCache> cache;
  std::unique_ptr<ReadPath> path;
};

TEST_F(FillStreamingTest, AReaderGetsTheFirstHalfOfABlockBeforeTheUpstreamSendsTheRest) {
  auto reader = std::make_shared<Reader>();
  asio::co_spawn(io, read_object(*path, reader), asio::detached);

  // The upstream sent half the block and stalls: the reader has that half, the fill has
  // not finished the block (nothing is cached yet) and the upstream has not timed out.
  ASSERT_TRUE(run_until([&] { return reader->bytes.size() >= kHalf || !reader->error.is_ok(); }, 1500ms))
      << "the reader got " << reader->bytes.size() << " bytes of the " << kHalf << " the upstream sent";
  EXPECT_TRUE(reader->error.is_ok()) << reader->error.message();
  EXPECT_EQ(reader->result.outcome, CacheOutcome::kMiss);
  EXPECT_EQ(reader->result.head[http::field::content_length], std::to_string(kBlock));
  EXPECT_EQ(reader->bytes.size(), kHalf);
  EXPECT_TRUE(reader->bytes == origin->object.substr(0, kHalf));
  EXPECT_FALSE(origin->rest_sent);
  EXPECT_FALSE(reader->done);
  EXPECT_FALSE(cache->block_cached(ObjectKey{"b", "k", ""}.hash(), kEtag, 0));

  // The rest arrives: the same answer completes and the block is cached.
  origin->release->cancel();
  ASSERT_TRUE(run_until([&] { return reader->done || !reader->error.is_ok(); }, 5s));
  ASSERT_TRUE(reader->done) << reader->error.message();
  EXPECT_TRUE(reader->bytes == origin->object);
  ASSERT_EQ(origin->ranges.size(), 1u) << "one upstream request";
  EXPECT_TRUE(run_until([&] { return cache->block_cached(ObjectKey{"b", "k", ""}.hash(), kEtag, 0); }, 5s));
}

}  // namespace
}  // namespace tagd::cache
