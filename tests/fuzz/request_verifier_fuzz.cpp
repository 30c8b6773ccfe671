// The whole request verification: RequestVerifier::verify over fuzzed method, target,
// headers and query (SigV4 header, presigned URL, payload modes, checksum headers), then
// BodyVerifier over the body, fed in fuzzer-chosen pieces.
//
// Input (text):  method \n request-target \n  ("name: value" \n)*  \n  body
// The key AKIAIOSFODNN7EXAMPLE / wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY has full access
// (AWS's documentation key, so seeds can carry real signatures); "now" is the request's
// X-Amz-Date (header or query), else the Date header, else one second before a SigV2
// Expires, else 2013-05-24T00:00:00Z, so seeds with real signatures pass the time checks.
// The first body byte, when the body is not empty, picks the piece size.
// Invariants: an accepted signed request names an identity (and only an anonymous one
// names none); the payload never exceeds the raw body; payload_bytes() counts exactly the
// payload handed out.
#include <chrono>
#include <cstdlib>

#include "fuzz_common.hpp"
#include "tagd/auth/request_verifier.hpp"
#include "tagd/auth/sigv2.hpp"
#include "tagd/s3/operation.hpp"
#include "tagd/s3/request.hpp"

using namespace tagd;

namespace {

const auth::CredentialStore& store() {
  static const auth::CredentialStore* s = [] {
    auto* st = new auth::CredentialStore();
    st->add_full_access("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
    auth::Identity limited{"AKIDLIMITED", "limited-secret", {}};
    limited.grants.push_back(auth::Grant{"examplebucket", "public/", true, false, true, false});
    st->add(std::move(limited));
    return st;
  }();
  return *s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in = fuzz::as_view(data, size);
  const std::string_view method = fuzz::take_until(in, "\n");
  const std::string_view target = fuzz::take_until(in, "\n");
  const auth::HeaderList headers = fuzz::take_headers(in);
  const std::string_view body = in;

  const std::string_view raw_path = target.substr(0, target.find('?'));
  const std::string_view raw_query =
      target.find('?') == std::string_view::npos ? std::string_view() : target.substr(target.find('?') + 1);

  auto now = *auth::parse_amz_date("20130524T000000Z");
  if (const std::string* date = auth::find_header(headers, "x-amz-date"); date && auth::parse_amz_date(*date)) {
    now = *auth::parse_amz_date(*date);
  } else if (auto pos = raw_query.find("X-Amz-Date="); pos != std::string_view::npos) {
    if (auto t = auth::parse_amz_date(raw_query.substr(pos + 11, 16))) now = *t;
  } else if (const std::string* date = auth::find_header(headers, "date")) {
    if (auto t = auth::sigv2::parse_date(*date)) now = *t;  // SigV2 header form
  } else if (auto pos = raw_query.find("Expires="); pos != std::string_view::npos) {
    // SigV2 query form: one second before it expires.
    const auto digits = raw_query.substr(pos + 8, std::min<std::size_t>(10, raw_query.size() - pos - 8));
    std::int64_t expires = 0;
    for (char c : digits) {
      if (c < '0' || c > '9') break;
      expires = expires * 10 + (c - '0');
    }
    // The harness's own clock is nanoseconds: ten digits can exceed what it holds (year 2262),
    // and the overflow would be the harness's, not the verifier's, which compares in seconds.
    constexpr std::int64_t kClockMaxSeconds = 9'000'000'000;
    if (expires > 0 && expires < kClockMaxSeconds) {
      now = std::chrono::system_clock::time_point(std::chrono::seconds(expires - 1));
    }
  }

  // The gateway resolves the target first; SigV2 needs the virtual-hosted bucket.
  const std::string* host = auth::find_header(headers, "host");
  std::optional<s3::Target> resolved;
  if (host != nullptr) {
    if (auto t = s3::resolve_target(*host, target, "s3.amazonaws.com")) resolved = std::move(t.value());
  }
  const std::string_view vhost_bucket =
      resolved && resolved->virtual_hosted ? std::string_view(resolved->bucket) : std::string_view();

  const bool anonymous = !method.empty() && method.front() == 'A';  // "ANON..." never a real method
  auth::RequestVerifier verifier(store(), std::chrono::seconds(900), anonymous);
  auto verified = verifier.verify(auth::RequestHead{method, raw_path, raw_query, &headers, vhost_bucket}, now);
  if (!verified) {
    if (fuzz::debug()) std::fprintf(stderr, "verify: %s\n", verified.error().message().c_str());
    return 0;
  }
  if (!anonymous) TAGD_FUZZ_CHECK(verified->identity != nullptr);
  if (verified->identity == nullptr) TAGD_FUZZ_CHECK(anonymous);

  // What the gateway does next with the same head.
  if (resolved) {
    if (auto op = s3::classify(method, *resolved, headers)) {
      TAGD_FUZZ_CHECK(!op->name.empty());
      if (verified->identity != nullptr) (void)auth::authorize(*verified->identity, op.value());
    }
  }

  auth::BodyVerifier body_verifier(std::move(verified->body));
  const std::size_t piece = body.empty() ? 1 : 1 + static_cast<unsigned char>(body.front()) * 37;
  std::string payload;
  Status status;
  std::size_t fed = 0;
  while (status && fed < body.size()) {
    const auto chunk = body.substr(fed, piece);
    fed += chunk.size();
    status = body_verifier.feed(chunk, payload);
  }
  TAGD_FUZZ_CHECK(payload.size() <= body.size());
  if (status) {
    TAGD_FUZZ_CHECK(body_verifier.payload_bytes() == payload.size());
    status = body_verifier.finish();
  }
  if (fuzz::debug()) std::fprintf(stderr, "body: %s (%zu payload bytes)\n", status ? "ok" : status.message().c_str(),
                            payload.size());
  return 0;
}
