#pragma once
// Percent-encoding and query-string helpers shared by the request parser (s3) and the
// signature code (auth). Pure functions: no I/O, no clock, no locale.
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tagd {

using QueryParams = std::vector<std::pair<std::string, std::string>>;  // decoded name, value
using HeaderList = std::vector<std::pair<std::string, std::string>>;   // name (any case), raw value

// RFC 3986 percent-encoding as SigV4 wants it: unreserved A-Za-z0-9-_.~ kept, everything
// else %XX upper-case; '/' kept when encode_slash is false.
[[nodiscard]] std::string uri_encode(std::string_view text, bool encode_slash);
// Percent-decoding; '+' is NOT a space (S3 paths). Returns nullopt on a malformed escape.
[[nodiscard]] std::optional<std::string> uri_decode(std::string_view text);

// Splits a raw query string ("a=1&b=%2F") into decoded pairs, in order. A name without
// '=' gets an empty value; empty pieces ("a=1&&b") are skipped. Unlike paths, a '+' in a
// query decodes to a space: S3 accepts form-encoded query strings (SDKs that send "+" but
// sign "%20" rely on it). Returns nullopt on a malformed escape.
[[nodiscard]] std::optional<QueryParams> parse_query(std::string_view raw_query);
// The same into `out`: its existing elements are overwritten (their strings' capacity
// reused) and the list trimmed to the parameters found, so a caller that keeps one list
// per connection decodes a presigned URL's parameters without allocating. False on a
// malformed escape (then `out` holds a partial result).
[[nodiscard]] bool parse_query_into(std::string_view raw_query, QueryParams& out);
// uri_decode into `out` (overwritten, capacity reused). False on a malformed escape.
[[nodiscard]] bool uri_decode_into(std::string_view text, std::string& out);

// Each name and value uri_encode'd (with '/' encoded), sorted by encoded name then encoded
// value, joined with '&' (the SigV4 canonical query string; also the order tagd forwards).
[[nodiscard]] std::string canonical_query_string(const QueryParams& params);
// The same, leaving out every parameter named `omit` (a presigned URL's X-Amz-Signature):
// no copy of the parameters is made.
[[nodiscard]] std::string canonical_query_string(const QueryParams& params, std::string_view omit);

}  // namespace tagd

// Transitional spelling: these two types used to be declared in tagd::auth (sigv4.hpp),
// and code outside auth still names them auth::QueryParams / auth::HeaderList (e.g.
// tests/s3/operation_test.cpp). Same types; prefer tagd::QueryParams / tagd::HeaderList.
// (A namespace alias only: core includes nothing from auth.)
namespace tagd::auth {
using tagd::HeaderList;
using tagd::QueryParams;
}  // namespace tagd::auth
