// AWS Signature Version 2 (auth/sigv2.hpp): the "AWS AKID:signature" header, the
// ?AWSAccessKeyId=&Expires=&Signature= query form, the canonical resource and x-amz-*
// header canonicalization, the date forms, and sigv2::verify end to end.
//
// Input (text): method \n request-target \n virtual-host bucket \n ("name: value" \n)* \n
// The key AKIAIOSFODNN7EXAMPLE / wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY is known; "now" is
// the Date / x-amz-date header when it parses, else one second before Expires, else
// 2013-05-24T00:00:00Z, so seeds with real signatures reach the signature comparison.
// Invariants: a parsed header has a non-empty key id and signature; a parsed query has a
// key id, a signature and a decimal Expires; the canonical resource of a path starting
// with '/' starts with '/' and contains the path as sent; an accepted request names an identity.
#include <algorithm>

#include "fuzz_common.hpp"
#include "tagd/auth/request_verifier.hpp"
#include "tagd/auth/sigv2.hpp"

using namespace tagd;

namespace {

const auth::CredentialStore& store() {
  static const auth::CredentialStore* s = [] {
    auto* st = new auth::CredentialStore();
    st->add_full_access("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
    return st;
  }();
  return *s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in = fuzz::as_view(data, size);
  const std::string_view method = fuzz::take_until(in, "\n");
  const std::string_view target = fuzz::take_until(in, "\n");
  const std::string_view vhost_bucket = fuzz::take_until(in, "\n");
  const auth::HeaderList headers = fuzz::take_headers(in);
  const auto q = target.find('?');
  const std::string_view raw_path = target.substr(0, q);
  const std::string_view raw_query = q == std::string_view::npos ? std::string_view() : target.substr(q + 1);

  for (const auto& [name, value] : headers) {
    if (auth::sigv2::is_sigv2_authorization(value)) {
      if (auto a = auth::sigv2::parse_authorization(value)) {
        TAGD_FUZZ_CHECK(!a->access_key_id.empty() && !a->signature.empty());
      }
    }
    (void)auth::sigv2::parse_authorization(name);
    (void)auth::sigv2::parse_date(value);
  }
  (void)auth::sigv2::canonical_amz_headers(headers, false);
  (void)auth::sigv2::canonical_amz_headers(headers, true);
  (void)auth::sigv2::check_unsigned_query(raw_query);
  // The gateway only passes paths that start with '/' (resolve_target refuses others).
  if (auto resource = auth::sigv2::canonical_resource(vhost_bucket, raw_path, raw_query);
      resource && !raw_path.empty() && raw_path.front() == '/') {
    TAGD_FUZZ_CHECK(resource->front() == '/');
    TAGD_FUZZ_CHECK(resource->find(raw_path) != std::string::npos);
  }

  auto query = auth::parse_query(raw_query);
  if (!query) return 0;
  auto now = *auth::parse_amz_date("20130524T000000Z");
  std::optional<auth::sigv2::PresignedQuery> presigned;
  if (auth::sigv2::has_presigned_query(*query)) {
    if (auto p = auth::sigv2::parse_presigned_query(*query)) {
      TAGD_FUZZ_CHECK(!p->access_key_id.empty() && !p->signature.empty());
      TAGD_FUZZ_CHECK(!p->expires.empty());
      TAGD_FUZZ_CHECK(std::all_of(p->expires.begin(), p->expires.end(), [](char c) { return c >= '0' && c <= '9'; }));
      if (p->expires_at > 0 && p->expires_at < 4102444800) {
        now = std::chrono::system_clock::time_point(std::chrono::seconds(p->expires_at - 1));
      }
    }
  }
  for (const char* name : {"x-amz-date", "date"}) {
    if (const std::string* v = auth::find_header(headers, name)) {
      if (auto t = auth::sigv2::parse_date(*v)) {
        now = *t;
        break;
      }
    }
  }
  (void)auth::sigv2::string_to_sign(method, "", "", "", "", raw_path);

  const auth::sigv2::Request request{method, raw_path, raw_query, vhost_bucket, &headers, &query.value()};
  auto verified = auth::sigv2::verify(request, store(), now, std::chrono::seconds(900));
  if (fuzz::debug()) std::fprintf(stderr, "verify: %s\n", verified ? "ok" : verified.error().message().c_str());
  if (verified) TAGD_FUZZ_CHECK(verified->identity != nullptr);
  return 0;
}
