#pragma once
// Internal to the gateway module: the cache's Fetcher over the upstream client. Maps an
// object key and its variant to a request-target and headers (a snapshot read asks for the
// same snapshot), and always asks in checksum mode, so the answer names the object's
// checksums and the metadata can keep them.
#include "tagd/cache/fetcher.hpp"
#include "tagd/upstream/client.hpp"

namespace tagd::gateway {

class ObjectFetcher final : public cache::Fetcher {
 public:
  explicit ObjectFetcher(upstream::Client& client) : client_(client) {}
  boost::asio::awaitable<Result<std::unique_ptr<ResponseSource>>> fetch(cache::FetchRequest request) override;

 private:
  upstream::Client& client_;
};

}  // namespace tagd::gateway
