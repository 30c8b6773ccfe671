#include "tagd/core/strings.hpp"
#include "tagd/auth/sigv4.hpp"

#include <algorithm>
#include <array>
#include <optional>
#include <vector>

namespace tagd::auth {
namespace {

constexpr std::string_view kScopeTerminator = "aws4_request";
constexpr std::int64_t kMaxPresignExpires = 604800;  // seven days, S3's hard limit

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_space(char c) {
  return c == ' ' || c == '\t';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// Appends the value with leading/trailing whitespace removed and inner runs collapsed to
// one space, as the canonical header rules require.
void append_collapsed(std::string& out, std::string_view value) {
  value = trim(value);
  bool in_space = false;
  for (const char c : value) {
    if (is_space(c)) {
      in_space = true;
      continue;
    }
    if (in_space) out.push_back(' ');
    in_space = false;
    out.push_back(c);
  }
}

void append_digits(std::string& out, long value, int width) {
  std::array<char, 24> buf{};
  int n = 0;
  const bool negative = value < 0;
  unsigned long v = negative ? 0UL - static_cast<unsigned long>(value) : static_cast<unsigned long>(value);
  do {
    buf[static_cast<std::size_t>(n++)] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0 && n < static_cast<int>(buf.size()));
  if (negative) out.push_back('-');
  for (int i = n; i < width; ++i) out.push_back('0');
  while (n > 0) out.push_back(buf[static_cast<std::size_t>(--n)]);
}

// Parses exactly `width` ASCII digits starting at s[pos].
std::optional<int> parse_fixed_digits(std::string_view s, std::size_t pos, std::size_t width) {
  if (pos + width > s.size()) return std::nullopt;
  int v = 0;
  for (std::size_t i = pos; i < pos + width; ++i) {
    if (!is_digit(s[i])) return std::nullopt;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

std::optional<std::chrono::system_clock::time_point> make_time(int y, int mon, int d, int h, int min,
                                                               int sec) {
  using namespace std::chrono;
  if (mon < 1 || mon > 12 || d < 1 || d > 31) return std::nullopt;
  const year_month_day ymd{year{y}, month{static_cast<unsigned>(mon)}, day{static_cast<unsigned>(d)}};
  if (!ymd.ok()) return std::nullopt;
  // Leap seconds are not representable in system_clock; no client sends them.
  if (h < 0 || h > 23 || min < 0 || min > 59 || sec < 0 || sec > 59) return std::nullopt;
  const sys_seconds t = sys_days{ymd} + hours{h} + minutes{min} + seconds{sec};
  // system_clock counts nanoseconds in 64 bits (1677-09-21 .. 2262-04-11); converting a
  // date outside that range would overflow (undefined behaviour, found by fuzzing).
  if (t < time_point_cast<seconds>(system_clock::time_point::min()) ||
      t > time_point_cast<seconds>(system_clock::time_point::max())) {
    return std::nullopt;
  }
  return system_clock::time_point{t};
}

bool valid_scope_date(std::string_view date) {
  if (date.size() != 8) return false;
  const auto y = parse_fixed_digits(date, 0, 4);
  const auto m = parse_fixed_digits(date, 4, 2);
  const auto d = parse_fixed_digits(date, 6, 2);
  return y && m && d && make_time(*y, *m, *d, 0, 0, 0).has_value();
}

bool is_token_char(char c) {
  // RFC 9110 tchar; header names in SignedHeaders and scope parts must be plain tokens.
  if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7F) return false;
  static constexpr std::string_view kSeparators = "\"(),/:;<=>?@[\\]{}";
  return kSeparators.find(c) == std::string_view::npos;
}

bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_token_char);
}

// A table and no early exit: a signature's digits and letters are random, so a per-byte
// branch mispredicted about every other byte (2 % of a presigned hit's CPU).
constexpr std::array<std::uint8_t, 256> kLowerHex = [] {
  std::array<std::uint8_t, 256> t{};
  for (int c = 0; c < 256; ++c) t[static_cast<std::size_t>(c)] = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  return t;
}();

bool is_lower_hex_signature(std::string_view s) {
  if (s.size() != 64) return false;
  unsigned all = 1;
  for (char c : s) all &= kLowerHex[static_cast<unsigned char>(c)];
  return all != 0;
}

struct Credential {
  std::string_view access_key_id;
  std::string_view date;
  std::string_view region;
  std::string_view service;
};

// "AKID/20130524/us-east-1/s3/aws4_request" → parts (views into `text`). The key id
// cannot contain '/', so a plain split is unambiguous.
std::optional<Credential> parse_credential(std::string_view text) {
  std::array<std::string_view, 5> parts{};
  std::size_t count = 0;
  std::size_t start = 0;
  while (true) {
    const std::size_t slash = text.find('/', start);
    if (count == parts.size()) return std::nullopt;
    parts[count++] =
        text.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  if (count != parts.size()) return std::nullopt;
  if (parts[0].empty() || !std::all_of(parts[0].begin(), parts[0].end(), is_token_char)) return std::nullopt;
  if (!valid_scope_date(parts[1]) || !is_token(parts[2]) || !is_token(parts[3]) ||
      parts[4] != kScopeTerminator) {
    return std::nullopt;
  }
  return Credential{parts[0], parts[1], parts[2], parts[3]};
}

// The fields both parsers (Authorization header, presigned query) hand back, as views.
SignatureFieldsView fields_view(const Credential& cred, std::string_view signed_headers,
                                std::string_view signature) {
  SignatureFieldsView out;
  out.access_key_id = cred.access_key_id;
  out.date = cred.date;
  out.region = cred.region;
  out.service = cred.service;
  out.signed_headers = signed_headers;
  out.signature = signature;
  return out;
}

// Calls f(name) for each ';'-separated name of a SignedHeaders text; false as soon as f does.
template <typename F>
bool for_each_signed_header(std::string_view text, F&& f) {
  std::size_t start = 0;
  while (true) {
    const std::size_t semi = text.find(';', start);
    if (!f(text.substr(start, semi == std::string_view::npos ? std::string_view::npos : semi - start))) return false;
    if (semi == std::string_view::npos) return true;
    start = semi + 1;
  }
}

// "host;range;x-amz-date": every name a token, none twice (in any case: the canonical
// form is lower-case whatever the client wrote, and a duplicate would make the canonical
// header block ambiguous).
bool valid_signed_headers(std::string_view text) {
  NameList names;
  const bool tokens = for_each_signed_header(text, [&](std::string_view name) {
    names.push_back(name);
    return is_token(name);
  });
  return tokens && !names.repeated(true);
}

// The names, lower-cased, as owned strings (the owning parsers' form).
std::optional<std::vector<std::string>> parse_signed_headers(std::string_view text) {
  if (!valid_signed_headers(text)) return std::nullopt;
  std::vector<std::string> out;
  (void)for_each_signed_header(text, [&](std::string_view name) {
    out.push_back(to_lower(name));
    return true;
  });
  return out;
}

// RFC 3986 section 5.2.4 plus collapsing of empty segments. A trailing '.' or '..' leaves a
// directory, hence the trailing slash, matching the reference algorithm.
std::string normalize_path(std::string_view path) {
  std::vector<std::string_view> segments;
  bool ends_with_dir = true;
  std::size_t start = 0;
  while (true) {
    const std::size_t slash = path.find('/', start);
    const std::string_view seg =
        path.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (seg.empty() || seg == ".") {
      ends_with_dir = true;
    } else if (seg == "..") {
      if (!segments.empty()) segments.pop_back();
      ends_with_dir = true;
    } else {
      segments.push_back(seg);
      ends_with_dir = false;
    }
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  std::string out;
  for (const auto seg : segments) {
    out.push_back('/');
    out.append(seg);
  }
  if (out.empty() || ends_with_dir) out.push_back('/');
  return out;
}

const std::string* find_unique(const QueryParams& params, std::string_view name, bool& duplicate) {
  const std::string* found = nullptr;
  for (const auto& [key, value] : params) {
    if (key != name) continue;
    if (found != nullptr) duplicate = true;
    found = &value;
  }
  return found;
}

Status query_error(std::string message) {
  return Status(ErrorCode::kAuthorizationQueryParametersError, std::move(message));
}

Status header_error(std::string message) {
  return Status(ErrorCode::kAuthorizationHeaderMalformed, std::move(message));
}

constexpr std::array<std::string_view, 7> kWeekdaysShort = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
constexpr std::array<std::string_view, 7> kWeekdaysLong = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                                           "Thursday", "Friday", "Saturday"};
constexpr std::array<std::string_view, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

std::optional<int> parse_month(std::string_view s) {
  for (std::size_t i = 0; i < kMonths.size(); ++i) {
    if (s == kMonths[i]) return static_cast<int>(i) + 1;
  }
  return std::nullopt;
}

template <std::size_t N>
bool is_one_of(std::string_view s, const std::array<std::string_view, N>& names) {
  return std::find(names.begin(), names.end(), s) != names.end();
}

// "08:49:37" at pos.
bool parse_clock(std::string_view s, std::size_t pos, int& h, int& m, int& sec) {
  if (pos + 8 > s.size() || s[pos + 2] != ':' || s[pos + 5] != ':') return false;
  const auto hh = parse_fixed_digits(s, pos, 2);
  const auto mm = parse_fixed_digits(s, pos + 3, 2);
  const auto ss = parse_fixed_digits(s, pos + 6, 2);
  if (!hh || !mm || !ss) return false;
  h = *hh;
  m = *mm;
  sec = *ss;
  return true;
}

}  // namespace

std::optional<std::string> canonical_uri_s3(std::string_view raw_path) {
  auto decoded = uri_decode(raw_path);
  if (!decoded) return std::nullopt;
  if (decoded->empty()) return std::string("/");
  return uri_encode(*decoded, false);
}

std::optional<std::string> canonical_uri_generic(std::string_view raw_path) {
  // The wire path is already the client's first encoding, so a single encode here is the
  // "second" one: "/example space/" → "/example%20space/", "/%E1" → "/%25E1" (suite).
  // Still refuse malformed escapes so garbage never reaches a signature comparison.
  if (!uri_decode(raw_path)) return std::nullopt;
  return uri_encode(normalize_path(raw_path), false);
}

namespace {

// name:value lines for the signed headers (see canonical_headers()).
template <typename Names>
Status append_canonical_headers(std::string& out, const HeaderList& headers, const Names& signed_headers) {
  for (const auto& name : signed_headers) {
    out.append(name);
    out.push_back(':');
    bool found = false;
    for (const auto& [header_name, value] : headers) {
      if (!iequals(header_name, name)) continue;
      if (found) out.push_back(',');
      append_collapsed(out, value);
      found = true;
    }
    if (!found) {
      return Status(ErrorCode::kSignatureDoesNotMatch,
                    "signed header '" + std::string(name) + "' is not present in the request");
    }
    out.push_back('\n');
  }
  return Status::ok();
}

// RFC 3986 unreserved bytes, as a table: already_canonical() runs over every byte of
// every signed request's path and query.
constexpr std::array<bool, 256> kUnreserved = [] {
  std::array<bool, 256> t{};
  for (int c = 0; c < 256; ++c) {
    t[static_cast<std::size_t>(c)] = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                                     c == '-' || c == '_' || c == '.' || c == '~';
  }
  return t;
}();

bool is_unreserved(unsigned char c) { return kUnreserved[c]; }

int upper_hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;  // lower-case hex is valid on the wire but not canonical
}

// True when uri_encode(uri_decode(text)) == text: every byte unreserved (or '/' when
// `keep_slash`), every escape upper-case and of a byte that encoding would escape again.
// ('+' is not canonical: a query decodes it to a space, which encodes as %20.)
bool already_canonical(std::string_view text, bool keep_slash) {
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (is_unreserved(c) || (keep_slash && c == '/')) continue;
    if (c != '%' || i + 2 >= text.size()) return false;
    const int hi = upper_hex_value(text[i + 1]);
    const int lo = upper_hex_value(text[i + 2]);
    if (hi < 0 || lo < 0) return false;
    const auto byte = static_cast<unsigned char>(hi << 4 | lo);
    if (is_unreserved(byte) || (keep_slash && byte == '/')) return false;
    i += 2;
  }
  return true;
}

// The canonical query string from the raw query in place, when every parameter is
// already canonical; false (nothing appended) otherwise.
bool append_raw_canonical_query(std::string& out, std::string_view raw_query, std::string_view omit) {
  if (!already_canonical(omit, false)) return false;
  using Pair = std::pair<std::string_view, std::string_view>;
  thread_local std::vector<Pair> pairs;  // reused: no allocation once grown
  pairs.clear();
  std::size_t start = 0;
  while (start <= raw_query.size()) {
    std::size_t amp = raw_query.find('&', start);
    if (amp == std::string_view::npos) amp = raw_query.size();
    const std::string_view piece = raw_query.substr(start, amp - start);
    start = amp + 1;
    if (piece.empty()) continue;  // parse_query skips empty pieces too
    const std::size_t eq = piece.find('=');
    const std::string_view name = piece.substr(0, eq);
    const std::string_view value = eq == std::string_view::npos ? std::string_view() : piece.substr(eq + 1);
    if (!already_canonical(name, false) || !already_canonical(value, false)) return false;
    if (!omit.empty() && name == omit) continue;
    pairs.emplace_back(name, value);
  }
  std::sort(pairs.begin(), pairs.end());
  bool first = true;
  for (const auto& [name, value] : pairs) {
    if (!first) out.push_back('&');
    first = false;
    out.append(name);
    out.push_back('=');
    out.append(value);
  }
  return true;
}

}  // namespace

