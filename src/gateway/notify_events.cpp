#include "notify_events.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>

#include "tagd/auth/sigv4.hpp"
#include "tagd/core/metrics.hpp"
#include "tagd/core/strings.hpp"
#include "tagd/s3/request.hpp"

namespace tagd::gateway {

namespace bhttp = boost::beast::http;
using notify::EventType;

namespace {

// A CopyObject, CompleteMultipartUpload or DeleteObjects answer is small XML; a bigger
// one is not what these operations return.
constexpr std::size_t kMaxHeldBody = 16u << 20;

// What an operation means to a receiver: the events of its target, and of a move's source.
struct Kinds {
  std::optional<EventType> target;
  bool deletes_keys_in_body = false;
  bool deletes_move_source = false;
  bool needs_body = false;  // the answer decides whether it succeeded
  bool needs_head = false;  // size and ETag only a HEAD gives
};

Kinds kinds_of(const std::string& op) {
  Kinds k;
  if (op == "PutObject") {
    k.target = EventType::kCreatedPut;
  } else if (op == "CopyObject") {
    k.target = EventType::kCreatedCopy;
    k.needs_body = k.needs_head = true;
  } else if (op == "RenameObject") {  // X-Tigris-Rename: a copy, then the source is gone
    k.target = EventType::kCreatedCopy;
    k.deletes_move_source = true;
    k.needs_body = k.needs_head = true;
  } else if (op == "CompleteMultipartUpload") {
    k.target = EventType::kCreatedMultipart;
    k.needs_body = k.needs_head = true;
  } else if (op == "DeleteObject") {
    k.target = EventType::kDeleted;
  } else if (op == "DeleteObjects") {
    k.deletes_keys_in_body = true;
    k.needs_body = true;
  }
  return k;
}

std::string unquote(std::string_view etag) {
  etag = trim_ows(etag);
  if (etag.size() >= 2 && etag.front() == '"' && etag.back() == '"') etag = etag.substr(1, etag.size() - 2);
  return std::string(etag);
}

// XML text content (s3::decode_xml_text); text that is not well-formed is kept as it is.
std::string xml_unescape(std::string_view s) { return s3::decode_xml_text(s).value_or(std::string(s)); }

// The text of the first <name>...</name> in `xml` (raw, still escaped); empty if none.
std::string_view element_text(std::string_view xml, std::string_view name) {
  const std::string open = "<" + std::string(name) + ">";
  const std::string close = "</" + std::string(name) + ">";
  auto at = xml.find(open);
  if (at == std::string_view::npos) return {};
  at += open.size();
  auto end = xml.find(close, at);
  return end == std::string_view::npos ? std::string_view{} : xml.substr(at, end - at);
}

// Keys DeleteObjects reports as not deleted (<Error><Key>k</Key>...</Error>). In quiet
// mode only errors are listed, so "requested minus errors" is right in both modes.
std::set<std::string> delete_errors(std::string_view xml) {
  std::set<std::string> keys;
  std::size_t at = 0;
  while ((at = xml.find("<Error>", at)) != std::string_view::npos) {
    auto end = xml.find("</Error>", at);
    if (end == std::string_view::npos) break;
    auto block = xml.substr(at, end - at);
    auto k = block.find("<Key>");
    auto ke = block.find("</Key>");
    if (k != std::string_view::npos && ke != std::string_view::npos && ke > k) {
      keys.insert(xml_unescape(block.substr(k + 5, ke - k - 5)));
    }
    at = end;
  }
  return keys;
}

// The answer's body, held so it can be inspected and then relayed.
class HeldBody final : public BodySource {
 public:
  explicit HeldBody(std::string bytes) : bytes_(std::move(bytes)) {}
  boost::asio::awaitable<Result<std::size_t>> read(std::span<char> out) override {
    const std::size_t n = std::min(out.size(), bytes_.size() - at_);
    std::copy_n(bytes_.data() + at_, n, out.data());
    at_ += n;
    co_return n;
  }
  std::optional<std::uint64_t> length() const override { return bytes_.size(); }
  const std::string& bytes() const { return bytes_; }

