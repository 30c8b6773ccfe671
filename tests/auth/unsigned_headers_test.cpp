// "tagd never signs what the client did not": an x-amz-* / x-tigris-* header outside the
// client's SignedHeaders is refused (403 AccessDenied), on header-signed and presigned
// SigV4 and on SigV2; the one exemption is x-amz-content-sha256 on presigned requests.
#include "tagd/auth/unsigned_headers.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "tagd/auth/request_verifier.hpp"

namespace tagd::auth {
namespace {

constexpr const char* kKey = "AKIAIOSFODNN7EXAMPLE";
constexpr const char* kSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
constexpr const char* kHost = "examplebucket.s3.amazonaws.com";

std::chrono::system_clock::time_point signing_time() { return *parse_amz_date("20130524T000000Z"); }

// Signs `headers` (plus x-amz-date and x-amz-content-sha256) with SignedHeaders = `sign`,
// then appends `extra` unsigned headers.
HeaderList header_signed(std::string_view method, std::string_view path, HeaderList headers,
                         std::vector<std::string> sign, const HeaderList& extra = {}) {
  headers.emplace_back("x-amz-date", "20130524T000000Z");
  headers.emplace_back("x-amz-content-sha256", std::string(kEmptySha256));
  std::sort(sign.begin(), sign.end());
  CredentialScope scope{"20130524", "us-east-1", "s3"};
  CanonicalRequestParts parts{method, *canonical_uri_s3(path), {}, &headers, sign, kEmptySha256};
  std::string sig = signature_hex(signing_key(kSecret, scope), string_to_sign("20130524T000000Z", scope,
                                                                             *canonical_request(parts)));
  std::string signed_list;
  for (const auto& s : sign) signed_list += (signed_list.empty() ? "" : ";") + s;
  headers.emplace_back("Authorization", "AWS4-HMAC-SHA256 Credential=" + std::string(kKey) +
                                            "/20130524/us-east-1/s3/aws4_request,SignedHeaders=" + signed_list +
                                            ",Signature=" + sig);
  for (const auto& h : extra) headers.push_back(h);
  return headers;
}

// AWS's presigned GET example (host only, 86400 s).
constexpr const char* kPresignQuery =
    "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_"
    "request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature="
    "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";

class UnsignedHeaders : public ::testing::Test {
 protected:
  UnsignedHeaders() { store_.add_full_access(kKey, kSecret); }
  Result<VerifiedRequest> verify(std::string_view method, std::string_view path, std::string_view query,
                                 const HeaderList& headers) {
    RequestVerifier v(store_, std::chrono::seconds(900), false);
    return v.verify(RequestHead{method, path, query, &headers}, signing_time());
  }
  static void ExpectNotSigned(const Result<VerifiedRequest>& r, std::string_view names) {
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code(), ErrorCode::kAccessDenied);
    EXPECT_EQ(http_status(r.error().code()), 403);
    EXPECT_EQ(r.error().message(), std::string(kHeadersNotSignedMessage) + ": " + std::string(names));
  }
  CredentialStore store_;
};

TEST_F(UnsignedHeaders, PolicyCoversAmzAndTigrisPrefixesOnly) {
  EXPECT_TRUE(is_signature_required_header("x-amz-acl"));
  EXPECT_TRUE(is_signature_required_header("X-Amz-Copy-Source"));
  EXPECT_TRUE(is_signature_required_header("X-TIGRIS-REGIONS"));
  EXPECT_FALSE(is_signature_required_header("content-type"));
  EXPECT_FALSE(is_signature_required_header("x-amzfoo"));
  EXPECT_FALSE(is_signature_required_header("range"));
}

TEST_F(UnsignedHeaders, ThousandsOfHeadersAndSignedNamesAreMatchedWithoutCase) {
  // The sorted path (more than 16 signed names): covered in any case, the unsigned ones
  // named once each however often they repeat.
  HeaderList headers;
  std::vector<std::string> sign = {"host"};
  for (int i = 0; i < 2000; ++i) {
    sign.push_back("x-amz-meta-s" + std::to_string(i));
    headers.emplace_back("X-Amz-Meta-S" + std::to_string(i), "v");
  }
  EXPECT_TRUE(check_unsigned_headers(headers, sign, SignatureKind::kSigV4Header).is_ok());
  for (int i = 0; i < 40; ++i) headers.emplace_back("x-amz-meta-u" + std::to_string(i % 20), "v");
  const Status s = check_unsigned_headers(headers, sign, SignatureKind::kSigV4Header);
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.code(), ErrorCode::kAccessDenied);
  for (int i = 0; i < 20; ++i) {
    const std::string name = "x-amz-meta-u" + std::to_string(i);
    const auto at = s.message().find(name + ",");
    const auto last = s.message().size() >= name.size() && s.message().ends_with(name);
    EXPECT_TRUE(at != std::string::npos || last) << name;
  }
  EXPECT_EQ(s.message().find("x-amz-meta-s"), std::string::npos);
  // Each unsigned name once: 20 names, 19 separators.
  EXPECT_EQ(std::count(s.message().begin(), s.message().end(), ','), 19);
}

