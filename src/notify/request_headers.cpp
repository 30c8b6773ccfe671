// What a webhook POST carries besides its body: how the receiver knows it is JSON, who
// sent it (Bearer or Basic, as Tigris's webhooks), and that the body was not altered (an
// HMAC-SHA256 of the exact bytes, hex, under the endpoint's secret).
#include "tagd/auth/hashing.hpp"
#include "tagd/notify/transport.hpp"

namespace tagd::notify {

HeaderPairs request_headers(const Endpoint& endpoint, const std::string& body) {
  HeaderPairs h;
  h.emplace_back("Content-Type", "application/json");
  switch (endpoint.auth) {
    case Endpoint::Auth::kBearer: h.emplace_back("Authorization", "Bearer " + endpoint.token); break;
    case Endpoint::Auth::kBasic: {
      const std::string pair = endpoint.username + ":" + endpoint.password;
      h.emplace_back("Authorization", "Basic " + auth::base64_encode(std::span<const std::uint8_t>(
                                                     reinterpret_cast<const std::uint8_t*>(pair.data()), pair.size())));
      break;
    }
    case Endpoint::Auth::kNone: break;
  }
  if (!endpoint.hmac_secret.empty()) {
    h.emplace_back(endpoint.hmac_header, "sha256=" + auth::to_hex(auth::hmac_sha256(endpoint.hmac_secret, body)));
  }
  return h;
}

}  // namespace tagd::notify
