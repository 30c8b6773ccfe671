#include "tagd/cache/http_semantics.hpp"

#include <gtest/gtest.h>

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

TEST(ClientDirectiveTest, Forms) {
  EXPECT_EQ(client_directive("", ""), ClientDirective::kNone);
  EXPECT_EQ(client_directive("no-cache", ""), ClientDirective::kRevalidate);
  EXPECT_EQ(client_directive("max-age=0", ""), ClientDirective::kRevalidate);
  EXPECT_EQ(client_directive("no-store", ""), ClientDirective::kBypass);
  EXPECT_EQ(client_directive("no-cache, no-store", ""), ClientDirective::kBypass);
  EXPECT_EQ(client_directive("", "no-cache"), ClientDirective::kRevalidate);
  EXPECT_EQ(client_directive("max-age=10", ""), ClientDirective::kNone);
}

TEST(CacheKeyTest, VariantsAndBypass) {
  auto plain = cache_key_for({}, {"host", "range"});
  EXPECT_TRUE(plain.cacheable);
  EXPECT_EQ(plain.variant, "");
  auto sdk = cache_key_for({{"x-id", "GetObject"}}, {});
  EXPECT_TRUE(sdk.cacheable);
  auto version = cache_key_for({{"versionId", "v3"}}, {});
  EXPECT_TRUE(version.cacheable);
  EXPECT_EQ(version.variant, "versionId=v3");
  EXPECT_FALSE(cache_key_for({{"partNumber", "2"}}, {}).cacheable);
  EXPECT_FALSE(cache_key_for({{"response-content-type", "text/plain"}}, {}).cacheable);
  EXPECT_FALSE(cache_key_for({{"tagging", ""}}, {}).cacheable);
  EXPECT_FALSE(cache_key_for({}, {"x-amz-server-side-encryption-customer-key"}).cacheable);
  // boto3 sends x-amz-checksum-mode: ENABLED on every GetObject: it must not bypass. Hits
  // carry no whole-object checksum headers, which clients treat as "nothing to validate".
  EXPECT_TRUE(cache_key_for({}, {"x-amz-checksum-mode"}).cacheable);
  auto presigned = cache_key_for({{"X-Amz-Signature", "abc"}, {"X-Amz-Date", "x"}}, {});
  EXPECT_TRUE(presigned.cacheable);
}

TEST(HttpDateTest, Formats) {
  auto t = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT");
  ASSERT_TRUE(t);
  EXPECT_EQ(std::chrono::system_clock::to_time_t(*t), 784111777);
  EXPECT_EQ(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), t);
  EXPECT_EQ(parse_http_date("Sun Nov  6 08:49:37 1994"), t);
  EXPECT_FALSE(parse_http_date("yesterday"));
}

}  // namespace
}  // namespace tagd::cache