Result<std::string> canonical_headers(const HeaderList& headers,
                                      const std::vector<std::string>& signed_headers) {
  std::string out;
  if (Status s = append_canonical_headers(out, headers, signed_headers); !s) return s;
  return out;
}

Status append_canonical_request(std::string& out, const ReceivedRequest& request) {
  static const HeaderList kNoHeaders;
  static const std::vector<std::string_view> kNoNames;
  static const QueryParams kNoParams;
  const auto& names = request.signed_headers != nullptr ? *request.signed_headers : kNoNames;
  out.append(request.method);
  out.push_back('\n');
  if (!request.raw_path.empty() && already_canonical(request.raw_path, true)) {
    out.append(request.raw_path);
  } else {
    auto uri = canonical_uri_s3(request.raw_path);
    if (!uri) return Status(ErrorCode::kInvalidArgument, "malformed percent-escape in path");
    out += *uri;
  }
  out.push_back('\n');
  if (!append_raw_canonical_query(out, request.raw_query, request.omit_param)) {
    std::optional<QueryParams> parsed;
    const QueryParams* query = request.query;
    if (query == nullptr) {
      parsed = parse_query(request.raw_query);
      if (!parsed) return Status(ErrorCode::kInvalidArgument, "malformed percent-escape in query string");
      query = &*parsed;
    }
    out += canonical_query_string(*query, request.omit_param);
  }
  out.push_back('\n');
  if (Status s = append_canonical_headers(out, request.headers != nullptr ? *request.headers : kNoHeaders, names); !s) {
    return s;
  }
  out.push_back('\n');
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i != 0) out.push_back(';');
    out.append(names[i]);
  }
  out.push_back('\n');
  out.append(request.payload_hash);
  return Status::ok();
}