 private:
  std::string bytes_;
  std::size_t at_ = 0;
};

boost::asio::awaitable<Result<std::unique_ptr<HeldBody>>> hold(upstream::Response& answer) {
  std::string bytes;
  char piece[16 * 1024];
  for (;;) {
    auto n = co_await answer.read(std::span<char>(piece, sizeof piece));
    if (!n) co_return n.error();
    if (*n == 0) break;
    if (bytes.size() + *n > kMaxHeldBody) {
      co_return Status(ErrorCode::kBadGateway, "upstream answer too large to inspect for notifications");
    }
    bytes.append(piece, *n);
  }
  co_return std::make_unique<HeldBody>(std::move(bytes));
}

// Size and ETag of what a copy or multipart upload created, as the upstream now has it.
boost::asio::awaitable<Result<std::pair<std::uint64_t, std::string>>> head_object(upstream::Client& client,
                                                                                  const Exchange& ex) {
  s3::Target target;
  target.bucket = ex.target.bucket;
  target.key = ex.target.key;
  upstream::Request up;
  up.method = bhttp::verb::head;
  up.target = s3::upstream_target(target);
  up.payload_hash = std::string(auth::kEmptySha256);
  up.sign = ex.verified.identity != nullptr;
  auto response = co_await client.exchange(std::move(up));
  if (!response) co_return response.error();
  const auto& head = response.value()->head();
  if (head.result_int() != 200) {
    co_return Status(ErrorCode::kBadGateway,
                     "HEAD after the write answered " + std::to_string(head.result_int()) + " (notification size)");
  }
  std::uint64_t size = 0;
  auto cl = head[bhttp::field::content_length];
  for (char c : cl) {
    if (c < '0' || c > '9') break;
    size = size * 10 + static_cast<std::uint64_t>(c - '0');
  }
  co_return std::make_pair(size, unquote(head[bhttp::field::etag]));
}

}  // namespace

bool notification_wanted(const notify::Notifier& notifier, const Exchange& ex,
                         const std::vector<s3::ObjectRef>& written) {
  const Kinds k = kinds_of(ex.op.name);
  if (k.target && notifier.wants(ex.target.bucket, ex.target.key, *k.target)) return true;
  if (k.deletes_keys_in_body || k.deletes_move_source) {
    for (const auto& w : written) {
      if (notifier.wants(w.bucket, w.key, EventType::kDeleted)) return true;
    }
  }
  return false;
}

boost::asio::awaitable<Result<std::unique_ptr<BodySource>>> record_notifications(
    notify::Notifier& notifier, upstream::Client& client, const Exchange& ex, const std::vector<s3::ObjectRef>& written,
    std::uint64_t payload_bytes, upstream::Response& answer) {
  const Kinds k = kinds_of(ex.op.name);
  std::unique_ptr<HeldBody> held;
  if (k.needs_body && !answer.bodyless()) {
    auto body = co_await hold(answer);
    if (!body) co_return body.error();
    held = std::move(body.value());
    // S3 answers 200 and then reports the failure in the body (the copy or the assembly
    // can fail after the head was sent): no event, relay the answer as it is.
    if (!k.deletes_keys_in_body && held->bytes().find("<Error>") != std::string::npos) {
      co_return std::unique_ptr<BodySource>(std::move(held));
    }
  }

  std::vector<notify::Event> events;
  if (k.target) {
    notify::Event e;
    e.type = *k.target;
    e.bucket = ex.target.bucket;
    e.key = ex.target.key;
    if (e.type == EventType::kCreatedPut) {
      e.size = payload_bytes;
      e.etag = unquote(answer.head()[bhttp::field::etag]);
    } else if (k.needs_head && notifier.wants(e.bucket, e.key, e.type)) {
      // The answer names the new ETag (CopyObjectResult, CompleteMultipartUploadResult);
      // only the size needs the HEAD.
      if (held) e.etag = unquote(xml_unescape(element_text(held->bytes(), "ETag")));
      auto info = co_await head_object(client, ex);
      if (!info) {
        // The write happened; only its size is unknown. The event still goes out.
        metrics().notify_size_unknown.inc();
        spdlog::warn("notify: {} {}/{}: size unknown ({}); event recorded with size 0", ex.op.name, e.bucket, e.key,
                     info.error().message());
      } else {
        e.size = info->first;
        e.etag = info->second;
      }
    }
    events.push_back(std::move(e));
  }
  if (k.deletes_move_source) {
    for (const auto& w : written) {
      if (w.bucket == ex.target.bucket && w.key == ex.target.key) continue;
      events.push_back({EventType::kDeleted, w.bucket, w.key, 0, {}, {}, {}});
    }
  }
  if (k.deletes_keys_in_body) {
    const auto errors = held ? delete_errors(held->bytes()) : std::set<std::string>{};
    for (const auto& w : written) {
      if (!w.key.empty() && errors.count(w.key) == 0)
        events.push_back({EventType::kDeleted, w.bucket, w.key, 0, {}, {}, {}});
    }
  }
  if (Status s = co_await notifier.record(std::move(events)); !s) {
    co_return Status(
        ErrorCode::kServiceUnavailable,
        "the write succeeded upstream but its notification could not be recorded; retry the request: " + s.message());
  }
  co_return std::unique_ptr<BodySource>(std::move(held));
}

}  // namespace tagd::gateway
