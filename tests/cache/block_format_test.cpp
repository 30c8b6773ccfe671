#include "tagd/cache/block_format.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

namespace tagd::cache {
namespace {

std::vector<std::byte> bytes(std::string_view s) {
  std::vector<std::byte> out(s.size());
  std::memcpy(out.data(), s.data(), s.size());
  return out;
}

std::vector<std::byte> random_bytes(std::size_t n, unsigned seed) {
  std::vector<std::byte> out(n);
  std::mt19937 rng(seed);
  for (auto& b : out) b = std::byte(rng() & 0xFF);
  return out;
}

std::vector<std::byte> encode(const BlockIdentity& id, std::span<const std::byte> payload) {
  std::vector<std::byte> head(block_payload_offset(static_cast<std::uint32_t>(payload.size())));
  encode_block_header(id, payload, block_piece_checksums(payload), head);
  return head;
}

class BlockFormatTest : public ::testing::Test {
 protected:
  BlockIdentity id{hash_bytes(std::string("bucket\0key\0", 11)), 7, "\"9b2cf535f27731c974343645a3985328\""};
  std::vector<std::byte> payload = bytes("the quick brown fox jumps over the lazy dog");
  std::vector<std::byte> header;
  void SetUp() override { header = encode(id, payload); }
};

TEST_F(BlockFormatTest, RoundTrips) {
  auto h = decode_block_header(header, id, 1 << 20);
  ASSERT_TRUE(h.has_value()) << h.error().message();
  EXPECT_EQ(h->length, payload.size());
  EXPECT_EQ(h->id.block_number, 7u);
  ASSERT_EQ(h->piece_crc32c.size(), 1u);
  EXPECT_TRUE(verify_block_pieces(h->piece_crc32c, h->length, 0, payload).is_ok());
}

TEST_F(BlockFormatTest, FixedLayoutFields) {
  ASSERT_EQ(header.size(), kBlockHeaderSize + 4);  // one piece
  EXPECT_EQ(static_cast<char>(header[0]), 'T');
  EXPECT_EQ(static_cast<char>(header[3]), 'B');
  EXPECT_EQ(std::to_integer<int>(header[4]), 2);  // little-endian version
  EXPECT_EQ(kBlockFormatVersion, 2);
  EXPECT_EQ(std::to_integer<int>(header[6]), 128);
  EXPECT_EQ(std::to_integer<int>(header[16]), 7);  // block number
  EXPECT_EQ(std::to_integer<std::size_t>(header[24]), payload.size());
  EXPECT_EQ(static_cast<char>(header[40]), '"');  // ETag bytes start at 40
  EXPECT_EQ(std::to_integer<int>(header[104]), 1);   // piece count
  EXPECT_EQ(std::to_integer<int>(header[108]), 16);  // log2 piece size
}

TEST_F(BlockFormatTest, EveryHeaderAndTableBitFlipIsDetected) {
  for (std::size_t i = 0; i < header.size(); ++i) {
    auto copy = header;
    copy[i] ^= std::byte{0x01};
    EXPECT_FALSE(decode_block_header(copy, id, 1 << 20).has_value()) << "byte " << i;
  }
  EXPECT_FALSE(decode_block_header(std::span(header).first(header.size() - 1), id, 1 << 20).has_value());
}

TEST_F(BlockFormatTest, PayloadCorruptionIsDetected) {
  auto h = decode_block_header(header, id, 1 << 20);
  ASSERT_TRUE(h.has_value());
  for (std::size_t i = 0; i < payload.size(); ++i) {
    auto copy = payload;
    copy[i] ^= std::byte{0x80};
    EXPECT_FALSE(verify_block_pieces(h->piece_crc32c, h->length, 0, copy).is_ok()) << "byte " << i;
  }
  auto shorter = payload;
  shorter.pop_back();
  EXPECT_FALSE(verify_block_pieces(h->piece_crc32c, h->length, 0, shorter).is_ok());
}

TEST(BlockPiecesTest, EachPieceIsCheckedOnItsOwn) {
  // 2.5 pieces: pieces 0 and 1 are 64 KiB, piece 2 is 32 KiB.
  const std::uint32_t length = 2 * kBlockPieceSize + kBlockPieceSize / 2;
  auto payload = random_bytes(length, 1);
  auto pieces = block_piece_checksums(payload);
  ASSERT_EQ(pieces.size(), 3u);
  EXPECT_EQ(block_piece_count(length), 3u);
  std::span<const std::byte> all(payload);
  // Any run of whole pieces verifies alone.
  EXPECT_TRUE(verify_block_pieces(pieces, length, 1, all.subspan(kBlockPieceSize, kBlockPieceSize)).is_ok());
  EXPECT_TRUE(verify_block_pieces(pieces, length, 2, all.subspan(2 * kBlockPieceSize)).is_ok());
  EXPECT_TRUE(verify_block_pieces(pieces, length, 1, all.subspan(kBlockPieceSize)).is_ok());
  // A flipped byte fails only the piece that holds it.
  auto flipped = payload;
  flipped[kBlockPieceSize + 10] ^= std::byte{1};
  std::span<const std::byte> f(flipped);
  EXPECT_TRUE(verify_block_pieces(pieces, length, 0, f.first(kBlockPieceSize)).is_ok());
  EXPECT_FALSE(verify_block_pieces(pieces, length, 1, f.subspan(kBlockPieceSize, kBlockPieceSize)).is_ok());
  EXPECT_TRUE(verify_block_pieces(pieces, length, 2, f.subspan(2 * kBlockPieceSize)).is_ok());
  // A range that does not end at a piece boundary (or the payload's end) is refused.
  EXPECT_FALSE(verify_block_pieces(pieces, length, 0, all.first(kBlockPieceSize + 1)).is_ok());
  EXPECT_FALSE(verify_block_pieces(pieces, length, 3, all.first(1)).is_ok());  // beyond the payload
}

TEST(BlockPiecesTest, GeometryOfAOneMebibyteBlock) {
  EXPECT_EQ(block_piece_count(1u << 20), 16u);
  EXPECT_EQ(block_payload_offset(1u << 20), 128u + 64u);
  EXPECT_EQ(block_piece_count(1), 1u);
  EXPECT_EQ(block_piece_count(kBlockPieceSize), 1u);
  EXPECT_EQ(block_piece_count(kBlockPieceSize + 1), 2u);
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

TEST_F(BlockFormatTest, AVersionOneHeaderIsNeverRead) {
  auto v1 = header;
  v1[4] = std::byte{1};
  EXPECT_FALSE(decode_block_header(v1, id, 1 << 20).has_value());
}

TEST_F(BlockFormatTest, LongEtagsAreCoveredByTheHash) {
  BlockIdentity long_etag = id;
  long_etag.etag = "\"" + std::string(100, 'a') + "\"";
  auto h = encode(long_etag, payload);
  EXPECT_TRUE(decode_block_header(h, long_etag, 1 << 20).has_value());
  BlockIdentity differs_late = long_etag;
  differs_late.etag[90] = 'b';  // beyond the 64 stored bytes
  EXPECT_FALSE(decode_block_header(h, differs_late, 1 << 20).has_value());
}

TEST(StoredBlockSizeTest, RoundsHeaderTableAndPayloadUpToAlignment) {
  EXPECT_EQ(stored_block_size(0, 4096), 4096u);
  EXPECT_EQ(stored_block_size(4096 - 132, 4096), 4096u);
  EXPECT_EQ(stored_block_size(4096 - 131, 4096), 8192u);
  EXPECT_EQ(stored_block_size(1 << 20, 4096), (1u << 20) + 4096u);
  EXPECT_EQ(stored_block_size(100, 1), 232u);
}

TEST(HashBytesTest, StableKnownValues) {
  // Pinned: cache files written by one build must be readable by the next.
  EXPECT_EQ(hash_bytes(""), 0xf52a15e9a9b5e89bull);
  EXPECT_EQ(hash_bytes("tagd"), 0x340cb8e535e6290dull);
  EXPECT_NE(hash_bytes("a"), hash_bytes("b"));
}

}  // namespace
}  // namespace tagd::cache
