#pragma once
// What the cache needs from the upstream: the head or bytes of one object. The cache
// never sees connections, signing or retries; the gateway implements this over the
// upstream client (mapping the key and its variant to a request-target and headers,
// always asking in checksum mode), tests over a scripted fake.
#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/verb.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "tagd/cache/http_semantics.hpp"
#include "tagd/cache/index.hpp"
#include "tagd/core/body_source.hpp"
#include "tagd/core/status.hpp"

namespace tagd::cache {

struct FetchRequest {
  boost::beast::http::verb method = boost::beast::http::verb::get;  // GET or HEAD
  ObjectKey key;                                                     // bucket, key and variant
  std::optional<ByteRange> range;                                    // Range: bytes=first-last
  std::string if_match;                                              // empty: not sent
  std::string if_none_match;                                         // empty: not sent
  std::chrono::milliseconds timeout{0};                              // 0: the fetcher's default
  // Range: bytes=-n (the last n bytes) when `range` is empty: a suffix miss learns the
  // object's size from the answer's Content-Range, in the same request.
  std::optional<std::uint64_t> suffix_length;
};

class Fetcher {
 public:
  virtual ~Fetcher() = default;
  // The upstream's answer once its head has arrived (any status), or an error when there
  // was none (kServiceUnavailable, kGatewayTimeout, kBadGateway).
  [[nodiscard]] virtual boost::asio::awaitable<Result<std::unique_ptr<ResponseSource>>> fetch(FetchRequest request) = 0;
};

}  // namespace tagd::cache