Result<std::string> canonical_request(const CanonicalRequestParts& parts) {
  static const HeaderList kNoHeaders;
  auto headers =
      canonical_headers(parts.headers != nullptr ? *parts.headers : kNoHeaders, parts.signed_headers);
  if (!headers) return headers.error();
  std::string out;
  out.reserve(256 + headers->size());
  out.append(parts.method);
  out.push_back('\n');
  out += parts.canonical_uri;
  out.push_back('\n');
  out += parts.query_view != nullptr ? canonical_query_string(*parts.query_view, parts.omit_param)
                                     : canonical_query_string(parts.query);
  out.push_back('\n');
  out += *headers;
  out.push_back('\n');
  for (std::size_t i = 0; i < parts.signed_headers.size(); ++i) {
    if (i != 0) out.push_back(';');
    out += parts.signed_headers[i];
  }
  out.push_back('\n');
  out.append(parts.payload_hash);
  return out;
}

std::string CredentialScope::to_string() const {
  std::string out;
  out.reserve(date.size() + region.size() + service.size() + 16);
  out += date;
  out.push_back('/');
  out += region;
  out.push_back('/');
  out += service;
  out.push_back('/');
  out.append(kScopeTerminator);
  return out;
}

void append_string_to_sign(std::string& out, std::string_view amz_date, std::string_view date, std::string_view region,
                           std::string_view service, std::string_view canonical_request) {
  out.append(kAlgorithm);
  out.push_back('\n');
  out.append(amz_date);
  out.push_back('\n');
  out.append(date);
  out.push_back('/');
  out.append(region);
  out.push_back('/');
  out.append(service);
  out.push_back('/');
  out.append(kScopeTerminator);
  out.push_back('\n');
  const Sha256Digest digest = sha256(canonical_request);
  char hex[2 * digest.size()];
  to_hex(digest, hex);
  out.append(hex, sizeof hex);
}

