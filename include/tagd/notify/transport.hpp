#pragma once
// How a batch reaches an endpoint: one HTTP(S) POST, answered 2xx or not. Behind an
// interface so delivery is tested with a scripted transport.
#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tagd/core/status.hpp"
#include "tagd/notify/settings.hpp"

namespace tagd::notify {

using HeaderPairs = std::vector<std::pair<std::string, std::string>>;

class Transport {
 public:
  virtual ~Transport() = default;
  // Blocking (it runs on a delivery thread, never on an event loop). Ok only for a 2xx;
  // the whole exchange (resolve, connect, TLS, write, read) is bounded by `timeout`.
  [[nodiscard]] virtual Status post(const Endpoint& endpoint, const std::string& body, const HeaderPairs& headers,
                                    std::chrono::milliseconds timeout) = 0;
};

// Beast over TCP, or over TLS for https:// URLs (system CA store plus the endpoint's
// ca_file, host name verified, SNI). One connection per POST: deliveries are batched, so
// connection setup is paid once per batch.
std::unique_ptr<Transport> make_http_transport();

// The headers of a POST carrying `body` to `endpoint`: Content-Type, Authorization (Bearer
// or Basic), and when a secret is set the HMAC header "sha256=<hex HMAC-SHA256(secret,
// body)>" — a receiver recomputes it over the raw body it got.
HeaderPairs request_headers(const Endpoint& endpoint, const std::string& body);

}  // namespace tagd::notify
