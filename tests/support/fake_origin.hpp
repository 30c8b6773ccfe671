#pragma once
// An in-memory S3 upstream behind the cache's Fetcher seam, for tests of the read path,
// fills and cached bodies. It answers a FetchRequest the way S3 would:
//
//   - GET or HEAD of a stored object: 200 with Content-Length, ETag, Last-Modified and
//     the object's extra headers (Cache-Control, Content-Type, x-amz-meta-*, ...);
//   - a Range (bytes=a-b): 206 with Content-Range "bytes a-b/size", b clipped to the
//     object; a first byte past the end: 416 with Content-Range "bytes */size";
//   - If-Match that does not match: 412; If-None-Match that matches: 304 (If-Match first);
//   - an object that is not there: 404 NoSuchKey.
//
// The body is handed out in pieces of `piece_size` bytes (a snapshot taken when the head
// was sent: replacing the object later does not change an answer in progress, as on S3).
//
//   tagd::testing::FakeOrigin origin;
//   auto etag = origin.put("bucket", "key", bytes, {{"Cache-Control", "max-age=60"}});
//   origin.put("bucket", "key", other_bytes);   // a new version, a new ETag
//   origin.reset_after_bytes = 100'000;          // GETs answered from now on break there
//   origin.close_gate(); ... origin.open_gate(); // hold every body read, then release
//   EXPECT_EQ(origin.gets(), 1u);
//
// Faults: `unavailable` (fetch fails with kServiceUnavailable), `fail_with_status` (every
// request answered with that status), `reset_after_bytes` (read() fails with kBadGateway
// after that many body bytes), `truncate_after_bytes` (the body ends cleanly too early),
// `read_delay` (each read waits on a steady_timer), `whole_reads` (a read returns only
// with the caller's buffer full, as the upstream client's did before it streamed; kept for
// callers that must not rely on short reads), and the gate (reads wait until
// the test opens it or allows some reads through). Fault settings are captured per answer
// when its head is produced.
//
// Concurrency: open_bodies() is the number of GET answers with a body not yet read to its
// end (nor dropped), max_open_bodies() the most there were at once since the last
// clear_requests(): the upstream fetches the code under test kept in flight.
//
// Single-threaded: use it from the io_context thread the code under test runs on (and
// from the test between runs of that context).
#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/message.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tagd/cache/fetcher.hpp"
#include "tagd/core/body_source.hpp"
#include "tagd/core/status.hpp"

namespace tagd::testing {

// One request the code under test made of the origin.
struct OriginRequest {
  boost::beast::http::verb method = boost::beast::http::verb::get;
  cache::ObjectKey key;
  std::optional<cache::ByteRange> range;
  std::string if_match;
  std::string if_none_match;
  int status = 0;  // what the origin answered (0: fetch failed without an answer)
  std::optional<std::uint64_t> suffix_length;  // Range: bytes=-n
};

class FakeOrigin final : public cache::Fetcher {
 public:
  using Headers = std::vector<std::pair<std::string, std::string>>;

  // Holds body reads while closed. Shared with every answer, so it outlives the origin.
  struct Gate {
    bool closed = false;
    std::size_t allowance = 0;  // reads let through while closed
    std::size_t blocked = 0;    // reads waiting now
    std::vector<std::shared_ptr<boost::asio::steady_timer>> waiters;
    void wake() {
      for (auto& t : waiters) t->cancel();
      waiters.clear();
    }
  };

  // Bodies being sent now, and the most at once.
  struct Open {
    std::size_t now = 0;
    std::size_t max = 0;
  };

  // The answer's body: a snapshot of the object's bytes (or an empty body), pieces handed
  // out at the pace of whoever reads.
  class Response final : public ResponseSource {
   public:
    struct Faults {
      std::optional<std::size_t> reset_after;
      std::optional<std::size_t> truncate_after;
      std::chrono::milliseconds delay{0};
      std::size_t piece = 16 * 1024;
      bool whole_reads = false;
      std::chrono::milliseconds gate_timeout{30'000};
    };

    Response(boost::beast::http::response_header<> head, std::string body, Faults faults,
             std::shared_ptr<Gate> gate, std::shared_ptr<std::uint64_t> bytes_sent, std::shared_ptr<Open> open = nullptr)
        : head_(std::move(head)),
          body_(std::move(body)),
          faults_(faults),
          gate_(std::move(gate)),
          bytes_sent_(std::move(bytes_sent)),
          open_(body_.empty() ? nullptr : std::move(open)) {
      if (open_) open_->max = std::max(open_->max, ++open_->now);
    }
    ~Response() override { close(); }
    Response(const Response&) = delete;
    Response& operator=(const Response&) = delete;

    const boost::beast::http::response_header<>& head() const override { return head_; }
    boost::beast::http::response_header<>& head() override { return head_; }
    std::optional<std::uint64_t> length() const override { return body_.size(); }

