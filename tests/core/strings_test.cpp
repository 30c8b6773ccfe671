#include "tagd/core/strings.hpp"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace tagd
