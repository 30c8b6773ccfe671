#pragma once
// Digests, HMAC and encodings used by SigV4 and by body integrity checks.
// All hashers are streaming: update() any number of times, then finish() once.
#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tagd::auth {

using Sha256Digest = std::array<std::uint8_t, 32>;
using Sha1Digest = std::array<std::uint8_t, 20>;

[[nodiscard]] std::string to_hex(std::span<const std::uint8_t> bytes);
// Writes 2 * bytes.size() lower-case hex digits at `out` (no allocation).
void to_hex(std::span<const std::uint8_t> bytes, char* out) noexcept;
[[nodiscard]] std::string base64_encode(std::span<const std::uint8_t> bytes);
// Strict: rejects bad characters and bad padding.
[[nodiscard]] std::optional<std::vector<std::uint8_t>> base64_decode(std::string_view text);

[[nodiscard]] Sha256Digest sha256(std::string_view data);
[[nodiscard]] std::string sha256_hex(std::string_view data);
[[nodiscard]] Sha256Digest hmac_sha256(std::span<const std::uint8_t> key, std::string_view data);
[[nodiscard]] Sha256Digest hmac_sha256(std::string_view key, std::string_view data);
// HMAC-SHA1: Signature Version 2 only.
[[nodiscard]] Sha1Digest hmac_sha1(std::string_view key, std::string_view data);

// Algorithms a client may name in Content-MD5 / x-amz-checksum-* / x-amz-trailer.
enum class ChecksumAlgorithm { kCrc32, kCrc32c, kSha1, kSha256, kMd5 };

// "crc32" | "crc32c" | "sha1" | "sha256" (case-insensitive) → algorithm. MD5 is only
// reachable through Content-MD5, never through x-amz-checksum-*.
[[nodiscard]] std::optional<ChecksumAlgorithm> checksum_algorithm_from_name(std::string_view name);
// The header that carries it: "x-amz-checksum-crc32", ..., "content-md5" for kMd5.
[[nodiscard]] std::string checksum_header_name(ChecksumAlgorithm algorithm);
// Raw digest bytes: 4 for the CRCs, 20 SHA-1, 32 SHA-256, 16 MD5.
[[nodiscard]] std::size_t digest_size(ChecksumAlgorithm algorithm) noexcept;
// True for a header that carries a checksum value ("x-amz-checksum-<algorithm>", any
// algorithm, also ones tagd cannot compute); false for x-amz-checksum-mode, -type and
// -algorithm, which only describe one.
[[nodiscard]] bool is_checksum_value_header(std::string_view name) noexcept;

class Hasher {
 public:
  virtual ~Hasher() = default;
  virtual void update(std::span<const std::uint8_t> data) = 0;
  void update(std::string_view data) {
    update(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(data.data()), data.size()));
  }
  // Raw digest bytes (CRCs big-endian, as S3 encodes them before base64). Call once.
  [[nodiscard]] virtual std::vector<std::uint8_t> finish() = 0;
};

[[nodiscard]] std::unique_ptr<Hasher> make_hasher(ChecksumAlgorithm algorithm);

// One-shot helpers (tests, small bodies).
[[nodiscard]] std::uint32_t crc32(std::span<const std::uint8_t> data, std::uint32_t seed = 0);
[[nodiscard]] std::uint32_t crc32c(std::span<const std::uint8_t> data, std::uint32_t seed = 0);
// Constant-time comparison for signatures and digests.
[[nodiscard]] bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace tagd::auth
