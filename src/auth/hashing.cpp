// The SHA256_* functions are deprecated in OpenSSL 3 in favour of EVP, but OpenSSL 3.0's
// EVP_DigestInit_ex2 frees and allocates the provider context on every re-initialisation
// (three heap allocations per verified request); the low-level context is a plain struct.
#define OPENSSL_SUPPRESS_DEPRECATED 1

#include "tagd/auth/hashing.hpp"
#include "tagd/core/strings.hpp"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstring>
#include <initializer_list>
#include <limits>

// TAGD_CRC32C_SOFTWARE_ONLY lets a build exercise the table path on CPUs that have SSE4.2.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(TAGD_CRC32C_SOFTWARE_ONLY)
#include <nmmintrin.h>
#define TAGD_HAVE_SSE42_CRC 1
#endif

namespace tagd::auth {
namespace {

constexpr char kHexDigits[] = "0123456789abcdef";

constexpr char kBase64Alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// -1 for bytes outside the alphabet; '=' is handled separately because it is only legal
// as padding.
constexpr std::array<std::int8_t, 256> make_base64_reverse() {
  std::array<std::int8_t, 256> table{};
  for (auto& entry : table) entry = -1;
  for (int i = 0; i < 64; ++i)
    table[static_cast<unsigned char>(kBase64Alphabet[i])] = static_cast<std::int8_t>(i);
  return table;
}
constexpr auto kBase64Reverse = make_base64_reverse();

// Slicing-by-8 tables for a reflected CRC-32: table[0] is the classic byte table, table[k]
// advances a byte that sits k positions further from the end of an 8-byte block.
using CrcTables = std::array<std::array<std::uint32_t, 256>, 8>;

constexpr CrcTables make_crc_tables(std::uint32_t reflected_poly) {
  CrcTables t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int bit = 0; bit < 8; ++bit) c = (c & 1U) ? (c >> 1) ^ reflected_poly : (c >> 1);
    t[0][i] = c;
  }
  for (std::uint32_t i = 0; i < 256; ++i) {
    for (std::size_t k = 1; k < 8; ++k) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xFFU];
  }
  return t;
}

constexpr CrcTables kCrc32Tables = make_crc_tables(0xEDB88320U);
constexpr CrcTables kCrc32cTables = make_crc_tables(0x82F63B78U);

