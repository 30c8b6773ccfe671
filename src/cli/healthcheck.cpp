#include "tagd/cli/healthcheck.hpp"

#include <cstdio>

#include "tagd/cli/http_get.hpp"

namespace tagd::cli {

int healthcheck_main(const std::vector<std::string>& args) {
  CommonFlags flags;
  // A probe that hangs is a failed probe: shorter than Docker's default 30 s timeout.
  flags.timeout = std::chrono::milliseconds(2000);
  std::string path = "/health";
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string error;
    const int common = parse_common_flag(args, i, flags, error);
    if (common < 0) {
      std::fprintf(stderr, "tagd healthcheck: %s\n", error.c_str());
      return 2;
    }
    if (common > 0) continue;
    if (args[i] == "--ready") {
      path = "/ready";
    } else {
      std::fprintf(stderr, "usage: tagd healthcheck [--endpoint HOST:PORT] [--ready] [--timeout MS]\n");
      return 2;
    }
  }
  auto endpoint = parse_endpoint(flags.endpoint);
  if (!endpoint) {
    std::fprintf(stderr, "tagd healthcheck: %s\n", endpoint.error().message().c_str());
    return 2;
  }
  auto reply = http_get(*endpoint, path, flags.timeout);
  if (!reply) {
    std::fprintf(stderr, "tagd healthcheck: %s\n", reply.error().message().c_str());
    return 1;
  }
  if (reply->status != 200) {
    std::fprintf(stderr, "tagd healthcheck: %s answered %d: %s\n", path.c_str(), reply->status, reply->body.c_str());
    return 1;
  }
  return 0;
}

}  // namespace tagd::cli
