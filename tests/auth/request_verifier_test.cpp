// The verifier end to end on AWS's published S3 SigV4 examples (examplebucket,
// AKIAIOSFODNN7EXAMPLE, 2013-05-24): the same signatures S3 itself accepts.
#include "tagd/auth/request_verifier.hpp"

#include <gtest/gtest.h>

namespace tagd::auth {
namespace {

constexpr const char* kKey = "AKIAIOSFODNN7EXAMPLE";
constexpr const char* kSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

std::chrono::system_clock::time_point signing_time() { return *parse_amz_date("20130524T000000Z"); }

class RequestVerifierTest : public ::testing::Test {
 protected:
  RequestVerifierTest() { store_.add_full_access(kKey, kSecret); }

  Result<VerifiedRequest> verify(std::string_view method, std::string_view path, std::string_view query,
                                 const HeaderList& headers, std::chrono::system_clock::time_point now,
                                 bool anonymous = false) {
    RequestVerifier v(store_, std::chrono::seconds(900), anonymous);
    return v.verify(RequestHead{method, path, query, &headers}, now);
  }

  HeaderList get_object_headers(std::string_view signature) {
    return {{"Host", "examplebucket.s3.amazonaws.com"},
            {"Range", "bytes=0-9"},
            {"x-amz-content-sha256", std::string(kEmptySha256)},
            {"x-amz-date", "20130524T000000Z"},
            {"Authorization", "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
                              "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=" +
                                  std::string(signature)}};
  }

  CredentialStore store_;
};

constexpr const char* kGetSignature = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41";

TEST_F(RequestVerifierTest, AcceptsTheGetObjectExample) {
  auto r = verify("GET", "/test.txt", "", get_object_headers(kGetSignature), signing_time());
  ASSERT_TRUE(r.has_value()) << r.error().message();
  ASSERT_NE(r->identity, nullptr);
  EXPECT_EQ(r->identity->access_key_id, kKey);
  EXPECT_EQ(r->body.mode, PayloadMode::kSignedSha256);
}

TEST_F(RequestVerifierTest, RejectsAFlippedSignatureOrChangedRequest) {
  std::string bad = kGetSignature;
  bad[0] = bad[0] == 'f' ? 'e' : 'f';
  auto r = verify("GET", "/test.txt", "", get_object_headers(bad), signing_time());
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kSignatureDoesNotMatch);
  auto other_key = verify("GET", "/test2.txt", "", get_object_headers(kGetSignature), signing_time());
  ASSERT_FALSE(other_key.has_value());
  EXPECT_EQ(other_key.error().code(), ErrorCode::kSignatureDoesNotMatch);
  auto other_method = verify("DELETE", "/test.txt", "", get_object_headers(kGetSignature), signing_time());
  EXPECT_FALSE(other_method.has_value());
}

TEST_F(RequestVerifierTest, WrongSecretDoesNotMatch) {
  CredentialStore other;
  other.add_full_access(kKey, "not-the-secret");
  RequestVerifier v(other, std::chrono::seconds(900), false);
  auto headers = get_object_headers(kGetSignature);
  auto r = v.verify(RequestHead{"GET", "/test.txt", "", &headers}, signing_time());
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kSignatureDoesNotMatch);
}

TEST_F(RequestVerifierTest, ClockSkewBeyondFifteenMinutes) {
  auto headers = get_object_headers(kGetSignature);
  EXPECT_TRUE(verify("GET", "/test.txt", "", headers, signing_time() + std::chrono::minutes(14)).has_value());
  auto late = verify("GET", "/test.txt", "", headers, signing_time() + std::chrono::minutes(16));
  ASSERT_FALSE(late.has_value());
  EXPECT_EQ(late.error().code(), ErrorCode::kRequestTimeTooSkewed);
  auto early = verify("GET", "/test.txt", "", headers, signing_time() - std::chrono::minutes(16));
  ASSERT_FALSE(early.has_value());
  EXPECT_EQ(early.error().code(), ErrorCode::kRequestTimeTooSkewed);
}