// Works on the internal (pre-inverted) register so streaming updates can chain.
std::uint32_t crc_update_sw(const CrcTables& t, std::uint32_t crc, const std::uint8_t* p, std::size_t n) {
  while (n >= 8) {
    std::uint32_t lo = 0;
    std::uint32_t hi = 0;
    // Byte-wise assembly keeps this endian-independent and free of aliasing concerns.
    lo = static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
         static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
    hi = static_cast<std::uint32_t>(p[4]) | static_cast<std::uint32_t>(p[5]) << 8 |
         static_cast<std::uint32_t>(p[6]) << 16 | static_cast<std::uint32_t>(p[7]) << 24;
    lo ^= crc;
    crc = t[7][lo & 0xFFU] ^ t[6][(lo >> 8) & 0xFFU] ^ t[5][(lo >> 16) & 0xFFU] ^ t[4][lo >> 24] ^
          t[3][hi & 0xFFU] ^ t[2][(hi >> 8) & 0xFFU] ^ t[1][(hi >> 16) & 0xFFU] ^ t[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n-- > 0) crc = (crc >> 8) ^ t[0][(crc ^ *p++) & 0xFFU];
  return crc;
}

#ifdef TAGD_HAVE_SSE42_CRC
__attribute__((target("sse4.2"))) std::uint32_t crc32c_update_hw(std::uint32_t crc, const std::uint8_t* p,
                                                                 std::size_t n) {
  std::uint64_t c = crc;
  while (n >= 8) {
    std::uint64_t word = 0;
    std::memcpy(&word, p, sizeof(word));
    c = _mm_crc32_u64(c, word);
    p += 8;
    n -= 8;
  }
  auto c32 = static_cast<std::uint32_t>(c);
  while (n-- > 0) c32 = _mm_crc32_u8(c32, *p++);
  return c32;
}

bool cpu_has_sse42() {
  // Evaluated once: the answer cannot change while the process runs.
  static const bool has = __builtin_cpu_supports("sse4.2");
  return has;
}
#endif

std::uint32_t crc32c_update(std::uint32_t crc, const std::uint8_t* p, std::size_t n) {
#ifdef TAGD_HAVE_SSE42_CRC
  if (cpu_has_sse42()) return crc32c_update_hw(crc, p, n);
#endif
  return crc_update_sw(kCrc32cTables, crc, p, n);
}

std::uint32_t crc32_update(std::uint32_t crc, const std::uint8_t* p, std::size_t n) {
  return crc_update_sw(kCrc32Tables, crc, p, n);
}

std::vector<std::uint8_t> be32(std::uint32_t v) {
  return {static_cast<std::uint8_t>(v >> 24), static_cast<std::uint8_t>(v >> 16),
          static_cast<std::uint8_t>(v >> 8), static_cast<std::uint8_t>(v)};
}

class CrcHasher final : public Hasher {
 public:
  explicit CrcHasher(bool castagnoli) : castagnoli_(castagnoli) {}
  void update(std::span<const std::uint8_t> data) override {
    crc_ = castagnoli_ ? crc32c_update(crc_, data.data(), data.size())
                       : crc32_update(crc_, data.data(), data.size());
  }
  std::vector<std::uint8_t> finish() override { return be32(~crc_); }

 private:
  bool castagnoli_;
  std::uint32_t crc_ = 0xFFFFFFFFU;
};

struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* ctx) const noexcept { EVP_MD_CTX_free(ctx); }
};

class EvpHasher final : public Hasher {
 public:
  explicit EvpHasher(const EVP_MD* md) : ctx_(EVP_MD_CTX_new()) {
    // Allocation or provider failure leaves ctx_ null; finish() then yields an empty digest,
    // which never equals a real one, so callers fail closed instead of crashing.
    if (ctx_ && EVP_DigestInit_ex(ctx_.get(), md, nullptr) != 1) ctx_.reset();
  }
  void update(std::span<const std::uint8_t> data) override {
    if (ctx_ && !data.empty() && EVP_DigestUpdate(ctx_.get(), data.data(), data.size()) != 1) ctx_.reset();
  }
  std::vector<std::uint8_t> finish() override {
    if (!ctx_) return {};
    std::vector<std::uint8_t> out(EVP_MAX_MD_SIZE);
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(ctx_.get(), out.data(), &len) != 1) return {};
    out.resize(len);
    ctx_.reset();
    return out;
  }

 private:
  std::unique_ptr<EVP_MD_CTX, MdCtxDeleter> ctx_;
};


}  // namespace

void to_hex(std::span<const std::uint8_t> bytes, char* out) noexcept {
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    out[2 * i] = kHexDigits[bytes[i] >> 4];
    out[2 * i + 1] = kHexDigits[bytes[i] & 0x0F];
  }
}

std::string to_hex(std::span<const std::uint8_t> bytes) {
  std::string out;
  out.resize(bytes.size() * 2);
  to_hex(bytes, out.data());
  return out;
}

std::string base64_encode(std::span<const std::uint8_t> bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const std::uint32_t v = static_cast<std::uint32_t>(bytes[i]) << 16 |
                            static_cast<std::uint32_t>(bytes[i + 1]) << 8 | bytes[i + 2];
    out.push_back(kBase64Alphabet[(v >> 18) & 0x3F]);
    out.push_back(kBase64Alphabet[(v >> 12) & 0x3F]);
    out.push_back(kBase64Alphabet[(v >> 6) & 0x3F]);
    out.push_back(kBase64Alphabet[v & 0x3F]);
  }
  const std::size_t rest = bytes.size() - i;
  if (rest == 1) {
    const std::uint32_t v = static_cast<std::uint32_t>(bytes[i]) << 16;
    out.push_back(kBase64Alphabet[(v >> 18) & 0x3F]);
    out.push_back(kBase64Alphabet[(v >> 12) & 0x3F]);
    out += "==";
  } else if (rest == 2) {
    const std::uint32_t v =
        static_cast<std::uint32_t>(bytes[i]) << 16 | static_cast<std::uint32_t>(bytes[i + 1]) << 8;
    out.push_back(kBase64Alphabet[(v >> 18) & 0x3F]);
    out.push_back(kBase64Alphabet[(v >> 12) & 0x3F]);
    out.push_back(kBase64Alphabet[(v >> 6) & 0x3F]);
    out.push_back('=');
  }
  return out;
}

