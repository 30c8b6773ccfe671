#pragma once
// The HTTP rules a cache hit must answer exactly as S3 would: byte ranges, the four
// conditional headers with S3's precedence, freshness from TTL and the upstream's
// Cache-Control/Expires, the client's Cache-Control, and which requests must bypass the
// plain-object cache. Pure functions.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tagd::cache {

struct ByteRange {
  std::uint64_t first = 0;
  std::uint64_t last = 0;  // inclusive
  std::uint64_t length() const { return last - first + 1; }
};

enum class RangeKind { kNone, kSatisfiable, kUnsatisfiable, kUnsupported };
struct RangeResult {
  RangeKind kind = RangeKind::kNone;
  ByteRange range;
};
// "bytes=a-b", "bytes=a-", "bytes=-n" against an object of `size` bytes. Multiple ranges
// are kUnsupported (S3 does not serve multipart/byteranges: the caller forwards them).
// A syntactically invalid header is ignored (kNone), as RFC 9110 says.
RangeResult parse_range(std::string_view header, std::uint64_t size);

// Blocks [first, last] that cover a byte range.
struct BlockSpan {
  std::uint64_t first = 0;
  std::uint64_t last = 0;
};
BlockSpan blocks_for(const ByteRange& range, std::uint32_t block_size);

enum class ConditionalOutcome { kProceed, kNotModified, kPreconditionFailed };
struct ConditionalHeaders {
  const std::string* if_match = nullptr;
  const std::string* if_none_match = nullptr;
  const std::string* if_modified_since = nullptr;
  const std::string* if_unmodified_since = nullptr;
};
// S3's precedence: If-Match decides over If-Unmodified-Since, If-None-Match over
// If-Modified-Since; 412 checks come first. ETag comparison is strong for If-Match and
// weak for If-None-Match (W/ prefixes ignored), "*" matches any ETag.
ConditionalOutcome evaluate_conditionals(const ConditionalHeaders& headers, std::string_view etag,
                                         std::string_view last_modified);

std::optional<std::chrono::system_clock::time_point> parse_http_date(std::string_view value);

// How long an upstream response may be served from cache.
struct Freshness {
  bool storable = true;                        // false: no-store / private
  std::chrono::system_clock::time_point until;  // fresh until; == now means "revalidate first"
};
Freshness freshness(std::string_view cache_control, std::string_view expires, std::string_view date,
                    std::chrono::system_clock::time_point now, std::chrono::seconds ttl);

// What the client's Cache-Control asks of the cache.
enum class ClientDirective { kNone, kRevalidate, kBypass };
ClientDirective client_directive(std::string_view cache_control, std::string_view pragma);

// Whether a GET/HEAD can use the cache, and under which variant of the key.
struct CacheKeyDecision {
  bool cacheable = false;
  std::string variant;  // "" for the plain object, "versionId=..." for a version
  std::string reason;   // why not, for the log and X-Cache: BYPASS
};
// query: decoded pairs; headers_present: lower-case names of the request's headers.
CacheKeyDecision cache_key_for(const std::vector<std::pair<std::string, std::string>>& query,
                               const std::vector<std::string>& header_names);

}  // namespace tagd::cache
