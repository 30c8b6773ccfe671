#pragma once
// SigV4 signing keys remembered per (secret, date, region, service). Deriving one costs
// four HMAC-SHA256s, and it changes once a day per key: every request a client signs on
// one day has the same one. Thread-local and small (one event loop per thread): no lock,
// bounded memory, and a miss is only the derivation it saves.
#include "tagd/auth/sigv4.hpp"

namespace tagd::auth {

// The same value as signing_key(secret_access_key, scope).
[[nodiscard]] Sha256Digest cached_signing_key(std::string_view secret_access_key, const CredentialScope& scope);
// The same, from views of the scope's parts (the verifier's: a hit copies nothing).
[[nodiscard]] Sha256Digest cached_signing_key(std::string_view secret_access_key, std::string_view date,
                                              std::string_view region, std::string_view service);

}  // namespace tagd::auth