TEST_F(RequestVerifierTest, UnknownKeyAnonymousAndSigV2) {
  CredentialStore empty;
  RequestVerifier v(empty, std::chrono::seconds(900), false);
  auto headers = get_object_headers(kGetSignature);
  auto unknown = v.verify(RequestHead{"GET", "/test.txt", "", &headers}, signing_time());
  ASSERT_FALSE(unknown.has_value());
  EXPECT_EQ(unknown.error().code(), ErrorCode::kInvalidAccessKeyId);

  HeaderList bare{{"Host", "x"}};
  auto anon = verify("GET", "/b/k", "", bare, signing_time());
  ASSERT_FALSE(anon.has_value());
  EXPECT_EQ(anon.error().code(), ErrorCode::kAccessDenied);
  auto allowed = verify("GET", "/b/k", "", bare, signing_time(), /*anonymous=*/true);
  ASSERT_TRUE(allowed.has_value());
  EXPECT_EQ(allowed->identity, nullptr);

  // A SigV2 query is verified (sigv2_test.cpp), never mistaken for an anonymous request.
  auto v2 = verify("GET", "/b/k", "AWSAccessKeyId=AK&Signature=abc&Expires=1", bare, signing_time(), true);
  ASSERT_FALSE(v2.has_value());
  EXPECT_EQ(v2.error().code(), ErrorCode::kExpiredPresign);
}

TEST_F(RequestVerifierTest, MissingContentSha256IsRefused) {
  auto headers = get_object_headers(kGetSignature);
  std::erase_if(headers, [](const auto& h) { return h.first == "x-amz-content-sha256"; });
  auto r = verify("GET", "/test.txt", "", headers, signing_time());
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kInvalidRequest);
}

constexpr const char* kPresignQuery =
    "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_"
    "request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature="
    "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";

TEST_F(RequestVerifierTest, PresignedUrlExampleAndExpiry) {
  HeaderList headers{{"Host", "examplebucket.s3.amazonaws.com"}};
  auto ok = verify("GET", "/test.txt", kPresignQuery, headers, signing_time() + std::chrono::hours(23));
  ASSERT_TRUE(ok.has_value()) << ok.error().message();
  EXPECT_TRUE(ok->presigned);
  EXPECT_EQ(ok->body.mode, PayloadMode::kUnsigned);
  auto expired = verify("GET", "/test.txt", kPresignQuery, headers, signing_time() + std::chrono::seconds(86401));
  ASSERT_FALSE(expired.has_value());
  EXPECT_EQ(expired.error().code(), ErrorCode::kExpiredPresign);
  EXPECT_EQ(http_status(expired.error().code()), 403);
  EXPECT_STREQ(s3_code(expired.error().code()), "AccessDenied");
  HeaderList other_host{{"Host", "attacker.example.com"}};
  auto moved = verify("GET", "/test.txt", kPresignQuery, other_host, signing_time());
  ASSERT_FALSE(moved.has_value());
  EXPECT_EQ(moved.error().code(), ErrorCode::kSignatureDoesNotMatch);
}

// PUT /test$file.text, "Welcome to Amazon S3.", signed payload hash.
HeaderList put_object_headers() {
  return {{"Host", "examplebucket.s3.amazonaws.com"},
          {"Date", "Fri, 24 May 2013 00:00:00 GMT"},
          {"x-amz-date", "20130524T000000Z"},
          {"x-amz-storage-class", "REDUCED_REDUNDANCY"},
          {"x-amz-content-sha256", "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"},
          {"Authorization",
           "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders="
           "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class,Signature="
           "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"}};
}

