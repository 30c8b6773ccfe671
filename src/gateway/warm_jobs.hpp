#pragma once
// Internal to the gateway module: warm jobs and the admin API that starts, reports and
// cancels them (POST/GET/DELETE /_tagd/warm[/<id>], SigV4-signed by a key with an admin
// grant over the bucket and prefix; docs/warm.md).
//
// A job fills a prefix (listed upstream, in listing order) or an ordered key list (a data
// loader's next epoch) through the read path exactly as a client GET would — the same
// single flight, parallel parts and admission — with `concurrency` objects in flight,
// skipping what is cached. It runs detached on the event loop that received the POST, so
// it survives the client that started it; failures are reported per object.
//
// Threading: the registry is shared by every loop (one mutex); a job's progress counters
// are atomics (read from any loop by GET), its work list is touched only by its own loop.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include "exchange.hpp"
#include "tagd/auth/request_verifier.hpp"
#include "tagd/cache/read_path.hpp"
#include "tagd/config/config.hpp"
#include "tagd/core/clock.hpp"
#include "tagd/upstream/client.hpp"

namespace tagd::gateway {

struct AdminContext {
  const config::Config& config;
  const auth::RequestVerifier& verifier;
  const Clock& clock;
  cache::ReadPath* read_path;  // null: the cache is disabled (warm is refused)
  upstream::Client& client;    // this loop's: listings go upstream through it
};

// True for request-targets the admin API owns: path style "/_tagd/..." (no bucket may be
// named "_tagd": bucket names have no '_'). A virtual-hosted request (Host
// "<bucket>.<virtual_host_domain>") for "/_tagd/..." is an S3 request for that key.
bool is_admin_target(std::string_view raw_target, std::string_view host, std::string_view virtual_host_domain);

// Answers one admin API request (verification, authorization, the job operations).
[[nodiscard]] boost::asio::awaitable<void> serve_admin(AdminContext ctx, Exchange& ex);

}  // namespace tagd::gateway