std::string string_to_sign(std::string_view amz_date, const CredentialScope& scope,
                           std::string_view canonical_request) {
  std::string out;
  append_string_to_sign(out, amz_date, scope.date, scope.region, scope.service, canonical_request);
  return out;
}

Sha256Digest signing_key(std::string_view secret_access_key, const CredentialScope& scope) {
  std::string k_secret = "AWS4";
  k_secret.append(secret_access_key);
  Sha256Digest key = hmac_sha256(std::string_view(k_secret), scope.date);
  // Don't leave the raw secret lying in freed heap memory.
  std::fill(k_secret.begin(), k_secret.end(), '\0');
  key = hmac_sha256(key, scope.region);
  key = hmac_sha256(key, scope.service);
  return hmac_sha256(key, kScopeTerminator);
}

std::string signature_hex(const Sha256Digest& signing_key, std::string_view string_to_sign) {
  return to_hex(hmac_sha256(signing_key, string_to_sign));
}

Result<SignatureFieldsView> parse_authorization_header_view(std::string_view value) {
  value = trim(value);
  std::size_t sp = 0;
  while (sp < value.size() && !is_space(value[sp])) ++sp;
  const std::string_view algorithm = value.substr(0, sp);
  if (algorithm != kAlgorithm) {
    return header_error("unsupported authorization algorithm '" + std::string(algorithm) + "'");
  }
  std::string_view rest = trim(value.substr(sp));

  std::optional<std::string_view> credential;
  std::optional<std::string_view> signed_headers;
  std::optional<std::string_view> signature;
  std::size_t start = 0;
  while (start <= rest.size()) {
    std::size_t comma = rest.find(',', start);
    if (comma == std::string_view::npos) comma = rest.size();
    const std::string_view part = trim(rest.substr(start, comma - start));
    start = comma + 1;
    const std::size_t eq = part.find('=');
    if (eq == std::string_view::npos) return header_error("authorization component without '='");
    const std::string_view key = trim(part.substr(0, eq));
    const std::string_view val = trim(part.substr(eq + 1));
    std::optional<std::string_view>* slot = nullptr;
    if (key == "Credential") {
      slot = &credential;
    } else if (key == "SignedHeaders") {
      slot = &signed_headers;
    } else if (key == "Signature") {
      slot = &signature;
    } else {
      return header_error("unknown authorization component '" + std::string(key) + "'");
    }
    if (slot->has_value()) return header_error("repeated authorization component '" + std::string(key) + "'");
    *slot = val;
  }
  if (!credential || !signed_headers || !signature) {
    return header_error("authorization header needs Credential, SignedHeaders and Signature");
  }
  auto cred = parse_credential(*credential);
  if (!cred) return header_error("malformed credential '" + std::string(*credential) + "'");
  if (!valid_signed_headers(*signed_headers)) return header_error("malformed SignedHeaders");
  if (!is_lower_hex_signature(*signature)) return header_error("signature must be 64 lower-case hex digits");

  return fields_view(*cred, *signed_headers, *signature);
}

