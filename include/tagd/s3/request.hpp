#pragma once
// What an incoming request addresses (bucket, key, sub-resource) and which permission it
// needs. Pure functions: no I/O, no clock.
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
