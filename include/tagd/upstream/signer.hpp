#pragma once
// Re-signs a request for the upstream with tagd's own credentials. The client's
// signature never travels upstream: it was made for tagd's host and the client's key.
#include <boost/beast/http/fields.hpp>
#include <chrono>
#include <string>
#include <string_view>

namespace tagd::upstream {

struct SigningCredentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string region;
  bool anonymous() const noexcept { return access_key_id.empty(); }
};

// Sets Host, x-amz-date, x-amz-content-sha256 and Authorization on `fields`. Signs host,
// x-amz-*, x-tigris-*, content-md5 and content-type (the headers a proxy hop must not change).
// `target` is the exact request-target sent ("/bucket/key?a=b", already encoded).
void sign_request(boost::beast::http::fields& fields, std::string_view method, std::string_view target,
                  std::string_view host_header, std::string_view payload_hash, const SigningCredentials& credentials,
                  std::chrono::system_clock::time_point now);

}  // namespace tagd::upstream
