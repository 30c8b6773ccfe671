#pragma once
// Which S3 operation a request is, and every permission it needs — decided from one
// explicit table (method × service/bucket/object × sub-resource, plus the headers that
// change what an operation does). A request the table does not know is refused: deny by
// default. Pure functions: no I/O, no clock.
//
// The decision is taken on exactly what goes upstream: the decoded query (repeated
// parameters are refused by resolve_target), the request headers, and the x-amz-*
// parameters a presigned URL carries in its query (S3 applies those as headers).
#include <string>
#include <string_view>
#include <vector>

#include "tagd/core/status.hpp"
#include "tagd/core/uri.hpp"
#include "tagd/s3/request.hpp"

namespace tagd::s3 {

enum class Action { kRead, kWrite, kList, kDelete, kAdmin };
const char* action_name(Action action) noexcept;

// What a permission applies to.
enum class Scope {
  kService,    // ListBuckets: any grant with `list`
  kBucket,     // the whole bucket: a grant for the bucket with an empty prefix
  kBucketAny,  // something in the bucket (HeadBucket, GetBucketLocation): any grant on it
  kPrefix,     // a listing: the requested prefix must lie inside the grant's prefix
  kObject,     // one key
};

struct Permission {
  Action action = Action::kRead;
  Scope scope = Scope::kObject;
  std::string bucket;
  std::string path;  // key (kObject) or listing prefix (kPrefix)
};

struct ObjectRef {
  std::string bucket;
  std::string key;
};

struct Operation {
  std::string name;  // e.g. "GetObject", "ListObjectsV2", "PutBucketPolicy"
  // Every permission must hold. Empty only for a CORS preflight, which is forwarded
  // unsigned and never touches the cache.
  std::vector<Permission> needs;
  bool keys_in_body = false;  // DeleteObjects: each <Key> in the body needs kDelete too
  bool object_read = false;   // GetObject / HeadObject: the cache may answer it
  // Objects whose cached copies this request may change (invalidated before it is
  // forwarded and again after a 2xx). DeleteObjects adds the keys of its body.
  std::vector<ObjectRef> writes;
};

// Errors: kInvalidArgument (two sub-resources, a parameter the operation does not take,
// a repeated or malformed security header), kMethodNotAllowed (no such operation for
// this method and level), kNotImplemented (operations tagd does not forward yet).
Result<Operation> classify(std::string_view method, const Target& target, const HeaderList& headers);

// Refuses a key that a path-normalizing upstream or proxy would read as another path (a
// "." or ".." segment, or only '/'): kInvalidArgument naming `what` ("the key"). Every
// key tagd sends upstream goes through it, the admin API's included.
[[nodiscard]] Status check_key(std::string_view key, std::string_view what);

// True for query parameters that authenticate a request (SigV4 X-Amz-* presign
// parameters, and SigV2's AWSAccessKeyId/Signature/Expires — with the content-type and
// content-md5 copies botocore adds — when AWSAccessKeyId is present). They are never
// forwarded and never select a variant.
bool is_auth_param(const Target& target, std::string_view name);

}  // namespace tagd::s3
