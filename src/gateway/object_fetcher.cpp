#include "object_fetcher.hpp"

#include "tagd/auth/sigv4.hpp"
#include "tagd/s3/request.hpp"

namespace tagd::gateway {

namespace bhttp = boost::beast::http;

boost::asio::awaitable<Result<std::unique_ptr<ResponseSource>>> ObjectFetcher::fetch(cache::FetchRequest request) {
  const auto variant = cache::parse_variant(request.key.variant);
  s3::Target target;
  target.bucket = request.key.bucket;
  target.key = request.key.key;
  if (variant.version_id) target.query.emplace_back("versionId", *variant.version_id);

  upstream::Request up;
  up.method = request.method;
  up.target = s3::upstream_target(target);
  if (variant.snapshot) up.headers.set("X-Tigris-Snapshot-Version", *variant.snapshot);
  up.headers.set("x-amz-checksum-mode", "ENABLED");
  if (request.range) {
    up.headers.set(bhttp::field::range,
                   "bytes=" + std::to_string(request.range->first) + "-" + std::to_string(request.range->last));
  } else if (request.suffix_length) {
    up.headers.set(bhttp::field::range, "bytes=-" + std::to_string(*request.suffix_length));
  }
  if (!request.if_match.empty()) up.headers.set(bhttp::field::if_match, request.if_match);
  if (!request.if_none_match.empty()) up.headers.set(bhttp::field::if_none_match, request.if_none_match);
  up.payload_hash = std::string(auth::kEmptySha256);
  up.timeout = request.timeout;
  auto response = co_await client_.exchange(std::move(up));
  if (!response) co_return response.error();
  co_return std::unique_ptr<ResponseSource>(std::move(response.value()));
}

}  // namespace tagd::gateway
