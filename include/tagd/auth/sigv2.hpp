#pragma once
// AWS Signature Version 2 for S3 ("Signing and Authenticating REST Requests"): the
// Authorization header "AWS AKID:base64(HMAC-SHA1)" and the query form
// ?AWSAccessKeyId=&Expires=&Signature= that boto3's generate_presigned_url still produces
// against a custom endpoint unless told signature_version="s3v4".
//
//   StringToSign = Method \n Content-MD5 \n Content-Type \n Date-or-Expires \n
//                  CanonicalizedAmzHeaders CanonicalizedResource
//
// Date-or-Expires: the query form's Expires; else the Date header, or "" when an
// x-amz-date header is present (it is then signed as one of the x-amz-* headers). AWS's
// Delete example instead puts the x-amz-date value in that position and leaves it out of
// the x-amz-* lines; that variant is accepted as well (it binds the same values).
//
// Only the signature is checked here: SigV2 does not sign the body. The verifier
// (request_verifier.hpp) turns a verified request into the same VerifiedRequest as SigV4,
// with an unsigned body plan. Pure functions: no clock, no I/O.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "tagd/auth/credentials.hpp"
#include "tagd/auth/sigv4.hpp"
#include "tagd/core/status.hpp"

namespace tagd::auth::sigv2 {

// "AWS AKIAIOSFODNN7EXAMPLE:frJIUN8DYpKDtOLCwo//yllqDzg="
struct Authorization {
  std::string access_key_id;
  std::string signature;  // base64, as sent
};
[[nodiscard]] bool is_sigv2_authorization(std::string_view value);
// Errors: kInvalidArgument ("AWS authorization header is invalid. Expected AwsAccessKeyId:signature").
[[nodiscard]] Result<Authorization> parse_authorization(std::string_view value);

// ?AWSAccessKeyId=...&Expires=<epoch seconds>&Signature=<url-encoded base64>
struct PresignedQuery {
  std::string access_key_id;
  std::string signature;  // base64 (a '+' sent unencoded, decoded to ' ', is restored)
  std::string expires;    // as signed: the decimal text
  std::int64_t expires_at = 0;
};
// AWSAccessKeyId or Signature among the (decoded) query parameters.
[[nodiscard]] bool has_presigned_query(const QueryParams& params);
// Errors: kAccessDenied (a parameter missing or repeated, S3's "Query-string authentication
// requires the Signature, Expires and AWSAccessKeyId parameters"), kInvalidArgument
// (Expires not a decimal number of seconds).
[[nodiscard]] Result<PresignedQuery> parse_presigned_query(const QueryParams& params);

// Sub-resources that take part in CanonicalizedResource: the S3 documentation's list
// (acl, cors, delete, lifecycle, location, logging, notification, partNumber, policy,
// requestPayment, restore, tagging, torrent, uploadId, uploads, versionId, versioning,
// versions, website and the response-* overrides) plus the ones botocore's SigV2 signer
// also signs (accelerate, analytics, defaultObjectAcl, inventory, metrics, object-lock,
// replication, select, select-type, storageClass), so boto3's signatures verify.
[[nodiscard]] bool is_signed_subresource(std::string_view name);

// Query parameters a SigV2 signature does not cover and that tagd still forwards: the auth
// parameters themselves and the listing controls (prefix, delimiter, marker, max-keys,
// encoding-type, list-type, continuation-token, start-after, fetch-owner, key-marker,
// version-id-marker, upload-id-marker, max-uploads, max-parts, part-number-marker, x-id).
// S3 would act on any other unsigned parameter too; tagd would sign it upstream with its own
// key, so — as for headers — any other parameter that is not a signed sub-resource is refused.
[[nodiscard]] bool is_unsigned_parameter_allowed(std::string_view name);
// content-type, content-md5, x-amz-* (any case): names botocore's SigV2 presigner copies
// from the signed headers into the URL.
[[nodiscard]] bool is_hoisted_header_parameter(std::string_view name);
// kAccessDenied naming the parameters that are neither signed nor allowed unsigned.
// `headers` (query form only): a hoisted header parameter is then accepted when the request
// carries that header exactly once with the same value — the header is what the signature
// covers and what the upstream acts on. Errors: kInvalidArgument on a malformed escape.
[[nodiscard]] Status check_unsigned_query(std::string_view raw_query, const HeaderList* headers = nullptr);

// "/" + bucket (virtual-hosted only) + the path as sent (still percent-encoded) + the signed
// sub-resources present, sorted by name (stable), "?name" or "?name=decoded value" joined
// with '&'. virtual_host_bucket is empty for path-style requests.
// Errors: kInvalidArgument on a malformed escape in the query.
[[nodiscard]] Result<std::string> canonical_resource(std::string_view virtual_host_bucket, std::string_view raw_path,
                                                     std::string_view raw_query);

// Every x-amz-* header: name lower-cased, sorted by name, repeated headers' values joined
// with ',' in arrival order, each value trimmed with folded line breaks turned into one
// space; "name:value\n" per header. `skip_amz_date` leaves x-amz-date out (the Delete
// example's variant).
[[nodiscard]] std::string canonical_amz_headers(const HeaderList& headers, bool skip_amz_date = false);

[[nodiscard]] std::string string_to_sign(std::string_view method, std::string_view content_md5,
                                         std::string_view content_type, std::string_view date_or_expires,
                                         std::string_view canonical_amz_headers, std::string_view canonical_resource);

// base64(HMAC-SHA1(secret, string_to_sign))
[[nodiscard]] std::string signature(std::string_view secret_access_key, std::string_view string_to_sign);

// Date / x-amz-date: the HTTP date forms (parse_http_date), RFC 1123 with a "+0000" zone
// as in AWS's examples, or ISO 8601 basic ("20130524T000000Z").
[[nodiscard]] std::optional<std::chrono::system_clock::time_point> parse_date(std::string_view value);

struct Request {
  std::string_view method;
  std::string_view raw_path;             // as received
  std::string_view raw_query;            // as received, without '?'
  std::string_view virtual_host_bucket;  // bucket named by Host; empty for path-style
  const HeaderList* headers = nullptr;
  const QueryParams* query = nullptr;  // raw_query decoded
};
struct Verified {
  const Identity* identity = nullptr;
  bool presigned = false;
};
// Header or query form, whichever the request carries (the caller has already ruled out
// both at once). Header form: Date or x-amz-date within max_skew of now
// (kRequestTimeTooSkewed; neither: kAccessDenied). Query form: kExpiredPresign once now is
// past Expires. Then kInvalidAccessKeyId, the unsigned-parameter check, and
// kSignatureDoesNotMatch (constant-time comparison).
[[nodiscard]] Result<Verified> verify(const Request& request, const CredentialStore& store,
                                      std::chrono::system_clock::time_point now, std::chrono::seconds max_skew);

}  // namespace tagd::auth::sigv2
