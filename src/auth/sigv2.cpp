#include "tagd/auth/sigv2.hpp"

#include <algorithm>
#include <array>
#include <utility>
#include <vector>

#include "tagd/auth/hashing.hpp"
#include "tagd/auth/request_verifier.hpp"  // find_header
#include "tagd/core/strings.hpp"

namespace tagd::auth::sigv2 {
namespace {

constexpr std::string_view kAuthorizationPrefix = "AWS ";

template <std::size_t N>
bool one_of(std::string_view name, const std::array<std::string_view, N>& names) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

// One "name[=value]" piece of a raw query, decoded; `has_value` keeps "acl" and "acl="
// apart, as the signer's canonical resource does.
struct QueryPiece {
  std::string name;
  std::string value;
  bool has_value = false;
};

std::optional<std::vector<QueryPiece>> split_query(std::string_view raw_query) {
  std::vector<QueryPiece> out;
  while (!raw_query.empty()) {
    const auto amp = raw_query.find('&');
    const std::string_view piece = raw_query.substr(0, amp);
    raw_query = amp == std::string_view::npos ? std::string_view() : raw_query.substr(amp + 1);
    if (piece.empty()) continue;
    // parse_query decodes exactly as the rest of tagd (and what it forwards) does.
    auto decoded = parse_query(piece);
    if (!decoded) return std::nullopt;
    if (decoded->empty()) continue;
    out.push_back({std::move(decoded->front().first), std::move(decoded->front().second),
                   piece.find('=') != std::string_view::npos});
  }
  return out;
}

const std::string* find_unique(const QueryParams& params, std::string_view name, bool& repeated) {
  const std::string* found = nullptr;
  for (const auto& [k, v] : params) {
    if (k != name) continue;
    if (found != nullptr) repeated = true;
    found = &v;
  }
  return found;
}

// Trimmed, with line folding ("\r\n" plus indentation) replaced by one space.
std::string unfold(std::string_view value) {
  value = trim_ows(value);
  std::string out;
  out.reserve(value.size());
  for (std::size_t i = 0; i < value.size(); ++i) {
    const char c = value[i];
    if (c == '\r' || c == '\n') {
      while (!out.empty() && (out.back() == ' ' || out.back() == '\t')) out.pop_back();
      while (i + 1 < value.size() &&
             (value[i + 1] == '\r' || value[i + 1] == '\n' || value[i + 1] == ' ' || value[i + 1] == '\t')) {
        ++i;
      }
      out.push_back(' ');
      continue;
    }
    out.push_back(c);
  }
  return out;
}

std::string header_value(const HeaderList& headers, std::string_view name) {
  const std::string* v = find_header(headers, name);
  return v == nullptr ? std::string() : std::string(trim_ows(*v));
}

std::optional<std::int64_t> parse_epoch(std::string_view s) {
  if (s.empty() || s.size() > 18) return std::nullopt;
  std::int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  return v;
}

}  // namespace

bool is_sigv2_authorization(std::string_view value) {
  return value.size() >= kAuthorizationPrefix.size() && value.substr(0, kAuthorizationPrefix.size()) == kAuthorizationPrefix;
}

Result<Authorization> parse_authorization(std::string_view value) {
  static const Status kMalformed(ErrorCode::kInvalidArgument,
                                 "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature");
  if (!is_sigv2_authorization(value)) return kMalformed;
  std::string_view rest = trim_ows(value.substr(kAuthorizationPrefix.size()));
  const auto colon = rest.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == rest.size()) return kMalformed;
  std::string_view akid = rest.substr(0, colon);
  std::string_view sig = rest.substr(colon + 1);
  const auto bad_char = [](char c) { return c == ' ' || c == '\t' || c == ':' || c == ','; };
  if (std::any_of(akid.begin(), akid.end(), bad_char) || std::any_of(sig.begin(), sig.end(), bad_char)) {
    return kMalformed;
  }
  return Authorization{std::string(akid), std::string(sig)};
}

