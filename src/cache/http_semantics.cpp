#include "tagd/core/strings.hpp"
#include "tagd/core/uri.hpp"
#include "tagd/cache/http_semantics.hpp"
#include "tagd/auth/sigv4.hpp"

#include <algorithm>
#include <array>
#include <type_traits>
#include <charconv>
#include <ctime>
#include <cstring>
#include <span>

namespace tagd::cache {
namespace {

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

std::optional<RangeSpec> parse_range_spec(std::string_view header) {
  header = trim_ows(header);
  if (header.substr(0, 6) != "bytes=") return std::nullopt;
  std::string_view spec = trim_ows(header.substr(6));
  if (spec.find(',') != std::string_view::npos) return RangeSpec{.multiple = true};
  auto dash = spec.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  auto a = trim_ows(spec.substr(0, dash));
  auto b = trim_ows(spec.substr(dash + 1));
  RangeSpec out;
  if (a.empty()) {  // suffix: last n bytes
    out.suffix = parse_u64(b);
    if (!out.suffix) return std::nullopt;
    return out;
  }
  out.first = parse_u64(a);
  if (!out.first) return std::nullopt;
  if (!b.empty()) {
    out.last = parse_u64(b);
    if (!out.last || *out.last < *out.first) return std::nullopt;
  }
  return out;
}

RangeResult parse_range(std::string_view header, std::uint64_t size) {
  auto spec = parse_range_spec(header);
  if (!spec) return {};
  if (spec->multiple) return {RangeKind::kUnsupported, {}};
  if (spec->suffix) {
    if (*spec->suffix == 0 || size == 0) return {RangeKind::kUnsatisfiable, {}};
    std::uint64_t len = std::min(*spec->suffix, size);
    return {RangeKind::kSatisfiable, {size - len, size - 1}};
  }
  std::uint64_t last = size == 0 ? 0 : size - 1;
  if (spec->last) last = std::min(*spec->last, last);
  if (*spec->first >= size) return {RangeKind::kUnsatisfiable, {}};
  return {RangeKind::kSatisfiable, {*spec->first, last}};
}

BlockSpan blocks_for(const ByteRange& range, std::uint32_t block_size) {
  return {range.first / block_size, range.last / block_size};
}

std::optional<std::chrono::system_clock::time_point> parse_http_date(std::string_view value) {
  // One parser for HTTP dates (auth's: the three RFC 9110 forms and numeric zones, dates
  // outside the clock's range refused rather than overflowed).
  return auth::parse_http_date(value);
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
          // (Clamped before the cast: 2^64-1 would turn negative.)
          const auto secs = static_cast<std::int64_t>(std::min<std::uint64_t>(*n, INT64_MAX));
          if (name == "s-maxage=" || !max_age) max_age = std::chrono::seconds(secs);
        }
      }
    }
  });
  // Lifetimes are clamped to [0, ttl] before they are added to `now`: a max-age of
  // 10^10 s or an Expires centuries away would overflow the clock.
  if (max_age) {
    f.until = now + std::min(*max_age, ttl);
  } else if (!expires.empty()) {
    auto e = parse_http_date(expires);
    auto d = date.empty() ? std::optional(now) : parse_http_date(date);
    // An invalid Expires (e.g. "0") means already expired.
    std::chrono::seconds lifetime{0};
    if (e && d) {
      using std::chrono::seconds, std::chrono::time_point_cast;
      lifetime = time_point_cast<seconds>(*e) - time_point_cast<seconds>(*d);
    }
    f.until = now + std::clamp(lifetime, std::chrono::seconds{0}, ttl);
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

namespace {

// Request headers known not to change what S3 answers to a GET/HEAD of an object, or
// whose effect the cache itself implements (Range, conditionals, Cache-Control). What
// boto3/botocore, the aws CLI, the AWS SDKs (JS v3, Go v2, Java), s3fs/aiobotocore, curl
// and browsers' fetch send on a GET, minus what changes the answer.
constexpr std::string_view kNeutralHeaders[] = {
    // Addressing and authentication (tagd verifies the request before the cache is asked).
    "host", "authorization", "x-amz-date", "date", "x-amz-content-sha256", "x-amz-security-token",
    // Client identification, SDK bookkeeping and tracing.
    "user-agent", "x-amz-user-agent", "amz-sdk-invocation-id", "amz-sdk-request", "amz-sdk-retry",
    "traceparent", "tracestate", "x-amzn-trace-id",
    // Content negotiation S3 does not do (an object's Content-Encoding is stored metadata).
    "accept", "accept-encoding", "content-type",
    // Connection management and proxies.
    "connection", "keep-alive", "proxy-connection", "te", "expect", "via", "forwarded", "x-forwarded-for",
    "x-forwarded-proto", "x-forwarded-port", "x-real-ip",
    // Answered by the cache exactly as S3 would.
    "range", "if-match", "if-none-match", "if-modified-since", "if-unmodified-since", "cache-control", "pragma",
};

// Query parameters that authenticate a presigned URL (SigV4 and SigV2): not a variant.
constexpr std::string_view kPresignParams[] = {
    "x-amz-algorithm", "x-amz-credential", "x-amz-date",          "x-amz-expires",    "x-amz-signedheaders",
    "x-amz-signature", "x-amz-security-token", "x-amz-content-sha256", "x-amz-user-agent",
};
constexpr std::string_view kSigV2Params[] = {"AWSAccessKeyId", "Expires", "Signature"};

bool in(std::string_view name, std::span<const std::string_view> list, bool case_insensitive) {
  for (auto n : list) {
    if (case_insensitive ? iequals(name, n) : name == n) return true;
  }
  return false;
}

bool checksum_mode_value(std::string_view value) { return trim_ows(value) == "ENABLED"; }



std::string_view unquote(std::string_view e) {
  e = trim_ows(e);
  if (e.size() >= 2 && e.front() == '"' && e.back() == '"') e = e.substr(1, e.size() - 2);
  return e;
}

}  // namespace

namespace {

// One request header against the allow-list; `name` is lower-case. Returns why the
// request bypasses the cache, or nullopt when the header leaves the answer cacheable.
std::optional<std::string> check_header(std::string_view name, std::string_view value, CacheKeyDecision& d,
                                        VariantParts& parts) {
  if (in(name, kNeutralHeaders, false)) return std::nullopt;
  if (name == "content-length") {
    // A GET/HEAD with an (empty) body is still a plain read.
    if (trim_ows(value) == "0") return std::nullopt;
    return "request with a body";
  }
  if (name == "x-amz-checksum-mode") {
    if (!checksum_mode_value(value)) return "x-amz-checksum-mode " + std::string(value);
    d.checksum_mode = true;
    return std::nullopt;
  }
  if (name == "x-tigris-snapshot-version") {
    if (parts.snapshot || trim_ows(value).empty()) return "unusable X-Tigris-Snapshot-Version";
    parts.snapshot = std::string(trim_ows(value));
    return std::nullopt;
  }
  if (name.rfind("x-amz-server-side-encryption-customer-", 0) == 0) return "SSE-C request";
  return "request header " + std::string(name);
}

// Lower-cases a header name into `buf` without allocating (every allow-listed name is
// shorter than the buffer; a longer one is kept as it is and bypasses as unknown).
std::string_view lower_name(std::string_view name, std::array<char, 96>& buf) {
  if (name.size() > buf.size()) return name;
  for (std::size_t i = 0; i < name.size(); ++i) buf[i] = ascii_lower(name[i]);
  return std::string_view(buf.data(), name.size());
}

template <class Headers>
CacheKeyDecision decide_cache_key(const std::vector<std::pair<std::string, std::string>>& query,
                                  const Headers& headers) {
  CacheKeyDecision d;
  VariantParts parts;
  auto bypass = [&](std::string reason) {
    d = CacheKeyDecision{};
    d.reason = std::move(reason);
    return d;
  };
  std::array<char, 96> buf;
  for (const auto& header : headers) {
    std::string_view name, value;
    if constexpr (std::is_same_v<Headers, boost::beast::http::fields>) {
      name = header.name_string();
      value = header.value();
    } else {
      name = header.first;
      value = header.second;
    }
    if (auto why = check_header(lower_name(name, buf), value, d, parts)) return bypass(std::move(*why));
  }
  for (const auto& [name, value] : query) {
    if (name == "versionId") {
      if (parts.version_id || value.empty()) return bypass("unusable versionId");
      parts.version_id = value;
    } else if (name == "x-id") {
      // SDKs add x-id=GetObject; it does not change the response.
    } else if (in(name, kPresignParams, true) || in(name, kSigV2Params, false)) {
      // Presigned-URL parameters: authentication, not a different representation.
    } else if (iequals(name, "x-amz-checksum-mode")) {
      // The AWS SDK for JavaScript v3 hoists the header into a presigned URL's query.
      if (!checksum_mode_value(value)) return bypass("x-amz-checksum-mode " + value);
      d.checksum_mode = true;
    } else {
      // partNumber, response-* overrides, sub-resources (?tagging, ?acl, ...), unknown.
      return bypass("query parameter " + name);
    }
  }
  d.variant = make_variant(parts);
  d.cacheable = true;
  return d;
}

}  // namespace

CacheKeyDecision cache_key_for(const std::vector<std::pair<std::string, std::string>>& query,
                               const std::vector<std::pair<std::string, std::string>>& headers) {
  return decide_cache_key(query, headers);
}

CacheKeyDecision cache_key_for(const std::vector<std::pair<std::string, std::string>>& query,
                               const boost::beast::http::fields& headers) {
  return decide_cache_key(query, headers);
}

std::string make_variant(const VariantParts& parts) {
  std::string v;
  if (parts.version_id) v += "versionId=" + uri_encode(*parts.version_id, true);
  if (parts.snapshot) v += (v.empty() ? "" : "&") + std::string("snapshot=") + uri_encode(*parts.snapshot, true);
  return v;
}

VariantParts parse_variant(std::string_view variant) {
  VariantParts parts;
  while (!variant.empty()) {
    auto amp = variant.find('&');
    std::string_view item = variant.substr(0, amp);
    auto eq = item.find('=');
    if (eq != std::string_view::npos) {
      std::string_view name = item.substr(0, eq);
      // make_variant encoded it, so it decodes; anything else is kept as it is.
      std::string value = uri_decode(item.substr(eq + 1)).value_or(std::string(item.substr(eq + 1)));
      if (name == "versionId") parts.version_id = std::move(value);
      if (name == "snapshot") parts.snapshot = std::move(value);
    }
    if (amp == std::string_view::npos) break;
    variant.remove_prefix(amp + 1);
  }
  return parts;
}

bool immutable_variant(std::string_view variant) { return parse_variant(variant).snapshot.has_value(); }

std::optional<ContentRange> parse_content_range(std::string_view value) {
  value = trim_ows(value);
  if (value.substr(0, 6) != "bytes ") return std::nullopt;
  value.remove_prefix(6);
  auto dash = value.find('-');
  auto slash = value.find('/');
  if (dash == std::string_view::npos || slash == std::string_view::npos || dash > slash) return std::nullopt;
  auto a = parse_u64(value.substr(0, dash));
  auto b = parse_u64(value.substr(dash + 1, slash - dash - 1));
  auto total = parse_u64(value.substr(slash + 1));
  if (!a || !b || !total || *b < *a || *b >= *total) return std::nullopt;
  return ContentRange{*a, *b, *total};
}

FillVerdict check_fill_response(int status, std::string_view content_range, std::string_view content_length,
                                std::string_view etag, const FillExpectation& expected, std::string& why) {
  if (status == 412 || status == 404) {
    why = "upstream answered " + std::to_string(status);
    return FillVerdict::kChanged;
  }
  if (status != 200 && status != 206) {
    why = "upstream answered " + std::to_string(status);
    return FillVerdict::kBad;
  }
  if (etag.empty()) {
    why = "no ETag in the answer";
    return FillVerdict::kBad;
  }
  // The same object comes back with the same ETag (quotes are not significant).
  if (unquote(etag) != unquote(expected.etag)) {
    why = "ETag " + std::string(etag) + " instead of " + std::string(expected.etag);
    return FillVerdict::kChanged;
  }
  if (status == 206) {
    auto cr = parse_content_range(content_range);
    if (!cr) {
      why = "unusable Content-Range '" + std::string(content_range) + "'";
      return FillVerdict::kBad;
    }
    if (cr->size != expected.size) {
      why = "object size " + std::to_string(cr->size) + " instead of " + std::to_string(expected.size);
      return FillVerdict::kChanged;
    }
    if (cr->first != expected.first || cr->last != expected.last) {
      why = "Content-Range '" + std::string(content_range) + "' for bytes " + std::to_string(expected.first) + "-" +
            std::to_string(expected.last);
      return FillVerdict::kBad;
    }
    return FillVerdict::kOk;
  }
  // 200: the upstream sent the whole object. Usable only if that is what was asked for.
  auto length = parse_u64(trim_ows(content_length));
  if (!length) {
    why = "200 without Content-Length";
    return FillVerdict::kBad;
  }
  if (*length != expected.size) {
    why = "object size " + std::to_string(*length) + " instead of " + std::to_string(expected.size);
    return FillVerdict::kChanged;
  }
  if (expected.first != 0 || expected.last + 1 != expected.size) {
    why = "200 (whole object) for bytes " + std::to_string(expected.first) + "-" + std::to_string(expected.last);
    return FillVerdict::kBad;
  }
  return FillVerdict::kOk;
}

bool is_checksum_header(std::string_view name) {
  return name.size() > 15 && iequals(name.substr(0, 15), "x-amz-checksum-");
}

bool return_checksums(const ChecksumContext& c) {
  if (!c.checksum_mode) return false;
  if (!c.partial) return true;
  // A range: only one that covers the whole object, and only for an object uploaded in
  // one part (a multipart ETag ends in "-<parts>").
  const bool whole = c.size > 0 && c.range.first == 0 && c.range.last + 1 == c.size;
  return whole && unquote(c.etag).find('-') == std::string_view::npos;
}

}  // namespace tagd::cache

