#pragma once
// Shared helpers for the libFuzzer targets in tests/fuzz/.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

// An invariant that must hold for every input: a violation aborts, which libFuzzer
// reports as a crash and saves the input.
#define TAGD_FUZZ_CHECK(cond)                                                             \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                       \
    }                                                                                     \
  } while (0)

namespace tagd::fuzz {

// TAGD_FUZZ_DEBUG=1 makes targets say why an input was refused (to check seeds by hand:
// `TAGD_FUZZ_DEBUG=1 build-fuzz/fuzz/<name>_fuzz tests/fuzz/corpus/<name>/*`).
inline bool debug() {
  static const bool on = std::getenv("TAGD_FUZZ_DEBUG") != nullptr;
  return on;
}

inline std::string_view as_view(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Splits text at the first occurrence of `sep` (separator dropped). Without `sep` the
// whole text goes to the head and the rest is empty.
inline std::string_view take_until(std::string_view& text, std::string_view sep) {
  auto pos = text.find(sep);
  if (pos == std::string_view::npos) {
    auto head = text;
    text = {};
    return head;
  }
  auto head = text.substr(0, pos);
  text.remove_prefix(pos + sep.size());
  return head;
}

// Text-form inputs used by several targets (readable seeds, easy to write by hand):
//   line 1..n      fields, one per line ("\n")
//   "name: value"  header lines until an empty line
//   rest           body
inline std::vector<std::pair<std::string, std::string>> take_headers(std::string_view& text) {
  std::vector<std::pair<std::string, std::string>> headers;
  while (!text.empty()) {
    auto line = take_until(text, "\n");
    if (line.empty()) break;
    auto colon = line.find(':');
    if (colon == std::string_view::npos) {
      headers.emplace_back(std::string(line), std::string());
      continue;
    }
    auto value = line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    headers.emplace_back(std::string(line.substr(0, colon)), std::string(value));
  }
  return headers;
}

}  // namespace tagd::fuzz
