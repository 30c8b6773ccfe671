#include "tagd/s3/request.hpp"

#include <gtest/gtest.h>

namespace tagd::s3 {
namespace {

Target resolve(std::string_view host, std::string_view target, std::string_view domain = "localhost") {
  auto r = resolve_target(host, target, domain);
  EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().message());
  return r ? r.value() : Target{};
}

TEST(ResolveTargetTest, PathStyle) {
  Target t = resolve("127.0.0.1:8080", "/bucket/dir/file%20name.txt?versionId=3");
  EXPECT_EQ(t.bucket, "bucket");
  EXPECT_EQ(t.key, "dir/file name.txt");
  EXPECT_EQ(t.raw_path, "/bucket/dir/file%20name.txt");
  EXPECT_EQ(t.raw_query, "versionId=3");
  EXPECT_EQ(t.param("versionId"), "3");
  EXPECT_FALSE(t.virtual_hosted);
}

TEST(ResolveTargetTest, PathStyleBucketOnlyAndService) {
  EXPECT_EQ(resolve("localhost:8080", "/bucket").bucket, "bucket");
  EXPECT_EQ(resolve("localhost:8080", "/bucket/").key, "");
  Target service = resolve("localhost:8080", "/");
  EXPECT_TRUE(service.bucket.empty());
  EXPECT_TRUE(service.key.empty());
}

TEST(ResolveTargetTest, VirtualHostedStyle) {
  Target t = resolve("my-bucket.localhost:8080", "/a/b.bin?tagging");
  EXPECT_TRUE(t.virtual_hosted);
  EXPECT_EQ(t.bucket, "my-bucket");
  EXPECT_EQ(t.key, "a/b.bin");
  EXPECT_TRUE(t.has_param("tagging"));
  Target dotted = resolve("data.set.s3.example.com", "/k", "s3.example.com");
  EXPECT_EQ(dotted.bucket, "data.set");
  EXPECT_EQ(dotted.key, "k");
}

TEST(ResolveTargetTest, HostEqualToDomainIsPathStyle) {
  Target t = resolve("localhost:8080", "/b/k");
  EXPECT_FALSE(t.virtual_hosted);
  EXPECT_EQ(t.bucket, "b");
  // A look-alike suffix is not the domain.
  Target u = resolve("evillocalhost:8080", "/b/k");
  EXPECT_FALSE(u.virtual_hosted);
}

TEST(ResolveTargetTest, VirtualHostingOffWhenDomainEmpty) {
  Target t = resolve("bucket.localhost", "/b/k", "");
  EXPECT_FALSE(t.virtual_hosted);
  EXPECT_EQ(t.bucket, "b");
}

TEST(ResolveTargetTest, RejectsMalformedTargets) {
  EXPECT_FALSE(resolve_target("h", "bucket/key", "").has_value());
  EXPECT_FALSE(resolve_target("h", "/b/%zz", "").has_value());
  EXPECT_FALSE(resolve_target("h", "/b/k?x=%2", "").has_value());
}

TEST(ResolveTargetTest, RefusesARepeatedParameterAmongThousands) {
  // A 64 KiB target holds thousands of parameters, all parsed before any signature check.
  std::string target = "/b/k?";
  for (int i = 0; i < 5000; ++i) target += "p" + std::to_string(i) + "&";
  EXPECT_TRUE(resolve_target("h", target + "last", "").has_value());
  auto repeated = resolve_target("h", target + "p1234", "");
  ASSERT_FALSE(repeated.has_value());
  EXPECT_EQ(repeated.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(repeated.error().message().find("query parameter p1234 is repeated"), std::string::npos);
  // Few parameters (the pairwise path): still refused, and names differing in case are not repeats.
  EXPECT_FALSE(resolve_target("h", "/b/k?a=1&b=2&a=3", "").has_value());
  EXPECT_TRUE(resolve_target("h", "/b/k?a=1&A=2", "").has_value());
}

bool same_target(const Target& a, const Target& b) {
  return a.bucket == b.bucket && a.key == b.key && a.raw_path == b.raw_path && a.raw_query == b.raw_query &&
         a.query == b.query && a.virtual_hosted == b.virtual_hosted;
}

// Host and target pairs covering both styles, with and without a key or query, and
// refusals at each step (target form, query escape, repeated parameter, path escape,
// bucket name).
const std::pair<std::string_view, std::string_view> kTargets[] = {
    {"127.0.0.1:8080", "/bucket/dir/file%20name.txt?versionId=3&X-Amz-Credential=AKIA%2F20261206%2Fus-east-1"},
    {"My-Bucket.localhost:8080", "/a/b.bin?tagging"},
    {"localhost", "/bucket"},
    {"localhost", "/"},
    {"localhost", "/b/k?a=1&&b=x+y&"},
    {"h", "bucket/key"},
    {"h", "/b/k?x=%2"},
    {"h", "/b/k?a=1&a=2"},
    {"h", "/b/%zz"},
    {"h", "/b%2Fc/k"},
    {"b%.localhost", "/k"},
    {"localhost", "//k"},
};

TEST(ResolveTargetTest, IntoAReusedTargetGivesTheSameAnswers) {
  // Every pair resolved into a Target left by every other pair (longer or shorter
  // strings, more or fewer parameters, the other style) answers as a fresh resolve.
  for (const auto& [prev_host, prev_target] : kTargets) {
    for (const auto& [host, target] : kTargets) {
      Target t;
      (void)resolve_target_into(prev_host, prev_target, "localhost", t);
      const auto fresh = resolve_target(host, target, "localhost");
      const Status s = resolve_target_into(host, target, "localhost", t);
      ASSERT_EQ(s.is_ok(), fresh.has_value()) << prev_target << " then " << target;
      if (fresh) {
        EXPECT_TRUE(same_target(t, fresh.value())) << prev_target << " then " << target;
      } else {
        EXPECT_EQ(s.code(), fresh.error().code()) << target;
        EXPECT_EQ(s.message(), fresh.error().message()) << target;
      }
    }
  }
}

TEST(RequestScratchTest, StartsEmptyAndIsEmptiedAfterARefusal) {
  for (const auto& [host, target] : kTargets) {
    {
      RequestScratch first;
      (void)first.resolve("localhost", "/bucket/key?X-Amz-Signature=abc&versionId=1", "localhost");
      first.header_storage() = {{"Host", "localhost"}};
    }
    RequestScratch scratch;  // this thread's recycled slot
    EXPECT_TRUE(same_target(scratch.target(), Target{}));
    const auto fresh = resolve_target(host, target, "localhost");
    const Status s = scratch.resolve(host, target, "localhost");
    ASSERT_EQ(s.is_ok(), fresh.has_value()) << target;
    // A refused target leaves nothing a later reader (the access log) could take for it.
    EXPECT_TRUE(same_target(scratch.target(), fresh ? fresh.value() : Target{})) << target;
  }
}

TEST(RequestScratchTest, ANextRequestReusesTheDecodedStrings) {
  const std::string_view presigned =
      "/bucket/a-key-longer-than-fifteen-bytes?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F20261206"
      "%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=0123456789abcdef0123456789abcdef";
  const char* key = nullptr;
  const char* credential = nullptr;
  {
    RequestScratch scratch;
    ASSERT_TRUE(scratch.resolve("localhost", presigned, "localhost"));
    key = scratch.target().key.data();
    credential = scratch.target().query[1].second.data();
  }
  RequestScratch next;
  ASSERT_TRUE(next.resolve("localhost", presigned, "localhost"));
  EXPECT_EQ(next.target().key.data(), key);
  EXPECT_EQ(next.target().query[1].second.data(), credential);
  EXPECT_EQ(next.target().query[1].second, "AKIA/20261206/us-east-1/s3/aws4_request");
}

TEST(UpstreamTargetTest, PathStyleSortedQueryWithoutPresignParameters) {
  Target t = resolve("b.localhost", "/dir/a%20b+c?X-Amz-Signature=abc&versionId=2&X-Amz-Date=1&acl");
  EXPECT_EQ(upstream_target(t), "/b/dir/a%20b%2Bc?acl=&versionId=2");
  Target bucket = resolve("localhost", "/b?list-type=2&prefix=a%2Fb");
  EXPECT_EQ(upstream_target(bucket), "/b?list-type=2&prefix=a%2Fb");
  EXPECT_EQ(upstream_target(resolve("localhost", "/")), "/");
  // SigV2 query authentication is stripped too, but only when it is SigV2's.
  Target v2 = resolve("localhost", "/b/k?AWSAccessKeyId=A&Expires=1&Signature=s%2F");
  EXPECT_EQ(upstream_target(v2), "/b/k");
  Target not_v2 = resolve("localhost", "/b?prefix=p&Signature=s");
  EXPECT_EQ(upstream_target(not_v2), "/b?Signature=s&prefix=p");
}

// Class 1: a bucket name is never read as path structure upstream (a '/' from a
// virtual-hosted Host would become "%2F" in the upstream path and split there).
TEST(ResolveTargetTest, Trust1BucketNamesAreNeverPathStructure) {
  for (auto [host, target] : std::initializer_list<std::pair<const char*, const char*>>{
           {"bb1/topsecret.localhost", "/?prefix=pub/"},
           {"bb1%2Fx.localhost", "/k"},
           {"..localhost", "/pub/x"},
           {"b\\x.localhost", "/k"},
           {"localhost", "/../k"},
           {"localhost", "/./k"}}) {
    auto r = resolve_target(host, target, "localhost");
    ASSERT_FALSE(r.has_value()) << host << target;
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidBucketName) << host << target;
  }
  EXPECT_TRUE(resolve_target("localhost", "/Legacy_Bucket.name-1/k", "localhost").has_value());
  EXPECT_TRUE(resolve_target("my-bucket.localhost", "/k", "localhost").has_value());
}

// Class 1 (authorize exactly what is forwarded): the upstream receives every occurrence
// of a parameter, the policy saw only one.
TEST(ResolveTargetTest, Trust1RefusesRepeatedQueryParameters) {
  for (const char* target : {"/b?list-type=2&prefix=pub%2F&prefix=", "/b/k?versionId=1&versionId=2",
                             "/b?policy&policy", "/b/k?uploadId=a&partNumber=1&partNumber=2"}) {
    auto r = resolve_target("localhost", target, "");
    ASSERT_FALSE(r.has_value()) << target;
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument) << target;
  }
}

