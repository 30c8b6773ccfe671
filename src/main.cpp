// tagd: a verifying, re-signing, streaming S3 gateway. Start-up only: configuration
// errors end the process here with a message naming the setting.
#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "tagd/auth/credentials.hpp"
#include "tagd/auth/request_verifier.hpp"
#include "tagd/cache/object_cache.hpp"
#include "tagd/cli/healthcheck.hpp"
#include "tagd/cli/stats.hpp"
#include "tagd/cli/warm.hpp"
#include "tagd/config/config.hpp"
#include "tagd/core/io_uring_probe.hpp"
#include "tagd/core/logging.hpp"
#include "tagd/core/metrics.hpp"
#include "tagd/server/server.hpp"
#include "tagd/upstream/pool.hpp"

namespace {

std::shared_ptr<const tagd::auth::CredentialStore> load_client_keys(const tagd::config::Config& config) {
  return tagd::auth::load_client_keys(config.credentials_file, config.client_access_key_id,
                                      config.client_secret_access_key);
}

// SIGHUP: key rotation. A file that does not load, or leaves no key where keys are
// required, is refused whole and the keys in use stay.
bool reload_client_keys(const tagd::config::Config& config, tagd::auth::RequestVerifier& verifier) {
  auto& m = tagd::metrics();
  std::string problem;
  try {
    auto store = load_client_keys(config);
    if (store->size() == 0 && !config.allow_anonymous) {
      problem = "it leaves no client key (and auth.allow_anonymous is off)";
    } else {
      const std::size_t keys = store->size();
      verifier.replace_store(std::move(store));
      m.credentials_reloads_ok.inc();
      m.client_keys.set(static_cast<std::int64_t>(keys));
      spdlog::info("client keys reloaded: {} key(s) from {}", keys,
                   config.credentials_file.empty() ? "the environment" : config.credentials_file);
      return true;
    }
  } catch (const std::runtime_error& e) {
    problem = e.what();
  }
  m.credentials_reloads_failed.inc();
  spdlog::error("client keys reload refused, keeping the {} key(s) in use: {}", verifier.store()->size(), problem);
  return false;
}

// Sockets: Asio picks its reactor at compile time, so this is either tagd (epoll) or
// tagd-uring (io_uring), built from the same sources (CMakeLists.txt). tagd execs
// tagd-uring when io_uring is usable; each serves only where its reactor works. Returns
// when this process serves; throws ConfigError (exit 2) when it cannot.
// `epoll_sockets`: io_uring=disk, cache reads on io_uring but sockets on epoll (the
// benchmark suite's sockets A/B, or a kernel whose io_uring networking misbehaves).
void serve_sockets_here(const tagd::IoUringProbe& probe, char** argv, bool epoll_sockets) {
#if defined(TAGD_SOCKETS_IO_URING)
  constexpr bool kUringBuild = true;
#else
  constexpr bool kUringBuild = false;
#endif
#if defined(TAGD_URING_SIBLING_NAME)
  constexpr bool kHasSibling = true;
  constexpr const char* kSibling = TAGD_URING_SIBLING_NAME;
#else
  constexpr bool kHasSibling = false;
  constexpr const char* kSibling = "";
#endif
  if (kUringBuild) {
    // Read once and dropped, so that nothing this process starts inherits it.
    const char* passed = std::getenv(tagd::kExecBuildVariable);
    std::string mismatch = tagd::check_exec_build(passed, TAGD_BUILD_ID);
    ::unsetenv(tagd::kExecBuildVariable);
    if (!mismatch.empty()) throw tagd::config::ConfigError(mismatch);
  }
  using Action = tagd::SocketChoice::Action;
  auto choice = tagd::choose_sockets(kUringBuild, kHasSibling && !epoll_sockets, probe);
  if (epoll_sockets && kUringBuild) {
    choice = {Action::kRefuse, false, "io_uring=disk asks for sockets on epoll"};
  } else if (epoll_sockets && choice.action == Action::kServe && probe.available) {
    choice.why = "sockets on epoll by configuration (io_uring=disk)";
  }
  if (choice.action == Action::kRefuse) {
    throw tagd::config::ConfigError("tagd-uring serves sockets on io_uring only, which is unavailable here (" +
                                    choice.why + "): run tagd, which falls back to the epoll reactor");
  }
  if (choice.action == Action::kExecSibling) {
    std::string error;
    const std::string self = tagd::self_executable(error);
    if (self.empty()) {
      // Without /proc (a sandbox that hides it) there is no way to find the tagd-uring
      // installed with this tagd, and PATH or argv[0] are not to be trusted for it: serve
      // here on epoll, the same degraded mode as a refused io_uring.
      choice = {Action::kServe, false,
                "cannot find this executable to run tagd-uring beside it (" + error + ")"};
    } else {
      const std::string path = tagd::sibling_path(self, kSibling);
      spdlog::info("I/O backend: io_uring is usable ({}); running {} for sockets on io_uring (same pid)", choice.why,
                   path);
      // Whatever is logged so far must reach the log before the process image goes.
      spdlog::default_logger()->flush();
      std::fflush(nullptr);
      error = tagd::exec_sibling(path, argv, TAGD_BUILD_ID);
      throw tagd::config::ConfigError("sockets on io_uring need " + path + ", which cannot be run (" + error +
                                      "): install it next to tagd (both are built and installed together), or "
                                      "set io_uring=off (--io-uring off, TAG_IO_URING=off) to serve on the epoll "
                                      "reactor");
    }
  }
  auto& m = tagd::metrics();
  m.io_uring_sockets.set(choice.io_uring ? 1 : 0);
  if (choice.io_uring) {
    spdlog::info("I/O backend: sockets and cache reads on io_uring, one ring per event loop ({})", choice.why);
  } else if (probe.available) {
    spdlog::warn("I/O backend: sockets on the epoll reactor ({}); cache reads on io_uring, one ring per event loop",
                 choice.why);
  } else {
    m.disk_io_uring.set(0);
    spdlog::warn("I/O backend: io_uring unavailable ({}); sockets on the epoll reactor, cache reads on a pread thread "
                 "pool",
                 choice.why);
  }
}

}  // namespace