std::optional<std::vector<std::uint8_t>> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::vector<std::uint8_t> out;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    int pad = 0;
    if (last) {
      if (text[i + 3] == '=') pad = (text[i + 2] == '=') ? 2 : 1;
    }
    std::uint32_t v = 0;
    for (std::size_t k = 0; k < 4; ++k) {
      if (k >= 4 - static_cast<std::size_t>(pad)) {
        v <<= 6;
        continue;
      }
      const std::int8_t d = kBase64Reverse[static_cast<unsigned char>(text[i + k])];
      if (d < 0) return std::nullopt;  // also catches '=' anywhere but the final padding
      v = v << 6 | static_cast<std::uint32_t>(d);
    }
    // Canonical encodings leave the bits under the padding zero; anything else is a
    // second spelling of the same bytes, which a digest header must not have.
    if ((pad == 1 && (v & 0xFFU) != 0) || (pad == 2 && (v & 0xFFFFU) != 0)) return std::nullopt;
    out.push_back(static_cast<std::uint8_t>(v >> 16));
    if (pad < 2) out.push_back(static_cast<std::uint8_t>(v >> 8));
    if (pad < 1) out.push_back(static_cast<std::uint8_t>(v));
  }
  return out;
}

namespace {

// SHA-256 of the concatenation of `parts`, on a stack context: no allocation, no provider
// lookup (every verified request hashes its canonical request and computes an HMAC).
bool sha256_of(std::initializer_list<std::span<const std::uint8_t>> parts, std::uint8_t* out) {
  SHA256_CTX ctx;
  if (SHA256_Init(&ctx) != 1) return false;
  for (const auto& part : parts) {
    if (!part.empty() && SHA256_Update(&ctx, part.data(), part.size()) != 1) return false;
  }
  const bool ok = SHA256_Final(out, &ctx) == 1;
  OPENSSL_cleanse(&ctx, sizeof ctx);  // it may have absorbed an HMAC key pad
  return ok;
}

std::span<const std::uint8_t> bytes_of(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

}  // namespace

Sha256Digest sha256(std::string_view data) {
  Sha256Digest out{};
  // Only fails on allocation failure; a zero digest then fails every comparison.
  if (!sha256_of({bytes_of(data)}, out.data())) out.fill(0);
  return out;
}

std::string sha256_hex(std::string_view data) {
  return to_hex(sha256(data));
}

// HMAC (RFC 2104) over the reusable SHA-256 context: H((K ^ opad) || H((K ^ ipad) || m)).
Sha256Digest hmac_sha256(std::span<const std::uint8_t> key, std::string_view data) {
  constexpr std::size_t kBlock = 64;
  std::array<std::uint8_t, kBlock> k0{};
  if (key.size() > kBlock) {
    if (!sha256_of({key}, k0.data())) return Sha256Digest{};
  } else if (!key.empty()) {
    std::memcpy(k0.data(), key.data(), key.size());
  }
  std::array<std::uint8_t, kBlock> pad{};
  for (std::size_t i = 0; i < kBlock; ++i) pad[i] = k0[i] ^ 0x36;
  Sha256Digest inner{};
  if (!sha256_of({pad, bytes_of(data)}, inner.data())) return Sha256Digest{};
  for (std::size_t i = 0; i < kBlock; ++i) pad[i] = k0[i] ^ 0x5c;
  Sha256Digest out{};
  if (!sha256_of({pad, inner}, out.data())) out.fill(0);
  OPENSSL_cleanse(k0.data(), k0.size());
  OPENSSL_cleanse(pad.data(), pad.size());
  return out;
}

Sha256Digest hmac_sha256(std::string_view key, std::string_view data) {
  return hmac_sha256(
      std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(key.data()), key.size()), data);
}

