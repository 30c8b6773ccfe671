#include "tagd/config/config.hpp"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>

extern char** environ;

namespace tagd::config {
namespace {

using Json = nlohmann::json;

// One row per setting. `apply` parses text (from a flag or the environment) into the
// config; JSON values are turned into text first so every source shares one parser and
// one error message.
struct Setting {
  std::string file_key;  // dotted path in the JSON file
  std::string env;       // environment variable ("" = none)
  std::string flag;      // without leading dashes
  std::string help;
  std::function<void(Config&, const std::string&)> apply;
  std::function<std::string(const Config&)> show;
  bool secret = false;
  bool is_bool = false;
  // How --help shows the default: sizes in binary units, durations with a unit.
  bool is_size = false;
  bool is_duration = false;
};

[[noreturn]] void invalid(const Setting& s, const std::string& value, const std::string& why) {
  std::ostringstream msg;
  msg << "invalid setting " << s.file_key << " (flag --" << s.flag;
  if (!s.env.empty()) msg << ", env " << s.env;
  msg << "): '" << (s.secret ? std::string("***") : value) << "': " << why;
  throw ConfigError(msg.str());
}

std::uint64_t parse_uint(const Setting& s, const std::string& v, std::uint64_t min, std::uint64_t max) {
  std::uint64_t out = 0;
  auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc() || ptr != v.data() + v.size() || v.empty()) invalid(s, v, "not a non-negative integer");
  if (out < min || out > max) {
    invalid(s, v, "out of range [" + std::to_string(min) + ", " + std::to_string(max) + "]");
  }
  return out;
}

bool parse_bool(const Setting& s, const std::string& v) {
  if (v == "1" || v == "true" || v == "yes" || v == "on") return true;
  if (v == "0" || v == "false" || v == "no" || v == "off") return false;
  invalid(s, v, "not a boolean (true/false)");
}

// Durations accept a unit suffix: ms, s, m, h; a bare number means the default unit.
std::chrono::milliseconds parse_duration(const Setting& s, const std::string& v, std::chrono::milliseconds unit) {
  std::size_t digits = 0;
  while (digits < v.size() && v[digits] >= '0' && v[digits] <= '9') ++digits;
  if (digits == 0) invalid(s, v, "not a duration (e.g. 500ms, 30s, 5m)");
  std::uint64_t n = parse_uint(s, v.substr(0, digits), 0, 1'000'000'000);
  std::string suffix = v.substr(digits);
  std::chrono::milliseconds scale = unit;
  if (suffix == "ms") scale = std::chrono::milliseconds(1);
  else if (suffix == "s") scale = std::chrono::seconds(1);
  else if (suffix == "m") scale = std::chrono::minutes(1);
  else if (suffix == "h") scale = std::chrono::hours(1);
  else if (!suffix.empty()) invalid(s, v, "unknown duration unit '" + suffix + "'");
  return scale * static_cast<std::int64_t>(n);
}

// Sizes accept binary units: 64KiB, 512MiB, 10GiB, 1TiB (also K/M/G/T, same meaning).
std::uint64_t parse_size(const Setting& s, const std::string& v) {
  std::size_t digits = 0;
  while (digits < v.size() && v[digits] >= '0' && v[digits] <= '9') ++digits;
  if (digits == 0) invalid(s, v, "not a size (e.g. 64KiB, 512MiB, 10GiB)");
  std::uint64_t n = parse_uint(s, v.substr(0, digits), 0, 1ull << 50);
  std::string suffix = v.substr(digits);
  std::uint64_t scale = 1;
  if (suffix == "KiB" || suffix == "K" || suffix == "KB") scale = 1ull << 10;
  else if (suffix == "MiB" || suffix == "M" || suffix == "MB") scale = 1ull << 20;
  else if (suffix == "GiB" || suffix == "G" || suffix == "GB") scale = 1ull << 30;
  else if (suffix == "TiB" || suffix == "T" || suffix == "TB") scale = 1ull << 40;
  else if (!suffix.empty() && suffix != "B") invalid(s, v, "unknown size unit '" + suffix + "'");
  return n * scale;
}

std::string show_ms(std::chrono::milliseconds d) { return std::to_string(d.count()) + "ms"; }

template <class T>
Setting text(std::string key, std::string env, std::string flag, std::string help, T Config::*field,
             std::function<void(const Setting&, const std::string&)> validate = {}) {
  Setting s{std::move(key), std::move(env), std::move(flag), std::move(help), {}, {}};
  s.apply = [field, validate, key = s.file_key, envn = s.env, fl = s.flag](Config& c, const std::string& v) {
    if (validate) validate(Setting{key, envn, fl, "", {}, {}}, v);
    c.*field = v;
  };
  s.show = [field](const Config& c) { return c.*field; };
  return s;
}

Setting uint_setting(std::string key, std::string env, std::string flag, std::string help,
                     std::function<void(Config&, std::uint64_t)> set, std::function<std::uint64_t(const Config&)> get,
                     std::uint64_t min, std::uint64_t max) {
  Setting s{std::move(key), std::move(env), std::move(flag), std::move(help), {}, {}};
  Setting copy = s;
  s.apply = [copy, set, min, max](Config& c, const std::string& v) { set(c, parse_uint(copy, v, min, max)); };
  s.show = [get](const Config& c) { return std::to_string(get(c)); };
  return s;
}

Setting bool_setting(std::string key, std::string env, std::string flag, std::string help, bool Config::*field) {
  Setting s{std::move(key), std::move(env), std::move(flag), std::move(help), {}, {}};
  Setting copy = s;
  s.apply = [copy, field](Config& c, const std::string& v) { c.*field = parse_bool(copy, v); };
  s.show = [field](const Config& c) { return std::string(c.*field ? "true" : "false"); };
  s.is_bool = true;
  return s;
}

Setting size_setting(std::string key, std::string env, std::string flag, std::string help,
                     std::function<void(Config&, std::uint64_t)> set, std::function<std::uint64_t(const Config&)> get,
                     std::uint64_t min, std::uint64_t max) {
  Setting s{std::move(key), std::move(env), std::move(flag), std::move(help), {}, {}};
  Setting copy = s;
  s.apply = [copy, set, min, max](Config& c, const std::string& v) {
    std::uint64_t n = parse_size(copy, v);
    if (n < min || n > max) {
      invalid(copy, v, "out of range [" + std::to_string(min) + ", " + std::to_string(max) + "] bytes");
    }
    set(c, n);
  };
  s.show = [get](const Config& c) { return std::to_string(get(c)); };
  s.is_size = true;
  return s;
}

Setting duration_setting(std::string key, std::string env, std::string flag, std::string help,
                         std::chrono::milliseconds Config::*field, std::chrono::milliseconds unit) {
  Setting s{std::move(key), std::move(env), std::move(flag), std::move(help), {}, {}};
  Setting copy = s;
  s.apply = [copy, field, unit](Config& c, const std::string& v) {
    auto d = parse_duration(copy, v, unit);
    if (d.count() <= 0) invalid(copy, v, "must be positive");
    c.*field = d;
  };
  s.show = [field](const Config& c) { return show_ms(c.*field); };
  s.is_duration = true;
  return s;
}

void validate_endpoint(const Setting& s, const std::string& v) {
  if (v.rfind("http://", 0) != 0 && v.rfind("https://", 0) != 0) invalid(s, v, "must start with http:// or https://");
  auto rest = v.substr(v.find("//") + 2);
  if (rest.empty() || rest[0] == '/' || rest[0] == ':') invalid(s, v, "has no host");
  auto slash = rest.find('/');
  if (slash != std::string::npos && slash + 1 != rest.size()) invalid(s, v, "must not have a path");
}

void validate_one_of(const Setting& s, const std::string& v, std::initializer_list<const char*> allowed) {
  for (const char* a : allowed) {
    if (v == a) return;
  }
  std::string list;
  for (const char* a : allowed) list += std::string(list.empty() ? "" : "|") + a;
  invalid(s, v, "must be one of " + list);
}

const std::vector<Setting>& settings() {
  static const std::vector<Setting> table = [] {
    std::vector<Setting> t;
    t.push_back(text("listen.address", "TAG_LISTEN_ADDRESS", "listen-address", "address to listen on",
                     &Config::listen_address));
    t.push_back(uint_setting(
        "listen.port", "TAG_HTTP_PORT", "port", "TCP port to listen on (0 = any free port)",
        [](Config& c, std::uint64_t v) { c.port = static_cast<std::uint16_t>(v); },
        [](const Config& c) { return c.port; }, 0, 65535));
    t.push_back(uint_setting(
        "listen.threads", "TAG_THREADS", "threads", "event loops (0 = one per core)",
        [](Config& c, std::uint64_t v) { c.threads = static_cast<unsigned>(v); },
        [](const Config& c) { return c.threads; }, 0, 256));
    t.push_back(text("listen.virtual_host_domain", "TAG_VIRTUAL_HOST_DOMAIN", "virtual-host-domain",
                     "Host suffix for virtual-hosted-style buckets (bucket.<domain>); empty = path-style only",
                     &Config::virtual_host_domain));
    t.push_back(text("tls.cert_file", "TAG_TLS_CERT_FILE", "tls-cert-file",
                     "PEM certificate chain: with tls.key_file, HTTPS on the listen port (re-read on SIGHUP)",
                     &Config::tls_cert_file));
    t.push_back(text("tls.key_file", "TAG_TLS_KEY_FILE", "tls-key-file",
                     "PEM private key of tls.cert_file (re-read on SIGHUP)", &Config::tls_key_file));
    t.push_back(text("upstream.endpoint", "TAG_UPSTREAM_ENDPOINT", "upstream-endpoint",
                     "upstream S3 endpoint URL", &Config::upstream_endpoint, validate_endpoint));
    t.push_back(text("upstream.region", "TAG_UPSTREAM_REGION", "upstream-region", "upstream signing region",
                     &Config::upstream_region, [](const Setting& s, const std::string& v) {
                       if (v.empty()) invalid(s, v, "must not be empty");
                     }));
    t.push_back(text("upstream.access_key_id", "TAG_UPSTREAM_ACCESS_KEY_ID", "upstream-access-key-id",
                     "access key tagd signs upstream requests with (default: AWS_ACCESS_KEY_ID)",
                     &Config::upstream_access_key_id));
    auto secret = text("upstream.secret_access_key", "TAG_UPSTREAM_SECRET_ACCESS_KEY", "upstream-secret-access-key",
                       "secret for upstream signing (default: AWS_SECRET_ACCESS_KEY)",
                       &Config::upstream_secret_access_key);
    secret.secret = true;
    t.push_back(secret);
    t.push_back(text("upstream.ca_file", "TAG_UPSTREAM_CA_FILE", "upstream-ca-file",
                     "PEM CA bundle trusted for the upstream, besides the system store", &Config::upstream_ca_file));
    t.push_back(bool_setting("upstream.tls_verify", "TAG_UPSTREAM_TLS_VERIFY", "upstream-tls-verify",
                             "verify the upstream's certificate (never turn off in production)",
                             &Config::upstream_tls_verify));
    t.push_back(duration_setting("upstream.connect_timeout", "TAG_UPSTREAM_CONNECT_TIMEOUT",
                                 "upstream-connect-timeout", "upstream connect timeout",
                                 &Config::upstream_connect_timeout, std::chrono::milliseconds(1)));
    t.push_back(duration_setting("upstream.read_timeout", "TAG_UPSTREAM_READ_TIMEOUT", "upstream-read-timeout",
                                 "upstream timeout for each read", &Config::upstream_read_timeout,
                                 std::chrono::milliseconds(1)));
    t.push_back(uint_setting(
        "upstream.max_idle_per_loop", "TAG_UPSTREAM_MAX_IDLE", "upstream-max-idle",
        "idle keep-alive upstream connections kept per event loop",
        [](Config& c, std::uint64_t v) { c.upstream_max_idle_per_loop = static_cast<unsigned>(v); },
        [](const Config& c) { return c.upstream_max_idle_per_loop; }, 0, 4096));
    t.push_back(uint_setting(
        "upstream.retries", "TAG_UPSTREAM_RETRIES", "upstream-retries",
        "extra attempts for idempotent requests whose body was not yet sent",
        [](Config& c, std::uint64_t v) { c.upstream_retries = static_cast<unsigned>(v); },
        [](const Config& c) { return c.upstream_retries; }, 0, 10));
    t.push_back(text("auth.credentials_file", "TAG_CREDENTIALS_FILE", "credentials-file",
                     "JSON file of client access keys and their policies (re-read on SIGHUP)",
                     &Config::credentials_file));
    t.push_back(text("auth.access_key_id", "TAG_CLIENT_ACCESS_KEY_ID", "client-access-key-id",
                     "one client key with full access (default: AWS_ACCESS_KEY_ID)", &Config::client_access_key_id));
    auto csecret = text("auth.secret_access_key", "TAG_CLIENT_SECRET_ACCESS_KEY", "client-secret-access-key",
                        "its secret (default: AWS_SECRET_ACCESS_KEY)", &Config::client_secret_access_key);
    csecret.secret = true;
    t.push_back(csecret);
    t.push_back(bool_setting("auth.allow_anonymous", "TAG_ALLOW_ANONYMOUS", "allow-anonymous",
                             "forward unsigned requests unsigned (the upstream's ACLs decide; never cached)",
                             &Config::allow_anonymous));
    t.push_back(uint_setting(
        "auth.max_clock_skew_seconds", "TAG_MAX_CLOCK_SKEW", "max-clock-skew",
        "allowed difference between a request's date and tagd's clock, seconds",
        [](Config& c, std::uint64_t v) { c.max_clock_skew = std::chrono::seconds(v); },
        [](const Config& c) { return c.max_clock_skew.count(); }, 1, 7 * 24 * 3600));
    t.push_back(uint_setting(
        "limits.max_header_bytes", "TAG_MAX_HEADER_BYTES", "max-header-bytes", "largest request head accepted",
        [](Config& c, std::uint64_t v) { c.max_header_bytes = v; }, [](const Config& c) { return c.max_header_bytes; },
        1024, 1024 * 1024));
    t.push_back(duration_setting("limits.header_timeout", "TAG_HEADER_TIMEOUT", "header-timeout",
                                 "a request head must arrive whole within this", &Config::header_timeout,
                                 std::chrono::milliseconds(1)));
    t.push_back(duration_setting("limits.idle_timeout", "TAG_IDLE_TIMEOUT", "idle-timeout",
                                 "keep-alive idle limit and the limit on each body read", &Config::idle_timeout,
                                 std::chrono::milliseconds(1)));
    t.push_back(duration_setting("limits.drain_timeout", "TAG_DRAIN_TIMEOUT", "drain-timeout",
                                 "how long SIGTERM waits for requests in flight", &Config::drain_timeout,
                                 std::chrono::milliseconds(1)));
    t.push_back(uint_setting(
        "limits.max_inflight_requests", "TAG_MAX_INFLIGHT_REQUESTS", "max-inflight-requests",
        "requests in flight before new ones get 503 SlowDown",
        [](Config& c, std::uint64_t v) { c.max_inflight_requests = static_cast<unsigned>(v); },
        [](const Config& c) { return c.max_inflight_requests; }, 1, 1'000'000));
    t.push_back(size_setting(
        "limits.max_inflight_bytes", "TAG_MAX_INFLIGHT_BYTES", "max-inflight-bytes",
        "response body bytes in flight (at most 8MiB counted per response) before new requests get 503 SlowDown; 0 = "
        "no limit",
        [](Config& c, std::uint64_t v) { c.max_inflight_bytes = v; },
        [](const Config& c) { return c.max_inflight_bytes; }, 0, 1ull << 50));
    t.push_back(uint_setting(
        "limits.max_connections", "TAG_MAX_CONNECTIONS", "max-connections",
        "client connections served at once; beyond it new connections are accepted and reset at once; 0 = no cap",
        [](Config& c, std::uint64_t v) { c.max_connections = static_cast<unsigned>(v); },
        [](const Config& c) { return c.max_connections; }, 0, 10'000'000));
    t.push_back(bool_setting("cache.disabled", "TAG_CACHE_DISABLED", "cache-disabled",
                             "forward everything; X-Cache: DISABLED", &Config::cache_disabled));
    t.push_back(text("cache.disk_path", "TAG_CACHE_DISK_PATH", "cache-disk-path",
                     "directory for the block file and the RocksDB index", &Config::cache_disk_path,
                     [](const Setting& s, const std::string& v) {
                       if (v.empty()) invalid(s, v, "must not be empty");
                     }));
    t.push_back(size_setting(
        "cache.max_disk_usage", "TAG_CACHE_MAX_DISK_USAGE", "cache-max-disk-usage",
        "exact size of the block file (e.g. 100GiB)", [](Config& c, std::uint64_t v) { c.cache_max_disk_usage = v; },
        [](const Config& c) { return c.cache_max_disk_usage; }, 1ull << 20, 1ull << 50));
    t.push_back(size_setting(
        "cache.min_free_disk", "TAG_CACHE_MIN_FREE_DISK", "cache-min-free-disk",
        "free space the cache leaves on its filesystem", [](Config& c, std::uint64_t v) { c.cache_min_free_disk = v; },
        [](const Config& c) { return c.cache_min_free_disk; }, 0, 1ull << 50));
    t.push_back(duration_setting("cache.ttl", "TAG_CACHE_TTL", "cache-ttl",
                                 "how long an entry is fresh (shortened by upstream Cache-Control/Expires)",
                                 &Config::cache_ttl, std::chrono::seconds(1)));
    t.push_back(duration_setting("cache.stale_if_error", "TAG_CACHE_STALE_IF_ERROR", "cache-stale-if-error",
                                 "serve a stale entry this long past expiry when the upstream is unreachable",
                                 &Config::cache_stale_if_error, std::chrono::seconds(1)));
    t.push_back(text("cache.eviction_policy", "TAG_CACHE_EVICTION_POLICY", "cache-eviction-policy",
                     "region eviction: fifo, or hit-gated (keeps a stable part of a dataset read in "
                     "shuffled epochs larger than the cache; declines fills while every region is read)",
                     &Config::cache_eviction_policy,
                     [](const Setting& s, const std::string& v) { validate_one_of(s, v, {"fifo", "hit-gated"}); }));
    t.push_back(bool_setting("cache.warm_on_write", "TAG_CACHE_WARM_ON_WRITE", "cache-warm-on-write",
                             "fetch an object into the cache after a PutObject/Copy through tagd",
                             &Config::cache_warm_on_write));
    t.push_back(size_setting(
        "cache.block_size", "TAG_CACHE_BLOCK_SIZE", "cache-block-size", "cache block size, a power of two",
        [](Config& c, std::uint64_t v) { c.cache_block_size = static_cast<std::uint32_t>(v); },
        [](const Config& c) { return c.cache_block_size; }, 64ull << 10, 16ull << 20));
    t.push_back(size_setting(
        "cache.region_size", "TAG_CACHE_REGION_SIZE", "cache-region-size", "eviction unit (>= block size + 4KiB)",
        [](Config& c, std::uint64_t v) { c.cache_region_size = v; }, [](const Config& c) { return c.cache_region_size; },
        1ull << 20, 1ull << 30));
    t.push_back(size_setting(
        "cache.memory_size", "TAG_CACHE_MEMORY_SIZE", "cache-memory-size", "DRAM tier for the hottest blocks",
        [](Config& c, std::uint64_t v) { c.cache_memory_size = v; }, [](const Config& c) { return c.cache_memory_size; },
        0, 1ull << 40));
    t.push_back(size_setting(
        "cache.fill_budget", "TAG_CACHE_FILL_BUDGET", "cache-fill-budget",
        "bytes of fills in flight; beyond it objects are served but not cached",
        [](Config& c, std::uint64_t v) { c.cache_fill_budget_bytes = v; },
        [](const Config& c) { return c.cache_fill_budget_bytes; }, 1ull << 20, 1ull << 40));
    t.push_back(uint_setting(
        "cache.max_fills", "TAG_CACHE_MAX_FILLS", "cache-max-fills", "concurrent fills",
        [](Config& c, std::uint64_t v) { c.cache_max_fills = static_cast<unsigned>(v); },
        [](const Config& c) { return c.cache_max_fills; }, 1, 100000));
    t.push_back(size_setting(
        "cache.max_fetch", "TAG_CACHE_MAX_FETCH", "cache-max-fetch",
        "largest upstream range request a miss coalesces contiguous blocks into",
        [](Config& c, std::uint64_t v) { c.cache_max_fetch = v; }, [](const Config& c) { return c.cache_max_fetch; },
        64ull << 10, 1ull << 30));
    t.push_back(uint_setting(
        "cache.fetch_parallelism", "TAG_CACHE_FETCH_PARALLELISM", "cache-fetch-parallelism",
        "parts (cache.max_fetch each) of one cold object fetched at once ahead of its reader",
        [](Config& c, std::uint64_t v) { c.cache_fetch_parallelism = static_cast<unsigned>(v); },
        [](const Config& c) { return c.cache_fetch_parallelism; }, 1, 64));
    t.push_back(size_setting(
        "cache.prefetch_budget", "TAG_CACHE_PREFETCH_BUDGET", "cache-prefetch-budget",
        "bytes fetched ahead of readers (parallel parts, read-ahead) in flight at once",
        [](Config& c, std::uint64_t v) { c.cache_prefetch_budget = v; },
        [](const Config& c) { return c.cache_prefetch_budget; }, 0, 1ull << 40));
    t.push_back(size_setting(
        "cache.pin_quota", "TAG_CACHE_PIN_QUOTA", "cache-pin-quota",
        "cache bytes (whole regions) pinned objects may hold (warm --pin); 0: pinning refused; at most the cache "
        "minus two regions",
        [](Config& c, std::uint64_t v) { c.cache_pin_quota = v; }, [](const Config& c) { return c.cache_pin_quota; },
        0, 1ull << 50));
    t.push_back(size_setting(
        "cache.read_ahead_max", "TAG_CACHE_READ_AHEAD_MAX", "cache-read-ahead-max",
        "largest read-ahead window for a client reading an object in order (0: no read-ahead)",
        [](Config& c, std::uint64_t v) { c.cache_read_ahead_max = v; },
        [](const Config& c) { return c.cache_read_ahead_max; }, 0, 1ull << 34));
    t.push_back(uint_setting(
        "cache.index_memory_entries", "TAG_CACHE_INDEX_MEMORY_ENTRIES", "cache-index-memory-entries",
        "object metadata and block locations kept decoded in memory (each kind; beyond it, RocksDB lookups)",
        [](Config& c, std::uint64_t v) { c.cache_index_memory_entries = static_cast<std::size_t>(v); },
        [](const Config& c) { return c.cache_index_memory_entries; }, 16, 1ull << 26));
    t.push_back(uint_setting(
        "warm.max_jobs", "TAG_WARM_MAX_JOBS", "warm-max-jobs",
        "warm jobs listing or filling at once (tagd warm); a start beyond it is refused with 503 SlowDown",
        [](Config& c, std::uint64_t v) { c.warm_max_jobs = static_cast<unsigned>(v); },
        [](const Config& c) { return c.warm_max_jobs; }, 1, 4096));
    t.push_back(text("cache.disk_io", "TAG_CACHE_DISK_IO", "cache-disk-io",
                     "buffered (through the page cache) | direct (O_DIRECT; memory bounded by the DRAM tier)",
                     &Config::cache_disk_io, [](const Setting& s, const std::string& v) {
                       validate_one_of(s, v, {"buffered", "direct"});
                     }));
    t.push_back(text("cache.sendfile", "TAG_CACHE_SENDFILE", "cache-sendfile",
                     "remote (DRAM-tier blocks sent with sendfile to plain-HTTP clients on other hosts; copied to "
                     "clients on this host, whose receive is cheaper from a fresh copy) | always | off (no memfd slots)",
                     &Config::cache_sendfile, [](const Setting& s, const std::string& v) {
                       validate_one_of(s, v, {"remote", "always", "off"});
                     }));
    t.push_back(text("io_uring", "TAG_IO_URING", "io-uring",
                     "auto (sockets and cache reads on io_uring where usable, else epoll and a pread pool) | disk "
                     "(cache reads on io_uring, sockets on epoll) | off",
                     &Config::io_uring, [](const Setting& s, const std::string& v) {
                       validate_one_of(s, v, {"auto", "disk", "off"});
                     }));
    t.push_back(text("log.level", "TAG_LOG_LEVEL", "log-level", "trace|debug|info|warn|error|off",
                     &Config::log_level, [](const Setting& s, const std::string& v) {
                       validate_one_of(s, v, {"trace", "debug", "info", "warn", "error", "off"});
                     }));
    t.push_back(text("log.format", "TAG_LOG_FORMAT", "log-format", "console|json", &Config::log_format,
                     [](const Setting& s, const std::string& v) { validate_one_of(s, v, {"console", "json"}); }));
    t.push_back(bool_setting("log.access_log", "TAG_ACCESS_LOG", "access-log", "one log line per request",
                             &Config::access_log));
    t.push_back(text("notify.config_file", "TAG_NOTIFY_CONFIG_FILE", "notify-config-file",
                     "JSON file of upload-notification webhooks (endpoints, filters, outbox limits); empty: none",
                     &Config::notify_config_file));
    return t;
  }();
  return table;
}

// JSON scalar → the same text a flag would carry.
std::string json_to_text(const Setting& s, const Json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  if (v.is_number_unsigned() || v.is_number_integer()) return std::to_string(v.get<std::int64_t>());
  invalid(s, v.dump(), "expected a string, number or boolean");
}

void flatten(const Json& node, const std::string& prefix, std::map<std::string, Json>& out) {
  for (auto it = node.begin(); it != node.end(); ++it) {
    std::string key = prefix.empty() ? it.key() : prefix + "." + it.key();
    if (it.value().is_object()) {
      flatten(it.value(), key, out);
    } else {
      out[key] = it.value();
    }
  }
}

void apply_file(Config& config, const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError("config file " + path + ": cannot be opened");
  Json doc;
  try {
    doc = Json::parse(in, nullptr, true, /*ignore_comments=*/true);
  } catch (const Json::exception& e) {
    // Not only parse_error: a number too large for a double ("1e400") is out_of_range.
    throw ConfigError("config file " + path + ": " + e.what());
  }
  if (!doc.is_object()) throw ConfigError("config file " + path + ": top level must be an object");
  std::map<std::string, Json> flat;
  flatten(doc, "", flat);
  for (const auto& [key, value] : flat) {
    const Setting* match = nullptr;
    for (const auto& s : settings()) {
      if (s.file_key == key) match = &s;
    }
    if (match == nullptr) throw ConfigError("config file " + path + ": unknown setting '" + key + "'");
    match->apply(config, json_to_text(*match, value));
  }
}

}  // namespace

Environment process_environment() {
  Environment env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view kv(*e);
    auto eq = kv.find('=');
    if (eq == std::string_view::npos) continue;
    auto name = kv.substr(0, eq);
    if (name.rfind("TAG_", 0) == 0 || name.rfind("AWS_", 0) == 0) {
      env.emplace(std::string(name), std::string(kv.substr(eq + 1)));
    }
  }
  return env;
}

