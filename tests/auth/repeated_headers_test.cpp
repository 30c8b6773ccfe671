// A security-relevant header sent twice is refused (400 InvalidArgument) before any
// signature is looked at: tagd reads the first, SigV4 signs both comma-joined, the
// upstream may act on the last.
#include "tagd/auth/repeated_headers.hpp"

#include <gtest/gtest.h>

#include "tagd/auth/request_verifier.hpp"

namespace tagd::auth {
namespace {

TEST(RepeatedHeaders, WhichNamesCount) {
  for (const char* name :
       {"x-amz-copy-source", "X-Amz-Copy-Source-Range", "x-amz-acl", "x-amz-grant-full-control", "x-amz-rename-source",
        "x-amz-content-sha256", "x-amz-date", "x-amz-decoded-content-length", "x-amz-trailer", "authorization",
        "x-tigris-regions", "x-amz-checksum-crc32", "x-amz-server-side-encryption-customer-key", "x-amz-tagging",
        "x-amz-website-redirect-location", "x-amz-metadata-directive", "x-amz-tagging-directive",
        "x-amz-object-lock-mode", "x-amz-storage-class", "content-md5", "Content-Type", "date", "host",
        "x-amz-some-future-header"}) {
    EXPECT_TRUE(is_unrepeatable_header(name)) << name;
  }
  for (const char* name : {"x-amz-meta-reviewedby", "X-Amz-Meta-A", "accept", "range", "cache-control",
                           "content-length", "user-agent", "x-forwarded-for"}) {
    EXPECT_FALSE(is_unrepeatable_header(name)) << name;
  }
}

TEST(RepeatedHeaders, RefusesASecondCopySourceWhateverTheCase) {
  HeaderList headers{{"Host", "h"}, {"x-amz-copy-source", "/pub/a"}, {"X-Amz-Copy-Source", "/private/b"}};
  Status s = check_repeated_headers(headers);
  EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(http_status(s.code()), 400);
  EXPECT_NE(s.message().find("x-amz-copy-source"), std::string::npos);
}

TEST(RepeatedHeaders, MetadataMayRepeat) {
  HeaderList headers{{"Host", "h"}, {"X-Amz-Meta-ReviewedBy", "joe"}, {"X-Amz-Meta-ReviewedBy", "jane"}};
  EXPECT_TRUE(check_repeated_headers(headers).is_ok());
}

TEST(RepeatedHeaders, SingleOccurrencesPass) {
  HeaderList headers{{"Host", "h"}, {"x-amz-acl", "private"}, {"x-amz-copy-source", "/a/b"}, {"Accept", "a"},
                     {"Accept", "b"}};
  EXPECT_TRUE(check_repeated_headers(headers).is_ok());
}

TEST(RepeatedHeaders, VerifierRefusesBeforeLookingAtTheSignature) {
  CredentialStore store;
  store.add_full_access("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
  RequestVerifier v(store, std::chrono::seconds(900), /*allow_anonymous=*/true);
  const auto now = *parse_amz_date("20130524T000000Z");
  for (const char* name : {"x-amz-acl", "x-amz-date", "authorization", "content-md5", "x-tigris-regions",
                           "x-amz-content-sha256", "x-amz-decoded-content-length", "x-amz-trailer"}) {
    SCOPED_TRACE(name);
    HeaderList headers{{"Host", "h"}, {name, "1"}, {name, "2"}};
    auto r = v.verify(RequestHead{"PUT", "/b/k", "", &headers}, now);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  }
  // Also for a presigned request whose signature would otherwise verify.
  HeaderList presigned{{"Host", "examplebucket.s3.amazonaws.com"},
                       {"x-amz-copy-source", "/a/b"},
                       {"x-amz-copy-source", "/c/d"}};
  auto r = v.verify(RequestHead{"GET", "/test.txt",
                                "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2F"
                                "us-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-"
                                "SignedHeaders=host&X-Amz-Signature="
                                "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404",
                                &presigned},
                    now);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace tagd::auth