namespace {

CredentialScope owned_scope(const SignatureFieldsView& v) {
  return CredentialScope{std::string(v.date), std::string(v.region), std::string(v.service)};
}

}  // namespace

Result<AuthorizationHeader> parse_authorization_header(std::string_view value) {
  auto v = parse_authorization_header_view(value);
  if (!v) return v.error();
  AuthorizationHeader out;
  out.access_key_id = std::string(v->access_key_id);
  out.scope = owned_scope(*v);
  out.signed_headers = *parse_signed_headers(v->signed_headers);  // validated above
  out.signature = std::string(v->signature);
  return out;
}

void signed_header_names(std::string_view text, std::vector<std::string_view>& names, std::string& storage) {
  names.clear();
  if (std::any_of(text.begin(), text.end(), [](char c) { return c >= 'A' && c <= 'Z'; })) {
    storage.assign(text);
    for (char& c : storage) c = ascii_lower(c);
    text = storage;  // views into the lower-cased copy (not resized again below)
  }
  (void)for_each_signed_header(text, [&](std::string_view name) {
    names.push_back(name);
    return true;
  });
}

bool has_presigned_query(const QueryParams& params) {
  return std::any_of(params.begin(), params.end(), [](const auto& p) {
    return p.first == "X-Amz-Algorithm" || p.first == "X-Amz-Credential" || p.first == "X-Amz-Signature";
  });
}