bool has_presigned_query(const QueryParams& params) {
  return std::any_of(params.begin(), params.end(),
                     [](const auto& p) { return p.first == "AWSAccessKeyId" || p.first == "Signature"; });
}

Result<PresignedQuery> parse_presigned_query(const QueryParams& params) {
  bool repeated = false;
  const std::string* akid = find_unique(params, "AWSAccessKeyId", repeated);
  const std::string* sig = find_unique(params, "Signature", repeated);
  const std::string* expires = find_unique(params, "Expires", repeated);
  if (akid == nullptr || sig == nullptr || expires == nullptr || repeated || akid->empty() || sig->empty()) {
    return Status(ErrorCode::kAccessDenied,
                  "Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters");
  }
  auto at = parse_epoch(*expires);
  if (!at) return Status(ErrorCode::kInvalidArgument, "Expires must be a number of seconds since the epoch");
  PresignedQuery out{*akid, *sig, *expires, *at};
  // Base64 has no spaces: a '+' the client left unencoded was decoded as a form space.
  std::replace(out.signature.begin(), out.signature.end(), ' ', '+');
  return out;
}

bool is_signed_subresource(std::string_view name) {
  static constexpr std::array<std::string_view, 35> kNames = {
      "accelerate", "acl", "analytics", "cors", "defaultObjectAcl", "delete", "inventory", "lifecycle", "location",
      "logging", "metrics", "notification", "object-lock", "partNumber", "policy", "replication", "requestPayment",
      "response-cache-control", "response-content-disposition", "response-content-encoding",
      "response-content-language", "response-content-type", "response-expires", "restore", "select", "select-type",
      "storageClass", "tagging", "torrent", "uploadId", "uploads", "versionId", "versioning", "versions", "website"};
  return one_of(name, kNames);
}

bool is_unsigned_parameter_allowed(std::string_view name) {
  static constexpr std::array<std::string_view, 19> kNames = {
      "AWSAccessKeyId", "Signature",          "Expires",          "prefix",      "delimiter",
      "marker",         "max-keys",           "encoding-type",    "list-type",   "continuation-token",
      "start-after",    "fetch-owner",        "key-marker",       "version-id-marker", "upload-id-marker",
      "max-uploads",    "max-parts",          "part-number-marker", "x-id"};
  return one_of(name, kNames);
}

bool is_hoisted_header_parameter(std::string_view name) {
  return iequals(name, "content-type") || iequals(name, "content-md5") ||
         (name.size() > 6 && iequals(name.substr(0, 6), "x-amz-"));
}

Status check_unsigned_query(std::string_view raw_query, const HeaderList* headers) {
  auto pieces = split_query(raw_query);
  if (!pieces) return Status(ErrorCode::kInvalidArgument, "malformed percent-escape in query string");
  std::vector<std::string> refused;
  for (const auto& p : *pieces) {
    if (is_signed_subresource(p.name) || is_unsigned_parameter_allowed(p.name)) continue;
    if (headers != nullptr && is_hoisted_header_parameter(p.name)) {
      // botocore's SigV2 presigner copies the headers it signed into the URL as well. The
      // header is what was signed and what the upstream acts on, so the copy is harmless
      // when the request carries that very header, once, with the same value.
      const auto same = std::count_if(pieces->begin(), pieces->end(), [&](const QueryPiece& o) {
        return iequals(o.name, p.name);
      });
      const std::string* header = find_header(*headers, p.name);
      const auto occurrences = std::count_if(headers->begin(), headers->end(),
                                             [&](const auto& h) { return iequals(h.first, p.name); });
      if (same == 1 && occurrences == 1 && trim_ows(*header) == trim_ows(p.value)) continue;
    }
    if (std::find(refused.begin(), refused.end(), p.name) == refused.end()) refused.push_back(p.name);
  }
  if (refused.empty()) return Status::ok();
  std::string message = "Query parameters not covered by the Signature Version 2 signature are not allowed: ";
  for (std::size_t i = 0; i < refused.size(); ++i) {
    if (i != 0) message += ", ";
    message += refused[i];
  }
  return Status(ErrorCode::kAccessDenied, std::move(message));
}