TEST(CopySourceTest, Parses) {
  auto s = parse_copy_source("/src-bucket/dir/file%20x.txt?versionId=7");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->bucket, "src-bucket");
  EXPECT_EQ(s->key, "dir/file x.txt");
  auto no_slash = parse_copy_source("src/k");
  ASSERT_TRUE(no_slash);
  EXPECT_EQ(no_slash->bucket, "src");
  EXPECT_FALSE(parse_copy_source("bucket-only"));
  EXPECT_FALSE(parse_copy_source("/b/"));
}

TEST(DeleteObjectsKeysTest, ExtractsAndUnescapes) {
  auto keys = delete_objects_keys(
      R"(<?xml version="1.0"?><Delete><Object><Key>a&amp;b</Key></Object><Object><Key>c&#x41;</Key><VersionId>1</VersionId></Object><Quiet>true</Quiet></Delete>)");
  ASSERT_TRUE(keys.has_value());
  ASSERT_EQ(keys->size(), 2u);
  EXPECT_EQ((*keys)[0], "a&b");
  EXPECT_EQ((*keys)[1], "cA");
  EXPECT_FALSE(delete_objects_keys("<Delete><Object><Key>x</Object></Delete>").has_value());
  EXPECT_FALSE(delete_objects_keys("<NotDelete/>").has_value());
  EXPECT_FALSE(delete_objects_keys("<Delete><Object><Key>&bogus;</Key></Object></Delete>").has_value());
  auto ns = delete_objects_keys(R"(<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Object><Key>k</Key></Object></Delete>)");
  ASSERT_TRUE(ns.has_value());
  EXPECT_EQ(ns->size(), 1u);
}

