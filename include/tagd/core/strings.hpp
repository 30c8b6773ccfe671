#pragma once
// ASCII string helpers for protocol text (header names, tokens). Locale-independent on
// purpose: HTTP and SigV4 are defined over ASCII.
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tagd {

constexpr char ascii_lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

constexpr bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  }
  return true;
}

inline std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = ascii_lower(c);
  return out;
}

// Orders names without case and without lower-cased copies (sorted name lists, lookups).
inline bool iless(std::string_view a, std::string_view b) {
  return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end(),
                                      [](char x, char y) { return ascii_lower(x) < ascii_lower(y); });
}

// The first of `n` names (`name_at(i)`, a string_view) that appears twice, ASCII case
// ignored when `ignore_case`. A few names are compared pairwise (no allocation on the
// common path); beyond that they are sorted, because a request can carry thousands of
// names (a 64 KiB target, a SignedHeaders list) before any signature is checked, and a
// pairwise comparison would let one anonymous request hold an event loop for a second.
template <typename NameAt>
std::optional<std::string_view> find_repeated_name(std::size_t n, NameAt&& name_at, bool ignore_case) {
  constexpr std::size_t kPairwiseUpTo = 16;
  auto same = [ignore_case](std::string_view a, std::string_view b) { return ignore_case ? iequals(a, b) : a == b; };
  if (n <= kPairwiseUpTo) {
    for (std::size_t i = 1; i < n; ++i) {
      for (std::size_t j = 0; j < i; ++j) {
        if (same(name_at(i), name_at(j))) return std::string_view(name_at(i));
      }
    }
    return std::nullopt;
  }
  std::vector<std::string_view> sorted;
  sorted.reserve(n);
  for (std::size_t i = 0; i < n; ++i) sorted.push_back(name_at(i));
  std::sort(sorted.begin(), sorted.end(),
            [ignore_case](std::string_view a, std::string_view b) { return ignore_case ? iless(a, b) : a < b; });
  auto it = std::adjacent_find(sorted.begin(), sorted.end(), same);
  if (it == sorted.end()) return std::nullopt;
  return *it;
}

// Names collected for find_repeated_name: the first 16 on the stack (a request has a
// handful), the rest in a vector, so the common case allocates nothing.
class NameList {
 public:
  void push_back(std::string_view name) {
    if (n_ < inline_.size()) {
      inline_[n_] = name;
    } else {
      if (more_.empty()) more_.assign(inline_.begin(), inline_.end());
      more_.push_back(name);
    }
    ++n_;
  }
  std::size_t size() const { return n_; }
  std::string_view operator[](std::size_t i) const { return n_ <= inline_.size() ? inline_[i] : more_[i]; }
  std::optional<std::string_view> repeated(bool ignore_case) const {
    return find_repeated_name(n_, [this](std::size_t i) { return (*this)[i]; }, ignore_case);
  }

 private:
  std::array<std::string_view, 16> inline_{};
  std::vector<std::string_view> more_;
  std::size_t n_ = 0;
};

// Strips spaces and horizontal tabs (HTTP's optional whitespace).
constexpr std::string_view trim_ows(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// A decimal number of digits only: no sign, no spaces, no overflow (std::stoull accepts
// " +5" and throws; data-path code must neither).
constexpr std::optional<std::uint64_t> parse_u64(std::string_view s) noexcept {
  if (s.empty() || s.size() > 20) return std::nullopt;
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    const std::uint64_t d = static_cast<std::uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

// A value for a space-separated "name=value" log line: bytes that could end the field or
// the line (controls, space, DEL) and '%' are percent-encoded, so a key like
// "a status=200" or "x%0Afake line" cannot forge a field or a line.
inline std::string log_field(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f || c == '%') {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 0xF];
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace tagd