int main(int argc, char** argv) {
  // A client that resets mid-body makes sendfile fail with EPIPE, which would also raise
  // SIGPIPE (Asio's own sends pass MSG_NOSIGNAL; sendfile has no such flag).
  std::signal(SIGPIPE, SIG_IGN);
  std::vector<std::string> args(argv + 1, argv + argc);
  // Subcommands talk to a running daemon (src/cli/); everything else starts one.
  if (!args.empty() && args[0] == "stats") return tagd::cli::stats_main({args.begin() + 1, args.end()});
  if (!args.empty() && args[0] == "healthcheck") return tagd::cli::healthcheck_main({args.begin() + 1, args.end()});
  if (!args.empty() && args[0] == "warm") return tagd::cli::warm_main({args.begin() + 1, args.end()});
  if (!args.empty() && args[0] == "unpin") return tagd::cli::unpin_main({args.begin() + 1, args.end()});
  for (const auto& a : args) {
    if (a == "--help" || a == "-h") {
      std::cout << tagd::config::help_text();
      return 0;
    }
    if (a == "--version") {
      std::cout << "tagd " TAGD_VERSION " (build " TAGD_BUILD_ID ")\n";
      return 0;
    }
  }
  tagd::config::Config config;
  std::vector<char*> exec_argv;  // argv as tagd-uring gets it: args, with a once-only config file replaced
  try {
    tagd::config::make_config_file_rereadable(args);
    exec_argv.push_back(argv[0]);
    for (auto& a : args) exec_argv.push_back(a.data());
    exec_argv.push_back(nullptr);
    config = tagd::config::load(args, tagd::config::process_environment());
    tagd::logging::setup(config.log_level, config.log_format);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tagd: %s\n", e.what());
    return 2;
  }

  try {
    std::string settings;
    for (const auto& line : tagd::config::describe(config)) settings += " " + line;
    spdlog::debug("settings:{}", settings);

    auto probe = tagd::probe_io_uring(config.io_uring == "off");
    tagd::metrics().io_uring_enabled.set(probe.available ? 1 : 0);
    serve_sockets_here(probe, exec_argv.data(), config.io_uring == "disk");

    std::shared_ptr<const tagd::auth::CredentialStore> credentials;
    try {
      credentials = load_client_keys(config);
    } catch (const std::runtime_error& e) {
      throw tagd::config::ConfigError(std::string("invalid setting auth.credentials_file (flag --credentials-file, env "
                                                  "TAG_CREDENTIALS_FILE): ") +
                                      e.what());
    }
    if (credentials->size() == 0 && !config.allow_anonymous) {
      throw tagd::config::ConfigError(
          "no client credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, auth.credentials_file "
          "(--credentials-file), or auth.allow_anonymous");
    }
    tagd::metrics().client_keys.set(static_cast<std::int64_t>(credentials->size()));
    if (config.allow_anonymous) {
      spdlog::warn("anonymous access is enabled: unsigned requests are forwarded unsigned (the upstream's ACLs "
                   "decide) and bypass the cache");
    }
    auto endpoint = tagd::upstream::Endpoint::parse(config.upstream_endpoint);
    std::unique_ptr<boost::asio::ssl::context> tls;
    if (endpoint.tls) tls = tagd::upstream::make_tls_context(config.upstream_ca_file, config.upstream_tls_verify);
    if (endpoint.tls && !config.upstream_tls_verify) spdlog::warn("upstream TLS certificate verification is OFF");
    if (config.upstream_access_key_id.empty()) {
      spdlog::warn("no upstream credentials: requests are forwarded unsigned");
    }
    tagd::auth::RequestVerifier verifier(credentials, config.max_clock_skew, config.allow_anonymous);
    tagd::upstream::SigningCredentials signing{config.upstream_access_key_id, config.upstream_secret_access_key,
                                               config.upstream_region};
    std::unique_ptr<tagd::cache::ObjectCache> cache;
    if (config.cache_disabled) {
      spdlog::warn("cache disabled (cache.disabled): every request goes upstream; X-Cache: DISABLED");
    } else {
      try {
        cache = tagd::cache::ObjectCache::open(config, probe.available);
      } catch (const std::runtime_error& e) {
        throw tagd::config::ConfigError(e.what());
      }
    }
    if (cache && config.cache_warm_on_write) {
      spdlog::warn("cache.warm_on_write is not implemented yet: writes invalidate, the next read fills");
    }
    tagd::metrics().cache_enabled.set(cache ? 1 : 0);
    tagd::server::Server server(config, verifier, signing, tls.get(), cache.get());
    server.set_reload_hook([&] { return reload_client_keys(config, verifier); });
    spdlog::info("tagd listening on {}://{}:{} -> upstream {} (region {}), {} client key(s)",
                 server.tls() ? "https" : "http", config.listen_address, server.port(), config.upstream_endpoint,
                 config.upstream_region, credentials->size());
    server.run();
  } catch (const tagd::config::ConfigError& e) {
    spdlog::error("{}", e.what());
    return 2;
  } catch (const std::exception& e) {
    spdlog::error("start-up failed: {}", e.what());
    return 1;
  }
  return 0;
}
