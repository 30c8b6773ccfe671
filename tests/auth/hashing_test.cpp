// Known-answer tests for digests, HMAC, base64 and the CRCs used by S3 checksums.
//
// Vector sources:
//  - SHA-1 / SHA-256 of "abc": FIPS 180 examples (as reproduced in the Catacomb and
//    Chromium OS vboot test-vector files).
//  - MD5 of "abc": RFC 1321 test suite.
//  - HMAC-SHA-256: RFC 4231 test cases 1 and 2.
//  - Base64: RFC 4648 section 10.
//  - CRC-32 (ISO-HDLC, zlib) and CRC-32C (ISCSI) check values for "123456789": the RevEng
//    CRC catalogue (crc-catalog: check=0xcbf43926 / check=0xe3069283).
//  - x-amz-checksum-crc32c of "a" = "wdBDMA==": awslabs/aws-c-auth tests/test_chunked_signing.c.
#include "tagd/auth/hashing.hpp"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace tagd::auth {
namespace {

std::span<const std::uint8_t> bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

std::vector<std::uint8_t> from_hex(std::string_view hex) {
  std::vector<std::uint8_t> out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<std::uint8_t>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  }
  return out;
}

// Bit-at-a-time reference, deliberately naive so it shares nothing with the table code.
std::uint32_t reference_crc(std::uint32_t reflected_poly, std::span<const std::uint8_t> data) {
  std::uint32_t c = 0xFFFFFFFFU;
  for (const std::uint8_t b : data) {
    c ^= b;
    for (int i = 0; i < 8; ++i) c = (c & 1U) ? (c >> 1) ^ reflected_poly : c >> 1;
  }
  return ~c;
}

std::string digest_hex(ChecksumAlgorithm algorithm, std::string_view data) {
  auto h = make_hasher(algorithm);
  h->update(data);
  return to_hex(h->finish());
}

TEST(HashingTest, ToHexIsLowerCase) {
  const std::vector<std::uint8_t> v = {0x00, 0x0f, 0xa0, 0xff, 0x5c};
  EXPECT_EQ(to_hex(v), "000fa0ff5c");
  EXPECT_EQ(to_hex({}), "");
}

TEST(HashingTest, Sha256KnownAnswers) {
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(to_hex(sha256("abc")), sha256_hex("abc"));
}

