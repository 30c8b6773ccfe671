#pragma once
// AWS Signature Version 4: canonicalization, signing and parsing of the two places a
// signature travels (Authorization header, presigned query string).
//
// Every function here is pure: no clock, no credential lookup. The verifier
// (request_verifier.hpp) composes them with a credential store and a clock.
#include <array>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tagd/auth/hashing.hpp"
#include "tagd/core/status.hpp"
#include "tagd/core/uri.hpp"

namespace tagd::auth {

inline constexpr std::string_view kAlgorithm = "AWS4-HMAC-SHA256";
inline constexpr std::string_view kUnsignedPayload = "UNSIGNED-PAYLOAD";
inline constexpr std::string_view kStreamingSignedPayload = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
inline constexpr std::string_view kStreamingSignedPayloadTrailer =
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER";
inline constexpr std::string_view kStreamingUnsignedPayloadTrailer = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";
inline constexpr std::string_view kEmptySha256 =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

// Percent-encoding, query parsing and the canonical query string live in core/uri.hpp
// (s3 needs them too); these using-declarations keep the auth:: spelling working.
using tagd::canonical_query_string;
using tagd::HeaderList;
using tagd::parse_query;
using tagd::QueryParams;
using tagd::uri_decode;
using tagd::uri_encode;

// Canonical URI for S3: the path decoded once then encoded once with '/' kept. S3 does
// not normalize ("/a/../b" stays) and does not double-encode.
[[nodiscard]] std::optional<std::string> canonical_uri_s3(std::string_view raw_path);
// Canonical URI for every other service (the aws-sig-v4-test-suite rules): path
// normalized (RFC 3986 dot-segment removal, repeated '/' collapsed) then encoded twice.
// The raw (wire) path counts as the client's first encoding, so it is encoded once more
// without decoding: "/example space/" → "/example%20space/", "/%E1%88%B4" → "/%25E1%2588%25B4".
[[nodiscard]] std::optional<std::string> canonical_uri_generic(std::string_view raw_path);

// name:value lines for the signed headers, lower-cased names, values trimmed with inner
// whitespace runs collapsed; a header repeated is joined with ','. signed_headers must be
// lower-case and sorted. A signed header absent from the request is kSignatureDoesNotMatch
// (what S3 answers: the client's canonical request cannot be reproduced).
[[nodiscard]] Result<std::string> canonical_headers(const HeaderList& headers,
                                                    const std::vector<std::string>& signed_headers);

struct CanonicalRequestParts {
  std::string_view method;
  std::string canonical_uri;  // already canonical (see above)
  QueryParams query;          // decoded; X-Amz-Signature must already be removed
  const HeaderList* headers = nullptr;
  std::vector<std::string> signed_headers;  // lower-case, sorted
  std::string_view payload_hash;            // hex SHA-256, UNSIGNED-PAYLOAD or STREAMING-*
  // Instead of `query`, when set: the request's own decoded query (not copied), leaving
  // out every parameter named `omit_param` (a presigned URL's X-Amz-Signature). Last, so
  // positional initialisation of the fields above is unchanged.
  const QueryParams* query_view = nullptr;
  std::string_view omit_param;
};
[[nodiscard]] Result<std::string> canonical_request(const CanonicalRequestParts& parts);

// "20130524/us-east-1/s3/aws4_request"
struct CredentialScope {
  std::string date;  // YYYYMMDD
  std::string region;
  std::string service;
  [[nodiscard]] std::string to_string() const;
};

[[nodiscard]] std::string string_to_sign(std::string_view amz_date, const CredentialScope& scope,
                                         std::string_view canonical_request);
[[nodiscard]] Sha256Digest signing_key(std::string_view secret_access_key, const CredentialScope& scope);
[[nodiscard]] std::string signature_hex(const Sha256Digest& signing_key, std::string_view string_to_sign);

// Authorization: AWS4-HMAC-SHA256 Credential=AKID/20130524/us-east-1/s3/aws4_request,
//   SignedHeaders=host;range;x-amz-date, Signature=fe5f80f7...
struct AuthorizationHeader {
  std::string access_key_id;
  CredentialScope scope;
  std::vector<std::string> signed_headers;
  std::string signature;
};
// Components may come in any order, with or without spaces after the commas. SignedHeaders
// names are lower-cased; the signature must be 64 lower-case hex digits.
// Errors: kAuthorizationHeaderMalformed (wrong algorithm, missing, unknown or repeated
// parts, bad scope, bad signature syntax).
[[nodiscard]] Result<AuthorizationHeader> parse_authorization_header(std::string_view value);

// X-Amz-Algorithm, X-Amz-Credential, X-Amz-Date, X-Amz-Expires, X-Amz-SignedHeaders,
// X-Amz-Signature (and optional X-Amz-Security-Token) from a decoded query.
struct PresignedQuery {
  std::string access_key_id;
  CredentialScope scope;
  std::string amz_date;
  std::int64_t expires_seconds = 0;  // 0..604800
  std::vector<std::string> signed_headers;
  std::string signature;
};
[[nodiscard]] bool has_presigned_query(const QueryParams& params);
// Errors: kAuthorizationQueryParametersError (missing or repeated parameter, other
// algorithm, X-Amz-Expires outside 1..604800, X-Amz-Date not matching the scope date).
[[nodiscard]] Result<PresignedQuery> parse_presigned_query(const QueryParams& params);

// The same two parsers as views into the text they read (no copies): the verifier's path,
// run on every signed request. Same checks and errors as the owning forms above, which
// are built on these. `signed_headers` is the validated SignedHeaders text as sent (any
// case); signed_header_names() splits it into lower-case names.
struct SignatureFieldsView {
  std::string_view access_key_id;
  std::string_view date;  // scope: YYYYMMDD
  std::string_view region;
  std::string_view service;
  std::string_view signed_headers;
  std::string_view signature;  // 64 lower-case hex digits
  std::string_view amz_date;   // presigned only (X-Amz-Date)
  std::int64_t expires_seconds = 0;  // presigned only
};
[[nodiscard]] Result<SignatureFieldsView> parse_authorization_header_view(std::string_view value);
[[nodiscard]] Result<SignatureFieldsView> parse_presigned_query_view(const QueryParams& params);
// The names of a validated SignedHeaders text, lower-cased, in the order sent. `names` and
// `storage` are the caller's (reused) buffers: the views point into `text`, or into
// `storage` when a name had to be lower-cased.
void signed_header_names(std::string_view text, std::vector<std::string_view>& names, std::string& storage);

// The canonical request of a received request, appended to `out` from views over the
// request: the raw query is used in place when it is already in canonical form (every
// byte unreserved or an upper-case %XX escape of a reserved one: encoding its decoded
// form gives it back), else it is re-encoded from `query` (= parse_query(raw_query)).
struct ReceivedRequest {
  std::string_view method;
  std::string_view raw_path;   // S3 canonical URI rules (canonical_uri_s3)
  std::string_view raw_query;  // without '?'
  const QueryParams* query = nullptr;
  std::string_view omit_param;  // a presigned URL's X-Amz-Signature
  const HeaderList* headers = nullptr;
  const std::vector<std::string_view>* signed_headers = nullptr;  // lower-case, as signed
  std::string_view payload_hash;
};
[[nodiscard]] Status append_canonical_request(std::string& out, const ReceivedRequest& request);
// The string to sign appended to `out` (same text as string_to_sign()).
void append_string_to_sign(std::string& out, std::string_view amz_date, std::string_view date, std::string_view region,
                           std::string_view service, std::string_view canonical_request);

// "20130524T000000Z" ↔ time point. Returns nullopt if malformed.
[[nodiscard]] std::optional<std::chrono::system_clock::time_point> parse_amz_date(std::string_view amz_date);
[[nodiscard]] std::string format_amz_date(std::chrono::system_clock::time_point t);
// RFC 1123 ("Fri, 24 May 2013 00:00:00 GMT"), accepted in the Date header. The obsolete
// RFC 850 and asctime forms are accepted too, as HTTP/1.1 requires of recipients.
[[nodiscard]] std::optional<std::chrono::system_clock::time_point> parse_http_date(std::string_view value);

}  // namespace tagd::auth
