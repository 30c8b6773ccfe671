#pragma once
// `tagd stats`: a human summary of a running daemon, read from its GET /metrics (hit ratio,
// requests by cache result, bytes by source, cache fill, latency percentiles, admission).
// The parsing and the summary are pure functions of the metrics text, so they are tested
// without a daemon; stats_main() adds the HTTP GET and the flags.
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "tagd/core/status.hpp"

namespace tagd::cli {

// One sample of the Prometheus text format: name, labels, value.
struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

// The samples of a Prometheus text exposition (comments skipped). Error
// (kInvalidArgument): a line that is not a sample, naming it.
Result<std::vector<Sample>> parse_prometheus(std::string_view text);

// The summary of a /metrics text: plain text for people, or a JSON document (--json).
// Error: the text does not parse.
Result<std::string> stats_report(std::string_view metrics_text, bool json);

// `tagd stats [--endpoint HOST:PORT] [--json] [--timeout MS]`; args exclude "stats".
// The default endpoint is 127.0.0.1 on TAG_HTTP_PORT (else 8080). Exit codes: 0 printed,
// 1 the daemon could not be read, 2 bad usage.
int stats_main(const std::vector<std::string>& args);

}  // namespace tagd::cli
