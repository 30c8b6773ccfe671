#pragma once
// `tagd warm`: asks a running daemon to fill a prefix (or an ordered list of keys) into its
// cache through the admin API (POST /_tagd/warm, SigV4-signed with AWS_ACCESS_KEY_ID /
// AWS_SECRET_ACCESS_KEY: a key with an admin grant), then follows the job: a progress bar
// (objects, bytes, rate, ETA) on a terminal, one JSON status line per second otherwise.
// The job belongs to the daemon: leaving (Ctrl-C, --detach) does not stop it;
// `tagd warm --cancel ID` does.
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace tagd::cli {

// `tagd warm s3://BUCKET[/PREFIX] [--keys FILE] [--pin | --no-pin] [--concurrency N] [--detach] [--json]
//            [--endpoint HOST:PORT]`
// `tagd warm --status ID | --cancel ID | --list [--endpoint HOST:PORT]`
// args exclude "warm". Exit 0: the job finished with every object warm (or the request
// was answered); 1: the job failed, objects failed, or the daemon refused; 2: bad usage.
int warm_main(const std::vector<std::string>& args);

// `tagd unpin s3://BUCKET/PREFIX [--recursive | --list] [--endpoint HOST:PORT]`, or
// `tagd unpin s3://BUCKET --all [--recursive]` (a whole bucket only with --all): DELETE (or
// GET, with --list) /_tagd/pins?[all=true&]bucket=&prefix=; prints the daemon's JSON
// answer. Exit 0 answered, 1 refused or unreachable, 2 bad usage.
int unpin_main(const std::vector<std::string>& args);

// One line for an error answer of the admin API: "<Code>: <Message> (<status>)" from its
// S3 XML body (control characters dropped), for stderr.
std::string error_line(int status, std::string_view body);

// The progress bar's line for one job status (objects, bytes fetched and found cached,
// the rate and ETA of fetched bytes, state).
std::string progress_line(const nlohmann::json& status);

}  // namespace tagd::cli
