#include "tagd/cache/piece_crc.hpp"

#include <array>
#include <cstring>

#include "tagd/auth/hashing.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(TAGD_CRC32C_SOFTWARE_ONLY)
#include <nmmintrin.h>
#define TAGD_PIECE_CRC_SSE42 1
#endif

namespace tagd::cache {

#ifdef TAGD_PIECE_CRC_SSE42
namespace {

// Bytes per chain: a long stretch for the bulk of a piece, a short one for what is left.
// The CRC state is linear: crc(A‖B) = shift(crc(A), |B|) ^ crc₀(B), where crc₀ starts from
// 0 and shift(c, n) multiplies c by x^(8n) modulo the polynomial — itself linear in c, so a
// table of four 256-entry lookups, one per byte of c.
constexpr std::size_t kLong = 8192;
constexpr std::size_t kShort = 256;

struct Shift {
  std::array<std::array<std::uint32_t, 256>, 4> table{};
  std::uint32_t operator()(std::uint32_t c) const noexcept {
    return table[0][c & 0xFFU] ^ table[1][(c >> 8) & 0xFFU] ^ table[2][(c >> 16) & 0xFFU] ^ table[3][c >> 24];
  }
};

__attribute__((target("sse4.2"))) std::uint32_t one_chain(std::uint32_t crc, const std::byte* p, std::size_t n) {
  std::uint64_t c = crc;
  for (; n >= 8; n -= 8, p += 8) {
    std::uint64_t word = 0;
    std::memcpy(&word, p, sizeof word);
    c = _mm_crc32_u64(c, word);
  }
  auto c32 = static_cast<std::uint32_t>(c);
  for (; n > 0; --n, ++p) c32 = _mm_crc32_u8(c32, std::to_integer<std::uint8_t>(*p));
  return c32;
}

// shift(c, n) the slow way (n zero bytes through the chain), for the 32 basis bits only.
__attribute__((target("sse4.2"))) Shift make_shift(std::size_t n) {
  std::array<std::uint32_t, 32> basis{};
  for (unsigned bit = 0; bit < 32; ++bit) {
    std::uint64_t c = std::uint64_t{1} << bit;
    for (std::size_t i = 0; i < n / 8; ++i) c = _mm_crc32_u64(c, 0);
    basis[bit] = static_cast<std::uint32_t>(c);
  }
  Shift s;
  for (unsigned k = 0; k < 4; ++k) {
    for (unsigned b = 0; b < 256; ++b) {
      std::uint32_t v = 0;
      for (unsigned bit = 0; bit < 8; ++bit) {
        if ((b >> bit) & 1U) v ^= basis[8 * k + bit];
      }
      s.table[k][b] = v;
    }
  }
  return s;
}

template <std::size_t N>
__attribute__((target("sse4.2"))) inline std::uint32_t three_chains(std::uint32_t crc, const std::byte* p,
                                                                    const Shift& shift) {
  std::uint64_t c0 = crc, c1 = 0, c2 = 0;
  for (std::size_t i = 0; i < N; i += 8) {
    std::uint64_t w0 = 0, w1 = 0, w2 = 0;
    std::memcpy(&w0, p + i, 8);
    std::memcpy(&w1, p + N + i, 8);
    std::memcpy(&w2, p + 2 * N + i, 8);
    c0 = _mm_crc32_u64(c0, w0);
    c1 = _mm_crc32_u64(c1, w1);
    c2 = _mm_crc32_u64(c2, w2);
  }
  std::uint32_t c = shift(static_cast<std::uint32_t>(c0)) ^ static_cast<std::uint32_t>(c1);
  return shift(c) ^ static_cast<std::uint32_t>(c2);
}

__attribute__((target("sse4.2"))) std::uint32_t update_hw(std::uint32_t crc, const std::byte* p, std::size_t n) {
  static const Shift long_shift = make_shift(kLong);
  static const Shift short_shift = make_shift(kShort);
  for (; n >= 3 * kLong; n -= 3 * kLong, p += 3 * kLong) crc = three_chains<kLong>(crc, p, long_shift);
  for (; n >= 3 * kShort; n -= 3 * kShort, p += 3 * kShort) crc = three_chains<kShort>(crc, p, short_shift);
  return one_chain(crc, p, n);
}

bool has_sse42() {
  static const bool has = __builtin_cpu_supports("sse4.2");
  return has;
}

}  // namespace
#endif

std::uint32_t piece_crc32c(std::span<const std::byte> data) {
#ifdef TAGD_PIECE_CRC_SSE42
  if (has_sse42()) return ~update_hw(~std::uint32_t{0}, data.data(), data.size());
#endif
  return auth::crc32c(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(data.data()), data.size()));
}

}  // namespace tagd::cache
