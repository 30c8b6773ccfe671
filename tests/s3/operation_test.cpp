#include "tagd/s3/operation.hpp"

#include <gtest/gtest.h>

namespace tagd::s3 {
namespace {

Target resolve(std::string_view target) {
  auto r = resolve_target("localhost", target, "");
  EXPECT_TRUE(r.has_value()) << target;
  return r ? r.value() : Target{};
}

Result<Operation> op(std::string_view method, std::string_view target, auth::HeaderList headers = {}) {
  return classify(method, resolve(target), headers);
}

std::string name(std::string_view method, std::string_view target, auth::HeaderList headers = {}) {
  auto r = op(method, target, std::move(headers));
  return r ? r->name : std::string("error:") + s3_code(r.error().code());
}

bool needs(const Operation& o, Action action, Scope scope, std::string_view bucket, std::string_view path = "") {
  for (const auto& p : o.needs) {
    if (p.action == action && p.scope == scope && p.bucket == bucket && p.path == path) return true;
  }
  return false;
}

TEST(OperationTable, ObjectOperations) {
  EXPECT_EQ(name("GET", "/b/k"), "GetObject");
  EXPECT_TRUE(op("GET", "/b/k")->object_read);
  EXPECT_TRUE(op("HEAD", "/b/k")->object_read);
  EXPECT_TRUE(needs(*op("GET", "/b/k"), Action::kRead, Scope::kObject, "b", "k"));
  EXPECT_EQ(name("PUT", "/b/k"), "PutObject");
  EXPECT_TRUE(needs(*op("PUT", "/b/k"), Action::kWrite, Scope::kObject, "b", "k"));
  EXPECT_EQ(name("PUT", "/b/k?partNumber=1&uploadId=x"), "UploadPart");
  EXPECT_EQ(name("POST", "/b/k?uploads"), "CreateMultipartUpload");
  EXPECT_EQ(name("POST", "/b/k?uploadId=x"), "CompleteMultipartUpload");
  EXPECT_TRUE(needs(*op("DELETE", "/b/k"), Action::kDelete, Scope::kObject, "b", "k"));
  EXPECT_EQ(name("DELETE", "/b/k?uploadId=x"), "AbortMultipartUpload");
  EXPECT_EQ(name("GET", "/b/k?uploadId=x"), "ListParts");
  EXPECT_EQ(name("GET", "/b/k?X-Amz-Signature=a&X-Amz-Date=b&x-id=GetObject"), "GetObject");
  EXPECT_EQ(name("GET", "/b/k?versionId=3&response-content-type=x"), "GetObject");
  EXPECT_EQ(name("GET", "/b/k?tagging"), "GetObjectTagging");
  EXPECT_FALSE(op("GET", "/b/k?tagging")->object_read);
  EXPECT_EQ(name("GET", "/b/k?acl"), "GetObjectAcl");
  EXPECT_EQ(name("PUT", "/b/k?tagging"), "PutObjectTagging");
  EXPECT_EQ(name("DELETE", "/b/k?tagging"), "DeleteObjectTagging");
  // Every object write lists the object for invalidation; reads list nothing.
  EXPECT_EQ(op("PUT", "/b/k?tagging")->writes.size(), 1u);
  EXPECT_TRUE(op("GET", "/b/k")->writes.empty());
}

// Class 4 (and the SDK for JavaScript v3): presign and checksum-mode parameters keep a GET
// a GetObject.
TEST(OperationTable, Trust4PresignedJsGetIsGetObject) {
  auto o = op("GET",
              "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Content-Sha256=UNSIGNED-PAYLOAD&X-Amz-Credential=c"
              "&X-Amz-Date=d&X-Amz-Expires=900&X-Amz-Signature=s&X-Amz-SignedHeaders=host"
              "&x-amz-checksum-mode=ENABLED&x-id=GetObject");
  ASSERT_TRUE(o.has_value());
  EXPECT_EQ(o->name, "GetObject");
  EXPECT_TRUE(o->object_read);
}

TEST(OperationTable, BucketOperations) {
  auto list = op("GET", "/b?list-type=2&prefix=photos/");
  ASSERT_TRUE(list.has_value());
  EXPECT_EQ(list->name, "ListObjectsV2");
  EXPECT_TRUE(needs(*list, Action::kList, Scope::kPrefix, "b", "photos/"));
  EXPECT_EQ(name("GET", "/b"), "ListObjects");
  EXPECT_EQ(name("GET", "/b?list-type=3"), "error:InvalidArgument");
  EXPECT_EQ(name("GET", "/b?versioning"), "GetBucketVersioning");
  EXPECT_TRUE(needs(*op("GET", "/b?versioning"), Action::kList, Scope::kBucket, "b"));
  EXPECT_EQ(name("GET", "/b?location"), "GetBucketLocation");
  EXPECT_EQ(name("HEAD", "/b"), "HeadBucket");
  EXPECT_EQ(name("GET", "/b?uploads&prefix=a"), "ListMultipartUploads");
  EXPECT_TRUE(needs(*op("GET", "/b?versions&prefix=a"), Action::kList, Scope::kPrefix, "b", "a"));
  EXPECT_EQ(name("PUT", "/b"), "CreateBucket");
  EXPECT_TRUE(needs(*op("PUT", "/b"), Action::kWrite, Scope::kBucket, "b"));
  EXPECT_EQ(name("DELETE", "/b"), "DeleteBucket");
  auto del = op("POST", "/b?delete");
  ASSERT_TRUE(del.has_value());
  EXPECT_EQ(del->name, "DeleteObjects");
  EXPECT_TRUE(del->keys_in_body);
  EXPECT_EQ(name("GET", "/"), "ListBuckets");
  EXPECT_TRUE(needs(*op("GET", "/"), Action::kList, Scope::kService, ""));
}

// Class 1: a bucket request that names a sub-resource is that sub-resource's operation,
// whatever listing parameters ride along.
TEST(OperationTable, Trust1SubresourceWinsOverListingParameters) {
  for (const char* sub : {"policy", "acl", "versioning", "cors", "lifecycle", "encryption", "website"}) {
    std::string target = std::string("/b?") + sub + "&prefix=pub%2F";
    auto o = op("GET", target);
    // A listing parameter is not one the configuration read takes: refused outright.
    ASSERT_FALSE(o.has_value()) << target;
    EXPECT_EQ(o.error().code(), ErrorCode::kInvalidArgument) << target;
    auto plain = op("GET", std::string("/b?") + sub);
    ASSERT_TRUE(plain.has_value()) << sub;
    EXPECT_TRUE(needs(*plain, Action::kList, Scope::kBucket, "b")) << sub;
  }
  EXPECT_EQ(name("GET", "/b?policy&acl"), "error:InvalidArgument");
  EXPECT_EQ(name("GET", "/b/k?acl&tagging"), "error:InvalidArgument");
}

// Class 1: deny by default — what the table does not know is refused.
TEST(OperationTable, Trust1UnknownIsRefused) {
  EXPECT_EQ(name("PUT", "/"), "error:MethodNotAllowed");
  EXPECT_EQ(name("POST", "/"), "error:MethodNotAllowed");
  EXPECT_EQ(name("DELETE", "/"), "error:MethodNotAllowed");
  EXPECT_EQ(name("HEAD", "/"), "error:MethodNotAllowed");
  EXPECT_EQ(name("PATCH", "/b/k"), "error:MethodNotAllowed");
  EXPECT_EQ(name("POST", "/b/k"), "error:NotImplemented");
  EXPECT_EQ(name("POST", "/b"), "error:NotImplemented");
  EXPECT_EQ(name("GET", "/b/k?frobnicate=1"), "error:InvalidArgument");
  EXPECT_EQ(name("GET", "/b?list-type=2&secret-knob=1"), "error:InvalidArgument");
  EXPECT_EQ(name("POST", "/b?policy"), "error:MethodNotAllowed");
  EXPECT_EQ(name("PUT", "/b/k?uploadId=x"), "error:InvalidArgument");  // no partNumber
}

// Class 1: access control needs admin, not write.
TEST(OperationTable, Trust1AccessControlNeedsAdmin) {
  EXPECT_TRUE(needs(*op("PUT", "/b/k?acl"), Action::kAdmin, Scope::kObject, "b", "k"));
  EXPECT_TRUE(needs(*op("PUT", "/b/k?retention"), Action::kAdmin, Scope::kObject, "b", "k"));
  EXPECT_TRUE(needs(*op("PUT", "/b/k?legal-hold"), Action::kAdmin, Scope::kObject, "b", "k"));
  EXPECT_TRUE(needs(*op("PUT", "/b/k", {{"x-amz-acl", "public-read"}}), Action::kAdmin, Scope::kObject, "b", "k"));
  EXPECT_TRUE(needs(*op("PUT", "/b/k", {{"X-Amz-Grant-Read", "uri=x"}}), Action::kAdmin, Scope::kObject, "b", "k"));
  EXPECT_TRUE(needs(*op("POST", "/b/k?uploads", {{"x-amz-acl", "public-read"}}), Action::kAdmin, Scope::kObject, "b",
                    "k"));
  // The query form of the header (presigned URLs carry headers there) counts the same.
  EXPECT_TRUE(needs(*op("PUT", "/b/k?x-amz-acl=public-read"), Action::kAdmin, Scope::kObject, "b", "k"));
  EXPECT_TRUE(needs(*op("PUT", "/b?policy"), Action::kAdmin, Scope::kBucket, "b"));
  EXPECT_TRUE(needs(*op("DELETE", "/b?cors"), Action::kAdmin, Scope::kBucket, "b"));
  EXPECT_TRUE(needs(*op("PUT", "/b", {{"x-amz-acl", "private"}}), Action::kAdmin, Scope::kBucket, "b"));
  EXPECT_FALSE(needs(*op("PUT", "/b/k"), Action::kAdmin, Scope::kObject, "b", "k"));
}

// Class 1: copies and moves need the source too; a move invalidates it.
TEST(OperationTable, Trust1CopyRenameAndForkSources) {
  auto copy = op("PUT", "/b/k", {{"x-amz-copy-source", "/src/a%20b"}});
  ASSERT_TRUE(copy.has_value());
  EXPECT_EQ(copy->name, "CopyObject");
  EXPECT_TRUE(needs(*copy, Action::kRead, Scope::kObject, "src", "a b"));
  EXPECT_TRUE(needs(*copy, Action::kWrite, Scope::kObject, "b", "k"));
  EXPECT_EQ(copy->writes.size(), 1u);

  auto part = op("PUT", "/b/k?partNumber=2&uploadId=u", {{"x-amz-copy-source", "src/x"}});
  ASSERT_TRUE(part.has_value());
  EXPECT_EQ(part->name, "UploadPartCopy");

  auto move = op("PUT", "/b/k", {{"x-amz-copy-source", "b/old"}, {"X-Tigris-Rename", "true"}});
  ASSERT_TRUE(move.has_value());
  EXPECT_EQ(move->name, "RenameObject");
  EXPECT_TRUE(needs(*move, Action::kDelete, Scope::kObject, "b", "old"));
  EXPECT_TRUE(needs(*move, Action::kRead, Scope::kObject, "b", "old"));
  ASSERT_EQ(move->writes.size(), 2u);
  EXPECT_EQ(move->writes[1].key, "old");

  auto rename = op("PUT", "/b/new?renameObject", {{"x-amz-rename-source", "/b/old"}});
  ASSERT_TRUE(rename.has_value());
  EXPECT_EQ(rename->name, "RenameObject");
  EXPECT_TRUE(needs(*rename, Action::kDelete, Scope::kObject, "b", "old"));
  EXPECT_TRUE(needs(*rename, Action::kWrite, Scope::kObject, "b", "new"));
  EXPECT_EQ(name("PUT", "/b/new?renameObject"), "error:InvalidArgument");
  EXPECT_EQ(name("PUT", "/b/k", {{"x-amz-rename-source", "/b/old"}}), "error:InvalidArgument");
  EXPECT_EQ(name("PUT", "/b/k", {{"X-Tigris-Rename", "true"}}), "error:InvalidArgument");
  EXPECT_EQ(name("GET", "/b/k", {{"x-amz-copy-source", "/b/x"}}), "error:InvalidArgument");
  EXPECT_EQ(name("PUT", "/b/k", {{"x-amz-copy-source", "/b/x"}, {"X-Amz-Copy-Source", "/b/y"}}),
            "error:InvalidArgument");
  EXPECT_EQ(name("PUT", "/b/k?x-amz-copy-source=%2Fb%2Fy", {{"x-amz-copy-source", "/b/x"}}),
            "error:InvalidArgument");

  auto fork = op("PUT", "/child", {{"X-Tigris-Fork-Source-Bucket", "parent"}});
  ASSERT_TRUE(fork.has_value());
  EXPECT_TRUE(needs(*fork, Action::kRead, Scope::kBucket, "parent"));
}

// Class 1: keys a path-normalizing upstream would read as another path are refused for
// every grant (prefix grants also refuse empty segments: credentials_test).
TEST(OperationTable, Trust1DotSegmentsAreRefusedForEveryone) {
  for (const char* target : {"/b/../c/secret", "/b/x/..", "/b/x/../y", "/b/./x", "/b/x/.", "/b//", "/b///"}) {
    EXPECT_EQ(name("GET", target), "error:InvalidArgument") << target;
    EXPECT_EQ(name("PUT", target), "error:InvalidArgument") << target;
  }
  EXPECT_EQ(name("GET", "/b/x/..?acl"), "error:InvalidArgument");
  EXPECT_EQ(name("PUT", "/b/k", {{"x-amz-copy-source", "/b/x/../../c/secret"}}), "error:InvalidArgument");
  // Dots inside a segment, empty segments and directory markers are ordinary keys.
  EXPECT_EQ(name("GET", "/b/a..b/.hidden/x..."), "GetObject");
  EXPECT_EQ(name("GET", "/b/a//b"), "GetObject");
  EXPECT_EQ(name("PUT", "/b/dir/"), "PutObject");
}

TEST(OperationTable, Trust1MovesAreUnambiguous) {
  EXPECT_EQ(name("PUT", "/b/k", {{"x-amz-copy-source", "b/old"}, {"X-Tigris-Rename", "1"}}), "error:InvalidArgument");
  EXPECT_EQ(name("PUT", "/b/k", {{"x-amz-copy-source", "b/old"}, {"X-Tigris-Rename", "FALSE"}}), "CopyObject");
  EXPECT_EQ(name("PUT", "/b/new?renameObject", {{"x-amz-rename-source", "/other/old"}}), "error:InvalidArgument");
}

TEST(OperationTable, CorsPreflightNeedsNothing) {
  auto o = op("OPTIONS", "/b/k");
  ASSERT_TRUE(o.has_value());
  EXPECT_EQ(o->name, "CorsPreflight");
  EXPECT_TRUE(o->needs.empty());
}

TEST(AuthParams, SigV2OnlyWithAccessKeyId) {
  Target v2 = resolve("/b/k?AWSAccessKeyId=A&Expires=1&Signature=s");
  EXPECT_TRUE(is_auth_param(v2, "Signature"));
  EXPECT_TRUE(is_auth_param(v2, "X-Amz-Signature"));
  Target plain = resolve("/b/k?Expires=1");
  EXPECT_FALSE(is_auth_param(plain, "Expires"));
  EXPECT_EQ(name("GET", "/b/k?AWSAccessKeyId=A&Expires=1&Signature=s"), "GetObject");
  EXPECT_EQ(name("PUT", "/b/k?AWSAccessKeyId=A&Expires=1&Signature=s&content-type=text%2Fplain"), "PutObject");
  EXPECT_EQ(name("PUT", "/b/k?content-type=text%2Fplain"), "error:InvalidArgument");
}

TEST(AuthParams, EverySigV4PresignNameInAnyCaseAndNothingOfTheSameLength) {
  Target plain = resolve("/b/k");
  for (std::string_view n : {"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
                             "X-Amz-SignedHeaders", "X-Amz-Signature", "X-Amz-Security-Token",
                             "X-Amz-Content-Sha256", "x-amz-date", "X-AMZ-SIGNATURE"}) {
    EXPECT_TRUE(is_auth_param(plain, n)) << n;
  }
  // Same lengths as the names above, one byte off; and the SigV2 names without AWSAccessKeyId.
  for (std::string_view n : {"x-amz-datf", "x-amz-expirex", "x-amz-algorithX", "y-amz-signature",
                             "x-amz-credentiaL_", "x-amz-credentia_", "x-amz-signedheader_",
                             "x-amz-security-toke_", "x-amz-content-sha255", "x-amz-meta-a", "Signature", ""}) {
    EXPECT_FALSE(is_auth_param(plain, n)) << n;
  }
}

}  // namespace
}  // namespace tagd::s3