Result<std::string> canonical_resource(std::string_view virtual_host_bucket, std::string_view raw_path,
                                       std::string_view raw_query) {
  std::string out;
  if (!virtual_host_bucket.empty()) {
    out += '/';
    out += virtual_host_bucket;
  }
  out += raw_path.empty() ? std::string_view("/") : raw_path;
  // Path-style "/bucket" addresses the bucket like "/bucket/"; S3 and botocore sign the
  // latter (as the virtual-hosted "/" gives "/bucket/").
  if (virtual_host_bucket.empty() && out.size() > 1 && out.find('/', 1) == std::string::npos) out += '/';
  auto pieces = split_query(raw_query);
  if (!pieces) return Status(ErrorCode::kInvalidArgument, "malformed percent-escape in query string");
  std::erase_if(*pieces, [](const QueryPiece& p) { return !is_signed_subresource(p.name); });
  std::stable_sort(pieces->begin(), pieces->end(),
                   [](const QueryPiece& a, const QueryPiece& b) { return a.name < b.name; });
  for (std::size_t i = 0; i < pieces->size(); ++i) {
    const auto& p = (*pieces)[i];
    out += i == 0 ? '?' : '&';
    out += p.name;
    if (p.has_value) {
      out += '=';
      out += p.value;
    }
  }
  return out;
}

