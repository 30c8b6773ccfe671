#include "tagd/core/strings.hpp"
#include "tagd/core/uri.hpp"
#include "tagd/s3/request.hpp"
#include "tagd/s3/operation.hpp"

#include <algorithm>
#include <array>
#include <cctype>

namespace tagd::s3 {
bool Target::has_param(std::string_view name) const {
  return std::any_of(query.begin(), query.end(), [&](const auto& p) { return p.first == name; });
}

std::optional<std::string> Target::param(std::string_view name) const {
  for (const auto& [k, v] : query) {
    if (k == name) return v;
  }
  return std::nullopt;
}

// Characters an upstream never reads as structure. A '/', '%' or '\' in a bucket taken
// from Host would be encoded into the upstream path and split there differently (an
// object request the policy saw as a bucket request); "." and ".." are path segments.
// Upper case and '_' stay allowed: legacy buckets have them, and the upstream judges the
// finer naming rules (length, DNS form) itself.
Status check_bucket_name(std::string_view bucket) {
  const bool safe = bucket.size() <= 255 && bucket != "." && bucket != ".." &&
                    std::all_of(bucket.begin(), bucket.end(), [](char c) {
                      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                             c == '-' || c == '_';
                    });
  if (safe) return Status::ok();
  return Status(ErrorCode::kInvalidBucketName, "The specified bucket is not valid.");
}

Result<Target> resolve_target(std::string_view host, std::string_view request_target,
                              std::string_view virtual_host_domain) {
  Target t;
  if (Status s = resolve_target_into(host, request_target, virtual_host_domain, t); !s) return s;
  return t;
}

Status resolve_target_into(std::string_view host, std::string_view request_target, std::string_view virtual_host_domain,
                           Target& t) {
  if (request_target.empty() || request_target.front() != '/') {
    return Status(ErrorCode::kInvalidRequest, "request target must be an absolute path");
  }
  t.bucket.clear();
  t.virtual_hosted = false;
  auto q = request_target.find('?');
  t.raw_path.assign(request_target.substr(0, q));
  if (q != std::string_view::npos) {
    t.raw_query.assign(request_target.substr(q + 1));
  } else {
    t.raw_query.clear();
  }
  if (!parse_query_into(t.raw_query, t.query)) {
    return Status(ErrorCode::kInvalidArgument, "malformed percent-escape in query string");
  }
  // A repeated parameter is refused.
  if (auto repeated = find_repeated_name(
          t.query.size(), [&](std::size_t i) -> std::string_view { return t.query[i].first; }, false)) {
    return Status(ErrorCode::kInvalidArgument, "query parameter " + std::string(*repeated) + " is repeated");
  }
  // The decoded path goes into the key's buffer, then "/" or "/bucket/" is erased in place.
  if (!uri_decode_into(t.raw_path, t.key)) {
    return Status(ErrorCode::kInvalidArgument, "malformed percent-escape in path");
  }

  // Host without port, compared without case. IPv6 literals ("[::1]:8080") are never
  // virtual hosts.
  std::string_view h = host;
  if (!h.empty() && h.front() != '[') {
    if (auto colon = h.rfind(':'); colon != std::string_view::npos) h = h.substr(0, colon);
  }
  if (!virtual_host_domain.empty() && h.size() > virtual_host_domain.size() + 1 &&
      iequals(h.substr(h.size() - virtual_host_domain.size()), virtual_host_domain) &&
      h[h.size() - virtual_host_domain.size() - 1] == '.') {
    t.virtual_hosted = true;
    t.bucket.assign(h.substr(0, h.size() - virtual_host_domain.size() - 1));
    for (char& c : t.bucket) c = ascii_lower(c);
    t.key.erase(0, 1);  // the leading '/'
    if (Status s = check_bucket_name(t.bucket); !s) return s;
    return Status::ok();
  }
  const std::string_view rest = std::string_view(t.key).substr(1);
  const auto slash = rest.find('/');
  t.bucket.assign(rest.substr(0, slash));
  if (slash != std::string_view::npos) {
    t.key.erase(0, slash + 2);
  } else {
    t.key.clear();
  }
  if (t.bucket.empty() && !t.key.empty()) return Status(ErrorCode::kInvalidRequest, "empty bucket name");
  if (!t.bucket.empty()) {
    if (Status s = check_bucket_name(t.bucket); !s) return s;
  }
  return Status::ok();
}

namespace {

// Kept per thread for RequestScratch. The query list alternates between the Target and
// `spare`, so the Target a request starts with has no parameters while their strings
// wait in `spare` for the next resolve.
constexpr std::size_t kMaxFreeScratch = 256;
constexpr std::size_t kMaxKeptBytes = 16 * 1024;

}  // namespace

struct RequestScratch::Slot {
  Target target;
  QueryParams spare;
  HeaderList headers;