TEST(HashingTest, HmacSha256Rfc4231) {
  // Test case 1: key = 0x0b * 20, data = "Hi There".
  const std::vector<std::uint8_t> key1(20, 0x0b);
  EXPECT_EQ(to_hex(hmac_sha256(key1, "Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  // Test case 2: key = "Jefe", both overloads.
  EXPECT_EQ(to_hex(hmac_sha256(std::string_view("Jefe"), "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_EQ(to_hex(hmac_sha256(bytes("Jefe"), "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  // Test case 6: a key longer than the block (131 bytes of 0xaa) is hashed first.
  const std::vector<std::uint8_t> key6(131, 0xaa);
  EXPECT_EQ(to_hex(hmac_sha256(key6, "Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
  // An empty key and empty data (the reusable context must not carry state over).
  EXPECT_EQ(to_hex(hmac_sha256(std::string_view(""), "")),
            "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
  EXPECT_EQ(to_hex(hmac_sha256(key1, "Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
}

TEST(HashingTest, HmacSha1Rfc2202) {
  // Test case 2: key = "Jefe"; test case 1: key = 0x0b * 20, "Hi There".
  EXPECT_EQ(to_hex(hmac_sha1("Jefe", "what do ya want for nothing?")), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
  EXPECT_EQ(to_hex(hmac_sha1(std::string(20, '\x0b'), "Hi There")), "b617318655057264e28bc0b6fb378c8ef146be00");
  const Sha1Digest zero{};
  EXPECT_NE(hmac_sha1("", "x"), zero);
}

TEST(HashingTest, HmacWithEmptyKeyIsWellDefined) {
  const Sha256Digest a = hmac_sha256(std::string_view(), "x");
  const Sha256Digest zero{};
  EXPECT_NE(a, zero);
  EXPECT_EQ(a, hmac_sha256(std::span<const std::uint8_t>(), "x"));
}

TEST(HashingTest, StreamingDigestsOfAbc) {
  EXPECT_EQ(digest_hex(ChecksumAlgorithm::kSha1, "abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
  EXPECT_EQ(digest_hex(ChecksumAlgorithm::kSha256, "abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(digest_hex(ChecksumAlgorithm::kMd5, "abc"), "900150983cd24fb0d6963f7d28e17f72");
  EXPECT_EQ(digest_hex(ChecksumAlgorithm::kMd5, ""), "d41d8cd98f00b204e9800998ecf8427e");
  EXPECT_EQ(digest_hex(ChecksumAlgorithm::kSha1, ""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
}

TEST(HashingTest, StreamingUpdatesMatchOneShotForEveryAlgorithm) {
  std::mt19937 rng(7);
  std::string data(10000, '\0');
  for (char& c : data) c = static_cast<char>(rng());
  for (const auto algorithm :
       {ChecksumAlgorithm::kCrc32, ChecksumAlgorithm::kCrc32c, ChecksumAlgorithm::kSha1,
        ChecksumAlgorithm::kSha256, ChecksumAlgorithm::kMd5}) {
    const std::string whole = digest_hex(algorithm, data);
    auto h = make_hasher(algorithm);
    std::size_t pos = 0;
    while (pos < data.size()) {
      const std::size_t n = std::min<std::size_t>(rng() % 97, data.size() - pos);
      h->update(std::string_view(data).substr(pos, n));
      pos += n;
    }
    EXPECT_EQ(to_hex(h->finish()), whole) << static_cast<int>(algorithm);
  }
}

TEST(HashingTest, Base64Rfc4648Vectors) {
  const std::pair<std::string_view, std::string_view> vectors[] = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
  };
  for (const auto& [plain, encoded] : vectors) {
    EXPECT_EQ(base64_encode(bytes(plain)), encoded);
    const auto decoded = base64_decode(encoded);
    ASSERT_TRUE(decoded.has_value()) << encoded;
    EXPECT_EQ(std::string(decoded->begin(), decoded->end()), plain);
  }
}

TEST(HashingTest, Base64RoundTripsAllByteValues) {
  std::vector<std::uint8_t> all(256);
  for (int i = 0; i < 256; ++i) all[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(i);
  for (std::size_t len = 0; len <= all.size(); len += 1) {
    const std::span<const std::uint8_t> part(all.data(), len);
    const auto decoded = base64_decode(base64_encode(part));
    ASSERT_TRUE(decoded.has_value());
    EXPECT_TRUE(std::equal(decoded->begin(), decoded->end(), part.begin(), part.end()));
  }
}

TEST(HashingTest, Base64DecodeIsStrict) {
  for (const std::string_view bad : {"Zg", "Zg=", "Zm9", "Zg==Zg==", "Z===", "====", "=Zm9", "Zm=v",
                                     "Zm9v!A==", "Zm9v YmFy", "Zm9v\nYmFy", "Zh==", "Zm9=", "Zm-v", "Zm_v"}) {
    EXPECT_FALSE(base64_decode(bad).has_value()) << bad;
  }
}

TEST(HashingTest, Crc32CheckValues) {
  EXPECT_EQ(crc32(bytes("123456789")), 0xCBF43926U);
  EXPECT_EQ(crc32c(bytes("123456789")), 0xE3069283U);
  EXPECT_EQ(crc32(bytes("")), 0U);
  EXPECT_EQ(crc32c(bytes("")), 0U);
}

TEST(HashingTest, CrcSeedChainsLikeZlib) {
  const std::string_view whole = "123456789";
  for (std::size_t split = 0; split <= whole.size(); ++split) {
    EXPECT_EQ(crc32(bytes(whole.substr(split)), crc32(bytes(whole.substr(0, split)))), 0xCBF43926U);
    EXPECT_EQ(crc32c(bytes(whole.substr(split)), crc32c(bytes(whole.substr(0, split)))), 0xE3069283U);
  }
}

TEST(HashingTest, CrcTablesAgreeWithBitwiseReferenceAtEveryLengthAndAlignment) {
  std::mt19937 rng(42);
  std::vector<std::uint8_t> buf(600);
  for (auto& b : buf) b = static_cast<std::uint8_t>(rng());
  for (std::size_t offset = 0; offset < 9; ++offset) {
    for (std::size_t len = 0; len + offset <= 300; ++len) {
      const std::span<const std::uint8_t> part(buf.data() + offset, len);
      ASSERT_EQ(crc32(part), reference_crc(0xEDB88320U, part)) << offset << "/" << len;
      ASSERT_EQ(crc32c(part), reference_crc(0x82F63B78U, part)) << offset << "/" << len;
    }
  }
  // A large buffer exercises the 8-byte paths (and SSE4.2 where the CPU has it) at length.
  std::vector<std::uint8_t> big(1 << 20);
  for (auto& b : big) b = static_cast<std::uint8_t>(rng());
  EXPECT_EQ(crc32(big), reference_crc(0xEDB88320U, big));
  EXPECT_EQ(crc32c(big), reference_crc(0x82F63B78U, big));
}

TEST(HashingTest, CrcHashersEmitBigEndianBytesAsS3Base64EncodesThem) {
  auto h = make_hasher(ChecksumAlgorithm::kCrc32);
  h->update(std::string_view("123456789"));
  const auto crc = h->finish();
  EXPECT_EQ(crc, from_hex("cbf43926"));
  EXPECT_EQ(base64_encode(crc), "y/Q5Jg==");

  auto c = make_hasher(ChecksumAlgorithm::kCrc32c);
  c->update(std::string_view("123456789"));
  EXPECT_EQ(c->finish(), from_hex("e3069283"));

  // aws-c-auth's trailer example: x-amz-checksum-crc32c for the one-byte body "a".
  auto a = make_hasher(ChecksumAlgorithm::kCrc32c);
  a->update(std::string_view("a"));
  EXPECT_EQ(base64_encode(a->finish()), "wdBDMA==");
}

TEST(HashingTest, ChecksumAlgorithmNames) {
  EXPECT_EQ(checksum_algorithm_from_name("crc32"), ChecksumAlgorithm::kCrc32);
  EXPECT_EQ(checksum_algorithm_from_name("CRC32C"), ChecksumAlgorithm::kCrc32c);
  EXPECT_EQ(checksum_algorithm_from_name("Sha1"), ChecksumAlgorithm::kSha1);
  EXPECT_EQ(checksum_algorithm_from_name("SHA256"), ChecksumAlgorithm::kSha256);
  EXPECT_FALSE(checksum_algorithm_from_name("md5").has_value());
  EXPECT_FALSE(checksum_algorithm_from_name("crc64nvme").has_value());
  EXPECT_FALSE(checksum_algorithm_from_name("").has_value());
  EXPECT_FALSE(checksum_algorithm_from_name("crc32 ").has_value());

  EXPECT_EQ(checksum_header_name(ChecksumAlgorithm::kCrc32), "x-amz-checksum-crc32");
  EXPECT_EQ(checksum_header_name(ChecksumAlgorithm::kCrc32c), "x-amz-checksum-crc32c");
  EXPECT_EQ(checksum_header_name(ChecksumAlgorithm::kSha1), "x-amz-checksum-sha1");
  EXPECT_EQ(checksum_header_name(ChecksumAlgorithm::kSha256), "x-amz-checksum-sha256");
  EXPECT_EQ(checksum_header_name(ChecksumAlgorithm::kMd5), "content-md5");
}

TEST(HashingTest, ConstantTimeEqual) {
  EXPECT_TRUE(constant_time_equal("", ""));
  EXPECT_TRUE(constant_time_equal("abc", "abc"));
  EXPECT_FALSE(constant_time_equal("abc", "abd"));
  EXPECT_FALSE(constant_time_equal("abc", "ab"));
  EXPECT_FALSE(constant_time_equal("", "a"));
  EXPECT_TRUE(constant_time_equal(std::string_view("a\0b", 3), std::string_view("a\0b", 3)));
  EXPECT_FALSE(constant_time_equal(std::string_view("a\0b", 3), std::string_view("a\0c", 3)));
}

TEST(HashingTest, ChecksumHeaderShapes) {
  EXPECT_EQ(digest_size(ChecksumAlgorithm::kCrc32), 4u);
  EXPECT_EQ(digest_size(ChecksumAlgorithm::kCrc32c), 4u);
  EXPECT_EQ(digest_size(ChecksumAlgorithm::kSha1), 20u);
  EXPECT_EQ(digest_size(ChecksumAlgorithm::kSha256), 32u);
  EXPECT_EQ(digest_size(ChecksumAlgorithm::kMd5), 16u);
  EXPECT_TRUE(is_checksum_value_header("x-amz-checksum-crc32"));
  EXPECT_TRUE(is_checksum_value_header("X-Amz-Checksum-CRC64NVME"));
  EXPECT_FALSE(is_checksum_value_header("x-amz-checksum-mode"));
  EXPECT_FALSE(is_checksum_value_header("X-Amz-Checksum-Type"));
  EXPECT_FALSE(is_checksum_value_header("x-amz-checksum-algorithm"));
  EXPECT_FALSE(is_checksum_value_header("x-amz-checksum-"));
  EXPECT_FALSE(is_checksum_value_header("x-amz-sdk-checksum-algorithm"));
}

}  // namespace
}  // namespace tagd::auth
