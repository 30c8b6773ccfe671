#include "tagd/auth/signing_key_cache.hpp"

#include <array>
#include <string>

namespace tagd::auth {

namespace {

struct Entry {
  std::string secret;
  std::string date;
  std::string region;
  std::string service;
  Sha256Digest key{};
  bool used = false;
};

// A handful of keys are live at once (a few clients, the upstream key; two dates around
// midnight): a tiny table with round-robin replacement beats any map here.
constexpr std::size_t kEntries = 8;

struct Table {
  std::array<Entry, kEntries> entries;
  std::size_t next = 0;
};

}  // namespace

Sha256Digest cached_signing_key(std::string_view secret_access_key, std::string_view date, std::string_view region,
                                std::string_view service) {
  thread_local Table table;
  for (const Entry& e : table.entries) {
    if (e.used && e.date == date && e.secret == secret_access_key && e.region == region && e.service == service) {
      return e.key;
    }
  }
  Entry& e = table.entries[table.next];
  table.next = (table.next + 1) % kEntries;
  e.secret.assign(secret_access_key);
  e.date.assign(date);
  e.region.assign(region);
  e.service.assign(service);
  e.key = signing_key(secret_access_key, CredentialScope{e.date, e.region, e.service});
  e.used = true;
  return e.key;
}

Sha256Digest cached_signing_key(std::string_view secret_access_key, const CredentialScope& scope) {
  return cached_signing_key(secret_access_key, scope.date, scope.region, scope.service);
}

}  // namespace tagd::auth
