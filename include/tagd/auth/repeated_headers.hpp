#pragma once
// Policy: a security-relevant header may appear at most once.
//
// A header sent twice is read differently by different parties: tagd's checks look at the
// first occurrence (find_header, the gateway's copy-source authorization), SigV4 signs the
// values comma-joined (so two headers and one comma-separated header have the same
// signature), and the upstream may take the last one or join them. A request with
//   x-amz-copy-source: /bucket/allowed-prefix/x
//   x-amz-copy-source: /other-bucket/private
// would be authorized on the first and executed upstream on the second — with tagd's
// credentials. So such a request is refused with 400 InvalidArgument before anything else.
//
// Which names (case-insensitive):
//   - every x-amz-* header except x-amz-meta-*: all of them are either read by tagd
//     (x-amz-copy-source, x-amz-content-sha256, x-amz-date, x-amz-decoded-content-length,
//     x-amz-trailer, x-amz-checksum-*) or change what the upstream does with tagd's key
//     (ACLs and grants, copy/rename sources and ranges, SSE, tagging, object lock, storage
//     class, redirects, directives, ...). A list of the dangerous ones would silently miss
//     the next header S3 adds; no SDK sends any of them twice. User metadata (x-amz-meta-*)
//     is exempt: repeating it is legal HTTP that S3 joins with ',' (AWS's own SigV2 example
//     repeats x-amz-meta-reviewedby), and it grants nothing.
//   - every x-tigris-* header, for the same reasons (Tigris's vendor controls).
//   - authorization, host: who signed, and (virtual-hosted style) which bucket.
//   - content-md5, content-type, date: positional elements of a SigV2 signature, and
//     Content-MD5 is a body digest tagd verifies.
#include "tagd/auth/sigv4.hpp"
#include "tagd/core/status.hpp"

namespace tagd::auth {

// True if a second occurrence of `name` makes a request ambiguous (the list above).
[[nodiscard]] bool is_unrepeatable_header(std::string_view name);

// kInvalidArgument naming the first header that occurs more than once, else ok.
[[nodiscard]] Status check_repeated_headers(const HeaderList& headers);

}  // namespace tagd::auth
