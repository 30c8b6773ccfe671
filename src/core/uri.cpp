#include "tagd/core/uri.hpp"

#include <algorithm>

namespace tagd {
namespace {

constexpr char kUpperHex[] = "0123456789ABCDEF";

bool is_unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
         c == '.' || c == '~';
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Runs of plain bytes are appended whole: presigned URLs carry long parameters
// (credential, signature) that are decoded on every request. `out` is overwritten.
bool percent_decode_into(std::string_view text, bool plus_is_space, std::string& out) {
  out.clear();
  out.reserve(text.size());
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t run = i;
    while (run < text.size() && text[run] != '%' && !(plus_is_space && text[run] == '+')) ++run;
    out.append(text.data() + i, run - i);
    if (run == text.size()) break;
    if (text[run] == '+') {
      out.push_back(' ');
      i = run + 1;
      continue;
    }
    if (run + 2 >= text.size()) return false;
    const int hi = hex_value(text[run + 1]);
    const int lo = hex_value(text[run + 2]);
    if (hi < 0 || lo < 0) return false;
    out.push_back(static_cast<char>(hi << 4 | lo));
    i = run + 3;
  }
  return true;
}

}  // namespace

namespace {

void append_uri_encoded(std::string& out, std::string_view text, bool encode_slash) {
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t run = i;
    while (run < text.size()) {
      const auto c = static_cast<unsigned char>(text[run]);
      if (!(is_unreserved(c) || (c == '/' && !encode_slash))) break;
      ++run;
    }
    out.append(text.data() + i, run - i);
    if (run == text.size()) break;
    const auto c = static_cast<unsigned char>(text[run]);
    const char escaped[3] = {'%', kUpperHex[c >> 4], kUpperHex[c & 0x0F]};
    out.append(escaped, 3);
    i = run + 1;
  }
}

}  // namespace

std::string uri_encode(std::string_view text, bool encode_slash) {
  std::string out;
  out.reserve(text.size() + text.size() / 2);
  append_uri_encoded(out, text, encode_slash);
  return out;
}

std::optional<std::string> uri_decode(std::string_view text) {
  std::string out;
  if (!percent_decode_into(text, false, out)) return std::nullopt;
  return out;
}

bool uri_decode_into(std::string_view text, std::string& out) {
  return percent_decode_into(text, false, out);
}

std::optional<QueryParams> parse_query(std::string_view raw_query) {
  QueryParams out;
  if (!parse_query_into(raw_query, out)) return std::nullopt;
  return out;
}

bool parse_query_into(std::string_view raw_query, QueryParams& out) {
  std::size_t n = 0;  // parameters decoded so far: out[n..] are strings to reuse
  // One allocation for a fresh list instead of its growth 1 -> 2 -> 4 -> 8 (a presigned
  // URL carries 6-8 parameters on every hit).
  if (!raw_query.empty()) {
    out.reserve(static_cast<std::size_t>(std::count(raw_query.begin(), raw_query.end(), '&')) + 1);
  }
  std::size_t start = 0;
  while (start <= raw_query.size()) {
    std::size_t amp = raw_query.find('&', start);
    if (amp == std::string_view::npos) amp = raw_query.size();
    const std::string_view piece = raw_query.substr(start, amp - start);
    start = amp + 1;
    // "a=1&&b=2" or a trailing '&' carries no parameter; S3 ignores the empty piece.
    if (piece.empty()) continue;
    if (n == out.size()) out.emplace_back();
    auto& [name, value] = out[n++];
    const std::size_t eq = piece.find('=');
    if (!percent_decode_into(piece.substr(0, eq), true, name)) return false;
    if (eq == std::string_view::npos) {
      value.clear();
    } else if (!percent_decode_into(piece.substr(eq + 1), true, value)) {
      return false;
    }
  }
  out.resize(n);
  return true;
}

std::string canonical_query_string(const QueryParams& params, std::string_view omit) {
  // Every name and value is encoded once into one scratch string; the pairs are sorted as
  // views into it (a presigned URL has about eight parameters: three allocations, not
  // two per parameter).
  struct Pair {
    std::string_view name, value;
  };
  std::size_t total = 0;
  for (const auto& [name, value] : params) total += name.size() + value.size();
  std::string scratch;
  scratch.reserve(total * 3);  // every byte escaped at worst (the views are taken after)
  std::vector<std::pair<std::size_t, std::size_t>> offsets;  // (name end, value end)
  offsets.reserve(params.size());
  std::vector<std::size_t> starts;
  starts.reserve(params.size());
  for (const auto& [name, value] : params) {
    if (!omit.empty() && name == omit) continue;
    starts.push_back(scratch.size());
    append_uri_encoded(scratch, name, true);
    const std::size_t name_end = scratch.size();
    append_uri_encoded(scratch, value, true);
    offsets.emplace_back(name_end, scratch.size());
  }
  std::vector<Pair> pairs;
  pairs.reserve(offsets.size());
  const std::string_view all(scratch);
  for (std::size_t i = 0; i < offsets.size(); ++i) {
    pairs.push_back({all.substr(starts[i], offsets[i].first - starts[i]),
                     all.substr(offsets[i].first, offsets[i].second - offsets[i].first)});
  }
  std::sort(pairs.begin(), pairs.end(), [](const Pair& a, const Pair& b) {
    return a.name != b.name ? a.name < b.name : a.value < b.value;
  });
  std::string out;
  out.reserve(scratch.size() + 2 * pairs.size());
  for (const auto& [name, value] : pairs) {
    if (!out.empty()) out.push_back('&');
    out.append(name);
    out.push_back('=');
    out.append(value);
  }
  return out;
}

std::string canonical_query_string(const QueryParams& params) { return canonical_query_string(params, {}); }

}  // namespace tagd