void make_config_file_rereadable(std::vector<std::string>& args) {
  // Where the file is named: the last --config wins, as in load(); else TAG_CONFIG_FILE.
  std::optional<std::size_t> arg_index;  // the element holding the name
  bool inline_form = false;               // "--config=path"
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--config" && i + 1 < args.size()) {
      arg_index = ++i;
      inline_form = false;
    } else if (args[i].rfind("--config=", 0) == 0) {
      arg_index = i;
      inline_form = true;
    }
  }
  std::string path;
  if (arg_index) {
    path = inline_form ? args[*arg_index].substr(9) : args[*arg_index];
  } else if (const char* env = std::getenv("TAG_CONFIG_FILE"); env != nullptr) {
    path = env;
  }
  struct stat st {};
  if (path.empty() || ::stat(path.c_str(), &st) != 0 || S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) return;
  if (::access("/proc/self/fd", F_OK) != 0) return;  // nothing could name the copy; no exec happens either
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError("config file " + path + ": cannot be opened");
  constexpr std::size_t kMaxConfigBytes = 4 << 20;
  std::string text;
  char buf[65536];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    text.append(buf, static_cast<std::size_t>(in.gcount()));
    if (text.size() > kMaxConfigBytes) throw ConfigError("config file " + path + ": larger than 4 MiB");
  }
  // Not close-on-exec: the fd is the file tagd-uring reads.
  const int fd = ::memfd_create("tagd-config", 0);
  if (fd < 0) throw ConfigError("config file " + path + ": memfd_create: " + std::strerror(errno));
  for (std::size_t done = 0; done < text.size();) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw ConfigError("config file " + path + ": copying it: " + std::strerror(errno));
    done += static_cast<std::size_t>(n);
  }
  const std::string copy = "/proc/self/fd/" + std::to_string(fd);
  if (arg_index) {
    args[*arg_index] = inline_form ? "--config=" + copy : copy;
  } else {
    ::setenv("TAG_CONFIG_FILE", copy.c_str(), 1);
  }
}

