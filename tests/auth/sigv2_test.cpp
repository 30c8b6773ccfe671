// Known-answer tests for Signature Version 2 (S3 "Signing and Authenticating REST
// Requests"). Vectors: the Authentication examples of that page (Object GET, Object PUT,
// List, Fetch (?acl), Delete, Upload with x-amz-meta-*, List all my buckets, Unicode keys)
// and its query-string authentication example, with AWS's example key
// AKIAIOSFODNN7EXAMPLE / wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY. The published
// signatures were computed for the page's original bucket "johnsmith" (static.johnsmith.net
// for the CNAME upload); the current revision renamed the bucket to awsexamplebucket1 in the
// text but kept those signatures, so the johnsmith inputs are the ones that reproduce them.
// The Object GET signature for awsexamplebucket1 (qgk2+6Sv9/oM7G3qLEjTH1a1l1g=) is the one
// AWS's localized revisions of the page print.
#include "tagd/auth/sigv2.hpp"

#include <gtest/gtest.h>

#include "tagd/auth/request_verifier.hpp"

namespace tagd::auth {
namespace {

using std::chrono::system_clock;

constexpr const char* kKey = "AKIAIOSFODNN7EXAMPLE";
constexpr const char* kSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

system_clock::time_point at(std::string_view date) { return *sigv2::parse_date(date); }

struct Example {
  const char* name;
  const char* method;
  const char* raw_path;
  const char* raw_query;
  const char* bucket;  // virtual-hosted bucket, "" for path-style
  HeaderList headers;
  const char* string_to_sign;
  const char* signature;
};

std::vector<Example> documented_examples() {
  return {
      {"ObjectGet", "GET", "/photos/puppy.jpg", "", "johnsmith",
       {{"Host", "johnsmith.s3.amazonaws.com"}, {"Date", "Tue, 27 Mar 2007 19:36:42 +0000"}},
       "GET\n\n\nTue, 27 Mar 2007 19:36:42 +0000\n/johnsmith/photos/puppy.jpg", "bWq2s1WEIj+Ydj0vQ697zp+IXMU="},
      {"ObjectGetAwsExampleBucket", "GET", "/photos/puppy.jpg", "", "awsexamplebucket1",
       {{"Host", "awsexamplebucket1.us-west-1.s3.amazonaws.com"}, {"Date", "Tue, 27 Mar 2007 19:36:42 +0000"}},
       "GET\n\n\nTue, 27 Mar 2007 19:36:42 +0000\n/awsexamplebucket1/photos/puppy.jpg",
       "qgk2+6Sv9/oM7G3qLEjTH1a1l1g="},
      {"ObjectPut", "PUT", "/photos/puppy.jpg", "", "johnsmith",
       {{"Content-Type", "image/jpeg"},
        {"Content-Length", "94328"},
        {"Host", "johnsmith.s3.amazonaws.com"},
        {"Date", "Tue, 27 Mar 2007 21:15:45 +0000"}},
       "PUT\n\nimage/jpeg\nTue, 27 Mar 2007 21:15:45 +0000\n/johnsmith/photos/puppy.jpg",
       "MyyxeRY7whkBe+bq8fHCL/2kKUg="},
      {"List", "GET", "/", "prefix=photos&max-keys=50&marker=puppy", "johnsmith",
       {{"User-Agent", "Mozilla/5.0"},
        {"Host", "johnsmith.s3.amazonaws.com"},
        {"Date", "Tue, 27 Mar 2007 19:42:41 +0000"}},
       "GET\n\n\nTue, 27 Mar 2007 19:42:41 +0000\n/johnsmith/", "htDYFYduRNen8P9ZfE/s9SuKy0U="},
      {"FetchAcl", "GET", "/", "acl", "johnsmith",
       {{"Host", "johnsmith.s3.amazonaws.com"}, {"Date", "Tue, 27 Mar 2007 19:44:46 +0000"}},
       "GET\n\n\nTue, 27 Mar 2007 19:44:46 +0000\n/johnsmith/?acl", "c2WLPFtWHVgbEmeEG93a4cG37dM="},
      // Path-style with the x-amz-date alternative (see DeleteUsesTheXAmzDateVariant).
      {"Delete", "DELETE", "/johnsmith/photos/puppy.jpg", "", "",
       {{"User-Agent", "dotnet"},
        {"Host", "s3.amazonaws.com"},
        {"Date", "Tue, 27 Mar 2007 21:20:27 +0000"},
        {"x-amz-date", "Tue, 27 Mar 2007 21:20:26 +0000"}},
       "DELETE\n\n\nTue, 27 Mar 2007 21:20:26 +0000\n/johnsmith/photos/puppy.jpg", "lx3byBScXR6KzyMaifNkardMwNk="},
      {"UploadWithMetadata", "PUT", "/db-backup.dat.gz", "", "static.johnsmith.net",
       {{"User-Agent", "curl/7.15.5"},
        {"Host", "static.johnsmith.net:8080"},
        {"Date", "Tue, 27 Mar 2007 21:06:08 +0000"},
        {"x-amz-acl", "public-read"},
        {"content-type", "application/x-download"},
        {"Content-MD5", "4gJE4saaMU4BqNR0kLY+lw=="},
        {"X-Amz-Meta-ReviewedBy", "joe@johnsmith.net"},
        {"X-Amz-Meta-ReviewedBy", "jane@johnsmith.net"},
        {"X-Amz-Meta-FileChecksum", "0x02661779"},
        {"X-Amz-Meta-ChecksumAlgorithm", "crc32"},
        {"Content-Disposition", "attachment; filename=database.dat"},
        {"Content-Encoding", "gzip"},
        {"Content-Length", "5913339"}},
       "PUT\n4gJE4saaMU4BqNR0kLY+lw==\napplication/x-download\nTue, 27 Mar 2007 21:06:08 +0000\n"
       "x-amz-acl:public-read\nx-amz-meta-checksumalgorithm:crc32\nx-amz-meta-filechecksum:0x02661779\n"
       "x-amz-meta-reviewedby:joe@johnsmith.net,jane@johnsmith.net\n/static.johnsmith.net/db-backup.dat.gz",
       "ilyl83RwaSoYIEdixDQcA4OnAnc="},
      {"ListAllMyBuckets", "GET", "/", "", "",
       {{"Host", "s3.amazonaws.com"}, {"Date", "Wed, 28 Mar 2007 01:29:59 +0000"}},
       "GET\n\n\nWed, 28 Mar 2007 01:29:59 +0000\n/", "qGdzdERIC03wnaRNKh6OqZehG9s="},
      {"UnicodeKeys", "GET", "/dictionary/fran%C3%A7ais/pr%c3%a9f%c3%a8re", "", "",
       {{"Host", "s3.amazonaws.com"}, {"Date", "Wed, 28 Mar 2007 01:49:49 +0000"}},
       "GET\n\n\nWed, 28 Mar 2007 01:49:49 +0000\n/dictionary/fran%C3%A7ais/pr%c3%a9f%c3%a8re",
       "DNEZGsoieTZ92F3bUfSPQcbGmlM="},
  };
}

HeaderList with_authorization(HeaderList headers, std::string_view signature) {
  headers.emplace_back("Authorization", std::string("AWS ") + kKey + ":" + std::string(signature));
  return headers;
}

class SigV2Test : public ::testing::Test {
 protected:
  SigV2Test() { store_.add_full_access(kKey, kSecret); }

