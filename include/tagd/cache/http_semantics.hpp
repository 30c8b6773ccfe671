#pragma once
// The HTTP rules a cache hit must answer exactly as S3 would: byte ranges, the four
// conditional headers with S3's precedence, freshness from TTL and the upstream's
// Cache-Control/Expires, the client's Cache-Control, and which requests must bypass the
// plain-object cache. Pure functions.
#include <array>
#include <boost/beast/http/fields.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tagd/cache/index.hpp"

namespace tagd::cache {

struct ByteRange {
  std::uint64_t first = 0;
  std::uint64_t last = 0;  // inclusive
  std::uint64_t length() const { return last - first + 1; }
  bool operator==(const ByteRange&) const = default;
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
// The same header before the object's size is known (a miss deciding what to fetch):
// "bytes=a-b", "bytes=a-", "bytes=-n" (suffix) or several ranges; nullopt when invalid.
struct RangeSpec {
  std::optional<std::uint64_t> first;   // a
  std::optional<std::uint64_t> last;    // b
  std::optional<std::uint64_t> suffix;  // n
  bool multiple = false;
};
std::optional<RangeSpec> parse_range_spec(std::string_view header);

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
//
// Decided from ALLOW-lists: a request header or query parameter that is not known to
// leave the response unchanged (or to be a variant tagd keys on) bypasses the cache.
//   - variants: `versionId` (query), `X-Tigris-Snapshot-Version` (header);
//   - checked: `x-amz-checksum-mode: ENABLED` (header, or `x-amz-checksum-mode=ENABLED` in
//     a presigned URL's query) selects whether the object's checksum headers are returned;
//   - authentication (SigV4 and SigV2 headers and presign parameters), SDK bookkeeping,
//     tracing, connection management, Range, the four conditionals and Cache-Control are
//     answered by the cache itself or change nothing;
//   - everything else (SSE-C, x-amz-expected-bucket-owner, x-amz-request-payer, Origin,
//     If-Range, partNumber, response-* overrides, sub-resources, unknown names) bypasses.
struct CacheKeyDecision {
  bool cacheable = false;
  std::string variant;         // "" for the plain object; see make_variant()
  std::string reason;          // why not, for the log and X-Cache: BYPASS
  bool checksum_mode = false;  // the client asked for the object's checksums
};
// query: decoded pairs; headers: (name, value) pairs, names in any case.
CacheKeyDecision cache_key_for(const std::vector<std::pair<std::string, std::string>>& query,
                               const std::vector<std::pair<std::string, std::string>>& headers);
// The same over a request's own header fields (the data path: no copy, no allocation
// unless the request bypasses).
CacheKeyDecision cache_key_for(const std::vector<std::pair<std::string, std::string>>& query,
                               const boost::beast::http::fields& headers);

// The parts of a variant and its canonical encoding ("versionId=<v>&snapshot=<s>", values
// percent-encoded so the encoding is injective; "" for the plain object).
struct VariantParts {
  std::optional<std::string> version_id;
  std::optional<std::string> snapshot;  // X-Tigris-Snapshot-Version
};
std::string make_variant(const VariantParts& parts);
VariantParts parse_variant(std::string_view variant);
// A read as of a past snapshot never changes: no TTL, no revalidation.
bool immutable_variant(std::string_view variant);

// Whether an upstream answer to a fill may be stored: `first`..`last` were asked for
// (with If-Match on `etag`) of an object of `size` bytes.
enum class FillVerdict {
  kOk,       // exactly the bytes asked for, of the expected object
  kChanged,  // the object changed or went away upstream (412, 404, another ETag or size)
  kBad,      // an error or a malformed answer: store nothing, the object may be fine
};
struct FillExpectation {
  std::uint64_t first = 0;
  std::uint64_t last = 0;  // inclusive
  std::uint64_t size = 0;
  std::string_view etag;
};
FillVerdict check_fill_response(int status, std::string_view content_range, std::string_view content_length,
                                std::string_view etag, const FillExpectation& expected, std::string& why);

// Parses "bytes a-b/total" (total may not be "*").
struct ContentRange {
  std::uint64_t first = 0;
  std::uint64_t last = 0;
  std::uint64_t size = 0;
};
std::optional<ContentRange> parse_content_range(std::string_view value);

// Checksum headers (x-amz-checksum-<algorithm>, x-amz-checksum-type) describe the whole
// object. S3 returns them only when the client asked (checksum mode) and the response
// carries the whole object: a 200, a HEAD, or a range that covers every byte of an object
// uploaded in one part (a multipart ETag "...-N" never). Never on 304 or other ranges.
bool is_checksum_header(std::string_view name);
struct ChecksumContext {
  bool checksum_mode = false;
  bool partial = false;  // a 206
  ByteRange range;       // what the 206 covers
  std::uint64_t size = 0;
  std::string_view etag;
};
bool return_checksums(const ChecksumContext& context);

// A cached object's response head, serialised once per object version (the in-memory
// index builds it when it installs the metadata): exactly the fields a hit used to set one
// by one on a Beast header, in the same order and with the same values.
struct PreparedHead {
  // ETag, Last-Modified (when known), then the replayed headers: "Name: value\r\n" each.
  // A later header of the same name replaces an earlier one, as Beast's set() does.
  std::string fields;
  // The object's checksum headers, for answers that carry them (return_checksums).
  std::string checksums;
  // False when a field could not be written verbatim (a CR or LF, a name or value Beast
  // would refuse, a checksum header that would replace a field): the caller builds the
  // head field by field instead.
  bool usable = true;
};
PreparedHead prepare_head(const ObjectMeta& meta);

// A hit's head from its object's prepared one: the status, the prepared fields, the
// checksum headers when the answer carries them, then this answer's own Accept-Ranges and
// Content-Range, in the order a head built field by field has them. Formatted without
// allocating; `head` keeps the prepared fields alive while the answer is written.
struct PreparedAnswer {
  unsigned status = 200;  // 200, or 206 for a range
  std::shared_ptr<const PreparedHead> head;
  bool checksums = false;
  std::array<char, 128> own{};  // "Accept-Ranges: bytes\r\n" [+ "Content-Range: bytes a-b/size\r\n"]
  std::size_t own_size = 0;

  // `range` (with the object's `size`) only when `partial`.
  static PreparedAnswer make(std::shared_ptr<const PreparedHead> head, bool checksums, bool partial, ByteRange range,
                             std::uint64_t size);
  std::array<std::string_view, 3> fields() const {
    return {std::string_view(head->fields), checksums ? std::string_view(head->checksums) : std::string_view(),
            std::string_view(own.data(), own_size)};
  }
};

}  // namespace tagd::cache
