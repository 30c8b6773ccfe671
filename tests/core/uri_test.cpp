// Percent-encoding and query-string helpers (core/uri.hpp), shared by s3 and auth.
// The canonical query string cases are from the aws-sig-v4-test-suite
// (get-vanilla-query-order-key / -value / -encoded); see tests/auth/sigv4_test.cpp.
#include "tagd/core/uri.hpp"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace tagd {
namespace {

TEST(Uri, Encode) {
  EXPECT_EQ(uri_encode("AZaz09-._~", true), "AZaz09-._~");
  EXPECT_EQ(uri_encode("a b+c=d&e", true), "a%20b%2Bc%3Dd%26e");
  EXPECT_EQ(uri_encode("a/b", true), "a%2Fb");
  EXPECT_EQ(uri_encode("a/b", false), "a/b");
  EXPECT_EQ(uri_encode("*'()!$", true), "%2A%27%28%29%21%24");
  EXPECT_EQ(uri_encode(std::string_view("\xC3\xA9\x00\xFF", 4), true), "%C3%A9%00%FF");
  EXPECT_EQ(uri_encode("", true), "");
}

TEST(Uri, Decode) {
  EXPECT_EQ(uri_decode("a%20b%2Fc"), "a b/c");
  EXPECT_EQ(uri_decode("a+b"), "a+b");  // '+' is literal in paths
  EXPECT_EQ(uri_decode("%e1%88%B4"), "\xE1\x88\xB4");
  EXPECT_EQ(uri_decode(""), "");
  for (const std::string_view bad : {"%", "%2", "a%G0", "%%", "abc%", "%2x"}) {
    EXPECT_FALSE(uri_decode(bad).has_value()) << bad;
  }
}

TEST(Uri, ParseQuery) {
  const auto q = parse_query("a=1&b=%2F&flag&c=&d=x%20y+z&&e=1=2&");
  ASSERT_TRUE(q.has_value());
  const QueryParams expected = {{"a", "1"}, {"b", "/"},     {"flag", ""},
                                {"c", ""},  {"d", "x y z"}, {"e", "1=2"}};
  EXPECT_EQ(*q, expected);
  EXPECT_EQ(parse_query("")->size(), 0U);
  EXPECT_FALSE(parse_query("a=%zz").has_value());
  EXPECT_FALSE(parse_query("%=1").has_value());
}

TEST(Uri, CanonicalQueryStringSortsByEncodedNameThenValue) {
  // aws-sig-v4-test-suite get-vanilla-query-order-key / -value / -encoded.
  EXPECT_EQ(canonical_query_string({{"Param1", "value2"}, {"Param1", "Value1"}}),
            "Param1=Value1&Param1=value2");
  EXPECT_EQ(canonical_query_string({{"Param-3", "Value3"}, {"Param", "Value2"}, {"\xE1\x88\xB4", "Value1"}}),
            "%E1%88%B4=Value1&Param=Value2&Param-3=Value3");
  EXPECT_EQ(canonical_query_string({{"prefix", "somePrefix"}, {"marker", "someMarker"}, {"max-keys", "20"}}),
            "marker=someMarker&max-keys=20&prefix=somePrefix");
  EXPECT_EQ(canonical_query_string({{"uploads", ""}}), "uploads=");
  EXPECT_EQ(canonical_query_string({{"k", "a/b+c d"}}), "k=a%2Fb%2Bc%20d");
  EXPECT_EQ(canonical_query_string({}), "");
  // An encoded name sorts by its encoding: "a%20b" before "a-b" before "aa".
  EXPECT_EQ(canonical_query_string({{"aa", "1"}, {"a-b", "2"}, {"a b", "3"}}), "a%20b=3&a-b=2&aa=1");
}

TEST(Uri, CanonicalQueryStringCanLeaveOutOneParameter) {
  const QueryParams presigned = {{"X-Amz-Signature", "abc"}, {"X-Amz-Date", "20261205T000000Z"}, {"x-id", "GetObject"}};
  EXPECT_EQ(canonical_query_string(presigned, "X-Amz-Signature"), "X-Amz-Date=20261205T000000Z&x-id=GetObject");
  EXPECT_EQ(canonical_query_string(presigned, ""), canonical_query_string(presigned));
  EXPECT_EQ(canonical_query_string({{"X-Amz-Signature", "only"}}, "X-Amz-Signature"), "");
}

}  // namespace
}  // namespace tagd
