#pragma once
// Client access keys and what each may do. Loaded once at start-up (exceptions allowed
// there); read-only afterwards, so lookups need no locking across event loops.
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tagd/s3/request.hpp"

namespace tagd::auth {

struct Grant {
  std::string bucket;  // "*" = every bucket
  std::string prefix;  // "" = the whole bucket
  bool read = false, write = false, list = false, del = false;

  bool allows(s3::Action action) const noexcept;
};

struct Identity {
  std::string access_key_id;
  std::string secret_access_key;
  std::vector<Grant> grants;

  // Object-level check: the key must fall under a grant's prefix.
  bool may(s3::Action action, std::string_view bucket, std::string_view key) const;
  // Listing: the requested prefix must fall under a grant's prefix.
  bool may_list(std::string_view bucket, std::string_view prefix) const;
  // Bucket administration: needs a grant covering the whole bucket.
  bool may_bucket(s3::Action action, std::string_view bucket) const;
  bool may_list_buckets() const;
};

class CredentialStore {
 public:
  // {"keys":[{"access_key_id":..,"secret_access_key":..,
  //           "grants":[{"bucket":"b","prefix":"p/","actions":["read","list"]}]}]}
  // Throws std::runtime_error naming the file and the problem.
  void load_file(const std::string& path);
  // The TAG shortcut: one key with every permission on every bucket.
  void add_full_access(std::string access_key_id, std::string secret_access_key);
  void add(Identity identity);

  const Identity* find(std::string_view access_key_id) const;
  std::size_t size() const noexcept { return identities_.size(); }

 private:
  std::unordered_map<std::string, std::unique_ptr<Identity>> identities_;
};

// Authorization decision for an operation (object, listing, bucket admin or service).
// DeleteObjects keys and copy sources are checked by the caller with Identity::may.
bool authorize(const Identity& identity, const s3::Operation& op, const s3::Target& target);

}  // namespace tagd::auth