Sha1Digest hmac_sha1(std::string_view key, std::string_view data) {
  Sha1Digest out{};
  unsigned int len = 0;
  static constexpr std::uint8_t kEmptyKey[1] = {0};
  const auto* key_ptr = key.empty() ? kEmptyKey : reinterpret_cast<const std::uint8_t*>(key.data());
  if (key.size() > static_cast<std::size_t>(std::numeric_limits<int>::max()) ||
      HMAC(EVP_sha1(), key_ptr, static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
           data.size(), out.data(), &len) == nullptr) {
    out.fill(0);
  }
  return out;
}

std::optional<ChecksumAlgorithm> checksum_algorithm_from_name(std::string_view name) {
  if (iequals(name, "crc32")) return ChecksumAlgorithm::kCrc32;
  if (iequals(name, "crc32c")) return ChecksumAlgorithm::kCrc32c;
  if (iequals(name, "sha1")) return ChecksumAlgorithm::kSha1;
  if (iequals(name, "sha256")) return ChecksumAlgorithm::kSha256;
  return std::nullopt;
}

std::string checksum_header_name(ChecksumAlgorithm algorithm) {
  switch (algorithm) {
    case ChecksumAlgorithm::kCrc32: return "x-amz-checksum-crc32";
    case ChecksumAlgorithm::kCrc32c: return "x-amz-checksum-crc32c";
    case ChecksumAlgorithm::kSha1: return "x-amz-checksum-sha1";
    case ChecksumAlgorithm::kSha256: return "x-amz-checksum-sha256";
    case ChecksumAlgorithm::kMd5: return "content-md5";
  }
  return {};
}

std::size_t digest_size(ChecksumAlgorithm algorithm) noexcept {
  switch (algorithm) {
    case ChecksumAlgorithm::kCrc32:
    case ChecksumAlgorithm::kCrc32c: return 4;
    case ChecksumAlgorithm::kSha1: return 20;
    case ChecksumAlgorithm::kSha256: return 32;
    case ChecksumAlgorithm::kMd5: return 16;
  }
  return 0;
}

bool is_checksum_value_header(std::string_view name) noexcept {
  constexpr std::string_view kPrefix = "x-amz-checksum-";
  if (name.size() <= kPrefix.size() || !iequals(name.substr(0, kPrefix.size()), kPrefix)) return false;
  return !iequals(name, "x-amz-checksum-mode") && !iequals(name, "x-amz-checksum-type") &&
         !iequals(name, "x-amz-checksum-algorithm");
}

std::unique_ptr<Hasher> make_hasher(ChecksumAlgorithm algorithm) {
  switch (algorithm) {
    case ChecksumAlgorithm::kCrc32: return std::make_unique<CrcHasher>(false);
    case ChecksumAlgorithm::kCrc32c: return std::make_unique<CrcHasher>(true);
    case ChecksumAlgorithm::kSha1: return std::make_unique<EvpHasher>(EVP_sha1());
    case ChecksumAlgorithm::kSha256: return std::make_unique<EvpHasher>(EVP_sha256());
    case ChecksumAlgorithm::kMd5: return std::make_unique<EvpHasher>(EVP_md5());
  }
  return nullptr;
}

std::uint32_t crc32(std::span<const std::uint8_t> data, std::uint32_t seed) {
  return ~crc32_update(~seed, data.data(), data.size());
}

std::uint32_t crc32c(std::span<const std::uint8_t> data, std::uint32_t seed) {
  return ~crc32c_update(~seed, data.data(), data.size());
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  // Lengths are public (signatures are fixed-size hex); only the contents need hiding.
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace tagd::auth
