#pragma once
// Policy: tagd never signs what the client did not.
//
// tagd re-signs every request it forwards with its own upstream credentials, and its
// upstream signer covers every x-amz-* / x-tigris-* header. A header the client's own
// signature did not cover would therefore be vouched for by tagd's key: the holder of a
// presigned PUT URL could add x-amz-copy-source and copy a private object into a public
// prefix; a prefix-limited writer could add x-amz-acl: public-read. So, like S3, any
// x-amz-* or x-tigris-* header (names compared case-insensitively) that the client's
// signature does not cover is refused with 403 AccessDenied, "There were headers present
// in the request which were not signed", naming the headers (S3 lists them in a
// HeadersNotSigned element; tagd's error XML has no such element, so they go in the
// message).
//
// Deny by default. What S3 lets through unsigned, and so does tagd:
//   - Presigned SigV4: x-amz-content-sha256. Its value is the payload-hash line of the
//     canonical request (UNSIGNED-PAYLOAD when absent), so the signature covers it anyway;
//     S3 documents it as optional for presigned URLs and does not require it in
//     X-Amz-SignedHeaders.
//   - Headers outside x-amz-* / x-tigris-* (Content-Type, Content-MD5, Range, Cache-Control,
//     If-*, ...): S3 only requires host and the x-amz-* headers to be signed ("any x-amz-*
//     headers that you plan to add to the request", AWS SigV4 documentation), and browsers
//     send Content-Type with presigned PUTs without signing it. Content-MD5 is verified
//     against the body by tagd whatever the signature says.
// Everything else is refused, including on header-signed SigV4 requests
// x-amz-content-sha256, x-amz-date, x-amz-decoded-content-length, x-amz-trailer and
// x-amz-security-token: SDKs sign them, and S3 requires them signed.
//
// Signature Version 2 signs every x-amz-* header by construction (CanonicalizedAmzHeaders)
// but no x-tigris-* header, so there every x-tigris-* header is refused.
#include <string>
#include <string_view>
#include <vector>

#include "tagd/auth/sigv4.hpp"
#include "tagd/core/status.hpp"

namespace tagd::auth {

enum class SignatureKind {
  kSigV4Header,     // Authorization: AWS4-HMAC-SHA256 ..., SignedHeaders=...
  kSigV4Presigned,  // X-Amz-SignedHeaders=...
  kSigV2,           // Authorization: AWS akid:sig, or ?AWSAccessKeyId=&Signature=&Expires=
};

inline constexpr std::string_view kHeadersNotSignedMessage =
    "There were headers present in the request which were not signed";

// True for the header names this policy governs (x-amz-*, x-tigris-*, any case).
[[nodiscard]] bool is_signature_required_header(std::string_view name);

// signed_headers: lower-case names from SignedHeaders / X-Amz-SignedHeaders (ignored for
// kSigV2). Returns ok, or kAccessDenied whose message is kHeadersNotSignedMessage followed
// by ": " and the offending names (lower-case, each once, in arrival order, comma-separated).
[[nodiscard]] Status check_unsigned_headers(const HeaderList& headers, const std::vector<std::string>& signed_headers,
                                            SignatureKind kind);
// The same over views (the verifier's, allocation-free when every header is covered).
[[nodiscard]] Status check_unsigned_header_views(const HeaderList& headers,
                                            const std::vector<std::string_view>& signed_headers, SignatureKind kind);

}  // namespace tagd::auth
