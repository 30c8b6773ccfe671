#include "tagd/core/strings.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <cstdint>
#include <optional>

namespace tagd {
namespace {

// Class 5: a key holding a newline or spaces cannot forge an access-log line or field.
TEST(LogField, Trust5EscapesSeparatorsAndControls) {
  EXPECT_EQ(log_field("data/train-0001.tar"), "data/train-0001.tar");
  EXPECT_EQ(log_field("a\nGET bucket=x status=200"), "a%0AGET%20bucket=x%20status=200");
  EXPECT_EQ(log_field("100%\r\t\x7f"), "100%25%0D%09%7F");
  EXPECT_EQ(log_field("caf\xc3\xa9"), "caf\xc3\xa9");  // UTF-8 stays readable
}

// Digits only: no sign, no whitespace, no overflow (std::stoull accepts " +5").
TEST(ParseU64, DigitsOnlyNoOverflow) {
  EXPECT_EQ(parse_u64(""), std::nullopt);
  EXPECT_EQ(parse_u64("abc"), std::nullopt);
  EXPECT_EQ(parse_u64("12a"), std::nullopt);
  EXPECT_EQ(parse_u64("-1"), std::nullopt);
  EXPECT_EQ(parse_u64("+5"), std::nullopt);
  EXPECT_EQ(parse_u64(" 5"), std::nullopt);
  EXPECT_EQ(parse_u64("5 "), std::nullopt);
  EXPECT_EQ(parse_u64("0x10"), std::nullopt);
  EXPECT_EQ(parse_u64("0"), 0u);
  EXPECT_EQ(parse_u64("8080"), 8080u);
  EXPECT_EQ(parse_u64("007"), 7u);
  EXPECT_EQ(parse_u64("00000000000000000001"), 1u);  // 20 characters, leading zeros
  EXPECT_EQ(parse_u64("18446744073709551615"), UINT64_MAX);
  EXPECT_EQ(parse_u64("18446744073709551616"), std::nullopt);  // UINT64_MAX + 1
  EXPECT_EQ(parse_u64("18446744073709551620"), std::nullopt);
  EXPECT_EQ(parse_u64("99999999999999999999"), std::nullopt);
  EXPECT_EQ(parse_u64("184467440737095516150"), std::nullopt);  // 21 digits
  static_assert(parse_u64("42") == 42u);                        // usable at compile time
}

TEST(Iless, OrdersWithoutCaseAndTreatsCaseVariantsAsEqual) {
  EXPECT_TRUE(iless("Content-Type", "content-typf"));
  EXPECT_TRUE(iless("x-amz", "X-AMZ-date"));
  EXPECT_FALSE(iless("X-Amz-Date", "x-amz-date"));
  EXPECT_FALSE(iless("x-amz-date", "X-Amz-Date"));
  EXPECT_FALSE(iless("b", "A"));
  EXPECT_TRUE(iless("A", "b"));
  EXPECT_TRUE(iless("a", "B")) << "plain < puts 'B' (0x42) before 'a' (0x61)";
}

TEST(FindRepeatedName, FewNamesPairwiseManySortedWithCaseAsAsked) {
  const std::vector<std::string> few = {"host", "x-amz-date", "Host"};
  auto at = [&](const std::vector<std::string>& v) { return [&v](std::size_t i) { return std::string_view(v[i]); }; };
  EXPECT_EQ(find_repeated_name(few.size(), at(few), true), std::string_view("Host"));
  EXPECT_EQ(find_repeated_name(few.size(), at(few), false), std::nullopt);
  EXPECT_EQ(find_repeated_name(0, at(few), true), std::nullopt);

  std::vector<std::string> many;
  for (int i = 0; i < 5000; ++i) many.push_back("n" + std::to_string(i));
  EXPECT_EQ(find_repeated_name(many.size(), at(many), true), std::nullopt);
  many.push_back("N4999");
  EXPECT_EQ(find_repeated_name(many.size(), at(many), false), std::nullopt);
  const auto found = find_repeated_name(many.size(), at(many), true);
  ASSERT_TRUE(found.has_value());
  EXPECT_TRUE(iequals(*found, "n4999"));
}

TEST(FindRepeatedName, ManyNamesAreReadOnceEachNotOncePerPair) {
  // The cost bound that matters to an unauthenticated request with thousands of names:
  // pairwise would read each name thousands of times.
  std::vector<std::string> many;
  for (int i = 0; i < 5000; ++i) many.push_back("n" + std::to_string(i));
  std::size_t reads = 0;
  (void)find_repeated_name(
      many.size(),
      [&](std::size_t i) {
        ++reads;
        return std::string_view(many[i]);
      },
      false);
  EXPECT_EQ(reads, many.size());
}

TEST(NameList, KeepsOrderAcrossTheInlineLimit) {
  NameList names;
  std::vector<std::string> backing;
  for (int i = 0; i < 40; ++i) backing.push_back("h" + std::to_string(i));
  for (std::size_t i = 0; i < backing.size(); ++i) {
    names.push_back(backing[i]);
    ASSERT_EQ(names.size(), i + 1);
    for (std::size_t j = 0; j <= i; ++j) ASSERT_EQ(names[j], backing[j]);
  }
  EXPECT_EQ(names.repeated(true), std::nullopt);
  names.push_back("H7");
  const auto found = names.repeated(true);
  ASSERT_TRUE(found.has_value());
  EXPECT_TRUE(iequals(*found, "h7"));
  EXPECT_EQ(names.repeated(false), std::nullopt);
}

}  // namespace
}  // namespace tagd
