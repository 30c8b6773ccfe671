// Request target and query: what a client's Host and request-target resolve to, which
// operation and permissions they need, and what tagd then sends upstream.
//
// Input (text): method \n host \n request-target \n virtual-host domain \n
//               x-amz-copy-source \n ("name: value" \n)* \n
// Invariants:
//  - resolve_target + classify never crash; an accepted operation has a name;
//  - the upstream target, resolved again path-style, addresses the same bucket and key
//    and carries exactly the non-authentication query parameters: the upstream acts on
//    what was authorized;
//  - classifying that upstream request gives the same operation and permissions;
//  - uri_decode(uri_encode(x)) == x; canonical_uri_s3 is idempotent; a parsed query
//    survives canonical_query_string.
#include <algorithm>

#include "fuzz_common.hpp"
#include "tagd/auth/sigv4.hpp"
#include "tagd/core/uri.hpp"
#include "tagd/s3/operation.hpp"
#include "tagd/s3/request.hpp"

using namespace tagd;

namespace {

void check_uri_functions(std::string_view text) {
  for (bool encode_slash : {false, true}) {
    auto encoded = auth::uri_encode(text, encode_slash);
    auto back = auth::uri_decode(encoded);
    TAGD_FUZZ_CHECK(back.has_value());
    TAGD_FUZZ_CHECK(*back == text);
  }
  if (auto decoded = auth::uri_decode(text)) TAGD_FUZZ_CHECK(decoded->size() <= text.size());
  if (auto canonical = auth::canonical_uri_s3(text)) {
    auto again = auth::canonical_uri_s3(*canonical);
    TAGD_FUZZ_CHECK(again.has_value());
    TAGD_FUZZ_CHECK(*again == *canonical);
  }
  (void)auth::canonical_uri_generic(text);
  if (auto query = auth::parse_query(text)) {
    TAGD_FUZZ_CHECK(query->size() <= static_cast<std::size_t>(std::count(text.begin(), text.end(), '&')) + 1);
    auto canonical = auth::canonical_query_string(*query);
    auto reparsed = auth::parse_query(canonical);
    TAGD_FUZZ_CHECK(reparsed.has_value());
    auto sorted = *query;
    std::sort(sorted.begin(), sorted.end());
    std::sort(reparsed->begin(), reparsed->end());
    TAGD_FUZZ_CHECK(sorted == *reparsed);
  }
}

bool same_needs(const s3::Operation& a, const s3::Operation& b) {
  if (a.needs.size() != b.needs.size()) return false;
  for (std::size_t i = 0; i < a.needs.size(); ++i) {
    const auto& x = a.needs[i];
    const auto& y = b.needs[i];
    if (x.action != y.action || x.scope != y.scope || x.bucket != y.bucket || x.path != y.path) return false;
  }
  return a.keys_in_body == b.keys_in_body;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in = fuzz::as_view(data, size);
  check_uri_functions(in);

  const std::string_view method = fuzz::take_until(in, "\n");
  const std::string_view host = fuzz::take_until(in, "\n");
  const std::string_view request_target = fuzz::take_until(in, "\n");
  const std::string_view domain = fuzz::take_until(in, "\n");
  const std::string_view copy_source = fuzz::take_until(in, "\n");
  const auth::HeaderList headers = fuzz::take_headers(in);

  if (auto copy = s3::parse_copy_source(copy_source)) {
    TAGD_FUZZ_CHECK(!copy->bucket.empty() && !copy->key.empty());
  }

  auto target = s3::resolve_target(host, request_target, domain);
  if (!target) return 0;
  const s3::Target& t = target.value();
  if (t.bucket.empty()) TAGD_FUZZ_CHECK(t.key.empty());
  auto op = s3::classify(method, t, headers);
  if (op) {
    TAGD_FUZZ_CHECK(!op->name.empty());
    for (const auto& need : op->needs) TAGD_FUZZ_CHECK(s3::action_name(need.action)[0] != '?');
  }

  const std::string upstream = s3::upstream_target(t);
  TAGD_FUZZ_CHECK(!upstream.empty() && upstream.front() == '/');
  auto again = s3::resolve_target("upstream.example", upstream, "");
  TAGD_FUZZ_CHECK(again.has_value());
  TAGD_FUZZ_CHECK(again->bucket == t.bucket);
  TAGD_FUZZ_CHECK(again->key == t.key);
  auth::QueryParams kept;
  for (const auto& p : t.query) {
    if (!s3::is_auth_param(t, p.first)) kept.push_back(p);
  }
  auto upstream_query = again->query;
  std::sort(kept.begin(), kept.end());
  std::sort(upstream_query.begin(), upstream_query.end());
  TAGD_FUZZ_CHECK(kept == upstream_query);

  // The upstream performs the operation that was classified and authorized.
  if (op) {
    auto upstream_op = s3::classify(method, again.value(), headers);
    TAGD_FUZZ_CHECK(upstream_op.has_value());
    TAGD_FUZZ_CHECK(upstream_op->name == op->name);
    TAGD_FUZZ_CHECK(same_needs(*upstream_op, *op));
  }
  return 0;
}
