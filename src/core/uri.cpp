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
// (credential, signature) that are decoded on every request.
std::optional<std::string> percent_decode(std::string_view text, bool plus_is_space) {
  std::string out;
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
    if (run + 2 >= text.size()) return std::nullopt;
    const int hi = hex_value(text[run + 1]);
    const int lo = hex_value(text[run + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi << 4 | lo));
    i = run + 3;
  }
  return out;
}

}  // namespace

std::string uri_encode(std::string_view text, bool encode_slash) {
  std::string out;
  out.reserve(text.size() + text.size() / 2);
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
  return out;
}

std::optional<std::string> uri_decode(std::string_view text) {
  return percent_decode(text, false);
}

std::optional<QueryParams> parse_query(std::string_view raw_query) {
  QueryParams out;
  std::size_t start = 0;
  while (start <= raw_query.size()) {
    std::size_t amp = raw_query.find('&', start);
    if (amp == std::string_view::npos) amp = raw_query.size();
    const std::string_view piece = raw_query.substr(start, amp - start);
    start = amp + 1;
    // "a=1&&b=2" or a trailing '&' carries no parameter; S3 ignores the empty piece.
    if (piece.empty()) continue;
    const std::size_t eq = piece.find('=');
    auto name = percent_decode(piece.substr(0, eq), true);
    auto value = eq == std::string_view::npos ? std::optional<std::string>(std::string())
                                              : percent_decode(piece.substr(eq + 1), true);
    if (!name || !value) return std::nullopt;
    out.emplace_back(std::move(*name), std::move(*value));
  }
  return out;
}

std::string canonical_query_string(const QueryParams& params) {
  std::vector<std::pair<std::string, std::string>> encoded;
  encoded.reserve(params.size());
  for (const auto& [name, value] : params)
    encoded.emplace_back(uri_encode(name, true), uri_encode(value, true));
  std::sort(encoded.begin(), encoded.end());
  std::string out;
  for (const auto& [name, value] : encoded) {
    if (!out.empty()) out.push_back('&');
    out += name;
    out.push_back('=');
    out += value;
  }
  return out;
}

}  // namespace tagd
