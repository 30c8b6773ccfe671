#pragma once
// A scripted upstream::Client for tests of code above the upstream (gateway, cache fills):
// push the replies the "upstream" gives, in order, then look at what was asked of it.
//
//   tagd::testing::ScriptedClient upstream;
//   upstream.push({.status = 200, .headers = {{"ETag", "\"e1\""}}, .body = "hello"});
//   upstream.push({.error = tagd::Status(tagd::ErrorCode::kServiceUnavailable, "refused")});
//   ... code under test calls upstream.exchange(...) ...
//   EXPECT_EQ(upstream.requests()[0].target, "/bucket/key");
//
// No retries, no pool, no signing: it answers each exchange with the next scripted reply
// (500 once the script is used up). Single-threaded, like the real client.
#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <cstring>
#include <deque>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tagd/upstream/client.hpp"

namespace tagd::testing {

struct ScriptedReply {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::optional<Status> error;             // exchange() fails with this instead (e.g. a connect failure)
  std::optional<std::size_t> reset_after;  // read() fails (kBadGateway) once this many body bytes were read
  std::chrono::milliseconds delay{0};      // waited before every read()
};

// What the code under test sent.
struct RecordedRequest {
  boost::beast::http::verb method = boost::beast::http::verb::get;
  std::string target;
  boost::beast::http::fields headers;
  std::string body;  // every byte pulled from the RequestBody
  bool sign = true;
  std::optional<std::uint64_t> body_length;
};

class ScriptedResponse final : public upstream::Response {
 public:
  ScriptedResponse(ScriptedReply reply, bool head_request) : reply_(std::move(reply)), head_request_(head_request) {
    head_.version(11);
    head_.result(static_cast<unsigned>(reply_.status));
    for (const auto& [name, value] : reply_.headers) head_.insert(name, value);
    if (!bodyless() && !chunked() && head_.find(boost::beast::http::field::content_length) == head_.end()) {
      head_.set(boost::beast::http::field::content_length, std::to_string(reply_.body.size()));
    }
  }

  const boost::beast::http::response_header<>& head() const override { return head_; }
  boost::beast::http::response_header<>& head() override { return head_; }
  bool chunked() const override {
    return head_[boost::beast::http::field::transfer_encoding].find("chunked") != std::string_view::npos;
  }
  bool bodyless() const override {
    return head_request_ || reply_.status < 200 || reply_.status == 204 || reply_.status == 304;
  }
  std::optional<std::uint64_t> length() const override {
    if (bodyless()) return 0;
    if (chunked()) return std::nullopt;
    return reply_.body.size();
  }

  boost::asio::awaitable<Result<std::size_t>> read(std::span<char> out) override {
    if (reply_.delay.count() > 0) {
      boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, reply_.delay);
      co_await timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    }
    const std::size_t end = bodyless() ? 0 : reply_.body.size();
    if (reply_.reset_after && pos_ >= *reply_.reset_after) {
      co_return Status(ErrorCode::kBadGateway, "scripted upstream reset the body");
    }
    std::size_t n = std::min(out.size(), end - std::min(pos_, end));
    if (reply_.reset_after) n = std::min(n, *reply_.reset_after - pos_);
    if (n > 0) std::memcpy(out.data(), reply_.body.data() + pos_, n);
    pos_ += n;
    co_return n;
  }

 private:
  ScriptedReply reply_;
  bool head_request_;
  boost::beast::http::response_header<> head_;
  std::size_t pos_ = 0;
};

class ScriptedClient final : public upstream::Client {
 public:
  void push(ScriptedReply reply) { replies_.push_back(std::move(reply)); }
  const std::vector<RecordedRequest>& requests() const { return requests_; }
  std::size_t pending() const { return replies_.size(); }
  int close_idle_calls() const { return close_idle_calls_; }

  boost::asio::awaitable<Result<std::unique_ptr<upstream::Response>>> exchange(upstream::Request request) override {
    RecordedRequest& seen = requests_.emplace_back();
    seen.method = request.method;
    seen.target = request.target;
    seen.headers = request.headers;
    seen.sign = request.sign;
    seen.body_length = request.body_length;
    const std::size_t index = requests_.size() - 1;  // requests_ may grow while we wait
    if (request.body != nullptr) {
      if (request.body->replayable()) request.body->rewind();
      for (;;) {
        Result<std::string_view> piece = co_await request.body->next();
        if (!piece) co_return piece.error();
        if (piece->empty()) break;
        requests_[index].body.append(*piece);
      }
    }
    ScriptedReply reply;
    if (replies_.empty()) {
      reply.status = 500;
      reply.body = "no scripted reply left";
    } else {
      reply = std::move(replies_.front());
      replies_.pop_front();
    }
    if (reply.error) co_return *reply.error;
    const bool head_request = request.method == boost::beast::http::verb::head;
    co_return std::unique_ptr<upstream::Response>(std::make_unique<ScriptedResponse>(std::move(reply), head_request));
  }

  void close_idle() override { ++close_idle_calls_; }

 private:
  std::deque<ScriptedReply> replies_;
  std::vector<RecordedRequest> requests_;
  int close_idle_calls_ = 0;
};

}  // namespace tagd::testing