namespace tagd::cache {
namespace {

// Fields a hit's head gets from elsewhere (the read path, the writer) or drops: a cached
// header of one of these names would make the prepared head differ from the one built
// field by field, so such a head is not prepared.
bool reserved_for_the_answer(std::string_view name) {
  static constexpr std::string_view kReserved[] = {
      "accept-ranges", "content-range", "content-length",   "x-cache", "server",  "x-amz-request-id",  "warning",
      "connection",    "keep-alive",    "proxy-connection", "te",      "trailer", "transfer-encoding", "upgrade"};
  for (auto r : kReserved) {
    if (iequals(name, r)) return true;
  }
  return false;
}

// What Beast's set() keeps of a value (it trims spaces and tabs), and what it refuses.
bool writable_verbatim(std::string_view name, std::string_view value) {
  constexpr std::size_t kBeastLimit = 65535 - 2;  // name and value lengths are uint16 offsets
  if (name.empty() || name.size() > kBeastLimit || value.size() > kBeastLimit) return false;
  return name.find_first_of("\r\n:") == std::string_view::npos && value.find_first_of("\r\n") == std::string_view::npos;
}

// Beast's set(): every earlier field of the same name (any case) goes, the new one is last.
void set_field(std::vector<std::pair<std::string_view, std::string_view>>& fields, std::string_view name,
               std::string_view value) {
  std::erase_if(fields, [&](const auto& f) { return iequals(f.first, name); });
  fields.emplace_back(name, trim_ows(value));
}

void serialise(const std::vector<std::pair<std::string_view, std::string_view>>& fields, std::string& out) {
  std::size_t n = 0;
  for (const auto& [name, value] : fields) n += name.size() + value.size() + 4;
  out.reserve(n);
  for (const auto& [name, value] : fields) {
    out.append(name);
    out.append(": ");
    out.append(value);
    out.append("\r\n");
  }
}

}  // namespace

PreparedHead prepare_head(const ObjectMeta& meta) {
  PreparedHead out;
  std::vector<std::pair<std::string_view, std::string_view>> fields;
  fields.reserve(meta.headers.size() + 2);
  // The order ReadPath::answer sets them in: ETag, Last-Modified, the replayed headers.
  set_field(fields, "ETag", meta.etag);
  if (!meta.last_modified.empty()) set_field(fields, "Last-Modified", meta.last_modified);
  for (const auto& [name, value] : meta.headers) {
    if (reserved_for_the_answer(name) || !writable_verbatim(name, value)) out.usable = false;
    set_field(fields, name, value);
  }
  std::vector<std::pair<std::string_view, std::string_view>> checksums;
  for (const auto& [name, value] : meta.checksums) {
    if (reserved_for_the_answer(name) || !writable_verbatim(name, value)) out.usable = false;
    // Set after the fields: one of the same name would be replaced, not kept in place.
    for (const auto& f : fields) {
      if (iequals(f.first, name)) out.usable = false;
    }
    set_field(checksums, name, value);
  }
  if (!writable_verbatim("ETag", meta.etag) || !writable_verbatim("Last-Modified", meta.last_modified)) {
    out.usable = false;
  }
  serialise(fields, out.fields);
  serialise(checksums, out.checksums);
  return out;
}

PreparedAnswer PreparedAnswer::make(std::shared_ptr<const PreparedHead> head, bool checksums, bool partial,
                                    ByteRange range, std::uint64_t size) {
  PreparedAnswer a;
  a.status = partial ? 206 : 200;
  a.head = std::move(head);
  a.checksums = checksums;
  char* p = a.own.data();
  char* const end = p + a.own.size();
  auto put = [&](std::string_view text) {
    std::memcpy(p, text.data(), text.size());
    p += text.size();
  };
  auto number = [&](std::uint64_t v) { p = std::to_chars(p, end, v).ptr; };
  // 22 + 21 + 3 * 20 + 4 bytes at most: own has room for all of it.
  put("Accept-Ranges: bytes\r\n");
  if (partial) {
    put("Content-Range: bytes ");
    number(range.first);
    put("-");
    number(range.last);
    put("/");
    number(size);
    put("\r\n");
  }
  a.own_size = static_cast<std::size_t>(p - a.own.data());
  return a;
}

}  // namespace tagd::cache
