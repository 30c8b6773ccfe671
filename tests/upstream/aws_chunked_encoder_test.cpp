#include "tagd/upstream/aws_chunked_encoder.hpp"

#include <gtest/gtest.h>

#include "tagd/auth/aws_chunked.hpp"
#include "tagd/auth/hashing.hpp"

namespace tagd::upstream {
namespace {

std::string checksum(auth::ChecksumAlgorithm algorithm, std::string_view data) {
  auto h = auth::make_hasher(algorithm);
  h->update(data);
  auto digest = h->finish();
  return auth::base64_encode(digest);
}

// Class 5: what tagd sends upstream is exactly what tagd's own strict decoder accepts,
// with the trailer checksum intact, and the announced length is the real one.
TEST(AwsChunkedEncoder, Trust5RoundTripsThroughTheDecoder) {
  for (std::size_t payload_size : {0u, 1u, 15u, 16u, 17u, 100u, 1000u}) {
    for (std::size_t split : {1u, 7u, 16u, 64u}) {
      std::string payload;
      for (std::size_t i = 0; i < payload_size; ++i) payload.push_back(static_cast<char>('a' + i % 26));
      AwsChunkedEncoder encoder(16, "x-amz-checksum-crc32c");
      std::string wire;
      for (std::size_t i = 0; i < payload.size(); i += split) encoder.encode(payload.substr(i, split), wire);
      const std::string value = checksum(auth::ChecksumAlgorithm::kCrc32c, payload);
      encoder.finish(value, wire);
      EXPECT_EQ(wire.size(), encoder.encoded_length(payload.size(), value.size())) << payload_size << "/" << split;

      auth::AwsChunkedOptions options;
      options.expected_trailers = {"x-amz-checksum-crc32c"};
      auth::AwsChunkedDecoder decoder(options);
      std::string decoded;
      ASSERT_TRUE(decoder.feed(wire, decoded).is_ok()) << payload_size << "/" << split;
      EXPECT_TRUE(decoder.done());
      EXPECT_EQ(decoded, payload);
      ASSERT_EQ(decoder.trailers().size(), 1u);
      EXPECT_EQ(decoder.trailers()[0].second, value);
    }
  }
}

TEST(AwsChunkedEncoder, KnownFraming) {
  AwsChunkedEncoder encoder(4, "x-amz-checksum-crc32");
  std::string wire;
  encoder.encode("abcdef", wire);
  EXPECT_EQ(wire, "4\r\nabcd\r\n");
  encoder.finish("AAAAAA==", wire);
  EXPECT_EQ(wire, "4\r\nabcd\r\n2\r\nef\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n");
}

}  // namespace
}  // namespace tagd::upstream