  Result<VerifiedRequest> verify(const Example& e, const HeaderList& headers, system_clock::time_point now,
                                 std::string_view raw_query) {
    RequestVerifier v(store_, std::chrono::seconds(900), false);
    return v.verify(RequestHead{e.method, e.raw_path, raw_query, &headers, e.bucket}, now);
  }
  Result<VerifiedRequest> verify(const Example& e, const HeaderList& headers, system_clock::time_point now) {
    return verify(e, headers, now, e.raw_query);
  }

  CredentialStore store_;
};

// The pure pieces reproduce each documented StringToSign and signature.
TEST(SigV2KnownAnswerTest, DocumentedStringsToSignAndSignatures) {
  for (const auto& e : documented_examples()) {
    SCOPED_TRACE(e.name);
    const bool delete_variant = std::string_view(e.name) == "Delete";
    auto resource = sigv2::canonical_resource(e.bucket, e.raw_path, e.raw_query);
    ASSERT_TRUE(resource.has_value());
    const std::string* md5 = find_header(e.headers, "content-md5");
    const std::string* type = find_header(e.headers, "content-type");
    const std::string* date = find_header(e.headers, delete_variant ? "x-amz-date" : "date");
    std::string sts = sigv2::string_to_sign(e.method, md5 ? *md5 : "", type ? *type : "", *date,
                                            sigv2::canonical_amz_headers(e.headers, delete_variant), *resource);
    EXPECT_EQ(sts, e.string_to_sign);
    EXPECT_EQ(sigv2::signature(kSecret, sts), e.signature);
  }
}

// And the verifier accepts each documented request as sent.
TEST_F(SigV2Test, VerifierAcceptsEveryDocumentedRequest) {
  for (const auto& e : documented_examples()) {
    SCOPED_TRACE(e.name);
    auto headers = with_authorization(e.headers, e.signature);
    auto r = verify(e, headers, at(find_header(e.headers, "date")->c_str()));
    ASSERT_TRUE(r.has_value()) << r.error().message();
    ASSERT_NE(r->identity, nullptr);
    EXPECT_EQ(r->identity->access_key_id, kKey);
    EXPECT_TRUE(r->sigv2);
    EXPECT_FALSE(r->presigned);
    EXPECT_EQ(r->body.mode, PayloadMode::kUnsigned);
  }
}

TEST_F(SigV2Test, ContentMd5IsStillCheckedAgainstTheBody) {
  auto examples = documented_examples();
  const auto& upload = examples[6];
  ASSERT_STREQ(upload.name, "UploadWithMetadata");
  auto headers = with_authorization(upload.headers, upload.signature);
  auto r = verify(upload, headers, at("Tue, 27 Mar 2007 21:06:08 +0000"));
  ASSERT_TRUE(r.has_value()) << r.error().message();
  ASSERT_EQ(r->body.expected_checksums.size(), 1u);
  BodyVerifier body(r->body);
  std::string out;
  ASSERT_TRUE(body.feed("not the backup", out).is_ok());
  EXPECT_EQ(body.finish().code(), ErrorCode::kBadDigest);
}

TEST_F(SigV2Test, AnyChangeBreaksTheSignature) {
  auto examples = documented_examples();
  const auto& put = examples[2];
  const auto now = at("Tue, 27 Mar 2007 21:15:45 +0000");
  auto headers = with_authorization(put.headers, put.signature);
  ASSERT_TRUE(verify(put, headers, now).has_value());

  auto other_type = headers;
  other_type[0].second = "text/html";
  EXPECT_EQ(verify(put, other_type, now).error().code(), ErrorCode::kSignatureDoesNotMatch);

  auto added_amz = headers;
  added_amz.emplace_back("x-amz-acl", "public-read");  // SigV2 signs every x-amz-* header
  EXPECT_EQ(verify(put, added_amz, now).error().code(), ErrorCode::kSignatureDoesNotMatch);

  Example other_key = put;
  other_key.raw_path = "/photos/kitten.jpg";
  EXPECT_EQ(verify(other_key, headers, now).error().code(), ErrorCode::kSignatureDoesNotMatch);

  Example path_style = put;  // same path, but the bucket no longer comes from Host
  path_style.bucket = "";
  EXPECT_EQ(verify(path_style, headers, now).error().code(), ErrorCode::kSignatureDoesNotMatch);

  EXPECT_EQ(verify(put, headers, now, "acl").error().code(), ErrorCode::kSignatureDoesNotMatch);

  std::string flipped = put.signature;
  flipped[0] = flipped[0] == 'M' ? 'N' : 'M';
  auto bad = with_authorization(put.headers, flipped);
  EXPECT_EQ(verify(put, bad, now).error().code(), ErrorCode::kSignatureDoesNotMatch);

  CredentialStore other;
  other.add_full_access(kKey, "not-the-secret");
  RequestVerifier v(other, std::chrono::seconds(900), false);
  auto wrong_secret = v.verify(RequestHead{put.method, put.raw_path, "", &headers, put.bucket}, now);
  EXPECT_EQ(wrong_secret.error().code(), ErrorCode::kSignatureDoesNotMatch);

  CredentialStore empty;
  RequestVerifier nobody(empty, std::chrono::seconds(900), false);
  auto unknown = nobody.verify(RequestHead{put.method, put.raw_path, "", &headers, put.bucket}, now);
  EXPECT_EQ(unknown.error().code(), ErrorCode::kInvalidAccessKeyId);
}

TEST_F(SigV2Test, ClockSkewAndMissingDate) {
  auto examples = documented_examples();
  const auto& get = examples[0];
  auto headers = with_authorization(get.headers, get.signature);
  const auto signed_at = at("Tue, 27 Mar 2007 19:36:42 +0000");
  EXPECT_TRUE(verify(get, headers, signed_at + std::chrono::minutes(14)).has_value());
  EXPECT_TRUE(verify(get, headers, signed_at - std::chrono::minutes(14)).has_value());
  EXPECT_EQ(verify(get, headers, signed_at + std::chrono::minutes(16)).error().code(),
            ErrorCode::kRequestTimeTooSkewed);
  EXPECT_EQ(verify(get, headers, signed_at - std::chrono::minutes(16)).error().code(),
            ErrorCode::kRequestTimeTooSkewed);

  HeaderList no_date = with_authorization({{"Host", "johnsmith.s3.amazonaws.com"}}, get.signature);
  EXPECT_EQ(verify(get, no_date, signed_at).error().code(), ErrorCode::kAccessDenied);

  // x-amz-date wins over Date for the clock check too.
  auto examples_delete = examples[5];
  auto del = with_authorization(examples_delete.headers, examples_delete.signature);
  EXPECT_TRUE(verify(examples_delete, del, at("Tue, 27 Mar 2007 21:20:26 +0000")).has_value());
}

TEST_F(SigV2Test, XAmzDateIsSignedAmongTheAmzHeadersWithAnEmptyDatePosition) {
  // The S3 rule (and boto's): with x-amz-date, the Date position is empty and x-amz-date is
  // one of the CanonicalizedAmzHeaders.
  Example e{"XAmzDate", "GET", "/photos/puppy.jpg", "", "johnsmith",
            {{"Host", "johnsmith.s3.amazonaws.com"}, {"x-amz-date", "Tue, 27 Mar 2007 19:36:42 GMT"}}, "", ""};
  std::string sts = "GET\n\n\n\nx-amz-date:Tue, 27 Mar 2007 19:36:42 GMT\n/johnsmith/photos/puppy.jpg";
  auto headers = with_authorization(e.headers, sigv2::signature(kSecret, sts));
  auto r = verify(e, headers, at("Tue, 27 Mar 2007 19:36:42 GMT"));
  ASSERT_TRUE(r.has_value()) << r.error().message();
}

constexpr const char* kQueryExample =
    "AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D&Expires=1175139620";

TEST(SigV2KnownAnswerTest, DocumentedQueryStringExample) {
  auto resource = sigv2::canonical_resource("johnsmith", "/photos/puppy.jpg", kQueryExample);
  ASSERT_TRUE(resource.has_value());
  std::string sts = sigv2::string_to_sign("GET", "", "", "1175139620", sigv2::canonical_amz_headers({}), *resource);
  EXPECT_EQ(sts, "GET\n\n\n1175139620\n/johnsmith/photos/puppy.jpg");
  EXPECT_EQ(sigv2::signature(kSecret, sts), "NpgCjnDzrM+WFzoENXmpNDUsSn8=");
}

TEST_F(SigV2Test, PresignedUrlExampleAndExpiry) {
  Example e{"Query", "GET", "/photos/puppy.jpg", kQueryExample, "johnsmith",
            {{"Host", "johnsmith.s3.amazonaws.com"}}, "", ""};
  const auto expires = system_clock::time_point(std::chrono::seconds(1175139620));
  auto ok = verify(e, e.headers, expires - std::chrono::hours(24 * 30));  // no upper bound on lifetime, like S3
  ASSERT_TRUE(ok.has_value()) << ok.error().message();
  EXPECT_TRUE(ok->presigned);
  EXPECT_TRUE(ok->sigv2);
  EXPECT_EQ(ok->body.mode, PayloadMode::kUnsigned);
  EXPECT_TRUE(verify(e, e.headers, expires).has_value());

  auto expired = verify(e, e.headers, expires + std::chrono::seconds(1));
  ASSERT_FALSE(expired.has_value());
  EXPECT_EQ(expired.error().code(), ErrorCode::kExpiredPresign);
  EXPECT_STREQ(s3_code(expired.error().code()), "AccessDenied");

  // An unencoded '+' in the signature (decoded as a form space) still verifies.
  EXPECT_TRUE(verify(e, e.headers, expires,
                     "AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=NpgCjnDzrM+WFzoENXmpNDUsSn8%3D&Expires=1175139620")
                  .has_value());

  // Expires is signed: moving it breaks the signature.
  auto later = verify(e, e.headers, expires,
                      "AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D&Expires=1175139621");
  EXPECT_EQ(later.error().code(), ErrorCode::kSignatureDoesNotMatch);
  // Tampered signature.
  auto tampered = verify(e, e.headers, expires,
                         "AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=MpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D&Expires=1175139620");
  EXPECT_EQ(tampered.error().code(), ErrorCode::kSignatureDoesNotMatch);
  // Another object.
  Example other = e;
  other.raw_path = "/photos/private.jpg";
  EXPECT_EQ(verify(other, e.headers, expires).error().code(), ErrorCode::kSignatureDoesNotMatch);
  // Adding a signed sub-resource changes what was signed.
  auto with_acl = verify(e, e.headers, expires, std::string(kQueryExample) + "&acl");
  EXPECT_EQ(with_acl.error().code(), ErrorCode::kSignatureDoesNotMatch);
}

TEST_F(SigV2Test, PresignedQueryNeedsAllThreeParametersOnce) {
  Example e{"Query", "GET", "/photos/puppy.jpg", "", "johnsmith", {{"Host", "johnsmith.s3.amazonaws.com"}}, "", ""};
  const auto now = system_clock::time_point(std::chrono::seconds(1175139000));
  for (const char* q : {"AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=abc",
                        "Signature=abc&Expires=1175139620",
                        "AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Expires=1175139620&Signature=",
                        "AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&AWSAccessKeyId=X&Signature=abc&Expires=1175139620"}) {
    SCOPED_TRACE(q);
    auto r = verify(e, e.headers, now, q);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code(), ErrorCode::kAccessDenied);
  }
  // A far-future Expires is just far in the future (no overflow): the signature decides.
  auto far = verify(e, e.headers, now, "AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=abc&Expires=999999999999999999");
  EXPECT_EQ(far.error().code(), ErrorCode::kSignatureDoesNotMatch);
  auto bad_expires = verify(e, e.headers, now, "AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=abc&Expires=soon");
  EXPECT_EQ(bad_expires.error().code(), ErrorCode::kInvalidArgument);
}

TEST_F(SigV2Test, UnsignedQueryParametersAreRefused) {
  // Listing controls may ride along unsigned (S3 does not sign them either; the key's
  // grants still bound the listing); anything else that is not a signed sub-resource
  // would be signed upstream by tagd's key, so it is refused.
  EXPECT_TRUE(sigv2::check_unsigned_query("prefix=a&max-keys=5&marker=m&list-type=2&x-id=GetObject").is_ok());
  EXPECT_TRUE(sigv2::check_unsigned_query("acl&versionId=3&uploadId=u&partNumber=2").is_ok());
  Status s = sigv2::check_unsigned_query("retention&legal-hold=1&x-amz-acl=public-read");
  EXPECT_EQ(s.code(), ErrorCode::kAccessDenied);
  EXPECT_NE(s.message().find("retention, legal-hold, x-amz-acl"), std::string::npos) << s.message();

  Example e{"Query", "PUT", "/photos/puppy.jpg", "", "johnsmith", {{"Host", "johnsmith.s3.amazonaws.com"}}, "", ""};
  const auto now = system_clock::time_point(std::chrono::seconds(1175139000));
  auto hoisted = verify(e, e.headers, now, std::string(kQueryExample) + "&x-amz-acl=public-read");
  ASSERT_FALSE(hoisted.has_value());
  EXPECT_EQ(hoisted.error().code(), ErrorCode::kAccessDenied);
}

TEST_F(SigV2Test, HoistedHeaderCopiesNeedTheSignedHeader) {
  // botocore presigns put_object(ContentType=...) with Content-Type in the string to sign
  // and a copy in the URL; the uploader sends the header.
  const char* q = "AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Expires=1175139620&content-type=text%2Fplain";
  std::string sig = sigv2::signature(kSecret, "PUT\n\ntext/plain\n1175139620\n/johnsmith/k");
  std::string query = std::string(q) + "&Signature=" + uri_encode(sig, true);
  Example e{"Hoisted", "PUT", "/k", "", "johnsmith", {{"Host", "h"}, {"Content-Type", "text/plain"}}, "", ""};
  const auto now = system_clock::time_point(std::chrono::seconds(1175139000));
  auto ok = verify(e, e.headers, now, query);
  ASSERT_TRUE(ok.has_value()) << ok.error().message();
  // Without the header, or with another value, the copy is refused.
  HeaderList no_header{{"Host", "h"}};
  EXPECT_EQ(verify(e, no_header, now, query).error().code(), ErrorCode::kAccessDenied);
  HeaderList other{{"Host", "h"}, {"Content-Type", "text/html"}};
  EXPECT_EQ(verify(e, other, now, query).error().code(), ErrorCode::kAccessDenied);
  // Header form never accepts copies.
  EXPECT_FALSE(sigv2::check_unsigned_query("content-type=text%2Fplain").is_ok());
}

TEST(SigV2KnownAnswerTest, CanonicalResourceSubResources) {
  // Sorted by name, values decoded, "name" and "name=" kept apart, other parameters dropped.
  auto r = sigv2::canonical_resource(
      "", "/b/k", "versionId=v%2B1&response-content-type=text%2Fplain&prefix=x&acl&uploads=&Signature=s");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(*r, "/b/k?acl&response-content-type=text/plain&uploads=&versionId=v+1");
  // Percent-escapes in the path stay as sent.
  EXPECT_EQ(*sigv2::canonical_resource("bucket", "/a%2Fb%20c", ""), "/bucket/a%2Fb%20c");
  EXPECT_EQ(*sigv2::canonical_resource("bucket", "/", "delete"), "/bucket/?delete");
  EXPECT_FALSE(sigv2::canonical_resource("", "/b/k", "acl=%zz").has_value());
  // Path-style bucket requests are signed as "/bucket/" (S3, botocore), "/" stays "/".
  EXPECT_EQ(*sigv2::canonical_resource("", "/bkt", "prefix=p&encoding-type=url"), "/bkt/");
  EXPECT_EQ(*sigv2::canonical_resource("", "/bkt", "acl"), "/bkt/?acl");
  EXPECT_EQ(*sigv2::canonical_resource("", "/bkt/", ""), "/bkt/");
  EXPECT_EQ(*sigv2::canonical_resource("", "/", ""), "/");
}

TEST(SigV2KnownAnswerTest, CanonicalAmzHeaders) {
  HeaderList h{{"X-Amz-Meta-B", "  two  "},
               {"x-amz-meta-a", "one"},
               {"X-AMZ-META-B", "three"},
               {"Content-Type", "x"},
               {"x-amz-meta-fold", "a\r\n  b"}};
  EXPECT_EQ(sigv2::canonical_amz_headers(h), "x-amz-meta-a:one\nx-amz-meta-b:two,three\nx-amz-meta-fold:a b\n");
  EXPECT_EQ(sigv2::canonical_amz_headers({}), "");
}

TEST(SigV2KnownAnswerTest, ParsesTheAuthorizationHeader) {
  auto a = sigv2::parse_authorization("AWS AKIAIOSFODNN7EXAMPLE:frJIUN8DYpKDtOLCwo//yllqDzg=");
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->access_key_id, "AKIAIOSFODNN7EXAMPLE");
  EXPECT_EQ(a->signature, "frJIUN8DYpKDtOLCwo//yllqDzg=");
  for (const char* bad : {"AWS ", "AWS AKID", "AWS :sig", "AWS AKID:", "AWS AK ID:sig", "AWS4 AKID:sig"}) {
    SCOPED_TRACE(bad);
    EXPECT_FALSE(sigv2::parse_authorization(bad).has_value());
  }
  EXPECT_TRUE(sigv2::is_sigv2_authorization("AWS AKID:sig"));
  EXPECT_FALSE(sigv2::is_sigv2_authorization("AWS4-HMAC-SHA256 Credential=..."));
}

