#include "tagd/cache/block_format.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace tagd::cache {
namespace {

std::vector<std::byte> bytes(std::string_view s) {
  std::vector<std::byte> out(s.size());
  std::memcpy(out.data(), s.data(), s.size());
  return out;
}

class BlockFormatTest : public ::testing::Test {
 protected:
  BlockIdentity id{hash_bytes(std::string("bucket\0key\0", 11)), 7, "\"9b2cf535f27731c974343645a3985328\""};
  std::vector<std::byte> payload = bytes("the quick brown fox jumps over the lazy dog");
  std::array<std::byte, kBlockHeaderSize> header{};
  void SetUp() override { encode_block_header(id, payload, header); }
};

TEST_F(BlockFormatTest, RoundTrips) {
  auto h = decode_block_header(header, id, 1 << 20);
  ASSERT_TRUE(h.has_value()) << h.error().message();
  EXPECT_EQ(h->length, payload.size());
  EXPECT_EQ(h->id.block_number, 7u);
  EXPECT_TRUE(verify_block_payload(*h, payload).is_ok());
}

TEST_F(BlockFormatTest, FixedLayoutFields) {
  EXPECT_EQ(static_cast<char>(header[0]), 'T');
  EXPECT_EQ(static_cast<char>(header[3]), 'B');
  EXPECT_EQ(std::to_integer<int>(header[4]), kBlockFormatVersion);  // little-endian version
  EXPECT_EQ(std::to_integer<int>(header[6]), 128);
  EXPECT_EQ(std::to_integer<int>(header[16]), 7);  // block number
  EXPECT_EQ(std::to_integer<std::size_t>(header[24]), payload.size());
  EXPECT_EQ(static_cast<char>(header[40]), '"');  // ETag bytes start at 40
}

TEST_F(BlockFormatTest, EveryHeaderBitFlipIsDetected) {
  for (std::size_t i = 0; i < kBlockHeaderSize; ++i) {
    auto copy = header;
    copy[i] ^= std::byte{0x01};
    EXPECT_FALSE(decode_block_header(copy, id, 1 << 20).has_value()) << "byte " << i;
  }
}

TEST_F(BlockFormatTest, PayloadCorruptionIsDetected) {
  auto h = decode_block_header(header, id, 1 << 20);
  ASSERT_TRUE(h.has_value());
  for (std::size_t i = 0; i < payload.size(); ++i) {
    auto copy = payload;
    copy[i] ^= std::byte{0x80};
    EXPECT_FALSE(verify_block_payload(*h, copy).is_ok()) << "byte " << i;
  }
  auto shorter = payload;
  shorter.pop_back();
  EXPECT_FALSE(verify_block_payload(*h, shorter).is_ok());
}

TEST_F(BlockFormatTest, IdentityMismatchesAreStale) {
  BlockIdentity other_key = id;
  other_key.key_hash ^= 1;
  EXPECT_FALSE(decode_block_header(header, other_key, 1 << 20).has_value());
  BlockIdentity other_block = id;
  other_block.block_number = 8;
  EXPECT_FALSE(decode_block_header(header, other_block, 1 << 20).has_value());
  BlockIdentity overwritten = id;
  overwritten.etag = "\"00000000000000000000000000000000\"";
  EXPECT_FALSE(decode_block_header(header, overwritten, 1 << 20).has_value());
  // Weak and strong ETags are different objects.
  BlockIdentity weak = id;
  weak.etag = "W/" + id.etag;
  EXPECT_FALSE(decode_block_header(header, weak, 1 << 20).has_value());
  EXPECT_FALSE(decode_block_header(header, id, 8).has_value());  // length over the limit
}

TEST_F(BlockFormatTest, LongEtagsAreCoveredByTheHash) {
  BlockIdentity long_etag = id;
  long_etag.etag = "\"" + std::string(100, 'a') + "\"";
  encode_block_header(long_etag, payload, header);
  EXPECT_TRUE(decode_block_header(header, long_etag, 1 << 20).has_value());
  BlockIdentity differs_late = long_etag;
  differs_late.etag[90] = 'b';  // beyond the 64 stored bytes
  EXPECT_FALSE(decode_block_header(header, differs_late, 1 << 20).has_value());
}

TEST(StoredBlockSizeTest, RoundsHeaderPlusPayloadUpToAlignment) {
  EXPECT_EQ(stored_block_size(0, 4096), 4096u);
  EXPECT_EQ(stored_block_size(4096 - 128, 4096), 4096u);
  EXPECT_EQ(stored_block_size(4096 - 127, 4096), 8192u);
  EXPECT_EQ(stored_block_size(1 << 20, 4096), (1u << 20) + 4096u);
  EXPECT_EQ(stored_block_size(100, 1), 228u);
}

TEST(HashBytesTest, StableKnownValues) {
  // Pinned: cache files written by one build must be readable by the next.
  EXPECT_EQ(hash_bytes(""), 0xf52a15e9a9b5e89bull);
  EXPECT_EQ(hash_bytes("tagd"), 0x340cb8e535e6290dull);
  EXPECT_NE(hash_bytes("a"), hash_bytes("b"));
}

}  // namespace
}  // namespace tagd::cache
