#include "tagd/config/config.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

namespace tagd::config {
namespace {

std::string write_temp(const std::string& text) {
  char name[] = "/tmp/tagd_config_testXXXXXX";
  int fd = mkstemp(name);
  EXPECT_GE(fd, 0);
  ::close(fd);
  std::ofstream(name) << text;
  return name;
}

TEST(ConfigTest, DefaultsMatchTheDocumentedOnes) {
  Config c = load({}, {});
  EXPECT_EQ(c.listen_address, "127.0.0.1");
  EXPECT_EQ(c.port, 8080);
  EXPECT_EQ(c.upstream_endpoint, "https://t3.storage.dev");
  EXPECT_EQ(c.upstream_region, "auto");
  EXPECT_EQ(c.max_clock_skew, std::chrono::seconds(900));
  EXPECT_FALSE(c.allow_anonymous);
}

TEST(ConfigTest, PrecedenceIsFlagsThenEnvThenFileThenDefaults) {
  std::string file = write_temp(R"({
    // comments are allowed
    "listen": {"port": 1111, "threads": 3},
    "upstream": {"endpoint": "http://file:9000", "region": "file-region"},
    "log": {"level": "debug"}
  })");
  Environment env{{"TAG_HTTP_PORT", "2222"}, {"TAG_UPSTREAM_REGION", "env-region"}};
  Config c = load({"--config", file, "--port", "3333"}, env);
  EXPECT_EQ(c.port, 3333);                                // flag beats env and file
  EXPECT_EQ(c.upstream_region, "env-region");             // env beats file
  EXPECT_EQ(c.upstream_endpoint, "http://file:9000");     // file beats default
  EXPECT_EQ(c.threads, 3u);
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_EQ(c.upstream_connect_timeout.count(), 5000);    // default survives
  std::remove(file.c_str());
}

TEST(ConfigTest, ConfigFileCanComeFromTheEnvironment) {
  std::string file = write_temp(R"({"listen": {"port": 4444}})");
  Config c = load({}, {{"TAG_CONFIG_FILE", file}});
  EXPECT_EQ(c.port, 4444);
  std::remove(file.c_str());
}

TEST(ConfigTest, AwsVariablesAreTheTagShortcut) {
  Config c = load({}, {{"AWS_ACCESS_KEY_ID", "AK"}, {"AWS_SECRET_ACCESS_KEY", "SK"}});
  EXPECT_EQ(c.client_access_key_id, "AK");
  EXPECT_EQ(c.client_secret_access_key, "SK");
  EXPECT_EQ(c.upstream_access_key_id, "AK");
  EXPECT_EQ(c.upstream_secret_access_key, "SK");
  Config d = load({"--upstream-access-key-id", "UP", "--upstream-secret-access-key", "UPS"},
                  {{"AWS_ACCESS_KEY_ID", "AK"}, {"AWS_SECRET_ACCESS_KEY", "SK"}});
  EXPECT_EQ(d.upstream_access_key_id, "UP");
  EXPECT_EQ(d.client_access_key_id, "AK");
}

TEST(ConfigTest, FlagForms) {
  Config c = load({"--port=9000", "--allow-anonymous", "--log-format", "json", "--idle-timeout", "2m"}, {});
  EXPECT_EQ(c.port, 9000);
  EXPECT_TRUE(c.allow_anonymous);
  EXPECT_EQ(c.log_format, "json");
  EXPECT_EQ(c.idle_timeout, std::chrono::minutes(2));
  Config d = load({"--header-timeout", "1500ms", "--upstream-read-timeout", "3s"}, {});
  EXPECT_EQ(d.header_timeout.count(), 1500);
  EXPECT_EQ(d.upstream_read_timeout.count(), 3000);
}

void expect_error_naming(const std::vector<std::string>& args, const Environment& env, const std::string& name) {
  try {
    (void)load(args, env);
    FAIL() << "expected ConfigError naming " << name;
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
  }
}

TEST(ConfigTest, InvalidSettingsNameTheSetting) {
  expect_error_naming({"--port", "99999"}, {}, "listen.port");
  expect_error_naming({}, {{"TAG_HTTP_PORT", "eighty"}}, "TAG_HTTP_PORT");
  expect_error_naming({}, {{"TAG_LOG_LEVEL", "loud"}}, "log.level");
  expect_error_naming({"--upstream-endpoint", "ftp://x"}, {}, "upstream.endpoint");
  expect_error_naming({"--upstream-endpoint", "http://x/path"}, {}, "upstream.endpoint");
  expect_error_naming({"--idle-timeout", "5 parsecs"}, {}, "limits.idle_timeout");
  expect_error_naming({"--no-such-flag", "1"}, {}, "--no-such-flag");
  expect_error_naming({"--port"}, {}, "--port");
  expect_error_naming({"--io-uring", "maybe"}, {}, "io_uring");
  expect_error_naming({"--client-access-key-id", "AK"}, {}, "auth.access_key_id");
}

TEST(ConfigTest, FileErrorsNameTheFileAndKey) {
  std::string bad_key = write_temp(R"({"listen": {"prot": 1}})");
  expect_error_naming({"--config", bad_key}, {}, "listen.prot");
  std::string bad_json = write_temp("{not json");
  expect_error_naming({"--config", bad_json}, {}, bad_json);
  expect_error_naming({"--config", "/nonexistent/tagd.json"}, {}, "/nonexistent/tagd.json");
  std::remove(bad_key.c_str());
  std::remove(bad_json.c_str());
}

// Found by tests/fuzz/config_fuzz: a number the JSON parser cannot hold as a double makes
// nlohmann throw out_of_range (not parse_error), which escaped load() untranslated.
TEST(ConfigTest, OverflowingNumberInTheFileIsAConfigError) {
  std::string huge = write_temp(R"({"listen": {"port": 1e400}})");
  expect_error_naming({"--config", huge}, {}, huge);
  std::remove(huge.c_str());
}

TEST(ConfigTest, DescribeMasksSecrets) {
  Config c = load({}, {{"AWS_ACCESS_KEY_ID", "AK"}, {"AWS_SECRET_ACCESS_KEY", "supersecret"}});
  for (const auto& line : describe(c)) EXPECT_EQ(line.find("supersecret"), std::string::npos) << line;
}

TEST(ConfigTest, TheExampleConfigLoads) {
  Config c = load({"--config", std::string(TAGD_SOURCE_DIR) + "/config/tagd.example.json"}, {});
  EXPECT_EQ(c.port, 8080);
}

}  // namespace
}  // namespace tagd::config

