#include "tagd/auth/credentials.hpp"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace tagd::auth {

bool Grant::allows(s3::Action action) const noexcept {
  switch (action) {
    case s3::Action::kRead: return read;
    case s3::Action::kWrite: return write;
    case s3::Action::kList: return list;
    case s3::Action::kDelete: return del;
    case s3::Action::kAdmin: return admin;
  }
  return false;
}

namespace {
bool bucket_matches(const Grant& g, std::string_view bucket) { return g.bucket == "*" || g.bucket == bucket; }
bool has_prefix(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }
}  // namespace

bool is_plain_key(std::string_view key) noexcept {
  const s3::KeySegments segments = s3::key_segments(key);
  return !segments.dot && !segments.empty;
}

bool Identity::may(s3::Action action, std::string_view bucket, std::string_view key) const {
  for (const auto& g : grants) {
    if (!g.allows(action) || !bucket_matches(g, bucket) || !has_prefix(key, g.prefix)) continue;
    if (g.prefix.empty() || is_plain_key(key)) return true;
  }
  return false;
}

bool Identity::allows(const s3::Permission& p) const {
  using s3::Scope;
  for (const auto& g : grants) {
    switch (p.scope) {
      case Scope::kService:
        if (g.allows(p.action)) return true;
        break;
      case Scope::kBucket:
        if (g.allows(p.action) && bucket_matches(g, p.bucket) && g.prefix.empty()) return true;
        break;
      case Scope::kBucketAny:
        // Knowing that a bucket exists (HeadBucket, its location) needs read or list on
        // some part of it; DeleteObjects needs delete somewhere in it (each key is checked
        // once the body is read).
        if (bucket_matches(g, p.bucket) && (g.allows(p.action) || (p.action == s3::Action::kRead && g.list))) {
          return true;
        }
        break;
      case Scope::kPrefix:
        // A listing prefix is matched as text: no upstream normalizes a query value.
        if (g.allows(p.action) && bucket_matches(g, p.bucket) && has_prefix(p.path, g.prefix)) return true;
        break;
      case Scope::kObject:
        break;
    }
  }
  return p.scope == Scope::kObject && may(p.action, p.bucket, p.path);
}

void CredentialStore::add(Identity identity) {
  std::string id = identity.access_key_id;
  identities_[id] = std::make_unique<Identity>(std::move(identity));
}

void CredentialStore::add_full_access(std::string access_key_id, std::string secret_access_key) {
  Identity id{std::move(access_key_id), std::move(secret_access_key), {}};
  id.grants.push_back(Grant{"*", "", true, true, true, true, true});
  add(std::move(id));
}

const Identity* CredentialStore::find(std::string_view access_key_id) const {
  auto it = identities_.find(access_key_id);
  return it == identities_.end() ? nullptr : it->second.get();
}

void CredentialStore::load_file(const std::string& path) {
  auto fail = [&](const std::string& why) { throw std::runtime_error("credentials file " + path + ": " + why); };
  std::ifstream in(path);
  if (!in) fail("cannot be opened");
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {  // parse_error, and out_of_range for "1e400"
    fail(e.what());
  }
  if (!doc.is_object() || !doc.contains("keys") || !doc["keys"].is_array()) fail("needs a \"keys\" array");
  std::size_t index = 0;
  for (const auto& k : doc["keys"]) {
    std::string where = "keys[" + std::to_string(index++) + "]";
    if (!k.is_object() || !k.contains("access_key_id") || !k.contains("secret_access_key") ||
        !k["access_key_id"].is_string() || !k["secret_access_key"].is_string()) {
      fail(where + " needs string access_key_id and secret_access_key");
    }
    Identity id{k["access_key_id"].get<std::string>(), k["secret_access_key"].get<std::string>(), {}};
    if (id.access_key_id.empty() || id.secret_access_key.empty()) fail(where + " has an empty key or secret");
    if (find(id.access_key_id) != nullptr) fail(where + " repeats access key " + id.access_key_id);
    if (!k.contains("grants") || !k["grants"].is_array()) fail(where + " needs a \"grants\" array");
    for (const auto& g : k["grants"]) {
      if (!g.is_object() || !g.contains("bucket") || !g["bucket"].is_string() || !g.contains("actions") ||
          !g["actions"].is_array()) {
        fail(where + ": each grant needs \"bucket\" and \"actions\"");
      }
      Grant grant;
      grant.bucket = g["bucket"].get<std::string>();
      if (g.contains("prefix")) {
        if (!g["prefix"].is_string()) fail(where + ": grant prefix must be a string");
        grant.prefix = g["prefix"].get<std::string>();
      }
      for (const auto& a : g["actions"]) {
        std::string action = a.is_string() ? a.get<std::string>() : "";
        if (action == "read") grant.read = true;
        else if (action == "write") grant.write = true;
        else if (action == "list") grant.list = true;
        else if (action == "delete") grant.del = true;
        else if (action == "admin") grant.admin = true;
        else if (action == "*") grant.read = grant.write = grant.list = grant.del = grant.admin = true;
        else fail(where + ": unknown action '" + action + "' (read|write|list|delete|admin|*)");
      }
      id.grants.push_back(std::move(grant));
    }
    add(std::move(id));
  }
}

std::shared_ptr<const CredentialStore> load_client_keys(const std::string& credentials_file,
                                                        const std::string& access_key_id,
                                                        const std::string& secret_access_key) {
  auto store = std::make_shared<CredentialStore>();
  if (!credentials_file.empty()) store->load_file(credentials_file);
  if (!access_key_id.empty()) store->add_full_access(access_key_id, secret_access_key);
  return store;
}

bool authorize(const Identity& identity, const s3::Operation& op) {
  return std::all_of(op.needs.begin(), op.needs.end(), [&](const s3::Permission& p) { return identity.allows(p); });
}

}  // namespace tagd::auth
