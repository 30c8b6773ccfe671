// Test payloads: deterministic bytes that differ from one seed to the next at (nearly)
// every position, so a body mixed from two versions cannot equal either.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace tagd::testing {

inline std::string make_bytes(std::size_t n, unsigned seed = 0) {
  std::string s(n, '\0');
  std::uint32_t x = 2463534242u ^ (seed * 2654435761u);
  for (std::size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    s[i] = static_cast<char>((x & 0xff) ^ (seed * 0x3b));
  }
  return s;
}

}  // namespace tagd::testing