namespace tagd::config {
namespace {

TEST(ConfigCacheTest, TagVariablesAndSizes) {
  Config c = load({}, {{"TAG_CACHE_DISK_PATH", "/data/cache"},
                       {"TAG_CACHE_MAX_DISK_USAGE", "100GiB"},
                       {"TAG_CACHE_TTL", "2h"},
                       {"TAG_CACHE_DISABLED", "true"},
                       {"TAG_CACHE_WARM_ON_WRITE", "1"},
                       {"TAG_CACHE_EVICTION_POLICY", "fifo"}});
  EXPECT_EQ(c.cache_disk_path, "/data/cache");
  EXPECT_EQ(c.cache_max_disk_usage, 100ull << 30);
  EXPECT_EQ(c.cache_ttl, std::chrono::hours(2));
  EXPECT_TRUE(c.cache_disabled);
  EXPECT_TRUE(c.cache_warm_on_write);
  Config d = load({"--cache-block-size", "64KiB", "--cache-memory-size", "0"}, {});
  EXPECT_EQ(d.cache_block_size, 64u << 10);
  EXPECT_EQ(d.cache_memory_size, 0u);
}

TEST(ConfigCacheTest, InvalidCacheSettings) {
  expect_error_naming({"--cache-block-size", "3MiB"}, {}, "cache.block_size");
  expect_error_naming({"--cache-block-size", "32KiB"}, {}, "cache.block_size");
  expect_error_naming({"--cache-block-size", "32MiB"}, {}, "cache.block_size");
  expect_error_naming({}, {{"TAG_CACHE_MAX_DISK_USAGE", "10 parsecs"}}, "cache.max_disk_usage");
  expect_error_naming({"--cache-max-disk-usage", "8MiB"}, {}, "cache.max_disk_usage");
  expect_error_naming({}, {{"TAG_CACHE_EVICTION_POLICY", "lru"}}, "cache.eviction_policy");
}

}  // namespace
}  // namespace tagd::config
