#pragma once
// Client access keys and what each may do. A store is built whole (at start-up, and again
// on each SIGHUP; exceptions allowed there) and read-only once published, so lookups need
// no locking across event loops; a reload publishes a new store instead of changing one
// (RequestVerifier::replace_store).
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tagd/s3/operation.hpp"

namespace tagd::auth {

struct Grant {
  std::string bucket;  // "*" = every bucket
  std::string prefix;  // "" = the whole bucket
  bool read = false, write = false, list = false, del = false;
  bool admin = false;  // ACLs, grants, object locks, bucket configuration

  bool allows(s3::Action action) const noexcept;
};

// A key a prefix-limited grant may name: no "." or ".." segment and no empty segment
// (a trailing '/' — a directory marker — is allowed). An upstream or proxy that
// normalizes paths would otherwise turn "pub/../private/x" into "private/x".
bool is_plain_key(std::string_view key) noexcept;

struct Identity {
  std::string access_key_id;
  std::string secret_access_key;
  std::vector<Grant> grants;

  // Object-level check: the key must fall under a grant's prefix (and be a plain key
  // when that prefix is not empty).
  bool may(s3::Action action, std::string_view bucket, std::string_view key) const;
  bool allows(const s3::Permission& permission) const;
};

class CredentialStore {
 public:
  // {"keys":[{"access_key_id":..,"secret_access_key":..,
  //           "grants":[{"bucket":"b","prefix":"p/","actions":["read","list"]}]}]}
  // Actions: read, write, list, delete, admin, or "*" (all five).
  // Throws std::runtime_error naming the file and the problem.
  void load_file(const std::string& path);
  // The TAG shortcut: one key with every permission on every bucket.
  void add_full_access(std::string access_key_id, std::string secret_access_key);
  void add(Identity identity);

  const Identity* find(std::string_view access_key_id) const;
  std::size_t size() const noexcept { return identities_.size(); }

 private:
  // Transparent hash and equality: find() looks a key id up without copying it.
  struct KeyHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, std::unique_ptr<Identity>, KeyHash, std::equal_to<>> identities_;
};

// The keys tagd serves clients: the credentials file (if named) plus the TAG shortcut's
// one full-access key (if `access_key_id` is set). Throws std::runtime_error naming the
// file and the problem; a caller that already serves keys keeps them.
std::shared_ptr<const CredentialStore> load_client_keys(const std::string& credentials_file,
                                                        const std::string& access_key_id,
                                                        const std::string& secret_access_key);

// Every permission the operation needs must hold. DeleteObjects keys are checked by the
// caller with Identity::may once the body is read.
bool authorize(const Identity& identity, const s3::Operation& op);

}  // namespace tagd::auth