Config load(const std::vector<std::string>& args, const Environment& env) {
  // Flags first into a list, so the file named by --config is known before anything applies.
  std::vector<std::pair<const Setting*, std::string>> flag_values;
  std::string config_file;
  if (auto it = env.find("TAG_CONFIG_FILE"); it != env.end()) config_file = it->second;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string arg = args[i];
    if (arg.rfind("--", 0) != 0) throw ConfigError("unexpected argument '" + arg + "' (see --help)");
    std::string name = arg.substr(2);
    std::optional<std::string> value;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    if (name == "config") {
      if (!value) {
        if (i + 1 >= args.size()) throw ConfigError("--config needs a file name");
        value = args[++i];
      }
      config_file = *value;
      continue;
    }
    const Setting* match = nullptr;
    for (const auto& s : settings()) {
      if (s.flag == name) match = &s;
    }
    if (match == nullptr) throw ConfigError("unknown flag --" + name + " (see --help)");
    if (!value) {
      bool next_is_value = i + 1 < args.size() && args[i + 1].rfind("--", 0) != 0;
      if (match->is_bool && !next_is_value) {
        value = "true";
      } else if (!next_is_value) {
        throw ConfigError("--" + name + " needs a value");
      } else {
        value = args[++i];
      }
    }
    flag_values.emplace_back(match, *value);
  }

  Config config;
  if (!config_file.empty()) apply_file(config, config_file);
  // TAG-style shortcut: AWS_* name the one full-access client key and, unless overridden,
  // tagd's own upstream credentials. They sit below the TAG_* variables.
  auto aws = [&](const char* name) -> std::optional<std::string> {
    if (auto it = env.find(name); it != env.end() && !it->second.empty()) return it->second;
    return std::nullopt;
  };
  if (auto v = aws("AWS_ACCESS_KEY_ID")) {
    if (config.client_access_key_id.empty()) config.client_access_key_id = *v;
    if (config.upstream_access_key_id.empty()) config.upstream_access_key_id = *v;
  }
  if (auto v = aws("AWS_SECRET_ACCESS_KEY")) {
    if (config.client_secret_access_key.empty()) config.client_secret_access_key = *v;
    if (config.upstream_secret_access_key.empty()) config.upstream_secret_access_key = *v;
  }
  for (const auto& s : settings()) {
    if (s.env.empty()) continue;
    if (auto it = env.find(s.env); it != env.end()) s.apply(config, it->second);
  }
  for (const auto& [setting, value] : flag_values) setting->apply(config, value);

  if (config.client_access_key_id.empty() != config.client_secret_access_key.empty()) {
    throw ConfigError("invalid setting auth.access_key_id/auth.secret_access_key: both or neither must be set");
  }
  if (config.tls_cert_file.empty() != config.tls_key_file.empty()) {
    throw ConfigError("invalid setting tls.cert_file/tls.key_file: both or neither must be set");
  }
  if (config.upstream_access_key_id.empty() != config.upstream_secret_access_key.empty()) {
    throw ConfigError(
        "invalid setting upstream.access_key_id/upstream.secret_access_key: both or neither must be set");
  }
  if ((config.cache_block_size & (config.cache_block_size - 1)) != 0) {
    throw ConfigError("invalid setting cache.block_size: " + std::to_string(config.cache_block_size) +
                      " is not a power of two");
  }
  if (config.cache_region_size < config.cache_block_size + 4096ull) {
    throw ConfigError("invalid setting cache.region_size: must hold one block (cache.block_size + 4KiB)");
  }
  if (config.cache_max_disk_usage < 2 * config.cache_region_size) {
    throw ConfigError("invalid setting cache.max_disk_usage: must hold at least two regions (2 x cache.region_size)");
  }
  return config;
}