    boost::asio::awaitable<Result<std::size_t>> read(std::span<char> out) override {
      namespace asio = boost::asio;
      auto executor = co_await asio::this_coro::executor;
      while (gate_->closed && gate_->allowance == 0) {
        auto timer = std::make_shared<asio::steady_timer>(executor, faults_.gate_timeout);
        gate_->waiters.push_back(timer);
        ++gate_->blocked;
        auto [ec] = co_await timer->async_wait(asio::as_tuple(asio::use_awaitable));
        --gate_->blocked;
        if (!ec) co_return Status(ErrorCode::kGatewayTimeout, "fake origin: the gate was never opened");
      }
      if (gate_->closed) --gate_->allowance;
      if (faults_.delay.count() > 0) {
        asio::steady_timer timer(executor, faults_.delay);
        co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
      }
      if (faults_.reset_after && pos_ >= *faults_.reset_after) {
        co_return Status(ErrorCode::kBadGateway, "fake origin reset the connection mid-body");
      }
      std::size_t end = body_.size();
      if (faults_.reset_after) end = std::min(end, *faults_.reset_after);
      if (faults_.truncate_after) end = std::min(end, *faults_.truncate_after);
      const std::size_t n =
          std::min({out.size(), faults_.whole_reads ? out.size() : faults_.piece, end - std::min(pos_, end)});
      if (n > 0) std::memcpy(out.data(), body_.data() + pos_, n);
      pos_ += n;
      *bytes_sent_ += n;
      if (pos_ >= body_.size()) close();
      co_return n;
    }

   private:
    void close() {
      if (open_) --open_->now;
      open_.reset();
    }
    boost::beast::http::response_header<> head_;
    std::string body_;
    Faults faults_;
    std::shared_ptr<Gate> gate_;
    std::shared_ptr<std::uint64_t> bytes_sent_;
    std::shared_ptr<Open> open_;  // null once the body was read whole (or was empty)
    std::size_t pos_ = 0;
  };

  struct Object {
    std::string body;
    std::string etag;  // quoted
    std::string last_modified;
    Headers headers;
  };

  // Fault injection (read when an answer is produced).
  bool unavailable = false;
  std::optional<int> fail_with_status;
  std::optional<std::size_t> reset_after_bytes;
  std::optional<std::size_t> truncate_after_bytes;
  std::chrono::milliseconds read_delay{0};
  std::size_t piece_size = 16 * 1024;
  // Each read fills the caller's buffer (or ends the body), ignoring piece_size: the
  // upstream client's reads (Beast's async_read into a buffer body) return only then.
  bool whole_reads = false;

  // Stores or replaces an object; returns its new (quoted, strong) ETag. Every put makes a
  // new ETag, even for the same bytes, so a replacement is always visible.
  std::string put(const std::string& bucket, const std::string& key, std::string body, Headers headers = {}) {
    Object o;
    std::uint64_t h = 1469598103934665603ull;  // FNV-1a of the bytes
    for (unsigned char c : body) h = (h ^ c) * 1099511628211ull;
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
    o.etag = "\"" + std::string(hex) + "-v" + std::to_string(++version_) + "\"";
    o.last_modified = "Wed, 01 Jan 2025 00:00:" + std::string(version_ % 60 < 10 ? "0" : "") +
                      std::to_string(version_ % 60) + " GMT";
    o.body = std::move(body);
    o.headers = std::move(headers);
    std::string etag = o.etag;
    objects_[{bucket, key}] = std::move(o);
    return etag;
  }
  void remove(const std::string& bucket, const std::string& key) { objects_.erase({bucket, key}); }
  const Object* object(const std::string& bucket, const std::string& key) const {
    auto it = objects_.find({bucket, key});
    return it == objects_.end() ? nullptr : &it->second;
  }

  // The gate: while closed, body reads wait (bounded by a 30 s timer, then they fail).
  void close_gate() { gate_->closed = true; }
  void open_gate() {
    gate_->closed = false;
    gate_->wake();
  }
  void allow_reads(std::size_t n) {
    gate_->allowance += n;
    gate_->wake();
  }
  std::size_t blocked_reads() const { return gate_->blocked; }

  // What was asked.
  const std::vector<OriginRequest>& requests() const { return requests_; }
  std::size_t count(boost::beast::http::verb method) const {
    return static_cast<std::size_t>(std::count_if(requests_.begin(), requests_.end(),
                                                  [&](const OriginRequest& r) { return r.method == method; }));
  }
  std::size_t gets() const { return count(boost::beast::http::verb::get); }
  std::size_t heads() const { return count(boost::beast::http::verb::head); }
  std::vector<OriginRequest> gets_of(const std::string& key) const {
    std::vector<OriginRequest> out;
    for (const auto& r : requests_) {
      if (r.method == boost::beast::http::verb::get && r.key.key == key) out.push_back(r);
    }
    return out;
  }
  std::uint64_t body_bytes_sent() const { return *bytes_sent_; }
  std::size_t open_bodies() const { return open_->now; }
  std::size_t max_open_bodies() const { return open_->max; }
  void clear_requests() {
    requests_.clear();
    open_->max = open_->now;
  }

