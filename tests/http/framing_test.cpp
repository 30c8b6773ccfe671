#include "tagd/http/framing.hpp"

#include <gtest/gtest.h>

namespace tagd::http {
namespace {

namespace bhttp = boost::beast::http;

Status check(std::initializer_list<std::pair<const char*, const char*>> fields, unsigned version = 11) {
  bhttp::fields head;
  for (const auto& [name, value] : fields) head.insert(name, value);
  return check_request_framing(head, version);
}

TEST(RequestFraming, PlainBodiesPass) {
  EXPECT_TRUE(check({}).is_ok());
  EXPECT_TRUE(check({{"Content-Length", "10"}}).is_ok());
  EXPECT_TRUE(check({{"Transfer-Encoding", "chunked"}}).is_ok());
  EXPECT_TRUE(check({{"Transfer-Encoding", "Chunked"}}).is_ok());
  EXPECT_TRUE(check({{"Transfer-Encoding", " , chunked"}}).is_ok());  // empty list elements
  EXPECT_TRUE(check({{"Content-Length", "0"}}, 10).is_ok());
}

// Class 3 (one request, one response): a body tagd cannot frame is refused, never read
// as "no body".
TEST(RequestFraming, Trust3FinalCodingMustBeChunked) {
  for (const char* te : {"xchunked", "gzip", "chunked, identity", "identity", "", " , ", "chunked;x=1, gzip",
                         // found by fuzzing: an unnamed coding with parameters was skipped
                         // while Beast did not take the body as chunked
                         ";p, chunked", "chunked;x=1", "gzip;q=1, chunked"}) {
    Status s = check({{"Transfer-Encoding", te}});
    EXPECT_EQ(s.code(), ErrorCode::kInvalidRequest) << "'" << te << "'";
  }
  // Two header lines are one list: "chunked" then "identity".
  EXPECT_EQ(check({{"Transfer-Encoding", "chunked"}, {"Transfer-Encoding", "identity"}}).code(),
            ErrorCode::kInvalidRequest);
  EXPECT_EQ(check({{"Transfer-Encoding", "chunked, chunked"}}).code(), ErrorCode::kInvalidRequest);
}

TEST(RequestFraming, Trust3AmbiguousLengthsAreRefused) {
  EXPECT_EQ(check({{"Transfer-Encoding", "chunked"}, {"Content-Length", "5"}}).code(), ErrorCode::kInvalidRequest);
  EXPECT_EQ(check({{"Transfer-Encoding", "chunked"}}, 10).code(), ErrorCode::kInvalidRequest);
}

TEST(RequestFraming, Trust3UnknownCodingIsNotImplemented) {
  EXPECT_EQ(check({{"Transfer-Encoding", "gzip, chunked"}}).code(), ErrorCode::kNotImplemented);
  EXPECT_EQ(check({{"Transfer-Encoding", "gzip"}, {"Transfer-Encoding", "chunked"}}).code(), ErrorCode::kNotImplemented);
}

}  // namespace
}  // namespace tagd::http
