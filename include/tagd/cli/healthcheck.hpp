#pragma once
// `tagd healthcheck`: a probe for container runtimes with no curl in the image (the
// Dockerfile's HEALTHCHECK): GET /health (or --ready: /ready) from a running daemon.
#include <string>
#include <vector>

namespace tagd::cli {

// `tagd healthcheck [--endpoint HOST:PORT] [--ready] [--timeout MS]`; args exclude
// "healthcheck". Exit 0: the endpoint answered 200; 1: anything else (printed on stderr);
// 2: bad usage. The default endpoint is 127.0.0.1 on TAG_HTTP_PORT (else 8080).
int healthcheck_main(const std::vector<std::string>& args);

}  // namespace tagd::cli