  std::size_t kept_bytes() const noexcept {
    std::size_t n =
        target.bucket.capacity() + target.key.capacity() + target.raw_path.capacity() + target.raw_query.capacity();
    for (const auto& list : {&target.query, &spare, &headers}) {
      n += list->capacity() * sizeof(std::pair<std::string, std::string>);
      for (const auto& [a, b] : *list) n += a.capacity() + b.capacity();
    }
    return n;
  }
};

std::vector<std::unique_ptr<RequestScratch::Slot>>& RequestScratch::free_slots() {
  thread_local std::vector<std::unique_ptr<Slot>> slots;
  return slots;
}

namespace {
// Empty fields; the parameters' strings wait in `spare` for the next resolve.
void reset(Target& t, QueryParams& spare) {
  t.bucket.clear();
  t.key.clear();
  t.raw_path.clear();
  t.raw_query.clear();
  t.virtual_hosted = false;
  if (t.query.empty()) return;
  std::swap(t.query, spare);
  t.query.clear();  // what `spare` held (empty unless resolve ran twice): dropped
}
}  // namespace

RequestScratch::RequestScratch() {
  auto& pool = free_slots();
  if (pool.empty()) {
    slot_ = std::make_unique<Slot>();
    return;
  }
  slot_ = std::move(pool.back());
  pool.pop_back();
  reset(slot_->target, slot_->spare);
}

RequestScratch::~RequestScratch() {
  auto& pool = free_slots();
  if (pool.size() < kMaxFreeScratch && slot_->kept_bytes() <= kMaxKeptBytes) pool.push_back(std::move(slot_));
}

Target& RequestScratch::target() noexcept {
  return slot_->target;
}
const Target& RequestScratch::target() const noexcept {
  return slot_->target;
}
HeaderList& RequestScratch::header_storage() noexcept {
  return slot_->headers;
}

Status RequestScratch::resolve(std::string_view host, std::string_view request_target,
                               std::string_view virtual_host_domain) {
  std::swap(slot_->target.query, slot_->spare);
  Status s = resolve_target_into(host, request_target, virtual_host_domain, slot_->target);
  // A refused target leaves nothing behind (the access log shows no bucket or key for it).
  if (!s) reset(slot_->target, slot_->spare);
  return s;
}

KeySegments key_segments(std::string_view key) noexcept {
  KeySegments out;
  out.only_slashes = !key.empty();
  std::size_t start = 0;
  for (;;) {
    const std::size_t slash = key.find('/', start);
    const std::string_view segment =
        key.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (segment == "." || segment == "..") out.dot = true;
    if (!segment.empty()) out.only_slashes = false;
    if (slash == std::string_view::npos) break;
    if (segment.empty()) out.empty = true;
    start = slash + 1;
  }
  return out;
}

std::optional<CopySource> parse_copy_source(std::string_view value) {
  auto q = value.find('?');
  auto decoded = uri_decode(value.substr(0, q));
  if (!decoded) return std::nullopt;
  std::string_view v = *decoded;
  if (!v.empty() && v.front() == '/') v.remove_prefix(1);
  auto slash = v.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == v.size()) return std::nullopt;
  return CopySource{std::string(v.substr(0, slash)), std::string(v.substr(slash + 1))};
}

std::string upstream_target(const Target& t) {
  std::string out = "/";
  if (!t.bucket.empty()) {
    out += uri_encode(t.bucket, true);
    // Keep the trailing '/' of bucket-level requests off: "/bucket" and "/bucket/" both
    // mean the bucket, and only the key path needs a separator.
    if (!t.key.empty()) out += "/" + uri_encode(t.key, false);
  }
  QueryParams kept;
  for (const auto& p : t.query) {
    if (!is_auth_param(t, p.first)) kept.push_back(p);
  }
  if (!kept.empty()) out += "?" + canonical_query_string(kept);
  return out;
}