namespace {

// A default as a person would write it: 4GiB rather than 4294967296, 30s rather than 30000ms.
std::string show_default(const Setting& s) {
  std::string v = s.show(Config{});
  if (v.empty()) return "none";
  if (s.secret) return "***";
  if (s.is_size) {
    std::uint64_t n = std::stoull(v);
    static constexpr std::pair<std::uint64_t, const char*> kUnits[] = {
        {1ull << 40, "TiB"}, {1ull << 30, "GiB"}, {1ull << 20, "MiB"}, {1ull << 10, "KiB"}};
    for (auto [scale, unit] : kUnits) {
      if (n != 0 && n % scale == 0) return std::to_string(n / scale) + unit;
    }
    return v;
  }
  if (s.is_duration) {
    std::uint64_t ms = std::stoull(v);  // show_ms: "<n>ms"
    static constexpr std::pair<std::uint64_t, const char*> kUnits[] = {
        {3600000, "h"}, {60000, "m"}, {1000, "s"}};
    for (auto [scale, unit] : kUnits) {
      if (ms != 0 && ms % scale == 0) return std::to_string(ms / scale) + unit;
    }
    return v;
  }
  return v;
}

}  // namespace

std::vector<SettingDoc> setting_docs() {
  std::vector<SettingDoc> out;
  for (const auto& s : settings()) out.push_back({s.file_key, s.env, s.flag, show_default(s)});
  return out;
}

std::string help_text() {
  std::ostringstream out;
  out << "usage: tagd [--config FILE] [--FLAG VALUE]...\n\n"
      << "Every setting can also come from the environment or the JSON config file.\n"
      << "Precedence: flags > environment > file > defaults.\n"
      << "Sizes take KiB/MiB/GiB/TiB, durations ms/s/m/h.\n\n";
  for (const auto& s : settings()) {
    out << "  --" << s.flag;
    if (!s.env.empty()) out << "  (" << s.env << ")";
    out << "  [file: " << s.file_key << "]  default: " << show_default(s) << "\n      " << s.help << "\n";
  }
  out << "\n  AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY: one full-access client key, and the\n"
      << "  upstream credentials unless TAG_UPSTREAM_* are set.\n";
  return out.str();
}

std::vector<std::string> describe(const Config& config) {
  std::vector<std::string> lines;
  for (const auto& s : settings()) {
    std::string v = s.show(config);
    if (s.secret && !v.empty()) v = "***";
    lines.push_back(s.file_key + "=" + v);
  }
  return lines;
}

}  // namespace tagd::config
