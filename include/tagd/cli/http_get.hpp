#pragma once
// Used by the cli module (and its tests): one plain-HTTP GET to a local daemon, bounded in time.
#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "tagd/core/status.hpp"

namespace tagd::cli {

struct HttpReply {
  int status = 0;
  std::string body;
};

// "host:port", "[v6]:port", or either behind "http://". Error: kInvalidArgument.
struct Endpoint {
  std::string host;
  std::string port;
};
Result<Endpoint> parse_endpoint(std::string_view text);

// 127.0.0.1 on TAG_HTTP_PORT when set, else 8080: the daemon's own default listener.
std::string default_endpoint();

// GET `target`; the whole exchange (resolve, connect, request, response) within
// `timeout`. Errors: kServiceUnavailable (connect refused, reset, timeout), with the cause.
Result<HttpReply> http_get(const Endpoint& endpoint, std::string_view target, std::chrono::milliseconds timeout);

// The flags every subcommand takes: --endpoint HOST:PORT, --timeout MS.
struct CommonFlags {
  std::string endpoint = default_endpoint();
  std::chrono::milliseconds timeout{5000};
};
// Consumes args[i] (and its value) when it is a common flag: 1 = consumed, 0 = not a
// common flag, -1 = malformed (`error` says why).
int parse_common_flag(const std::vector<std::string>& args, std::size_t& i, CommonFlags& flags, std::string& error);

}  // namespace tagd::cli