std::string canonical_amz_headers(const HeaderList& headers, bool skip_amz_date) {
  std::vector<std::pair<std::string, std::string>> amz;  // lower-case name, joined values
  for (const auto& [raw_name, value] : headers) {
    std::string name = to_lower(raw_name);
    if (name.rfind("x-amz-", 0) != 0) continue;
    if (skip_amz_date && name == "x-amz-date") continue;
    auto it = std::find_if(amz.begin(), amz.end(), [&](const auto& e) { return e.first == name; });
    if (it == amz.end()) {
      amz.emplace_back(std::move(name), unfold(value));
    } else {
      it->second += ',';
      it->second += unfold(value);
    }
  }
  std::sort(amz.begin(), amz.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::string out;
  for (const auto& [name, value] : amz) {
    out += name;
    out += ':';
    out += value;
    out += '\n';
  }
  return out;
}

std::string string_to_sign(std::string_view method, std::string_view content_md5, std::string_view content_type,
                           std::string_view date_or_expires, std::string_view canonical_amz_headers,
                           std::string_view canonical_resource) {
  std::string out;
  out.reserve(method.size() + content_md5.size() + content_type.size() + date_or_expires.size() +
              canonical_amz_headers.size() + canonical_resource.size() + 4);
  out += method;
  out += '\n';
  out += content_md5;
  out += '\n';
  out += content_type;
  out += '\n';
  out += date_or_expires;
  out += '\n';
  out += canonical_amz_headers;
  out += canonical_resource;
  return out;
}

std::string signature(std::string_view secret_access_key, std::string_view string_to_sign) {
  return base64_encode(hmac_sha1(secret_access_key, string_to_sign));
}

std::optional<std::chrono::system_clock::time_point> parse_date(std::string_view value) {
  value = trim_ows(value);
  // parse_http_date takes RFC 1123 dates with "GMT" or a numeric zone ("+0000").
  if (auto t = parse_http_date(value)) return t;
  constexpr std::string_view kUtc = " UTC";
  if (value.size() > kUtc.size() && value.substr(value.size() - kUtc.size()) == kUtc) {
    return parse_http_date(std::string(value.substr(0, value.size() - kUtc.size())) + " GMT");
  }
  return parse_amz_date(value);
}

Result<Verified> verify(const Request& request, const CredentialStore& store,
                        std::chrono::system_clock::time_point now, std::chrono::seconds max_skew) {
  const HeaderList& headers = *request.headers;
  Verified out;
  std::string access_key;
  std::string given;
  std::string date_position;
  bool has_amz_date = false;
  std::string amz_date_value;

  const std::string* authorization = find_header(headers, "authorization");
  if (authorization != nullptr) {
    auto a = parse_authorization(*authorization);
    if (!a) return a.error();
    access_key = std::move(a->access_key_id);
    given = std::move(a->signature);
    std::optional<std::chrono::system_clock::time_point> when;
    if (const std::string* amz_date = find_header(headers, "x-amz-date")) {
      has_amz_date = true;
      amz_date_value = std::string(trim_ows(*amz_date));
      when = parse_date(*amz_date);
    } else if (const std::string* date = find_header(headers, "date")) {
      date_position = std::string(trim_ows(*date));
      when = parse_date(*date);
    }
    if (!when) {
      return Status(ErrorCode::kAccessDenied, "AWS authentication requires a valid Date or x-amz-date header");
    }
    auto skew = now > *when ? now - *when : *when - now;
    if (skew > max_skew) {
      return Status(ErrorCode::kRequestTimeTooSkewed,
                    "The difference between the request time and the current time is too large.");
    }
  } else {
    auto q = parse_presigned_query(*request.query);
    if (!q) return q.error();
    // Compared in seconds: a far-future Expires would overflow the clock's nanoseconds.
    if (std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count() > q->expires_at) {
      return Status(ErrorCode::kExpiredPresign, "Request has expired");
    }
    access_key = std::move(q->access_key_id);
    given = std::move(q->signature);
    date_position = std::move(q->expires);
    out.presigned = true;
  }

  const Identity* identity = store.find(access_key);
  if (identity == nullptr) {
    return Status(ErrorCode::kInvalidAccessKeyId, "The AWS Access Key Id you provided does not exist in our records.");
  }
  if (Status s = check_unsigned_query(request.raw_query, out.presigned ? &headers : nullptr); !s) return s;
  auto resource = canonical_resource(request.virtual_host_bucket, request.raw_path, request.raw_query);
  if (!resource) return resource.error();

  // Equivalent spellings a signer may have used; each binds the same request.
  std::vector<std::string> resources{*resource};
  if (request.virtual_host_bucket.empty() && resource->size() > 1 && request.raw_path.size() > 1 &&
      request.raw_path.find('/', 1) == std::string_view::npos) {
    // "/bucket" as sent, without the slash canonical_resource adds.
    std::string literal = *resource;
    literal.erase(request.raw_path.size(), 1);
    resources.push_back(std::move(literal));
  }
  struct DateForm {
    std::string_view position;
    bool skip_amz_date;
  };
  std::vector<DateForm> date_forms{{date_position, false}};
  // AWS's Delete example: the x-amz-date value in the Date position, not among the x-amz-* lines.
  if (has_amz_date) date_forms.push_back({amz_date_value, true});

  const std::string md5 = header_value(headers, "content-md5");
  const std::string type = header_value(headers, "content-type");
  bool match = false;
  for (const auto& form : date_forms) {
    const std::string amz = canonical_amz_headers(headers, form.skip_amz_date);
    for (const auto& res : resources) {
      match = constant_time_equal(
          signature(identity->secret_access_key, string_to_sign(request.method, md5, type, form.position, amz, res)),
          given);
      if (match) break;
    }
    if (match) break;
  }
  if (!match) {
    return Status(ErrorCode::kSignatureDoesNotMatch,
                  "The request signature we calculated does not match the signature you provided. Check your key "
                  "and signing method.");
  }
  out.identity = identity;
  return out;
}

}  // namespace tagd::auth::sigv2