TEST(SigV2KnownAnswerTest, ParsesDates) {
  auto gmt = sigv2::parse_date("Tue, 27 Mar 2007 19:36:42 GMT");
  ASSERT_TRUE(gmt.has_value());
  EXPECT_EQ(sigv2::parse_date("Tue, 27 Mar 2007 19:36:42 +0000"), gmt);
  EXPECT_EQ(sigv2::parse_date("20070327T193642Z"), gmt);
  EXPECT_EQ(sigv2::parse_date("Tue, 27 Mar 2007 21:36:42 +0200"), gmt);
  EXPECT_EQ(sigv2::parse_date("Tue, 27 Mar 2007 19:36:42 UTC"), gmt);
  EXPECT_FALSE(sigv2::parse_date("yesterday").has_value());
}

TEST_F(SigV2Test, BodyDigestPromisedInXAmzContentSha256IsChecked) {
  // SigV2 signs x-amz-content-sha256 like any x-amz-* header, so a digest promised there
  // binds the body.
  const std::string digest = sha256_hex("hello");
  Example e{"Digest", "PUT", "/b/k", "", "", {{"Host", "h"}, {"Date", "Tue, 27 Mar 2007 19:36:42 GMT"},
                                              {"x-amz-content-sha256", digest}}, "", ""};
  std::string sts = "PUT\n\n\nTue, 27 Mar 2007 19:36:42 GMT\nx-amz-content-sha256:" + digest + "\n/b/k";
  auto headers = with_authorization(e.headers, sigv2::signature(kSecret, sts));
  auto r = verify(e, headers, at("Tue, 27 Mar 2007 19:36:42 GMT"));
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->body.mode, PayloadMode::kSignedSha256);
  BodyVerifier body(r->body);
  std::string out;
  ASSERT_TRUE(body.feed("hellO", out).is_ok());
  EXPECT_EQ(body.finish().code(), ErrorCode::kXAmzContentSHA256Mismatch);

  // Signed aws-chunked needs a SigV4 seed signature: refused.
  HeaderList chunked{{"Host", "h"},
                     {"Date", "Tue, 27 Mar 2007 19:36:42 GMT"},
                     {"x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"},
                     {"x-amz-decoded-content-length", "5"}};
  std::string chunked_sts =
      "PUT\n\n\nTue, 27 Mar 2007 19:36:42 GMT\nx-amz-content-sha256:STREAMING-AWS4-HMAC-SHA256-PAYLOAD\n"
      "x-amz-decoded-content-length:5\n/b/k";
  auto chunked_headers = with_authorization(chunked, sigv2::signature(kSecret, chunked_sts));
  auto c = verify(e, chunked_headers, at("Tue, 27 Mar 2007 19:36:42 GMT"));
  ASSERT_FALSE(c.has_value());
  EXPECT_EQ(c.error().code(), ErrorCode::kInvalidRequest);
}