TEST(DeleteObjectsKeysTest, RefusesFormsThatCouldHideAKeyFromThePolicy) {
  for (const char* body : {"<Delete><Object><Key >secret</Key></Object></Delete>",
                           "<Delete><Object><Key\n>secret</Key></Object></Delete>",
                           "<Delete><Object><Key xml:space=\"preserve\">secret</Key></Object></Delete>",
                           "<Delete><Object><s3:Key>secret</s3:Key></Object></Delete>",
                           "<Delete><Object><Key><![CDATA[secret]]></Key></Object></Delete>",
                           "<!DOCTYPE x><Delete><Object><Key>a</Key></Object></Delete>",
                           "<Delete><!-- c --><Object><Key>a</Key></Object></Delete>",
                           "<Delete foo=\"1\"><Object><Key>a</Key></Object></Delete>"}) {
    auto r = delete_objects_keys(body);
    EXPECT_FALSE(r.has_value()) << body;
    if (!r) {
      EXPECT_EQ(r.error().code(), ErrorCode::kMalformedXML);
    }
  }
}

TEST(ErrorXmlTest, EscapesEverything) {
  std::string xml = error_xml("AccessDenied", "no <way> & \"never\"", "/b/k", "REQ1");
  EXPECT_NE(xml.find("<Code>AccessDenied</Code>"), std::string::npos);
  EXPECT_NE(xml.find("no &lt;way&gt; &amp; &quot;never&quot;"), std::string::npos);
  EXPECT_NE(xml.find("<RequestId>REQ1</RequestId>"), std::string::npos);
  EXPECT_NE(xml.find("<Resource>/b/k</Resource>"), std::string::npos);
}

}  // namespace
}  // namespace tagd::s3
