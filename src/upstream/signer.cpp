#include "tagd/upstream/signer.hpp"

#include <algorithm>

#include "tagd/auth/signing_key_cache.hpp"
#include "tagd/auth/sigv4.hpp"
#include "tagd/core/strings.hpp"

namespace tagd::upstream {

namespace http = boost::beast::http;

void sign_request(http::fields& fields, std::string_view method, std::string_view target,
                  std::string_view host_header, std::string_view payload_hash, const SigningCredentials& credentials,
                  std::chrono::system_clock::time_point now) {
  fields.set(http::field::host, host_header);
  if (credentials.anonymous()) return;
  std::string amz_date = auth::format_amz_date(now);
  fields.set("x-amz-date", amz_date);
  fields.set("x-amz-content-sha256", payload_hash);

  auth::HeaderList headers;
  std::vector<std::string> signed_names;
  for (const auto& f : fields) {
    std::string name = to_lower(f.name_string());
    // Vendor headers (X-Tigris-*) change what the upstream does, so they are signed too.
    bool sign = name == "host" || name.rfind("x-amz-", 0) == 0 || name.rfind("x-tigris-", 0) == 0 ||
                name == "content-md5" || name == "content-type";
    if (!sign) continue;
    headers.emplace_back(name, std::string(f.value()));
    if (std::find(signed_names.begin(), signed_names.end(), name) == signed_names.end()) signed_names.push_back(name);
  }
  std::sort(signed_names.begin(), signed_names.end());

  auto q = target.find('?');
  auth::CredentialScope scope{amz_date.substr(0, 8), credentials.region, "s3"};
  auth::CanonicalRequestParts parts;
  parts.method = method;
  // The target was produced by tagd's own encoder, so it is canonical already.
  parts.canonical_uri = std::string(target.substr(0, q));
  if (q != std::string_view::npos) parts.query = auth::parse_query(target.substr(q + 1)).value_or(auth::QueryParams{});
  parts.headers = &headers;
  parts.signed_headers = signed_names;
  parts.payload_hash = payload_hash;
  auto creq = auth::canonical_request(parts);
  // Every signed header was taken from `fields` above, so it cannot be missing.
  assert(creq.has_value());
  auto key = auth::cached_signing_key(credentials.secret_access_key, scope);
  std::string signature = auth::signature_hex(key, auth::string_to_sign(amz_date, scope, *creq));
  std::string joined;
  for (const auto& n : signed_names) joined += (joined.empty() ? "" : ";") + n;
  fields.set(http::field::authorization, std::string(auth::kAlgorithm) + " Credential=" + credentials.access_key_id +
                                             "/" + scope.to_string() + ", SignedHeaders=" + joined +
                                             ", Signature=" + signature);
}

}  // namespace tagd::upstream