TEST_F(RequestVerifierTest, PutObjectExampleBodyIsCheckedAsItStreams) {
  auto headers = put_object_headers();
  auto r = verify("PUT", "/test%24file.text", "", headers, signing_time());
  ASSERT_TRUE(r.has_value()) << r.error().message();
  ASSERT_EQ(r->body.mode, PayloadMode::kSignedSha256);

  BodyVerifier good(r->body);
  std::string out;
  ASSERT_TRUE(good.feed("Welcome to ", out).is_ok());
  ASSERT_TRUE(good.feed("Amazon S3.", out).is_ok());
  EXPECT_EQ(out, "Welcome to Amazon S3.");
  EXPECT_TRUE(good.finish().is_ok());

  BodyVerifier tampered(r->body);
  out.clear();
  ASSERT_TRUE(tampered.feed("Welcome to Amazon S4.", out).is_ok());
  Status s = tampered.finish();
  EXPECT_EQ(s.code(), ErrorCode::kXAmzContentSHA256Mismatch);
}

TEST_F(RequestVerifierTest, ContentMd5AndChecksumHeaders) {
  auto headers = put_object_headers();
  // Unsigned extra headers still get checked against the body.
  headers.emplace_back("Content-MD5", "AAAAAAAAAAAAAAAAAAAAAA==");  // 16 zero bytes: wrong
  auto r = verify("PUT", "/test%24file.text", "", headers, signing_time());
  ASSERT_TRUE(r.has_value()) << r.error().message();
  BodyVerifier v(r->body);
  std::string out;
  ASSERT_TRUE(v.feed("Welcome to Amazon S3.", out).is_ok());
  EXPECT_EQ(v.finish().code(), ErrorCode::kBadDigest);

  auto bad_format = put_object_headers();
  bad_format.emplace_back("Content-MD5", "not-base64!");
  auto f = verify("PUT", "/test%24file.text", "", bad_format, signing_time());
  ASSERT_FALSE(f.has_value());
  EXPECT_EQ(f.error().code(), ErrorCode::kInvalidDigest);

  // crc32("Welcome to Amazon S3.") checked both ways.
  std::string body = "Welcome to Amazon S3.";
  auto crc = crc32(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(body.data()), body.size()));
  std::uint8_t be[4] = {static_cast<std::uint8_t>(crc >> 24), static_cast<std::uint8_t>(crc >> 16),
                        static_cast<std::uint8_t>(crc >> 8), static_cast<std::uint8_t>(crc)};
  auto with_crc = put_object_headers();
  with_crc.emplace_back("x-amz-checksum-crc32", base64_encode(be));
  // Outside SignedHeaders it is refused (unsigned_headers_test.cpp); the digest itself is
  // checked the same way for every kind of request, shown here on an anonymous one.
  auto unsigned_crc = verify("PUT", "/test%24file.text", "", with_crc, signing_time());
  ASSERT_FALSE(unsigned_crc.has_value());
  EXPECT_EQ(unsigned_crc.error().code(), ErrorCode::kAccessDenied);
  HeaderList anonymous_crc{{"Host", "examplebucket.s3.amazonaws.com"}, {"x-amz-checksum-crc32", base64_encode(be)}};
  auto c = verify("PUT", "/test%24file.text", "", anonymous_crc, signing_time(), /*anonymous=*/true);
  ASSERT_TRUE(c.has_value());
  BodyVerifier ok(c->body);
  ASSERT_TRUE(ok.feed(body, out).is_ok());
  EXPECT_TRUE(ok.finish().is_ok());
  BodyVerifier wrong(c->body);
  ASSERT_TRUE(wrong.feed("Welcome to Amazon S3!", out).is_ok());
  EXPECT_EQ(wrong.finish().code(), ErrorCode::kBadDigest);

  // With a signed payload hash too, the first failing digest wins.
  BodyPlan both = c->body;
  both.mode = PayloadMode::kSignedSha256;
  both.expected_sha256 = sha256_hex(body);
  BodyVerifier wrong_both(both);
  ASSERT_TRUE(wrong_both.feed("Welcome to Amazon S3!", out).is_ok());
  EXPECT_EQ(wrong_both.finish().code(), ErrorCode::kXAmzContentSHA256Mismatch);
}

}  // namespace
}  // namespace tagd::auth
