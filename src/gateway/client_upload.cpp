#include "client_upload.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/read.hpp>
#include <cassert>

#include "tagd/auth/hashing.hpp"
#include "tagd/core/metrics.hpp"

namespace tagd::gateway {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

namespace {

// The x-amz-checksum-* trailer an aws-chunked upload announced, if any. (The decoder has
// refused algorithms tagd cannot compute.)
std::optional<std::string> forwarded_trailer(const auth::BodyPlan& plan) {
  if (!plan.chunked) return std::nullopt;
  for (const auto& name : plan.chunked->expected_trailers) {
    if (name.rfind("x-amz-checksum-", 0) == 0) return name;
  }
  return std::nullopt;
}

// Base64 length of the digest a checksum trailer carries (base64 is strict, so exact).
std::size_t trailer_value_length(std::string_view trailer_name) {
  auto algorithm = auth::checksum_algorithm_from_name(trailer_name.substr(std::string_view("x-amz-checksum-").size()));
  const std::size_t digest = algorithm ? auth::digest_size(*algorithm) : 0;
  return (digest + 2) / 3 * 4;
}

std::string_view trailer_value(const auth::BodyVerifier& verifier, std::string_view name) {
  for (const auto& [n, v] : verifier.trailers()) {
    if (n == name) return v;
  }
  // finish() succeeded, so the announced trailer was received and checked.
  assert(false && "verified trailer missing");
  return {};
}

}  // namespace

ClientUpload::ClientUpload(const config::Config& config, Exchange& ex)
    : config_(config), ex_(ex), verifier_(ex.verified.body), trailer_(forwarded_trailer(ex.verified.body)) {
  if (trailer_) encoder_.emplace(kPiece, *trailer_);
}

std::uint64_t ClientUpload::framed_length(std::uint64_t payload) const {
  return encoder_ ? encoder_->encoded_length(payload, trailer_value_length(*trailer_)) : payload;
}

Status ClientUpload::counted(Status s) {
  if (!s.is_ok() && s.code() != ErrorCode::kRequestTimeout && s.code() != ErrorCode::kIncompleteBody) {
    metrics().body_verification_failures.inc();
  }
  return s;
}

asio::awaitable<Status> ClientUpload::read_piece(std::string& payload) {
  auto& body = ex_.parser.get().body();
  body.data = ex_.piece.get();
  body.size = kPiece;
  // The stream's own timeout would close the socket, leaving no way to send the client
  // its RequestTimeout: a separate timer cancels the read instead. Its state is shared
  // because the handler may run after this frame is gone; `done` (same thread) keeps a
  // late handler away from a stream that may no longer exist.
  struct Watch {
    explicit Watch(asio::any_io_executor e) : timer(std::move(e)) {}
    asio::steady_timer timer;
    bool fired = false;
    bool done = false;
  };
  auto& stream = ex_.client.stream;
  auto watch = std::make_shared<Watch>(stream.get_executor());
  watch->timer.expires_after(config_.idle_timeout);
  watch->timer.async_wait([watch, &stream](boost::system::error_code wec) {
    if (wec || watch->done) return;  // the read finished first
    watch->fired = true;
    boost::system::error_code ignored;
    stream.socket().cancel(ignored);
  });
  stream.expires_never();
  auto [ec, n] = co_await bhttp::async_read(stream, ex_.client.buffer, ex_.parser, kTuple);
  watch->done = true;
  watch->timer.cancel();
  if (ec == bhttp::error::need_buffer) ec = {};
  if (ec && watch->fired) ec = beast::error::timeout;
  const std::size_t got = kPiece - body.size;
  body.data = nullptr;
  if (ec) {
    if (ec == beast::error::timeout) {
      metrics().client_timeouts.inc();
      co_return Status(ErrorCode::kRequestTimeout, "Your socket connection to the server was not read from or written "
                                                   "to within the timeout period.");
    }
    co_return Status(ErrorCode::kIncompleteBody, "request body ended early: " + ec.message());
  }
  ex_.bytes_in += got;
  co_return verifier_.feed(std::string_view(ex_.piece.get(), got), payload);
}

asio::awaitable<Status> ClientUpload::start(bool whole, std::size_t limit) {
  if (whole) {
    while (ex_.body_pending()) {
      Status s = co_await read_piece(held_);
      if (!s) co_return counted(std::move(s));
      if (held_.size() > limit) co_return Status(ErrorCode::kMalformedXML, "DeleteObjects body too large");
    }
  } else if (ex_.body_pending()) {
    Status s = co_await read_piece(held_);
    if (!s) co_return counted(std::move(s));
  }
  if (!ex_.body_pending()) {
    // Also for a request with no body at all: an aws-chunked upload without its body, or
    // one shorter than x-amz-decoded-content-length, is refused here and nothing is
    // committed upstream.
    if (Status s = finish_verification("body verification failed before forwarding"); !s) co_return s;
    complete_ = true;
  }
  co_return Status::ok();
}

Status ClientUpload::finish_verification(std::string_view when) {
  Status s = verifier_.finish();
  if (!s) {
    metrics().body_verification_failures.inc();
    spdlog::warn("request {}: {}: {}", ex_.request_id(), when, s.message());
  }
  return s;
}

std::string_view ClientUpload::frame(std::string_view payload, bool last) {
  if (!encoder_) return payload;
  framed_.clear();
  encoder_->encode(payload, framed_);
  if (last) encoder_->finish(trailer_value(verifier_, *trailer_), framed_);
  return framed_;
}

void ClientUpload::rewind() {
  assert(complete_);
  sent_last_ = false;
  if (trailer_) encoder_.emplace(kPiece, *trailer_);  // a retry frames the body anew
}

asio::awaitable<Result<std::string_view>> ClientUpload::next() {
  if (sent_last_) co_return std::string_view();
  if (complete_) {
    sent_last_ = true;
    co_return frame(held_, true);
  }
  // Streaming: always hold back the newest piece, so the upstream sees the end of the body
  // only after every digest checked out.
  while (ex_.body_pending()) {
    std::string next;
    Status s = co_await read_piece(next);
    if (!s) {
      spdlog::warn("request {}: upload aborted upstream: {}", ex_.request_id(), s.message());
      co_return counted(std::move(s));
    }
    if (next.empty()) continue;
    sending_ = std::move(held_);
    held_ = std::move(next);
    // (An empty view would mean "end of body": the encoder may keep a short piece buffered.)
    if (auto out = frame(sending_, false); !out.empty()) co_return out;
  }
  if (Status s = finish_verification("upload aborted upstream"); !s) co_return s;
  sent_last_ = true;
  sending_ = std::move(held_);
  held_.clear();
  co_return frame(sending_, true);
}

}  // namespace tagd::gateway
