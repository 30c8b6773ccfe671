#pragma once
// What an incoming request addresses (bucket, key, sub-resource) and which permission it
// needs. Pure functions (RequestScratch aside: a per-thread free list): no I/O, no clock.
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tagd/core/status.hpp"
#include "tagd/core/uri.hpp"

namespace tagd::s3 {

struct Target {
  std::string bucket;        // empty for service-level requests (ListBuckets)
  std::string key;           // decoded; empty for bucket-level requests
  std::string raw_path;      // as the client sent it (signature check needs it)
  std::string raw_query;     // as the client sent it, without '?'
  QueryParams query;         // decoded
  bool virtual_hosted = false;

  bool has_param(std::string_view name) const;
  std::optional<std::string> param(std::string_view name) const;
};

// Splits host + request-target into bucket and key. Virtual-hosted style applies when the
// Host (port stripped) is "<bucket>.<domain>"; otherwise the first path segment is the
// bucket. Errors: kInvalidRequest (malformed target), kInvalidArgument (bad escapes, a
// repeated query parameter: the upstream could read another occurrence than the one
// authorized).
Result<Target> resolve_target(std::string_view host, std::string_view request_target,
                              std::string_view virtual_host_domain);
// The same into `t`, every field overwritten and its strings' capacity reused (the query
// list's elements too, see parse_query_into). On an error `t` is unspecified.
[[nodiscard]] Status resolve_target_into(std::string_view host, std::string_view request_target,
                                         std::string_view virtual_host_domain, Target& t);

// A request's Target and header copy, taken from this thread's free list (each event loop
// is one thread) and given back on destruction: a connection's next request decodes into
// strings that already have their capacity, where a fresh Target and header list cost
// about ten allocations for a presigned GET. Views into them live no longer than the
// request (the owner of this object). Bounded: at most 256 per thread are kept, and none
// whose strings grew past 16 KiB together.
class RequestScratch {
 public:
  RequestScratch();  // target() empty (a default Target)
  ~RequestScratch();
  RequestScratch(const RequestScratch&) = delete;
  RequestScratch& operator=(const RequestScratch&) = delete;

  Target& target() noexcept;
  const Target& target() const noexcept;
  // resolve_target_into(target()), keeping the last request's parameter strings for reuse.
  [[nodiscard]] Status resolve(std::string_view host, std::string_view request_target,
                               std::string_view virtual_host_domain);
  // Header storage the caller overwrites whole (resize, then assign each pair): its
  // contents before that are a previous request's.
  HeaderList& header_storage() noexcept;

 private:
  struct Slot;
  static std::vector<std::unique_ptr<Slot>>& free_slots();  // this thread's
  std::unique_ptr<Slot> slot_;
};

// Refuses a bucket name that an upstream could read as structure ('/', '%', '\\', "." or
// ".."): kInvalidBucketName.
[[nodiscard]] Status check_bucket_name(std::string_view bucket);

// How a key splits into '/'-separated segments, for the rules that keep a key from
// meaning another path to an upstream that normalizes paths.
struct KeySegments {
  bool dot = false;           // a "." or ".." segment
  bool empty = false;         // an empty segment before a '/' ("a//b", a leading '/'); a
                              // trailing '/' (a directory marker) does not count
  bool only_slashes = false;  // non-empty and nothing but '/'
};
KeySegments key_segments(std::string_view key) noexcept;

// x-amz-copy-source ("/bucket/key?versionId=x", URL-encoded) → bucket and decoded key.
struct CopySource {
  std::string bucket;
  std::string key;
};
std::optional<CopySource> parse_copy_source(std::string_view header_value);

// The path-style target tagd sends upstream: "/bucket/encoded-key?sorted-query", with
// authentication parameters (SigV4 X-Amz-* presign, SigV2 query auth) removed.
std::string upstream_target(const Target& target);

// Keys named in a DeleteObjects body (<Delete><Object><Key>..</Key>...). Entities in keys
// are decoded. Errors: kMalformedXML.
Result<std::vector<std::string>> delete_objects_keys(std::string_view xml);

// XML text content with the five predefined entities and numeric character references
// decoded (as UTF-8); nullopt for anything else (an unknown entity, a bare '&', a code
// point past U+10FFFF). One decoder for every S3 XML document tagd reads.
std::optional<std::string> decode_xml_text(std::string_view text);

// <Error><Code>..</Code><Message>..</Message><Resource>..</Resource><RequestId>..</RequestId></Error>
std::string error_xml(std::string_view code, std::string_view message, std::string_view resource,
                      std::string_view request_id);
std::string xml_escape(std::string_view text);

}  // namespace tagd::s3
