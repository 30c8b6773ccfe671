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

TEST(Uri, ParseQueryIntoOverwritesAReusedListWhole) {
  // A list left by a longer query: every element is overwritten or trimmed, and the
  // strings that fit keep their buffers.
  QueryParams list = {{"X-Amz-Credential-long-name-xxxxxxxx", "a-value-too-long-for-the-small-string-buffer"},
                      {"old", "old"},
                      {"stale", "x"},
                      {"gone", "y"}};
  const char* const reused = list[0].second.data();
  ASSERT_TRUE(parse_query_into("a=%2F+1&flag&&e=1=2", list));
  EXPECT_EQ(list, (QueryParams{{"a", "/ 1"}, {"flag", ""}, {"e", "1=2"}}));
  EXPECT_EQ(list[0].second.data(), reused);
  ASSERT_TRUE(parse_query_into("", list));
  EXPECT_TRUE(list.empty());
  // Same answers as parse_query, errors included, whatever the list held before.
  for (const std::string_view raw : {"a=1&b=%2F&flag&c=&d=x%20y+z&&e=1=2&", "x", "&&", "a=%zz", "%=1", "a=1&b=%2"}) {
    QueryParams into = {{"p", "q"}, {"r", "s"}};
    const auto fresh = parse_query(raw);
    EXPECT_EQ(parse_query_into(raw, into), fresh.has_value()) << raw;
    if (fresh) {
      EXPECT_EQ(into, *fresh) << raw;
    }
  }
}

TEST(Uri, DecodeIntoOverwrites) {
  std::string out = "previous contents, longer than the answer";
  ASSERT_TRUE(uri_decode_into("a%20b+c", out));
  EXPECT_EQ(out, "a b+c");
  EXPECT_FALSE(uri_decode_into("a%G0", out));
  ASSERT_TRUE(uri_decode_into("", out));
  EXPECT_EQ(out, "");
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
