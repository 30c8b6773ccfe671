#include "tagd/cache/http_semantics.hpp"

#include <gtest/gtest.h>
#include <limits>

namespace tagd::cache {
namespace {

TEST(RangeTest, Forms) {
  auto r = parse_range("bytes=0-9", 100);
  ASSERT_EQ(r.kind, RangeKind::kSatisfiable);
  EXPECT_EQ(r.range.first, 0u);
  EXPECT_EQ(r.range.last, 9u);
  r = parse_range("bytes=90-", 100);
  EXPECT_EQ(r.range.first, 90u);
  EXPECT_EQ(r.range.last, 99u);
  r = parse_range("bytes=-10", 100);
  EXPECT_EQ(r.range.first, 90u);
  EXPECT_EQ(r.range.last, 99u);
  r = parse_range("bytes=-1000", 100);  // suffix longer than the object: whole object
  EXPECT_EQ(r.range.first, 0u);
  EXPECT_EQ(r.range.last, 99u);
  r = parse_range("bytes=50-5000", 100);  // clamped
  EXPECT_EQ(r.range.last, 99u);
  EXPECT_EQ(r.range.length(), 50u);
}

TEST(RangeTest, UnsatisfiableUnsupportedAndIgnored) {
  EXPECT_EQ(parse_range("bytes=100-", 100).kind, RangeKind::kUnsatisfiable);
  EXPECT_EQ(parse_range("bytes=100-200", 100).kind, RangeKind::kUnsatisfiable);
  EXPECT_EQ(parse_range("bytes=-0", 100).kind, RangeKind::kUnsatisfiable);
  EXPECT_EQ(parse_range("bytes=0-", 0).kind, RangeKind::kUnsatisfiable);
  EXPECT_EQ(parse_range("bytes=0-1,5-6", 100).kind, RangeKind::kUnsupported);
  EXPECT_EQ(parse_range("bytes=9-1", 100).kind, RangeKind::kNone);
  EXPECT_EQ(parse_range("items=0-1", 100).kind, RangeKind::kNone);
  EXPECT_EQ(parse_range("bytes=a-b", 100).kind, RangeKind::kNone);
  EXPECT_EQ(parse_range("bytes=99999999999999999999-", 100).kind, RangeKind::kNone);
}

TEST(RangeTest, BlockArithmetic) {
  auto s = blocks_for({0, 0}, 1 << 20);
  EXPECT_EQ(s.first, 0u);
  EXPECT_EQ(s.last, 0u);
  s = blocks_for({(1 << 20) - 1, 1 << 20}, 1 << 20);  // straddles a boundary
  EXPECT_EQ(s.first, 0u);
  EXPECT_EQ(s.last, 1u);
  s = blocks_for({5ull << 20, (7ull << 20) - 1}, 1 << 20);
  EXPECT_EQ(s.first, 5u);
  EXPECT_EQ(s.last, 6u);
}

class ConditionalTest : public ::testing::Test {
 protected:
  const std::string etag = "\"abc\"";
  const std::string modified = "Wed, 21 Oct 2026 07:28:00 GMT";
  const std::string before = "Tue, 20 Oct 2026 07:28:00 GMT";
  const std::string after = "Thu, 22 Oct 2026 07:28:00 GMT";
  const std::string match = "\"abc\"";
  const std::string other = "\"xyz\"";
  const std::string star = "*";
  ConditionalOutcome eval(ConditionalHeaders h) { return evaluate_conditionals(h, etag, modified); }
};

TEST_F(ConditionalTest, Singles) {
  EXPECT_EQ(eval({&match}), ConditionalOutcome::kProceed);
  EXPECT_EQ(eval({&other}), ConditionalOutcome::kPreconditionFailed);
  EXPECT_EQ(eval({&star}), ConditionalOutcome::kProceed);
  EXPECT_EQ(eval({nullptr, &match}), ConditionalOutcome::kNotModified);
  EXPECT_EQ(eval({nullptr, &other}), ConditionalOutcome::kProceed);
  EXPECT_EQ(eval({nullptr, nullptr, &after}), ConditionalOutcome::kNotModified);
  EXPECT_EQ(eval({nullptr, nullptr, &before}), ConditionalOutcome::kProceed);
  EXPECT_EQ(eval({nullptr, nullptr, &modified}), ConditionalOutcome::kNotModified);
  EXPECT_EQ(eval({nullptr, nullptr, nullptr, &before}), ConditionalOutcome::kPreconditionFailed);
  EXPECT_EQ(eval({nullptr, nullptr, nullptr, &after}), ConditionalOutcome::kProceed);
}

TEST_F(ConditionalTest, S3Precedence) {
  // If-Match true + If-Unmodified-Since false → 200.
  EXPECT_EQ(eval({&match, nullptr, nullptr, &before}), ConditionalOutcome::kProceed);
  // If-None-Match false + If-Modified-Since true → 304.
  EXPECT_EQ(eval({nullptr, &match, &before, nullptr}), ConditionalOutcome::kNotModified);
  // If-None-Match true (no match) + If-Modified-Since false → 200: If-None-Match decides.
  EXPECT_EQ(eval({nullptr, &other, &after, nullptr}), ConditionalOutcome::kProceed);
  // 412 is checked before 304.
  EXPECT_EQ(eval({&other, &match, nullptr, nullptr}), ConditionalOutcome::kPreconditionFailed);
}

TEST_F(ConditionalTest, WeakAndStrongComparison) {
  const std::string weak = "W/\"abc\"";
  const std::string list = "\"nope\", W/\"abc\"";
  EXPECT_EQ(eval({nullptr, &weak}), ConditionalOutcome::kNotModified);  // weak compare
  EXPECT_EQ(eval({nullptr, &list}), ConditionalOutcome::kNotModified);
  EXPECT_EQ(eval({&weak}), ConditionalOutcome::kPreconditionFailed);    // strong compare
  const std::string unquoted = "abc";
  EXPECT_EQ(eval({&unquoted}), ConditionalOutcome::kProceed);
}

TEST(FreshnessTest, TtlAndUpstreamDirectives) {
  auto now = std::chrono::system_clock::from_time_t(1'800'000'000);
  const std::chrono::seconds day(86400);
  EXPECT_EQ(freshness("", "", "", now, day).until, now + day);
  EXPECT_EQ(freshness("max-age=60", "", "", now, day).until, now + std::chrono::seconds(60));
  EXPECT_EQ(freshness("max-age=999999", "", "", now, day).until, now + day);  // TTL caps it
  EXPECT_EQ(freshness("public, s-maxage=30, max-age=60", "", "", now, day).until, now + std::chrono::seconds(30));
  EXPECT_FALSE(freshness("no-store", "", "", now, day).storable);
  EXPECT_FALSE(freshness("Private", "", "", now, day).storable);
  EXPECT_EQ(freshness("no-cache", "", "", now, day).until, now);
  EXPECT_EQ(freshness("", "Thu, 01 Jan 1970 00:00:00 GMT", "Thu, 01 Jan 1970 00:00:00 GMT", now, day).until, now);
  EXPECT_EQ(freshness("", "Thu, 01 Jan 1970 01:00:00 GMT", "Thu, 01 Jan 1970 00:00:00 GMT", now, day).until,
            now + std::chrono::hours(1));
  EXPECT_EQ(freshness("", "0", "", now, day).until, now);  // invalid Expires: expired
}

// Found by fuzzing: lifetimes far beyond the clock's range overflowed when added to now.
TEST(FreshnessTest, HugeLifetimesAreClampedNotOverflowed) {
  auto now = std::chrono::system_clock::from_time_t(1'800'000'000);
  const std::chrono::seconds day(86400);
  EXPECT_EQ(freshness("max-age=99999999999999", "", "", now, day).until, now + day);
  EXPECT_EQ(freshness("s-maxage=18446744073709551615", "", "", now, day).until, now + day);
  EXPECT_EQ(freshness("", "Fri, 11 Apr 2262 00:00:00 GMT", "Tue, 21 Sep 1677 01:00:00 GMT", now, day).until, now + day);
  EXPECT_EQ(freshness("", "Tue, 21 Sep 1677 01:00:00 GMT", "Fri, 11 Apr 2262 00:00:00 GMT", now, day).until, now);
}

TEST(ClientDirectiveTest, Forms) {
  EXPECT_EQ(client_directive("", ""), ClientDirective::kNone);
  EXPECT_EQ(client_directive("no-cache", ""), ClientDirective::kRevalidate);
  EXPECT_EQ(client_directive("max-age=0", ""), ClientDirective::kRevalidate);
  EXPECT_EQ(client_directive("no-store", ""), ClientDirective::kBypass);
  EXPECT_EQ(client_directive("no-cache, no-store", ""), ClientDirective::kBypass);
  EXPECT_EQ(client_directive("", "no-cache"), ClientDirective::kRevalidate);
  EXPECT_EQ(client_directive("max-age=10", ""), ClientDirective::kNone);
}

using Pairs = std::vector<std::pair<std::string, std::string>>;

// What boto3 (botocore 1.3x+) sends on a GetObject.
Pairs boto3_get() {
  return {{"Host", "127.0.0.1:8080"},
          {"User-Agent", "Boto3/1.36 md/Botocore#1.36"},
          {"Accept-Encoding", "identity"},
          {"x-amz-checksum-mode", "ENABLED"},
          {"X-Amz-Date", "20261205T000000Z"},
          {"X-Amz-Content-SHA256", "UNSIGNED-PAYLOAD"},
          {"Authorization", "AWS4-HMAC-SHA256 Credential=..."},
          {"amz-sdk-invocation-id", "0d7c"},
          {"amz-sdk-request", "attempt=1; max=5"},
          {"Range", "bytes=0-9"}};
}

TEST(CacheKeyTest, RealClientsAreCacheable) {
  auto boto = cache_key_for({{"x-id", "GetObject"}}, boto3_get());
  EXPECT_TRUE(boto.cacheable) << boto.reason;
  EXPECT_EQ(boto.variant, "");
  EXPECT_TRUE(boto.checksum_mode);
  // AWS SDK for JavaScript v3 (node): x-amz-user-agent, connection, tracing.
  Pairs js = {{"host", "h"},         {"x-amz-user-agent", "aws-sdk-js/3"}, {"user-agent", "aws-sdk-js/3"},
              {"amz-sdk-invocation-id", "x"}, {"amz-sdk-request", "attempt=1"}, {"x-amz-date", "d"},
              {"x-amz-content-sha256", "e3b0"}, {"authorization", "a"},    {"connection", "keep-alive"},
              {"x-amzn-trace-id", "Root=1-abc"}, {"traceparent", "00-abc-def-01"}};
  EXPECT_TRUE(cache_key_for({{"x-id", "GetObject"}}, js).cacheable);
  EXPECT_FALSE(cache_key_for({}, js).checksum_mode);
  // curl / python requests / aiohttp.
  Pairs curl = {{"Host", "h"}, {"User-Agent", "curl/8"}, {"Accept", "*/*"}, {"Accept-Encoding", "gzip, deflate"},
                {"Authorization", "a"}, {"x-amz-date", "d"}, {"x-amz-content-sha256", "UNSIGNED-PAYLOAD"},
                {"Content-Length", "0"}, {"If-None-Match", "\"e\""}, {"Cache-Control", "no-cache"},
                {"Pragma", "no-cache"}, {"x-amz-security-token", "t"}};
  EXPECT_TRUE(cache_key_for({}, curl).cacheable) << cache_key_for({}, curl).reason;
}

// The data path decides from the request's own fields (no lower-cased copy): it must agree
// with the pair-list form on every case, whatever the names' case.
TEST(CacheKeyTest, FieldsAndPairsDecideAlike) {
  std::vector<Pairs> cases = {boto3_get(),
                              {{"HOST", "h"}, {"X-AMZ-CHECKSUM-MODE", "ENABLED"}},
                              {{"Origin", "o"}},
                              {{"X-Tigris-Snapshot-Version", "7"}},
                              {{"x-tigris-snapshot-version", "7"}, {"X-Tigris-Snapshot-Version", "8"}},
                              {{"Content-Length", "5"}},
                              {{std::string(200, 'x'), "long names bypass as unknown"}},
                              {{"X-Amz-Server-Side-Encryption-Customer-Key", "k"}}};
  for (const auto& pairs : cases) {
    boost::beast::http::fields fields;
    for (const auto& [n, v] : pairs) fields.insert(n, v);
    const auto a = cache_key_for({{"versionId", "3"}}, pairs);
    const auto b = cache_key_for({{"versionId", "3"}}, fields);
    EXPECT_EQ(a.cacheable, b.cacheable) << a.reason;
    EXPECT_EQ(a.reason, b.reason);
    EXPECT_EQ(a.variant, b.variant);
    EXPECT_EQ(a.checksum_mode, b.checksum_mode);
  }
  EXPECT_EQ(cache_key_for({}, boost::beast::http::fields{}).cacheable, true);
}

TEST(CacheKeyTest, HeadersThatChangeTheAnswerBypass) {
  for (std::string name : {"x-amz-expected-bucket-owner", "x-amz-request-payer", "Origin",
                           "x-amz-server-side-encryption-customer-algorithm",
                           "x-amz-server-side-encryption-customer-key", "If-Range", "X-Something-New",
                           "x-tigris-consistent", "Referer", "Transfer-Encoding", "Access-Control-Request-Method"}) {
    auto d = cache_key_for({}, {{"Host", "h"}, {name, "v"}});
    EXPECT_FALSE(d.cacheable) << name;
    EXPECT_FALSE(d.reason.empty()) << name;
  }
  EXPECT_EQ(cache_key_for({}, {{"Origin", "https://a.example"}}).reason, "request header origin");
  EXPECT_EQ(cache_key_for({}, {{"x-amz-server-side-encryption-customer-key", "k"}}).reason, "SSE-C request");
  EXPECT_FALSE(cache_key_for({}, {{"Content-Length", "5"}}).cacheable);
  EXPECT_TRUE(cache_key_for({}, {{"Content-Length", "0"}}).cacheable);
  // Checksum mode other than ENABLED is not something tagd knows how to answer.
  EXPECT_FALSE(cache_key_for({}, {{"x-amz-checksum-mode", "DISABLED"}}).cacheable);
}

TEST(CacheKeyTest, QueryParameters) {
  auto version = cache_key_for({{"versionId", "v3"}}, Pairs{});
  EXPECT_TRUE(version.cacheable);
  EXPECT_EQ(version.variant, "versionId=v3");
  EXPECT_EQ(cache_key_for({{"versionId", "null"}}, Pairs{}).variant, "versionId=null");
  EXPECT_FALSE(cache_key_for({{"versionId", ""}}, Pairs{}).cacheable);
  EXPECT_FALSE(cache_key_for({{"versionId", "a"}, {"versionId", "b"}}, Pairs{}).cacheable);
  EXPECT_FALSE(cache_key_for({{"partNumber", "2"}}, Pairs{}).cacheable);
  EXPECT_FALSE(cache_key_for({{"response-content-type", "text/plain"}}, Pairs{}).cacheable);
  EXPECT_FALSE(cache_key_for({{"tagging", ""}}, Pairs{}).cacheable);
  EXPECT_FALSE(cache_key_for({{"unknown", "1"}}, Pairs{}).cacheable);
  EXPECT_EQ(cache_key_for({{"acl", ""}}, Pairs{}).reason, "query parameter acl");
  // SigV4 presign parameters, including the ones the JS SDK v3 adds, are authentication.
  auto v4 = cache_key_for({{"X-Amz-Algorithm", "AWS4-HMAC-SHA256"}, {"X-Amz-Credential", "c"},
                           {"X-Amz-Date", "d"}, {"X-Amz-Expires", "60"}, {"X-Amz-SignedHeaders", "host"},
                           {"X-Amz-Signature", "abc"}, {"X-Amz-Security-Token", "t"},
                           {"X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD"}, {"x-id", "GetObject"}},
                          {{"Host", "h"}});
  EXPECT_TRUE(v4.cacheable) << v4.reason;
  EXPECT_FALSE(v4.checksum_mode);
  // ... and x-amz-checksum-mode=ENABLED hoisted into the query is checksum mode.
  auto js = cache_key_for({{"X-Amz-Signature", "abc"}, {"x-amz-checksum-mode", "ENABLED"}}, Pairs{});
  EXPECT_TRUE(js.cacheable);
  EXPECT_TRUE(js.checksum_mode);
  // Other hoisted headers still change the answer.
  EXPECT_FALSE(cache_key_for({{"X-Amz-Signature", "abc"}, {"x-amz-expected-bucket-owner", "1"}}, Pairs{}).cacheable);
  EXPECT_FALSE(cache_key_for({{"X-Amz-Meta-Foo", "1"}}, Pairs{}).cacheable);
  // SigV2 presign parameters.
  auto v2 = cache_key_for({{"AWSAccessKeyId", "AKID"}, {"Expires", "1800000000"}, {"Signature", "c2ln"}}, Pairs{});
  EXPECT_TRUE(v2.cacheable) << v2.reason;
}

TEST(CacheKeyTest, SnapshotIsAVariant) {
  auto live = cache_key_for({}, {{"Host", "h"}});
  auto snap = cache_key_for({}, {{"Host", "h"}, {"X-Tigris-Snapshot-Version", "1733000000"}});
  ASSERT_TRUE(snap.cacheable);
  EXPECT_NE(snap.variant, live.variant);
  EXPECT_EQ(snap.variant, "snapshot=1733000000");
  EXPECT_TRUE(immutable_variant(snap.variant));
  EXPECT_FALSE(immutable_variant(live.variant));
  auto both = cache_key_for({{"versionId", "v1"}}, {{"x-tigris-snapshot-version", "7"}});
  EXPECT_EQ(both.variant, "versionId=v1&snapshot=7");
  auto parts = parse_variant(both.variant);
  EXPECT_EQ(parts.version_id, "v1");
  EXPECT_EQ(parts.snapshot, "7");
  EXPECT_FALSE(cache_key_for({}, {{"X-Tigris-Snapshot-Version", ""}}).cacheable);
}

TEST(CacheKeyTest, VariantEncodingIsInjective) {
  // A versionId that looks like a snapshot component must not collide with one.
  auto tricky = make_variant({std::string("a&snapshot=7"), std::nullopt});
  auto real = make_variant({std::string("a"), std::string("7")});
  EXPECT_NE(tricky, real);
  auto back = parse_variant(tricky);
  EXPECT_EQ(back.version_id, "a&snapshot=7");
  EXPECT_FALSE(back.snapshot.has_value());
  auto odd = make_variant({std::string("%41 x/y"), std::string("s%")});
  auto odd_back = parse_variant(odd);
  EXPECT_EQ(odd_back.version_id, "%41 x/y");
  EXPECT_EQ(odd_back.snapshot, "s%");
  EXPECT_EQ(make_variant({}), "");
  EXPECT_FALSE(parse_variant("").version_id.has_value());
}

TEST(FillValidationTest, ExactRangeOfTheExpectedObject) {
  std::string why;
  const FillExpectation want{1048576, 2097151, 3000000, "\"abc\""};
  EXPECT_EQ(check_fill_response(206, "bytes 1048576-2097151/3000000", "1048576", "\"abc\"", want, why),
            FillVerdict::kOk);
  // Unquoted ETags compare equal.
  EXPECT_EQ(check_fill_response(206, "bytes 1048576-2097151/3000000", "", "abc", want, why), FillVerdict::kOk);
  // The object changed: 412 (If-Match), another ETag, another size, gone.
  EXPECT_EQ(check_fill_response(412, "", "", "", want, why), FillVerdict::kChanged);
  EXPECT_EQ(check_fill_response(404, "", "", "", want, why), FillVerdict::kChanged);
  EXPECT_EQ(check_fill_response(206, "bytes 1048576-2097151/3000000", "", "\"new\"", want, why), FillVerdict::kChanged);
  EXPECT_NE(why.find("ETag"), std::string::npos);
  EXPECT_EQ(check_fill_response(206, "bytes 1048576-2097151/4000000", "", "\"abc\"", want, why), FillVerdict::kChanged);
  // Not the bytes asked for, or not an answer at all: stored nowhere, but not a change.
  EXPECT_EQ(check_fill_response(206, "bytes 0-1048575/3000000", "", "\"abc\"", want, why), FillVerdict::kBad);
  EXPECT_EQ(check_fill_response(206, "bytes 1048576-2000000/3000000", "", "\"abc\"", want, why), FillVerdict::kBad);
  EXPECT_EQ(check_fill_response(206, "bytes */3000000", "", "\"abc\"", want, why), FillVerdict::kBad);
  EXPECT_EQ(check_fill_response(206, "", "", "\"abc\"", want, why), FillVerdict::kBad);
  EXPECT_EQ(check_fill_response(503, "", "", "", want, why), FillVerdict::kBad);
  EXPECT_EQ(check_fill_response(206, "bytes 1048576-2097151/3000000", "", "", want, why), FillVerdict::kBad);
  // A 200 (range ignored) is the whole object: fine only when the whole object was asked.
  EXPECT_EQ(check_fill_response(200, "", "3000000", "\"abc\"", want, why), FillVerdict::kBad);
  const FillExpectation whole{0, 2999999, 3000000, "\"abc\""};
  EXPECT_EQ(check_fill_response(200, "", "3000000", "\"abc\"", whole, why), FillVerdict::kOk);
  EXPECT_EQ(check_fill_response(200, "", "2999999", "\"abc\"", whole, why), FillVerdict::kChanged);
  EXPECT_EQ(check_fill_response(200, "", "", "\"abc\"", whole, why), FillVerdict::kBad);
}

TEST(FillValidationTest, ContentRangeParsing) {
  auto cr = parse_content_range("bytes 0-9/100");
  ASSERT_TRUE(cr);
  EXPECT_EQ(cr->first, 0u);
  EXPECT_EQ(cr->last, 9u);
  EXPECT_EQ(cr->size, 100u);
  EXPECT_FALSE(parse_content_range("bytes 0-9/*"));
  EXPECT_FALSE(parse_content_range("bytes 9-0/100"));
  EXPECT_FALSE(parse_content_range("bytes 0-100/100"));
  EXPECT_FALSE(parse_content_range("items 0-9/100"));
  EXPECT_FALSE(parse_content_range("bytes 0-9"));
}

TEST(ChecksumTest, ReturnedOnlyWhereS3ReturnsThem) {
  EXPECT_TRUE(is_checksum_header("x-amz-checksum-crc32"));
  EXPECT_TRUE(is_checksum_header("X-Amz-Checksum-Type"));
  EXPECT_FALSE(is_checksum_header("x-amz-checksum-"));
  EXPECT_FALSE(is_checksum_header("x-amz-meta-checksum"));
  const std::string single = "\"d41d8cd98f00b204e9800998ecf8427e\"";
  const std::string multipart = "\"d41d8cd98f00b204e9800998ecf8427e-3\"";
  // Whole object, client asked: yes. Client did not ask: never.
  EXPECT_TRUE(return_checksums({true, false, {}, 100, single}));
  EXPECT_FALSE(return_checksums({false, false, {}, 100, single}));
  // A range: never, unless it covers the whole single-part object.
  EXPECT_FALSE(return_checksums({true, true, {0, 9}, 100, single}));
  EXPECT_FALSE(return_checksums({true, true, {1, 99}, 100, single}));
  EXPECT_TRUE(return_checksums({true, true, {0, 99}, 100, single}));
  EXPECT_FALSE(return_checksums({true, true, {0, 99}, 100, multipart}));
  EXPECT_FALSE(return_checksums({false, true, {0, 99}, 100, single}));
  // Multipart objects' (composite) checksums on a whole-object answer: as S3 sends them.
  EXPECT_TRUE(return_checksums({true, false, {}, 100, multipart}));
}

TEST(HttpDateTest, Formats) {
  auto t = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT");
  ASSERT_TRUE(t);
  EXPECT_EQ(std::chrono::system_clock::to_time_t(*t), 784111777);
  EXPECT_EQ(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), t);
  EXPECT_EQ(parse_http_date("Sun Nov  6 08:49:37 1994"), t);
  EXPECT_FALSE(parse_http_date("yesterday"));
  // Found by fuzzing: years outside the clock's range are refused, not overflowed.
  EXPECT_FALSE(parse_http_date("Sun, 06 Nov 3000 08:49:37 GMT"));
  EXPECT_FALSE(parse_http_date("Sun Nov  6 08:49:37 15"));
}

}  // namespace
}  // namespace tagd::cache

namespace tagd::cache {
namespace {

namespace bhttp = boost::beast::http;

// The head a hit used to build field by field (ReadPath::answer before heads were
// prepared), serialised as the writer sends a caller's fields.
std::string field_by_field(const ObjectMeta& meta, bool checksums) {
  bhttp::fields res;
  res.set(bhttp::field::etag, meta.etag);
  if (!meta.last_modified.empty()) res.set(bhttp::field::last_modified, meta.last_modified);
  for (const auto& [name, value] : meta.headers) res.set(name, value);
  if (checksums) {
    for (const auto& [name, value] : meta.checksums) res.set(name, value);
  }
  std::string out;
  for (const auto& f : res) {
    out.append(f.name_string());
    out.append(": ");
    out.append(f.value());
    out.append("\r\n");
  }
  return out;
}

ObjectMeta rich_meta() {
  ObjectMeta m;
  m.size = 1234;
  m.etag = "\"0123456789abcdef0123456789abcdef\"";
  m.last_modified = "Sat, 05 Dec 2026 10:00:00 GMT";
  m.headers = {{"Content-Type", "application/octet-stream"},
               {"x-amz-meta-owner", "  padded value\t"},  // Beast trims spaces and tabs
               {"X-Amz-Meta-Dup", "first"},
               {"Cache-Control", "max-age=60"},
               {"x-amz-meta-dup", "second"},  // the same name in another case replaces the first
               {"x-amz-meta-empty", ""},
               {"x-amz-version-id", "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nr8X8gdRQBpUMLUo"}};
  m.checksums = {{"x-amz-checksum-crc32", "AAAAAA=="}, {"x-amz-checksum-type", "FULL_OBJECT"}};
  m.checksums_known = true;
  return m;
}

TEST(PreparedHeadTest, SameFieldsAsTheHeadBuiltFieldByField) {
  for (bool with_last_modified : {true, false}) {
    ObjectMeta m = rich_meta();
    if (!with_last_modified) m.last_modified.clear();
    const PreparedHead p = prepare_head(m);
    EXPECT_TRUE(p.usable);
    EXPECT_EQ(p.fields, field_by_field(m, false));
    EXPECT_EQ(p.fields + p.checksums, field_by_field(m, true));
  }
  ObjectMeta bare;
  bare.etag = "\"e\"";
  const PreparedHead p = prepare_head(bare);
  EXPECT_EQ(p.fields, "ETag: \"e\"\r\n");
  EXPECT_EQ(p.checksums, "");
  EXPECT_EQ(p.fields, field_by_field(bare, true));
}

TEST(PreparedHeadTest, NotUsableWhenVerbatimFieldsWouldDiffer) {
  const std::vector<std::pair<std::string, std::string>> bad_headers[] = {
      {{"Server", "AmazonS3"}},            // the writer adds its own when missing
      {{"Content-Length", "5"}},           // the writer's
      {{"Accept-Ranges", "bytes"}},        // set again by the answer
      {{"Connection", "close"}},           // hop-by-hop
      {{"x-amz-meta-a", "line\r\nX: y"}},  // not writable verbatim
      {{"x-amz-meta-a:b", "v"}},           // a colon in a name
  };
  for (const auto& headers : bad_headers) {
    ObjectMeta m = rich_meta();
    m.headers = headers;
    EXPECT_FALSE(prepare_head(m).usable) << headers.front().first;
  }
  ObjectMeta clash = rich_meta();
  clash.checksums = {{"Cache-Control", "no-cache"}};  // a checksum replacing a field
  EXPECT_FALSE(prepare_head(clash).usable);
}

TEST(PreparedHeadTest, AnswerAddsRangesWithoutAllocating) {
  auto head = std::make_shared<const PreparedHead>(prepare_head(rich_meta()));
  PreparedAnswer whole = PreparedAnswer::make(head, false, false, ByteRange{0, 1233}, 1234);
  EXPECT_EQ(whole.status, 200u);
  auto f = whole.fields();
  EXPECT_EQ(f[0], head->fields);
  EXPECT_EQ(f[1], "");
  EXPECT_EQ(f[2], "Accept-Ranges: bytes\r\n");

  const std::uint64_t max = std::numeric_limits<std::uint64_t>::max();
  PreparedAnswer range = PreparedAnswer::make(head, true, true, ByteRange{max - 2, max - 1}, max);
  EXPECT_EQ(range.status, 206u);
  f = range.fields();
  EXPECT_EQ(f[1], head->checksums);
  EXPECT_EQ(f[2], "Accept-Ranges: bytes\r\nContent-Range: bytes " + std::to_string(max - 2) + "-" +
                      std::to_string(max - 1) + "/" + std::to_string(max) + "\r\n");
}

}  // namespace
}  // namespace tagd::cache
