// Forwarding: the client's request re-signed and sent upstream through the upstream
// client, its body streamed through the verifier (client_upload.hpp), and the answer
// relayed through the response writer with backpressure both ways.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "client_upload.hpp"
#include "exchange.hpp"
#include "notify_events.hpp"
#include "tagd/auth/hashing.hpp"
#include "tagd/auth/sigv4.hpp"
#include "tagd/core/metrics.hpp"
#include "tagd/core/strings.hpp"
#include "tagd/gateway/gateway.hpp"

namespace tagd::gateway {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

namespace {

// Headers that describe one hop, or that tagd replaces when it re-signs; and headers an
// upstream or proxy might honour without tagd having authorized them: method overrides,
// and names with '_' (some servers map "x_amz_acl" to "x-amz-acl"; S3 defines none) —
// except user metadata ("x-amz-meta-my_key"), which stays metadata whatever the mapping.
bool drop_request_header(std::string_view name) {
  if (name.find('_') != std::string_view::npos &&
      !(name.size() > 11 && iequals(name.substr(0, 11), "x-amz-meta-"))) {
    return true;
  }
  for (auto d : {"x-http-method-override", "x-http-method", "x-method-override"}) {
    if (iequals(name, d)) return true;
  }
  static constexpr std::string_view kDrop[] = {
      "connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "trailer", "transfer-encoding",
      "upgrade", "host", "authorization", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token", "expect",
      "content-length", "x-amz-decoded-content-length", "x-amz-trailer"};
  for (auto d : kDrop) {
    if (iequals(name, d)) return true;
  }
  return false;
}

// Content-Encoding without the aws-chunked token (it describes the framing tagd removed).
std::string strip_aws_chunked(std::string_view value) {
  std::string out;
  while (!value.empty()) {
    auto comma = value.find(',');
    std::string_view token = trim_ows(value.substr(0, comma));
    if (!token.empty() && !iequals(token, "aws-chunked")) out += (out.empty() ? "" : ",") + std::string(token);
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return out;
}

// Whether an upstream request carries a checksum value (a header or a trailer).
bool carries_checksum(const bhttp::fields& headers, bool trailer) {
  return trailer || std::any_of(headers.begin(), headers.end(),
                                [](const auto& f) { return auth::is_checksum_value_header(f.name_string()); });
}

}  // namespace

asio::awaitable<void> Gateway::forward(Exchange& ex, CacheOutcome outcome) {
  const auto& config = shared_.config;
  auto& req = ex.parser.get();
  auto& m = metrics();
  auto fail = [&](const Status& error) -> asio::awaitable<void> {
    ex.error = s3_code(error.code());
    (void)co_await ex.writer.send_error(error, outcome);
  };

  const bool has_body = ex.body_pending();
  if (has_body && iequals(req[bhttp::field::expect], "100-continue")) {
    static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    ex.client.stream.expires_after(config.idle_timeout);
    auto [ec, n] = co_await asio::async_write(ex.client.stream, asio::buffer(kContinue.data(), kContinue.size()), kTuple);
    if (ec) co_return;  // nothing was answered: the writer keeps nothing alive
  }

  // The first piece is read before the upstream is contacted: a body that fits in it is
  // verified whole before a single byte leaves, and can be replayed on a retry.
  ClientUpload upload(config, ex);
  if (Status s = co_await upload.start(ex.op.keys_in_body, config.max_delete_objects_body); !s) {
    {
    co_await fail(s);
    co_return;
  }
  }
  // Objects this request may change (body, tags, ACL, a move's source, DeleteObjects'
  // keys, ...), invalidated in the cache before forwarding and again after a success (a
  // fill that raced with the write then cannot publish the old bytes).
  std::vector<s3::ObjectRef> written = ex.op.writes;
  if (ex.op.keys_in_body) {
    auto keys = s3::delete_objects_keys(upload.held());
    if (!keys) {
    co_await fail(keys.error());
    co_return;
  }
    if (ex.verified.identity != nullptr) {
      for (const auto& key : *keys) {
        if (!ex.verified.identity->may(s3::Action::kDelete, ex.target.bucket, key)) {
          m.policy_denials.inc();
          {
    co_await fail(Status(ErrorCode::kAccessDenied, "Access Denied for key " + key));
    co_return;
  }
        }
      }
    }
    for (auto& key : *keys) written.push_back({ex.target.bucket, std::move(key)});
  }
  if (cache_ != nullptr) {
    for (const auto& w : written) cache_->invalidate(w.bucket, w.key);
  }
  // Upload notifications: with the outbox full (when_full=reject) the write is refused
  // before it is forwarded, so no confirmed write goes without its event.
  const bool notify = shared_.notifier != nullptr && notification_wanted(*shared_.notifier, ex, written);
  if (notify) {
    if (Status s = shared_.notifier->admit(); !s) {
      co_await fail(s);
      co_return;
    }
  }

  // The upstream request: path-style target, hop-by-hop and authentication headers
  // dropped (the client re-signs), aws-chunked framing described anew.
  const auto& trailer = upload.trailer();
  upstream::Request up;
  up.method = req.method();
  up.target = s3::upstream_target(ex.target);
  for (const auto& f : req) {
    if (drop_request_header(f.name_string())) continue;
    if (f.name() == bhttp::field::content_encoding && upload.is_aws_chunked()) {
      std::string rest = strip_aws_chunked(f.value());
      if (trailer) rest = rest.empty() ? "aws-chunked" : "aws-chunked," + rest;
      if (!rest.empty()) up.headers.insert(f.name(), f.name_string(), rest);
      continue;
    }
    up.headers.insert(f.name(), f.name_string(), f.value());
  }
  if (!carries_checksum(up.headers, trailer.has_value())) {
    // An algorithm without its value is an error to S3 (400 InvalidRequest).
    up.headers.erase("x-amz-sdk-checksum-algorithm");
  }
  if (has_body) {
    up.body = &upload;
    if (trailer) {
      const std::uint64_t decoded =
          upload.complete() ? upload.held().size() : ex.verified.body.decoded_length.value_or(0);
      up.headers.set("x-amz-decoded-content-length", std::to_string(decoded));
      up.headers.set("x-amz-trailer", *trailer);
      up.body_length = upload.framed_length(decoded);
    } else if (upload.complete()) {
      up.body_length = upload.held().size();
    } else if (ex.verified.body.decoded_length) {
      up.body_length = *ex.verified.body.decoded_length;
    } else if (auto cl = ex.parser.content_length(); cl && !ex.parser.chunked()) {
      up.body_length = *cl;
    }  // else: chunked
  }
  up.payload_hash = trailer ? std::string(auth::kStreamingUnsignedPayloadTrailer)
                    : ex.verified.body.mode == auth::PayloadMode::kSignedSha256 ? ex.verified.body.expected_sha256
                    : has_body ? std::string(auth::kUnsignedPayload)
                               : std::string(auth::kEmptySha256);
  // An anonymous request (allowed by auth.allow_anonymous) goes upstream unsigned: the
  // upstream's own ACLs decide, and tagd's credentials never make a private object public
  // (TAG bug 6).
  up.sign = ex.verified.identity != nullptr;

  auto response = co_await client_->exchange(std::move(up));
  if (!response) {
    co_await fail(response.error());
    co_return;
  }
  if (cache_ != nullptr && response.value()->status() >= 200 && response.value()->status() < 300) {
    for (const auto& w : written) cache_->invalidate(w.bucket, w.key);
  }
  m.request_body_bytes.inc(upload.payload_bytes());
  upstream::Response& answer = *response.value();
  if (notify && answer.status() >= 200 && answer.status() < 300) {
    // The events are fsynced before the client hears of the write (notify_events.hpp).
    auto held = co_await record_notifications(*shared_.notifier, *client_, ex, written, upload.payload_bytes(), answer);
    if (!held) {
      co_await fail(held.error());
      co_return;
    }
    if (*held) {
      co_await respond(ex, answer.head(), (*held)->length(), held->get(), outcome);
      co_return;
    }
  }
  co_await respond(ex, answer.head(), answer.length(), &answer, outcome);
}

}  // namespace tagd::gateway
