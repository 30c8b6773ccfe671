#pragma once
// tagd's configuration: one table of settings, each reachable from a JSON file key, a
// TAG-compatible environment variable and a command-line flag.
// Precedence: flags > environment > file > defaults. Invalid values throw ConfigError
// naming the setting (start-up only; nothing on the data path throws).
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace tagd::config {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Config {
  // Listener
  std::string listen_address = "127.0.0.1";
  std::uint16_t port = 8080;
  unsigned threads = 0;  // 0 = one event loop per core
  // Virtual-hosted-style addressing: Host "bucket.<domain>" names the bucket. Empty keeps
  // path-style only.
  std::string virtual_host_domain = "localhost";
  // TLS listener (TAG_TLS_CERT_FILE / TAG_TLS_KEY_FILE): both set = HTTPS on the listen
  // port; both empty = plain HTTP. Re-read on SIGHUP (docs/deploy.md).
  std::string tls_cert_file;  // PEM certificate chain, leaf first
  std::string tls_key_file;   // PEM private key of the leaf

  // Upstream
  std::string upstream_endpoint = "https://t3.storage.dev";
  std::string upstream_region = "auto";
  std::string upstream_access_key_id;
  std::string upstream_secret_access_key;
  std::string upstream_ca_file;  // extra CA bundle (PEM) trusted besides the system store
  bool upstream_tls_verify = true;
  std::chrono::milliseconds upstream_connect_timeout{5000};
  std::chrono::milliseconds upstream_read_timeout{60000};
  unsigned upstream_max_idle_per_loop = 64;
  unsigned upstream_retries = 2;  // extra attempts, idempotent requests only

  // Clients
  std::string credentials_file;          // JSON, many keys with policies
  std::string client_access_key_id;      // TAG shortcut: one key with full access
  std::string client_secret_access_key;
  bool allow_anonymous = false;
  std::chrono::seconds max_clock_skew{900};

  // Limits
  std::size_t max_header_bytes = 64 * 1024;
  std::chrono::milliseconds header_timeout{30000};   // whole request head must arrive in this
  std::chrono::milliseconds idle_timeout{60000};     // keep-alive idle, and each body read
  std::chrono::milliseconds drain_timeout{30000};
  unsigned max_inflight_requests = 1024;
  // Admission by bytes: response body bytes admitted and not sent yet, each response
  // counting at most one 8 MiB window (gateway/admitted_body.hpp); 0 = no limit.
  std::uint64_t max_inflight_bytes = 2ull << 30;
  // Client connections served at once; beyond it a new connection is accepted and reset
  // at once (server.cpp, admit_connection). 0 = no cap.
  unsigned max_connections = 8192;
  std::size_t max_delete_objects_body = 2 * 1024 * 1024;

  // Cache
  bool cache_disabled = false;
  std::string cache_disk_path = "/var/tmp/tagd-cache";
  std::uint64_t cache_max_disk_usage = 4ull << 30;  // exact cap of the block file, bytes
  std::uint64_t cache_min_free_disk = 1ull << 30;   // leave at least this free on the filesystem
  std::chrono::milliseconds cache_ttl{24 * 3600 * 1000};
  std::chrono::milliseconds cache_stale_if_error{3600 * 1000};
  std::string cache_eviction_policy = "fifo";
  bool cache_warm_on_write = false;
  std::uint32_t cache_block_size = 1u << 20;
  std::uint64_t cache_region_size = 16ull << 20;
  std::uint64_t cache_memory_size = 256ull << 20;
  std::uint64_t cache_fill_budget_bytes = 1ull << 30;
  unsigned cache_max_fills = 64;
  std::uint64_t cache_max_fetch = 8ull << 20;  // largest coalesced upstream range request
  // Part 7: parallel parts and read-ahead (cache/fill_engine.hpp, sequential_detector.hpp).
  unsigned cache_fetch_parallelism = 8;            // parts of one object in flight ahead of a reader
  std::uint64_t cache_prefetch_budget = 256ull << 20;  // bytes fetched ahead of readers in flight
  std::uint64_t cache_read_ahead_max = 64ull << 20;    // read-ahead window cap (0: off)
  // Bytes of whole regions pins may hold (warm --pin, docs/warm.md); 0: pinning refused.
  // Capped at run time to the cache minus two regions.
  std::uint64_t cache_pin_quota = 1ull << 30;
  std::size_t cache_index_memory_entries = 1u << 18;
  // "direct": O_DIRECT reads and writes (falls back to buffered where the filesystem
  // refuses it); "buffered": the page cache. See docs/architecture.md, "Disk I/O".
  std::string cache_disk_io = "direct";
  std::string cache_sendfile = "remote";

  // Warm jobs (docs/warm.md): at most this many listing or filling at once; a start
  // beyond it is refused (503 SlowDown, tagd_warm_jobs_refused_total).
  unsigned warm_max_jobs = 16;

  // io_uring: probe at start-up; "auto" | "off"
  std::string io_uring = "auto";

  // Logs
  std::string log_level = "info";      // trace|debug|info|warn|error|off
  std::string log_format = "console";  // console|json
  bool access_log = true;

  // Upload notifications: JSON file of webhook endpoints and outbox limits (src/notify/README.md);
  // empty: none.
  std::string notify_config_file;
};

using Environment = std::map<std::string, std::string>;

// Snapshot of the process environment (only the variables tagd reads).
Environment process_environment();

// Parses flags (argv[1..]), environment and the file named by --config / TAG_CONFIG_FILE.
// Throws ConfigError. `--help` is handled by the caller via help_text().
Config load(const std::vector<std::string>& args, const Environment& env);

// A config file that can be read only once (`--config <(...)`, /dev/stdin, a FIFO: ways
// to keep secrets off disk) is copied into an anonymous memory file, and `args` (or
// TAG_CONFIG_FILE) rewritten to name it as /proc/self/fd/N, kept open across exec: tagd
// reads its configuration again after exec'ing tagd-uring, and a pipe would by then be
// empty. A regular file, or a system without /proc, is left as it is. Throws ConfigError.
void make_config_file_rereadable(std::vector<std::string>& args);

std::string help_text();

// What --help says about one setting: its file key, environment variable ("" = none),
// flag (without dashes) and default as help_text() prints it.
struct SettingDoc {
  std::string file_key, env, flag, default_value;
};
std::vector<SettingDoc> setting_docs();

// One line per setting with its effective value (secrets masked), for the start-up log.
std::vector<std::string> describe(const Config& config);

}  // namespace tagd::config