std::optional<std::string> decode_xml_text(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '&') {
      out += s[i];
      continue;
    }
    auto semi = s.find(';', i);
    if (semi == std::string_view::npos) return std::nullopt;
    std::string_view ent = s.substr(i + 1, semi - i - 1);
    if (ent == "amp") out += '&';
    else if (ent == "lt") out += '<';
    else if (ent == "gt") out += '>';
    else if (ent == "quot") out += '"';
    else if (ent == "apos") out += '\'';
    else if (ent.size() > 1 && ent[0] == '#') {
      unsigned long cp = 0;
      try {
        cp = ent[1] == 'x' ? std::stoul(std::string(ent.substr(2)), nullptr, 16)
                           : std::stoul(std::string(ent.substr(1)), nullptr, 10);
      } catch (...) {
        return std::nullopt;
      }
      if (cp > 0x10FFFF) return std::nullopt;
      if (cp < 0x80) {
        out += static_cast<char>(cp);
      } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
      } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
      } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
      }
    } else {
      return std::nullopt;
    }
    i = semi;
  }
  return out;
}

namespace {
// The elements a DeleteObjects body may contain. Anything else — other elements,
// namespace prefixes, attributes (but Delete's xmlns), comments, CDATA, DOCTYPE, or
// whitespace inside a tag — is refused, so the keys found below are exactly the keys
// the upstream will parse: a body cannot hide a key from the policy check.
bool allowed_delete_element(std::string_view name) {
  static constexpr std::string_view kNames[] = {"Delete", "Object", "Key", "VersionId", "Quiet",
                                                "ETag",   "LastModifiedTime", "Size"};
  return std::find(std::begin(kNames), std::end(kNames), name) != std::end(kNames);
}

Status validate_delete_body(std::string_view xml) {
  auto bad = [](std::string why) { return Status(ErrorCode::kMalformedXML, "DeleteObjects body: " + why); };
  std::size_t pos = 0;
  while ((pos = xml.find('<', pos)) != std::string_view::npos) {
    std::string_view rest = xml.substr(pos);
    if (rest.substr(0, 5) == "<?xml") {
      if (xml.substr(0, pos).find_first_not_of(" \t\r\n") != std::string_view::npos) return bad("misplaced declaration");
      auto end = xml.find("?>", pos);
      if (end == std::string_view::npos) return bad("unterminated declaration");
      pos = end + 2;
      continue;
    }
    auto close = rest.find('>');
    if (close == std::string_view::npos) return bad("unterminated tag");
    std::string_view tag = rest.substr(1, close - 1);
    if (!tag.empty() && tag.front() == '/') tag.remove_prefix(1);
    if (!tag.empty() && tag.back() == '/') tag.remove_suffix(1);
    std::string_view name = tag.substr(0, tag.find(' '));
    if (!allowed_delete_element(name)) return bad("unexpected element <" + std::string(name) + ">");
    if (name.size() != tag.size()) {
      // Only <Delete xmlns="..."> may carry something after its name.
      std::string_view attrs = tag.substr(name.size());
      if (name != "Delete" || attrs.substr(0, 8) != " xmlns=\"" || attrs.back() != '"' ||
          attrs.find('"', 8) != attrs.size() - 1) {
        return bad("unexpected attribute on <" + std::string(name) + ">");
      }
    }
    pos += close + 1;
  }
  return Status::ok();
}
}  // namespace

Result<std::vector<std::string>> delete_objects_keys(std::string_view xml) {
  std::vector<std::string> keys;
  if (Status s = validate_delete_body(xml); !s) return s;
  if (xml.find("<Delete") == std::string_view::npos) {
    return Status(ErrorCode::kMalformedXML, "DeleteObjects body has no <Delete> element");
  }
  std::size_t pos = 0;
  while ((pos = xml.find("<Key>", pos)) != std::string_view::npos) {
    auto end = xml.find("</Key>", pos);
    if (end == std::string_view::npos) return Status(ErrorCode::kMalformedXML, "unterminated <Key>");
    std::string_view raw = xml.substr(pos + 5, end - pos - 5);
    if (raw.find('<') != std::string_view::npos) return Status(ErrorCode::kMalformedXML, "markup inside <Key>");
    auto key = decode_xml_text(raw);
    if (!key) return Status(ErrorCode::kMalformedXML, "bad entity in <Key>");
    keys.push_back(std::move(*key));
    pos = end + 6;
  }
  return keys;
}

std::string xml_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string error_xml(std::string_view code, std::string_view message, std::string_view resource,
                      std::string_view request_id) {
  std::string out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>";
  out += xml_escape(code);
  out += "</Code><Message>";
  out += xml_escape(message);
  out += "</Message><Resource>";
  out += xml_escape(resource);
  out += "</Resource><RequestId>";
  out += xml_escape(request_id);
  out += "</RequestId></Error>";
  return out;
}

}  // namespace tagd::s3
