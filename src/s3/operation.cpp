#include "tagd/s3/operation.hpp"

#include <algorithm>
#include <array>
#include <initializer_list>
#include <optional>

#include "tagd/core/strings.hpp"

namespace tagd::s3 {
namespace {

enum class Level { kService, kBucket, kObject };

// Query parameters that select an operation at each level. A request names at most one.
constexpr std::array<std::string_view, 25> kBucketSubresources = {
    "accelerate",   "acl",         "analytics", "cors",         "encryption",        "intelligent-tiering",
    "inventory",    "lifecycle",   "location",  "logging",      "metrics",           "notification",
    "object-lock",  "ownershipControls", "policy", "policyStatus", "publicAccessBlock", "replication",
    "requestPayment", "tagging",   "versioning", "website",     "uploads",           "versions",
    "delete"};
constexpr std::array<std::string_view, 11> kObjectSubresources = {
    "acl", "tagging", "retention", "legal-hold", "attributes", "torrent", "restore", "select", "uploads", "uploadId",
    "renameObject"};

// Bucket sub-resources that are configuration documents (Get/Put/DeleteBucket<Name>).
bool is_bucket_configuration(std::string_view sub) {
  return sub != "location" && sub != "uploads" && sub != "versions" && sub != "delete";
}

// Request headers (and their query-string forms) that change an object's or a bucket's
// access control: they need the admin grant, not plain write.
bool starts_with_ci(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

// Names in any case.
bool is_access_control_header(std::string_view name) {
  return iequals(name, "x-amz-acl") || starts_with_ci(name, "x-amz-grant-") ||
         starts_with_ci(name, "x-amz-object-lock-") || iequals(name, "x-amz-bypass-governance-retention");
}

std::string pascal(std::string_view sub) {
  std::string out;
  bool upper = true;
  for (char c : sub) {
    if (c == '-') {
      upper = true;
      continue;
    }
    out += upper && c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c;
    upper = false;
  }
  return out;
}

// The request's headers plus the x-amz-* parameters of its query (S3 applies those as
// headers), looked up without case. Views: nothing is copied or lower-cased.
class HeaderView {
 public:
  HeaderView(const Target& target, const auth::HeaderList& headers) : target_(target), headers_(headers) {
    // Which query parameters are header forms, decided once (a presigned URL's x-amz-*
    // parameters are all authentication, so usually none).
    for (std::size_t i = 0; i < target.query.size(); ++i) {
      const std::string& name = target.query[i].first;
      if (!starts_with_ci(name, "x-amz-") || is_auth_param(target, name)) continue;
      if (count_ == query_forms_.size()) {
        overflow_ = true;
        break;
      }
      query_forms_[count_++] = i;
    }
  }

  // The single value of a header, nullopt when absent; repeated → kInvalidArgument.
  Result<std::optional<std::string>> single(std::string_view lower_name) const {
    const std::string* found = nullptr;
    bool repeated = false;
    each([&](std::string_view name, const std::string& value) {
      if (!iequals(name, lower_name)) return;
      if (found != nullptr) repeated = true;
      found = &value;
    });
    if (repeated) return Status(ErrorCode::kInvalidArgument, "header " + std::string(lower_name) + " is repeated");
    if (found == nullptr) return std::optional<std::string>();
    return std::optional<std::string>(*found);
  }

  bool any(bool (*pred)(std::string_view)) const {
    bool hit = false;
    each([&](std::string_view name, const std::string&) { hit = hit || pred(name); });
    return hit;
  }

 private:
  template <typename F>
  void each(F&& f) const {
    for (const auto& [name, value] : headers_) f(name, value);
    if (overflow_) {
      for (const auto& [name, value] : target_.query) {
        if (starts_with_ci(name, "x-amz-") && !is_auth_param(target_, name)) f(name, value);
      }
      return;
    }
    for (std::size_t k = 0; k < count_; ++k) {
      const auto& [name, value] = target_.query[query_forms_[k]];
      f(name, value);
    }
  }

  const Target& target_;
  const auth::HeaderList& headers_;
  std::array<std::size_t, 16> query_forms_{};  // indices into target_.query
  std::size_t count_ = 0;
  bool overflow_ = false;  // more than fit: each() scans the query itself
};

bool in(std::string_view name, std::initializer_list<std::string_view> list) {
  return std::find(list.begin(), list.end(), name) != list.end();
}

// The parameters each operation takes besides its sub-resource, authentication
// parameters, the SDKs' x-id and the x-amz-* header forms.
bool takes_param(std::string_view op, std::string_view p) {
  if (op == "ListBuckets") return in(p, {"max-buckets", "continuation-token", "prefix", "bucket-region"});
  if (op == "ListObjects") return in(p, {"prefix", "delimiter", "marker", "max-keys", "encoding-type", "allow-unordered"});
  if (op == "ListObjectsV2") {
    return in(p, {"list-type", "prefix", "delimiter", "continuation-token", "start-after", "max-keys", "encoding-type",
                  "fetch-owner", "allow-unordered"});
  }
  if (op == "ListObjectVersions") {
    return in(p, {"prefix", "delimiter", "key-marker", "version-id-marker", "max-keys", "encoding-type"});
  }
  if (op == "ListMultipartUploads") {
    return in(p, {"prefix", "delimiter", "key-marker", "upload-id-marker", "max-uploads", "encoding-type"});
  }
  if (op == "GetObject" || op == "HeadObject") {
    return p == "versionId" || p == "partNumber" || p.rfind("response-", 0) == 0;
  }
  if (op == "ListParts") return in(p, {"max-parts", "part-number-marker", "encoding-type"});
  if (op == "UploadPart" || op == "UploadPartCopy") return p == "partNumber";
  if (op == "SelectObjectContent") return p == "select-type";
  if (op.rfind("GetBucket", 0) == 0 || op.rfind("PutBucket", 0) == 0 || op.rfind("DeleteBucket", 0) == 0) {
    return in(p, {"id", "continuation-token"});  // analytics/inventory/metrics/intelligent-tiering ids
  }
  // Object sub-resources and DeleteObject address one version.
  return p == "versionId";
}

Permission need(Action action, Scope scope, std::string bucket, std::string path = {}) {
  return Permission{action, scope, std::move(bucket), std::move(path)};
}

Status unknown(std::string_view method, std::string_view what) {
  return Status(ErrorCode::kMethodNotAllowed,
                "The specified method is not allowed against this resource: " + std::string(method) + " " +
                    std::string(what));
}

// The operation from method, level and sub-resource: the table itself.
Result<Operation> from_table(std::string_view method, Level level, std::string_view sub, const Target& t) {
  Operation op;
  const std::string& b = t.bucket;
  const bool get = method == "GET", head = method == "HEAD", put = method == "PUT", post = method == "POST",
             del = method == "DELETE";
  switch (level) {
    case Level::kService:
      if (get && sub.empty()) {
        op.name = "ListBuckets";
        op.needs.push_back(need(Action::kList, Scope::kService, ""));
        return op;
      }
      return unknown(method, "/");
    case Level::kBucket:
      if (sub.empty()) {
        if (head) {
          op.name = "HeadBucket";
          op.needs.push_back(need(Action::kRead, Scope::kBucketAny, b));
        } else if (get) {
          auto list_type = t.param("list-type");
          if (list_type && *list_type != "2") return Status(ErrorCode::kInvalidArgument, "Invalid list-type");
          op.name = list_type ? "ListObjectsV2" : "ListObjects";
          op.needs.push_back(need(Action::kList, Scope::kPrefix, b, t.param("prefix").value_or("")));
        } else if (put) {
          op.name = "CreateBucket";
          op.needs.push_back(need(Action::kWrite, Scope::kBucket, b));
        } else if (del) {
          op.name = "DeleteBucket";
          op.needs.push_back(need(Action::kDelete, Scope::kBucket, b));
        } else if (post) {
          return Status(ErrorCode::kNotImplemented, "Browser form uploads (POST Object) are not supported by tagd");
        } else {
          return unknown(method, "bucket");
        }
        return op;
      }
      if (sub == "location" && get) {
        op.name = "GetBucketLocation";
        op.needs.push_back(need(Action::kRead, Scope::kBucketAny, b));
      } else if ((sub == "uploads" || sub == "versions") && get) {
        op.name = sub == "uploads" ? "ListMultipartUploads" : "ListObjectVersions";
        op.needs.push_back(need(Action::kList, Scope::kPrefix, b, t.param("prefix").value_or("")));
      } else if (sub == "delete" && post) {
        op.name = "DeleteObjects";
        op.keys_in_body = true;
        op.needs.push_back(need(Action::kDelete, Scope::kBucketAny, b));
      } else if (is_bucket_configuration(sub) && (get || put || del)) {
        op.name = std::string(get ? "Get" : put ? "Put" : "Delete") + "Bucket" + pascal(sub);
        // Reading a bucket's configuration (policy, ACL, ...) needs a whole-bucket list
        // grant; changing it needs admin.
        op.needs.push_back(get ? need(Action::kList, Scope::kBucket, b) : need(Action::kAdmin, Scope::kBucket, b));
      } else {
        return unknown(method, "bucket ?" + std::string(sub));
      }
      return op;
    case Level::kObject:
      break;
  }
  const std::string& k = t.key;
  auto object = [&](std::string name, Action action) {
    op.name = std::move(name);
    op.needs.push_back(need(action, Scope::kObject, b, k));
    if (action != Action::kRead) op.writes.push_back({b, k});
  };
  if (sub.empty()) {
    if (get || head) {
      object(get ? "GetObject" : "HeadObject", Action::kRead);
      op.object_read = true;
    } else if (put) {
      object("PutObject", Action::kWrite);
    } else if (del) {
      object("DeleteObject", Action::kDelete);
    } else if (post) {
      return Status(ErrorCode::kNotImplemented, "POST to an object needs a sub-resource (uploads, uploadId, ...)");
    } else {
      return unknown(method, "object");
    }
    return op;
  }
  if (get && in(sub, {"acl", "tagging", "retention", "legal-hold", "attributes", "torrent"})) {
    object("GetObject" + pascal(sub), Action::kRead);
  } else if (get && sub == "uploadId") {
    // Listing an upload's parts is part of uploading (ListParts is S3's PutObject permission).
    op.name = "ListParts";
    op.needs.push_back(need(Action::kWrite, Scope::kObject, b, k));
  } else if (put && sub == "uploadId") {
    if (!t.has_param("partNumber")) return Status(ErrorCode::kInvalidArgument, "UploadPart needs partNumber");
    object("UploadPart", Action::kWrite);
  } else if (put && sub == "tagging") {
    object("PutObjectTagging", Action::kWrite);
  } else if (put && in(sub, {"acl", "retention", "legal-hold"})) {
    object("PutObject" + pascal(sub), Action::kAdmin);
  } else if (put && sub == "renameObject") {
    object("RenameObject", Action::kWrite);
  } else if (post && sub == "uploads") {
    object("CreateMultipartUpload", Action::kWrite);
  } else if (post && sub == "uploadId") {
    object("CompleteMultipartUpload", Action::kWrite);
  } else if (post && sub == "restore") {
    object("RestoreObject", Action::kWrite);
  } else if (post && sub == "select") {
    object("SelectObjectContent", Action::kRead);
  } else if (del && sub == "uploadId") {
    object("AbortMultipartUpload", Action::kWrite);
  } else if (del && sub == "tagging") {
    object("DeleteObjectTagging", Action::kWrite);
  } else {
    return unknown(method, "object ?" + std::string(sub));
  }
  return op;
}

Result<ObjectRef> source_of(std::string_view header, const std::string& value) {
  auto source = parse_copy_source(value);
  if (!source) return Status(ErrorCode::kInvalidArgument, "Invalid " + std::string(header));
  if (Status s = check_key(source->key, header); !s) return s;
  return ObjectRef{source->bucket, source->key};
}

}  // namespace

// A key that a path-normalizing upstream or proxy would read as another path: a "." or
// ".." segment ("b/../c/x" leaves the bucket, "x/..?acl" becomes a bucket request), or
// nothing but '/' (the bucket itself). Refused for every grant; prefix-limited grants
// refuse empty segments too (credentials.cpp).
Status check_key(std::string_view key, std::string_view what) {
  const KeySegments segments = key_segments(key);
  if (segments.dot) return Status(ErrorCode::kInvalidArgument, std::string(what) + " has a '.' or '..' path segment");
  if (segments.only_slashes) return Status(ErrorCode::kInvalidArgument, std::string(what) + " is only '/'");
  return Status::ok();
}

const char* action_name(Action action) noexcept {
  switch (action) {
    case Action::kRead: return "read";
    case Action::kWrite: return "write";
    case Action::kList: return "list";
    case Action::kDelete: return "delete";
    case Action::kAdmin: return "admin";
  }
  return "?";
}

bool is_auth_param(const Target& target, std::string_view name) {
  // Only the SDKs' capitalized forms are presign parameters; a lower-case x-amz-date in
  // a query would still be one to S3, so compare without case. By length first: this runs
  // for every parameter of every presigned request.
  bool sigv4 = false;
  switch (name.size()) {
    case 10: sigv4 = iequals(name, "x-amz-date"); break;
    case 13: sigv4 = iequals(name, "x-amz-expires"); break;
    case 15: sigv4 = iequals(name, "x-amz-algorithm") || iequals(name, "x-amz-signature"); break;
    case 16: sigv4 = iequals(name, "x-amz-credential"); break;
    case 19: sigv4 = iequals(name, "x-amz-signedheaders"); break;
    case 20: sigv4 = iequals(name, "x-amz-security-token") || iequals(name, "x-amz-content-sha256"); break;
    default: break;
  }
  if (sigv4) return true;
  // SigV2 query auth; botocore also copies the signed Content-Type/Content-MD5 into the
  // URL (the verifier requires the header to carry the same value, and it is the header
  // that goes upstream).
  if (name == "AWSAccessKeyId" || name == "Signature" || name == "Expires" || name == "content-type" ||
      name == "content-md5") {
    return target.has_param("AWSAccessKeyId");
  }
  return false;
}

Result<Operation> classify(std::string_view method, const Target& t, const auth::HeaderList& headers) {
  if (method == "OPTIONS") {
    // A CORS preflight: browsers never sign it; it is forwarded unsigned and answered
    // from the bucket's CORS configuration. It reads and writes nothing.
    Operation op;
    op.name = "CorsPreflight";
    return op;
  }
  const Level level = t.bucket.empty() ? Level::kService : t.key.empty() ? Level::kBucket : Level::kObject;
  if (level == Level::kObject) {
    if (Status s = check_key(t.key, "the key"); !s) return s;
  }
  const auto* subs_begin = level == Level::kObject ? kObjectSubresources.begin() : kBucketSubresources.begin();
  const auto* subs_end = level == Level::kObject ? kObjectSubresources.end() : kBucketSubresources.end();

  std::string_view sub;
  for (const auto& [name, value] : t.query) {
    if (level == Level::kService || std::find(subs_begin, subs_end, name) == subs_end) continue;
    if (!sub.empty()) {
      return Status(ErrorCode::kInvalidArgument,
                    "A request names one sub-resource; this one names ?" + std::string(sub) + " and ?" + name);
    }
    sub = name;
  }
  auto op = from_table(method, level, sub, t);
  if (!op) return op;

  for (const auto& [name, value] : t.query) {
    if (name == sub || name == "x-id" || starts_with_ci(name, "x-amz-") || is_auth_param(t, name)) continue;
    if (!takes_param(op->name, name)) {
      return Status(ErrorCode::kInvalidArgument, op->name + " does not take the query parameter " + name);
    }
  }

  // Headers that turn an operation into another, or widen what it needs.
  HeaderView view(t, headers);
  auto copy_source = view.single("x-amz-copy-source");
  if (!copy_source) return copy_source.error();
  auto rename_source = view.single("x-amz-rename-source");
  if (!rename_source) return rename_source.error();
  auto tigris_rename = view.single("x-tigris-rename");
  if (!tigris_rename) return tigris_rename.error();

  if (*copy_source) {
    if (op->name != "PutObject" && op->name != "UploadPart") {
      return Status(ErrorCode::kInvalidArgument, "x-amz-copy-source is not valid for " + op->name);
    }
    auto source = source_of("x-amz-copy-source", **copy_source);
    if (!source) return source.error();
    op->name = op->name == "PutObject" ? "CopyObject" : "UploadPartCopy";
    op->needs.push_back(need(Action::kRead, Scope::kObject, source->bucket, source->key));
    if (*tigris_rename && !iequals(**tigris_rename, "true") && !iequals(**tigris_rename, "false")) {
      // A lenient upstream might read "1" or "t" as true: only the two words are accepted.
      return Status(ErrorCode::kInvalidArgument, "X-Tigris-Rename must be true or false");
    }
    if (*tigris_rename && iequals(**tigris_rename, "true")) {
      if (op->name != "CopyObject") return Status(ErrorCode::kInvalidArgument, "X-Tigris-Rename needs CopyObject");
      // A move: the source disappears, so its holder must be allowed to delete it.
      op->name = "RenameObject";
      op->needs.push_back(need(Action::kDelete, Scope::kObject, source->bucket, source->key));
      op->writes.push_back(*source);
    }
  } else if (*tigris_rename) {
    return Status(ErrorCode::kInvalidArgument, "X-Tigris-Rename needs x-amz-copy-source");
  }
  if (op->name == "RenameObject" && !*copy_source) {
    if (!*rename_source) return Status(ErrorCode::kInvalidArgument, "RenameObject needs x-amz-rename-source");
    // x-amz-rename-source names a key of the same bucket ("/bucket/key" or "bucket/key").
    auto source = source_of("x-amz-rename-source", **rename_source);
    if (!source) return source.error();
    if (source->bucket != t.bucket) {
      return Status(ErrorCode::kInvalidArgument, "x-amz-rename-source must name a key of the same bucket");
    }
    op->needs.push_back(need(Action::kDelete, Scope::kObject, source->bucket, source->key));
    op->writes.push_back(*source);
  } else if (*rename_source) {
    return Status(ErrorCode::kInvalidArgument, "x-amz-rename-source needs ?renameObject");
  }

  if (method != "GET" && method != "HEAD" && view.any(&is_access_control_header)) {
    // Setting an ACL, a grant or an object lock with a write is an access-control change.
    op->needs.push_back(level == Level::kObject ? need(Action::kAdmin, Scope::kObject, t.bucket, t.key)
                                                : need(Action::kAdmin, Scope::kBucket, t.bucket));
  }
  if (op->name == "CreateBucket") {
    // A Tigris fork copies another bucket: its holder must be able to read all of it.
    auto fork_source = view.single("x-tigris-fork-source-bucket");
    if (!fork_source) return fork_source.error();
    if (*fork_source) op->needs.push_back(need(Action::kRead, Scope::kBucket, **fork_source));
  }
  return op;
}

}  // namespace tagd::s3
