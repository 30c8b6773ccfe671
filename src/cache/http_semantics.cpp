#include "tagd/core/strings.hpp"
#include "tagd/cache/http_semantics.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <ctime>

namespace tagd::cache {
namespace {

std::optional<std::uint64_t> parse_u64(std::string_view s) {
  if (s.empty() || s.size() > 19) return std::nullopt;
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

// Splits a comma list and calls fn(token) on each trimmed token.
template <class Fn>
void for_each_token(std::string_view list, Fn fn) {
  while (true) {
    auto comma = list.find(',');
    auto token = trim_ows(list.substr(0, comma));
    if (!token.empty()) fn(token);
    if (comma == std::string_view::npos) return;
    list.remove_prefix(comma + 1);
  }
}

std::string_view strip_weak(std::string_view etag) {
  etag = trim_ows(etag);
  if (etag.size() >= 2 && (etag[0] == 'W' || etag[0] == 'w') && etag[1] == '/') etag.remove_prefix(2);
  return etag;
}

bool etag_list_matches(std::string_view list, std::string_view etag, bool weak) {
  bool match = false;
  for_each_token(list, [&](std::string_view token) {
    if (token == "*") {
      match = true;
    } else if (weak) {
      match = match || strip_weak(token) == strip_weak(etag);
    } else {
      // Strong comparison: neither may be weak. S3 also accepts an unquoted ETag.
      auto unquote = [](std::string_view e) {
        if (e.size() >= 2 && e.front() == '"' && e.back() == '"') e = e.substr(1, e.size() - 2);
        return e;
      };
      bool token_weak = token.size() > 1 && token[0] == 'W' && token[1] == '/';
      bool etag_weak = etag.size() > 1 && etag[0] == 'W' && etag[1] == '/';
      match = match || (!token_weak && !etag_weak && unquote(token) == unquote(etag));
    }
  });
  return match;
}

}  // namespace

RangeResult parse_range(std::string_view header, std::uint64_t size) {
  header = trim_ows(header);
  if (header.substr(0, 6) != "bytes=") return {};
  std::string_view spec = trim_ows(header.substr(6));
  if (spec.find(',') != std::string_view::npos) return {RangeKind::kUnsupported, {}};
  auto dash = spec.find('-');
  if (dash == std::string_view::npos) return {};
  auto a = trim_ows(spec.substr(0, dash));
  auto b = trim_ows(spec.substr(dash + 1));
  if (a.empty()) {  // suffix: last n bytes
    auto n = parse_u64(b);
    if (!n) return {};
    if (*n == 0 || size == 0) return {RangeKind::kUnsatisfiable, {}};
    std::uint64_t len = std::min(*n, size);
    return {RangeKind::kSatisfiable, {size - len, size - 1}};
  }
  auto first = parse_u64(a);
  if (!first) return {};
  std::uint64_t last = size == 0 ? 0 : size - 1;
  if (!b.empty()) {
    auto l = parse_u64(b);
    if (!l || *l < *first) return {};
    last = std::min(*l, last);
  }
  if (*first >= size) return {RangeKind::kUnsatisfiable, {}};
  return {RangeKind::kSatisfiable, {*first, last}};
}

BlockSpan blocks_for(const ByteRange& range, std::uint32_t block_size) {
  return {range.first / block_size, range.last / block_size};
}

std::optional<std::chrono::system_clock::time_point> parse_http_date(std::string_view value) {
  std::tm tm{};
  std::string v(trim_ows(value));
  // IMF-fixdate first; RFC 850 and asctime are obsolete but still legal.
  for (const char* format : {"%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT", "%a %b %d %H:%M:%S %Y"}) {
    tm = {};
    const char* end = strptime(v.c_str(), format, &tm);
    if (end != nullptr && *end == '\0') return std::chrono::system_clock::from_time_t(timegm(&tm));
  }
  return std::nullopt;
}

ConditionalOutcome evaluate_conditionals(const ConditionalHeaders& h, std::string_view etag,
                                         std::string_view last_modified) {
  auto modified = parse_http_date(last_modified);
  if (h.if_match != nullptr) {
    if (!etag_list_matches(*h.if_match, etag, /*weak=*/false)) return ConditionalOutcome::kPreconditionFailed;
  } else if (h.if_unmodified_since != nullptr) {
    auto since = parse_http_date(*h.if_unmodified_since);
    if (since && modified && *modified > *since) return ConditionalOutcome::kPreconditionFailed;
  }
  if (h.if_none_match != nullptr) {
    if (etag_list_matches(*h.if_none_match, etag, /*weak=*/true)) return ConditionalOutcome::kNotModified;
  } else if (h.if_modified_since != nullptr) {
    auto since = parse_http_date(*h.if_modified_since);
    if (since && modified && *modified <= *since) return ConditionalOutcome::kNotModified;
  }
  return ConditionalOutcome::kProceed;
}

Freshness freshness(std::string_view cache_control, std::string_view expires, std::string_view date,
                    std::chrono::system_clock::time_point now, std::chrono::seconds ttl) {
  Freshness f;
  f.until = now + ttl;
  std::optional<std::chrono::seconds> max_age;
  bool revalidate = false;
  for_each_token(cache_control, [&](std::string_view token) {
    std::string t = to_lower(token);
    if (t == "no-store" || t == "private") f.storable = false;
    if (t == "no-cache") revalidate = true;
    for (std::string_view name : {"s-maxage=", "max-age="}) {
      if (t.rfind(name, 0) == 0) {
        if (auto n = parse_u64(std::string_view(t).substr(name.size()))) {
          // s-maxage wins over max-age for a shared cache.
          if (name == "s-maxage=" || !max_age) max_age = std::chrono::seconds(static_cast<std::int64_t>(*n));
        }
      }
    }
  });
  if (max_age) {
    f.until = std::min(f.until, now + *max_age);
  } else if (!expires.empty()) {
    auto e = parse_http_date(expires);
    auto d = date.empty() ? std::optional(now) : parse_http_date(date);
    // An invalid Expires (e.g. "0") means already expired.
    f.until = std::min(f.until, (e && d) ? now + (*e - *d) : now);
  }
  if (revalidate) f.until = now;
  return f;
}

ClientDirective client_directive(std::string_view cache_control, std::string_view pragma) {
  ClientDirective d = ClientDirective::kNone;
  for_each_token(cache_control, [&](std::string_view token) {
    std::string t = to_lower(token);
    if (t == "no-store") d = ClientDirective::kBypass;
    if (d != ClientDirective::kBypass && (t == "no-cache" || t == "max-age=0")) d = ClientDirective::kRevalidate;
  });
  if (d == ClientDirective::kNone && to_lower(trim_ows(pragma)) == "no-cache") d = ClientDirective::kRevalidate;
  return d;
}

CacheKeyDecision cache_key_for(const std::vector<std::pair<std::string, std::string>>& query,
                               const std::vector<std::string>& header_names) {
  CacheKeyDecision d;
  for (const auto& h : header_names) {
    if (h.rfind("x-amz-server-side-encryption-customer-", 0) == 0) {
      d.reason = "SSE-C request";
      return d;
    }

  }
  for (const auto& [name, value] : query) {
    if (name == "versionId") {
      d.variant = "versionId=" + value;
    } else if (name == "x-id") {
      // SDKs add x-id=GetObject; it does not change the response.
    } else if (name.rfind("X-Amz-", 0) == 0) {
      // Presigned-URL parameters: authentication, not a different representation.
    } else {
      // partNumber, response-* overrides, sub-resources (?tagging, ?acl, ...).
      d.reason = "query parameter " + name;
      return d;
    }
  }
  d.cacheable = true;
  return d;
}

}  // namespace tagd::cache