Result<SignatureFieldsView> parse_presigned_query_view(const QueryParams& params) {
  bool duplicate = false;
  const std::string* algorithm = find_unique(params, "X-Amz-Algorithm", duplicate);
  const std::string* credential = find_unique(params, "X-Amz-Credential", duplicate);
  const std::string* date = find_unique(params, "X-Amz-Date", duplicate);
  const std::string* expires = find_unique(params, "X-Amz-Expires", duplicate);
  const std::string* signed_headers = find_unique(params, "X-Amz-SignedHeaders", duplicate);
  const std::string* signature = find_unique(params, "X-Amz-Signature", duplicate);
  if (duplicate) return query_error("a presigning parameter is repeated");
  if (!algorithm || !credential || !date || !expires || !signed_headers || !signature) {
    return query_error(
        "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, "
        "X-Amz-Signature, "
        "X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.");
  }
  if (*algorithm != kAlgorithm) return query_error("X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"");
  if (!parse_amz_date(*date))
    return query_error("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"");

  // Digits only: std::stoll would accept "+5", " 5" and overflow silently.
  if (expires->empty() || expires->size() > 7 || !std::all_of(expires->begin(), expires->end(), is_digit)) {
    return query_error("X-Amz-Expires should be a number");
  }
  std::int64_t expires_seconds = 0;
  for (const char c : *expires) expires_seconds = expires_seconds * 10 + (c - '0');
  // 0 is legal and simply already expired (the verifier answers 403 "Request has expired").
  if (expires_seconds > kMaxPresignExpires) {
    return query_error("X-Amz-Expires must be less than a week (in seconds) that is 604800");
  }

  auto cred = parse_credential(*credential);
  if (!cred) return query_error("malformed X-Amz-Credential '" + *credential + "'");
  // The scope date is part of the key derivation; a mismatch would let an old key sign
  // a request claiming a fresh timestamp.
  if (std::string_view(*date).substr(0, 8) != cred->date) {
    return query_error("X-Amz-Date and the credential scope date disagree");
  }
  if (!valid_signed_headers(*signed_headers)) return query_error("malformed X-Amz-SignedHeaders");
  if (!is_lower_hex_signature(*signature))
    return query_error("X-Amz-Signature must be 64 lower-case hex digits");

  SignatureFieldsView out = fields_view(*cred, *signed_headers, *signature);
  out.amz_date = *date;
  out.expires_seconds = expires_seconds;
  return out;
}

Result<PresignedQuery> parse_presigned_query(const QueryParams& params) {
  auto v = parse_presigned_query_view(params);
  if (!v) return v.error();
  PresignedQuery out;
  out.access_key_id = std::string(v->access_key_id);
  out.scope = owned_scope(*v);
  out.amz_date = std::string(v->amz_date);
  out.expires_seconds = v->expires_seconds;
  out.signed_headers = *parse_signed_headers(v->signed_headers);  // validated above
  out.signature = std::string(v->signature);
  return out;
}

std::optional<std::chrono::system_clock::time_point> parse_amz_date(std::string_view amz_date) {
  if (amz_date.size() != 16 || amz_date[8] != 'T' || amz_date[15] != 'Z') return std::nullopt;
  const auto y = parse_fixed_digits(amz_date, 0, 4);
  const auto mon = parse_fixed_digits(amz_date, 4, 2);
  const auto d = parse_fixed_digits(amz_date, 6, 2);
  const auto h = parse_fixed_digits(amz_date, 9, 2);
  const auto min = parse_fixed_digits(amz_date, 11, 2);
  const auto s = parse_fixed_digits(amz_date, 13, 2);
  if (!y || !mon || !d || !h || !min || !s) return std::nullopt;
  return make_time(*y, *mon, *d, *h, *min, *s);
}

std::string format_amz_date(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  const auto secs = floor<seconds>(t);
  const auto day_point = floor<days>(secs);
  const year_month_day ymd{day_point};
  const hh_mm_ss<seconds> hms{secs - day_point};
  std::string out;
  out.reserve(16);
  append_digits(out, static_cast<int>(ymd.year()), 4);
  append_digits(out, static_cast<long>(static_cast<unsigned>(ymd.month())), 2);
  append_digits(out, static_cast<long>(static_cast<unsigned>(ymd.day())), 2);
  out.push_back('T');
  append_digits(out, static_cast<long>(hms.hours().count()), 2);
  append_digits(out, static_cast<long>(hms.minutes().count()), 2);
  append_digits(out, static_cast<long>(hms.seconds().count()), 2);
  out.push_back('Z');
  return out;
}

std::optional<std::chrono::system_clock::time_point> parse_http_date(std::string_view value) {
  value = trim(value);
  int h = 0;
  int m = 0;
  int s = 0;
  // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT", or with an RFC 5322 numeric zone
  // "Sun, 06 Nov 1994 08:49:37 -0000" (what botocore signs when a Date header is set).
  const bool gmt = value.size() == 29 && value.substr(25) == " GMT";
  const bool numeric_zone = value.size() == 31 && value[25] == ' ' && (value[26] == '+' || value[26] == '-');
  if ((gmt || numeric_zone) && value[3] == ',' && value[4] == ' ' && value[7] == ' ' && value[11] == ' ' &&
      value[16] == ' ') {
    if (!is_one_of(value.substr(0, 3), kWeekdaysShort)) return std::nullopt;
    const auto d = parse_fixed_digits(value, 5, 2);
    const auto mon = parse_month(value.substr(8, 3));
    const auto y = parse_fixed_digits(value, 12, 4);
    if (!d || !mon || !y || !parse_clock(value, 17, h, m, s)) return std::nullopt;
    auto t = make_time(*y, *mon, *d, h, m, s);
    if (!t || gmt) return t;
    const auto zh = parse_fixed_digits(value, 27, 2);
    const auto zm = parse_fixed_digits(value, 29, 2);
    if (!zh || !zm || *zh > 23 || *zm > 59) return std::nullopt;
    const auto offset = std::chrono::hours(*zh) + std::chrono::minutes(*zm);
    // Local time = UTC + offset, so UTC = local - offset. In seconds, then range-checked
    // as in make_time: near the clock's ends the shift would overflow the nanoseconds.
    const auto utc = std::chrono::time_point_cast<std::chrono::seconds>(*t) + (value[26] == '+' ? -offset : offset);
    if (utc < std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::time_point::min()) ||
        utc > std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::time_point::max())) {
      return std::nullopt;
    }
    return std::chrono::system_clock::time_point{utc};
  }
  // RFC 850 (obsolete, but HTTP/1.1 recipients must accept it): "Sunday, 06-Nov-94 08:49:37 GMT"
  const std::size_t comma = value.find(',');
  if (comma != std::string_view::npos && comma >= 6) {
    if (!is_one_of(value.substr(0, comma), kWeekdaysLong)) return std::nullopt;
    const std::string_view rest = value.substr(comma);
    if (rest.size() != 24 || rest[1] != ' ' || rest[4] != '-' || rest[8] != '-' || rest[11] != ' ' ||
        rest.substr(20) != " GMT") {
      return std::nullopt;
    }
    const auto d = parse_fixed_digits(rest, 2, 2);
    const auto mon = parse_month(rest.substr(5, 3));
    const auto yy = parse_fixed_digits(rest, 9, 2);
    if (!d || !mon || !yy || !parse_clock(rest, 12, h, m, s)) return std::nullopt;
    // Two-digit years: RFC 9110 says to pick the most recent past century; 1970 is a
    // good enough pivot for timestamps that must be within minutes of now anyway.
    const int y = *yy < 70 ? 2000 + *yy : 1900 + *yy;
    return make_time(y, *mon, *d, h, m, s);
  }
  // asctime: "Sun Nov  6 08:49:37 1994"
  if (value.size() == 24 && value[3] == ' ' && value[7] == ' ' && value[10] == ' ' && value[19] == ' ') {
    if (!is_one_of(value.substr(0, 3), kWeekdaysShort)) return std::nullopt;
    const auto mon = parse_month(value.substr(4, 3));
    std::optional<int> d;
    if (value[8] == ' ') {
      d = parse_fixed_digits(value, 9, 1);
    } else {
      d = parse_fixed_digits(value, 8, 2);
    }
    const auto y = parse_fixed_digits(value, 20, 4);
    if (!d || !mon || !y || !parse_clock(value, 11, h, m, s)) return std::nullopt;
    return make_time(*y, *mon, *d, h, m, s);
  }
  return std::nullopt;
}

}  // namespace tagd::auth