TEST_F(UnsignedHeaders, HeaderSignedRequestsPassWhenEverythingIsSigned) {
  auto headers = header_signed("PUT", "/k", {{"Host", kHost}, {"x-amz-acl", "private"}},
                               {"host", "x-amz-acl", "x-amz-content-sha256", "x-amz-date"});
  auto r = verify("PUT", "/k", "", headers);
  ASSERT_TRUE(r.has_value()) << r.error().message();
}

TEST_F(UnsignedHeaders, HeaderSignedRefusesAnUnsignedAcl) {
  auto headers = header_signed("PUT", "/k", {{"Host", kHost}}, {"host", "x-amz-content-sha256", "x-amz-date"},
                               {{"x-amz-acl", "public-read"}});
  ExpectNotSigned(verify("PUT", "/k", "", headers), "x-amz-acl");
}

TEST_F(UnsignedHeaders, HeaderSignedRefusesUnsignedCopySourceAnyCase) {
  auto headers = header_signed("PUT", "/k", {{"Host", kHost}}, {"host", "x-amz-content-sha256", "x-amz-date"},
                               {{"X-Amz-Copy-Source", "/private/secret"}, {"X-AMZ-ACL", "public-read"}});
  ExpectNotSigned(verify("PUT", "/k", "", headers), "x-amz-copy-source, x-amz-acl");
}

TEST_F(UnsignedHeaders, HeaderSignedRefusesUnsignedTigrisHeaders) {
  auto headers = header_signed("PUT", "/k", {{"Host", kHost}}, {"host", "x-amz-content-sha256", "x-amz-date"},
                               {{"X-Tigris-Regions", "fra"}});
  ExpectNotSigned(verify("PUT", "/k", "", headers), "x-tigris-regions");
  auto signed_tigris = header_signed("PUT", "/k", {{"Host", kHost}, {"X-Tigris-Regions", "fra"}},
                                     {"host", "x-amz-content-sha256", "x-amz-date", "x-tigris-regions"});
  EXPECT_TRUE(verify("PUT", "/k", "", signed_tigris).has_value());
}

TEST_F(UnsignedHeaders, HeaderSignedContentSha256AndDateMustBeSignedToo) {
  // Not exempt on header-signed requests: SDKs sign them, and S3 requires it.
  auto headers = header_signed("GET", "/k", {{"Host", kHost}}, {"host", "x-amz-date"});
  ExpectNotSigned(verify("GET", "/k", "", headers), "x-amz-content-sha256");
  auto no_date = header_signed("GET", "/k", {{"Host", kHost}}, {"host", "x-amz-content-sha256"});
  ExpectNotSigned(verify("GET", "/k", "", no_date), "x-amz-date");
}

TEST_F(UnsignedHeaders, HeaderSignedLeavesOtherHeadersAlone) {
  // Content-Type, Content-MD5, Range, ... are not governed by this policy (S3 lets them
  // through unsigned; Content-MD5 is checked against the body anyway).
  auto headers = header_signed("PUT", "/k", {{"Host", kHost}}, {"host", "x-amz-content-sha256", "x-amz-date"},
                               {{"Content-Type", "text/html"}, {"Cache-Control", "no-cache"}, {"Range", "bytes=0-1"}});
  auto r = verify("PUT", "/k", "", headers);
  EXPECT_TRUE(r.has_value()) << r.error().message();
}

TEST_F(UnsignedHeaders, PresignedPassesWithOnlyItsSignedHost) {
  HeaderList headers{{"Host", kHost}};
  EXPECT_TRUE(verify("GET", "/test.txt", kPresignQuery, headers).has_value());
}