TEST_F(SigV2Test, TigrisHeadersAreNeverSignedBySigV2) {
  auto examples = documented_examples();
  const auto& put = examples[2];
  auto headers = with_authorization(put.headers, put.signature);
  headers.emplace_back("X-Tigris-Regions", "fra");
  auto r = verify(put, headers, at("Tue, 27 Mar 2007 21:15:45 +0000"));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kAccessDenied);
  EXPECT_NE(r.error().message().find("There were headers present in the request which were not signed"),
            std::string::npos);
  EXPECT_NE(r.error().message().find("x-tigris-regions"), std::string::npos);
}

TEST_F(SigV2Test, PathStyleBucketRequestsVerifyWithOrWithoutTheTrailingSlash) {
  Example e{"Bucket", "GET", "/bkt", "prefix=p", "", {{"Host", "h"}, {"Date", "Tue, 27 Mar 2007 19:36:42 GMT"}}, "", ""};
  const auto now = at("Tue, 27 Mar 2007 19:36:42 GMT");
  for (const char* resource : {"/bkt/", "/bkt"}) {
    SCOPED_TRACE(resource);
    std::string sts = std::string("GET\n\n\nTue, 27 Mar 2007 19:36:42 GMT\n") + resource;
    auto headers = with_authorization(e.headers, sigv2::signature(kSecret, sts));
    auto r = verify(e, headers, now);
    EXPECT_TRUE(r.has_value()) << r.error().message();
  }
  std::string other = "GET\n\n\nTue, 27 Mar 2007 19:36:42 GMT\n/bkt2/";
  auto headers = with_authorization(e.headers, sigv2::signature(kSecret, other));
  EXPECT_EQ(verify(e, headers, now).error().code(), ErrorCode::kSignatureDoesNotMatch);
}

TEST_F(SigV2Test, OnlyOneAuthMechanism) {
  auto examples = documented_examples();
  const auto& get = examples[0];
  auto headers = with_authorization(get.headers, get.signature);
  auto both = verify(get, headers, at("Tue, 27 Mar 2007 19:36:42 +0000"), kQueryExample);
  ASSERT_FALSE(both.has_value());
  EXPECT_EQ(both.error().code(), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace tagd::auth