  boost::asio::awaitable<Result<std::unique_ptr<ResponseSource>>> fetch(cache::FetchRequest request) override {
    namespace asio = boost::asio;
    namespace http = boost::beast::http;
    const std::size_t index = requests_.size();
    requests_.push_back(OriginRequest{request.method, request.key, request.range, request.if_match,
                                      request.if_none_match, 0, request.suffix_length});
    // S3 answers a suffix as the range it names (the last n bytes, all of a shorter object).
    if (!request.range && request.suffix_length && *request.suffix_length > 0) {
      if (const Object* sized = object(request.key.bucket, request.key.key); sized && !sized->body.empty()) {
        const std::uint64_t size = sized->body.size();
        request.range = cache::ByteRange{size - std::min<std::uint64_t>(*request.suffix_length, size), size - 1};
      }
    }
    // A real upstream answers later: let other work run before the head arrives.
    co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
    if (unavailable) co_return Status(ErrorCode::kServiceUnavailable, "fake origin unavailable");

    const bool head_only = request.method == http::verb::head;
    http::response_header<> h;
    h.version(11);
    std::string body;
    auto answer = [&](int status) {
      h.result(static_cast<unsigned>(status));
      requests_[index].status = status;
    };
    auto error = [&](int status, std::string_view code) {
      answer(status);
      h.set(http::field::content_type, "application/xml");
      body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>" + std::string(code) + "</Code></Error>";
      h.set(http::field::content_length, std::to_string(body.size()));
    };

    const Object* o = object(request.key.bucket, request.key.key);
    if (fail_with_status) {
      error(*fail_with_status, "ServiceUnavailable");
    } else if (o == nullptr) {
      error(404, "NoSuchKey");
    } else if (!request.if_match.empty() && !etag_matches(request.if_match, o->etag)) {
      error(412, "PreconditionFailed");
    } else if (!request.if_none_match.empty() && etag_matches(request.if_none_match, o->etag)) {
      answer(304);
      h.set(http::field::etag, o->etag);
      h.set(http::field::last_modified, o->last_modified);
      for (const auto& [name, value] : o->headers) h.set(name, value);
    } else {
      const std::uint64_t size = o->body.size();
      for (const auto& [name, value] : o->headers) h.set(name, value);
      h.set(http::field::etag, o->etag);
      h.set(http::field::last_modified, o->last_modified);
      h.set(http::field::accept_ranges, "bytes");
      if (request.range && request.range->first >= size) {
        error(416, "InvalidRange");
        h.set(http::field::content_range, "bytes */" + std::to_string(size));
      } else if (request.range) {
        const std::uint64_t first = request.range->first;
        const std::uint64_t last = std::min(request.range->last, size - 1);
        answer(206);
        h.set(http::field::content_range,
              "bytes " + std::to_string(first) + "-" + std::to_string(last) + "/" + std::to_string(size));
        h.set(http::field::content_length, std::to_string(last - first + 1));
        body = o->body.substr(first, last - first + 1);
      } else {
        answer(200);
        h.set(http::field::content_length, std::to_string(size));
        body = o->body;
      }
    }
    if (head_only || h.result_int() == 304) body.clear();
    Response::Faults faults;
    if (request.method == http::verb::get) {
      faults.reset_after = reset_after_bytes;
      faults.truncate_after = truncate_after_bytes;
    }
    faults.delay = read_delay;
    faults.piece = std::max<std::size_t>(1, piece_size);
    faults.whole_reads = whole_reads;
    co_return std::unique_ptr<ResponseSource>(
        std::make_unique<Response>(std::move(h), std::move(body), faults, gate_, bytes_sent_,
                                   request.method == http::verb::get ? open_ : nullptr));
  }

 private:
  static std::string_view strip(std::string_view etag) {
    if (etag.rfind("W/", 0) == 0) etag.remove_prefix(2);
    if (etag.size() >= 2 && etag.front() == '"' && etag.back() == '"') etag = etag.substr(1, etag.size() - 2);
    return etag;
  }
  static bool etag_matches(std::string_view condition, std::string_view etag) {
    // A comma-separated list, or "*".
    while (!condition.empty()) {
      auto comma = condition.find(',');
      std::string_view item = condition.substr(0, comma);
      while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
      while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
      if (item == "*" || strip(item) == strip(etag)) return true;
      if (comma == std::string_view::npos) break;
      condition.remove_prefix(comma + 1);
    }
    return false;
  }

  std::map<std::pair<std::string, std::string>, Object> objects_;
  std::vector<OriginRequest> requests_;
  std::shared_ptr<Gate> gate_ = std::make_shared<Gate>();
  std::shared_ptr<std::uint64_t> bytes_sent_ = std::make_shared<std::uint64_t>(0);
  std::shared_ptr<Open> open_ = std::make_shared<Open>();
  int version_ = 0;
};

}  // namespace tagd::testing