TEST_F(UnsignedHeaders, PresignedExemptsContentSha256) {
  // Its value is the canonical request's payload-hash line, so the signature covers it.
  HeaderList headers{{"Host", kHost}, {"X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD"}};
  auto r = verify("GET", "/test.txt", kPresignQuery, headers);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  // A different value is a different canonical request.
  HeaderList digest{{"Host", kHost}, {"x-amz-content-sha256", std::string(kEmptySha256)}};
  EXPECT_EQ(verify("GET", "/test.txt", kPresignQuery, digest).error().code(), ErrorCode::kSignatureDoesNotMatch);
}

TEST_F(UnsignedHeaders, PresignedRefusesUnsignedCopySource) {
  // The presigned-PUT-URL holder turning the upload into a copy of a private object.
  HeaderList headers{{"Host", kHost}, {"x-amz-copy-source", "/private-bucket/secret.txt"}};
  ExpectNotSigned(verify("GET", "/test.txt", kPresignQuery, headers), "x-amz-copy-source");
}

TEST_F(UnsignedHeaders, PresignedRefusesEveryOtherAmzHeader) {
  for (const char* name : {"x-amz-acl", "x-amz-grant-read", "x-amz-date", "x-amz-security-token",
                           "x-amz-server-side-encryption", "x-amz-checksum-crc32", "x-amz-meta-owner",
                           "x-amz-website-redirect-location", "x-tigris-regions"}) {
    SCOPED_TRACE(name);
    HeaderList headers{{"Host", kHost}, {name, "AAAAAA=="}};  // (a well-formed CRC32 too)
    ExpectNotSigned(verify("GET", "/test.txt", kPresignQuery, headers), name);
  }
}

TEST_F(UnsignedHeaders, ListsEachNameOnce) {
  HeaderList headers{{"x-amz-acl", "a"}, {"x-amz-meta-a", "1"}, {"X-Amz-Meta-A", "2"}, {"host", "h"}};
  Status s = check_unsigned_headers(headers, {"host"}, SignatureKind::kSigV4Header);
  EXPECT_EQ(s.message(), std::string(kHeadersNotSignedMessage) + ": x-amz-acl, x-amz-meta-a");
}

TEST_F(UnsignedHeaders, SigV2CoversAmzButNotTigris) {
  HeaderList headers{{"x-amz-acl", "public-read"}, {"x-amz-copy-source", "/b/k"}, {"host", "h"}};
  EXPECT_TRUE(check_unsigned_headers(headers, {}, SignatureKind::kSigV2).is_ok());
  headers.emplace_back("x-tigris-regions", "fra");
  EXPECT_EQ(check_unsigned_headers(headers, {}, SignatureKind::kSigV2).message(),
            std::string(kHeadersNotSignedMessage) + ": x-tigris-regions");
}

TEST_F(UnsignedHeaders, AnonymousRequestsAreNotSignedByTagdAndNotChecked) {
  // Anonymous requests go upstream unsigned (the upstream's ACLs decide), so there is
  // nothing tagd would vouch for.
  HeaderList headers{{"Host", kHost}, {"x-amz-acl", "public-read"}};
  RequestVerifier v(store_, std::chrono::seconds(900), /*allow_anonymous=*/true);
  auto r = v.verify(RequestHead{"PUT", "/k", "", &headers}, signing_time());
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->identity, nullptr);
}

TEST_F(UnsignedHeaders, SigV4aIsNotImplemented) {
  HeaderList headers{{"Host", kHost},
                     {"x-amz-date", "20130524T000000Z"},
                     {"Authorization",
                      "AWS4-ECDSA-P256-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/s3/aws4_request, "
                      "SignedHeaders=host;x-amz-date, Signature=3045"}};
  auto r = verify("GET", "/k", "", headers);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kNotImplemented);
  HeaderList bare{{"Host", kHost}};
  auto q = verify("GET", "/k", "X-Amz-Algorithm=AWS4-ECDSA-P256-SHA256&X-Amz-Signature=3045", bare);
  ASSERT_FALSE(q.has_value());
  EXPECT_EQ(q.error().code(), ErrorCode::kNotImplemented);
}

}  // namespace
}  // namespace tagd::auth
