#include "tagd/cache/piece_crc.hpp"

#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "tagd/auth/hashing.hpp"

namespace tagd::cache {
namespace {

std::uint32_t reference(std::span<const std::byte> data) {
  return auth::crc32c(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(data.data()), data.size()));
}

TEST(PieceCrcTest, KnownValue) {
  // RFC 3720 B.4: CRC32C of "123456789".
  const std::string s = "123456789";
  EXPECT_EQ(piece_crc32c(std::as_bytes(std::span(s.data(), s.size()))), 0xE3069283U);
  EXPECT_EQ(piece_crc32c({}), 0U);
}

// Every length around the three-chain stretches (768 and 24,576 bytes) and a whole piece,
// at odd offsets: the joined chains must give the single chain's value.
TEST(PieceCrcTest, MatchesTheSingleChainAtEveryBoundary) {
  // Room for the longest length (3 pieces + 19) at the largest offset (4096).
  std::vector<std::byte> data(3 * 65536 + 4096 + 64);
  std::mt19937 rng(9);
  for (auto& b : data) b = std::byte(rng() & 0xFF);
  std::vector<std::size_t> lengths;
  for (std::size_t base : {std::size_t{0}, std::size_t{768}, std::size_t{1536}, std::size_t{24576}, std::size_t{49152},
                           std::size_t{65536}, std::size_t{3 * 65536}}) {
    for (std::size_t d = 0; d < 20; ++d) {
      if (base + d >= 9) lengths.push_back(base + d - 9);
      lengths.push_back(base + d);
    }
  }
  for (std::size_t offset : {0, 1, 7, 4096}) {
    for (std::size_t n : lengths) {
      const auto piece = std::span<const std::byte>(data).subspan(offset, n);
      ASSERT_EQ(piece_crc32c(piece), reference(piece)) << "offset " << offset << " length " << n;
    }
  }
}

TEST(PieceCrcTest, DetectsAFlippedByteInEachChain) {
  std::vector<std::byte> data(65536, std::byte{0x5A});
  const std::uint32_t good = piece_crc32c(data);
  for (std::size_t at : {std::size_t{0}, std::size_t{8192}, std::size_t{16383}, std::size_t{24576 + 9000},
                         std::size_t{49152 + 300}, std::size_t{65535}}) {
    data[at] ^= std::byte{0x01};
    EXPECT_NE(piece_crc32c(data), good) << at;
    EXPECT_EQ(piece_crc32c(data), reference(data)) << at;
    data[at] ^= std::byte{0x01};
  }
}

}  // namespace
}  // namespace tagd::cache
