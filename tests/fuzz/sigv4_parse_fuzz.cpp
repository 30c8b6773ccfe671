// SigV4 parsers for the two places a signature travels, and the date formats.
//
// Input: the whole input is tried as an Authorization header value, as a raw query string
// (parse_query → parse_presigned_query), and as X-Amz-Date / HTTP-date text.
// Invariants: a parsed header or query has a 64-digit lower-case hex signature, lower-case
// signed header names, a YYYYMMDD scope date, an expiry within a week, and the scope
// date of a presigned URL equals its X-Amz-Date; a parsed X-Amz-Date formats back to
// the same text.
#include <algorithm>

#include "fuzz_common.hpp"
#include "tagd/auth/sigv4.hpp"

using namespace tagd;

namespace {

bool lower_hex64(const std::string& s) {
  return s.size() == 64 &&
         std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

bool all_lower(const std::vector<std::string>& names) {
  return std::all_of(names.begin(), names.end(), [](const std::string& n) {
    return !n.empty() && std::none_of(n.begin(), n.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
  });
}

void check_scope(const auth::CredentialScope& scope) {
  TAGD_FUZZ_CHECK(scope.date.size() == 8);
  TAGD_FUZZ_CHECK(std::all_of(scope.date.begin(), scope.date.end(), [](char c) { return c >= '0' && c <= '9'; }));
  TAGD_FUZZ_CHECK(!scope.region.empty() && !scope.service.empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in = fuzz::as_view(data, size);

  if (auto header = auth::parse_authorization_header(in)) {
    TAGD_FUZZ_CHECK(lower_hex64(header->signature));
    TAGD_FUZZ_CHECK(all_lower(header->signed_headers));
    TAGD_FUZZ_CHECK(!header->access_key_id.empty());
    check_scope(header->scope);
    (void)header->scope.to_string();
  }

  if (auto query = auth::parse_query(in)) {
    (void)auth::has_presigned_query(*query);
    if (auto presigned = auth::parse_presigned_query(*query)) {
      TAGD_FUZZ_CHECK(lower_hex64(presigned->signature));
      TAGD_FUZZ_CHECK(all_lower(presigned->signed_headers));
      TAGD_FUZZ_CHECK(presigned->expires_seconds >= 0 && presigned->expires_seconds <= 604800);
      check_scope(presigned->scope);
      TAGD_FUZZ_CHECK(presigned->amz_date.substr(0, 8) == presigned->scope.date);
      TAGD_FUZZ_CHECK(auth::parse_amz_date(presigned->amz_date).has_value());
    }
  }

  if (auto t = auth::parse_amz_date(in)) {
    TAGD_FUZZ_CHECK(auth::format_amz_date(*t) == in);
  }
  if (auto t = auth::parse_http_date(in)) {
    // Whatever form was accepted, the instant survives the X-Amz-Date format.
    auto back = auth::parse_amz_date(auth::format_amz_date(*t));
    if (back) TAGD_FUZZ_CHECK(*back == *t);
  }
  return 0;
}
