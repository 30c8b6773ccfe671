#include "tagd/core/strings.hpp"

#include <gtest/gtest.h>

namespace tagd {
namespace {

// Class 5: a key holding a newline or spaces cannot forge an access-log line or field.
TEST(LogField, Trust5EscapesSeparatorsAndControls) {
  EXPECT_EQ(log_field("data/train-0001.tar"), "data/train-0001.tar");
  EXPECT_EQ(log_field("a\nGET bucket=x status=200"), "a%0AGET%20bucket=x%20status=200");
  EXPECT_EQ(log_field("100%\r\t\x7f"), "100%25%0D%09%7F");
  EXPECT_EQ(log_field("caf\xc3\xa9"), "caf\xc3\xa9");  // UTF-8 stays readable
}

}  // namespace
}  // namespace tagd
