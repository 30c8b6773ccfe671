// `tagd --help` documents every setting: its flag, environment variable, file key and
// default, the default written as a person would (4GiB, 24h) where that is exact.
#include <gtest/gtest.h>

#include <sstream>

#include "tagd/config/config.hpp"

namespace tagd::config {
namespace {

// The help paragraph of one flag: from its "  --flag" line to the next setting's.
std::string entry(const std::string& help, const std::string& flag) {
  const std::string start = "\n  --" + flag + "  ";
  auto at = help.find(start);
  if (at == std::string::npos) return {};
  auto end = help.find("\n  --", at + start.size());
  return help.substr(at, end == std::string::npos ? std::string::npos : end - at);
}

TEST(HelpTest, EverySettingWithItsEnvironmentVariableAndDefault) {
  const std::string help = help_text();
  const auto docs = setting_docs();
  ASSERT_GT(docs.size(), 40u);
  for (const auto& d : docs) {
    SCOPED_TRACE(d.file_key);
    const std::string e = entry(help, d.flag);
    ASSERT_FALSE(e.empty()) << "no --" << d.flag << " in --help";
    EXPECT_NE(e.find("[file: " + d.file_key + "]"), std::string::npos) << e;
    EXPECT_NE(e.find("default: " + d.default_value), std::string::npos) << e;
    EXPECT_FALSE(d.default_value.empty());
    if (!d.env.empty()) {
      EXPECT_NE(e.find("(" + d.env + ")"), std::string::npos) << e;
    }
  }
}

TEST(HelpTest, DefaultsReadLikeTheDocumentation) {
  const std::string help = help_text();
  EXPECT_NE(entry(help, "port").find("(TAG_HTTP_PORT)  [file: listen.port]  default: 8080"), std::string::npos);
  EXPECT_NE(entry(help, "cache-max-disk-usage").find("default: 4GiB"), std::string::npos);
  EXPECT_NE(entry(help, "cache-block-size").find("default: 1MiB"), std::string::npos);
  EXPECT_NE(entry(help, "cache-ttl").find("default: 24h"), std::string::npos);
  EXPECT_NE(entry(help, "drain-timeout").find("default: 30s"), std::string::npos);
  EXPECT_NE(entry(help, "upstream-endpoint").find("default: https://t3.storage.dev"), std::string::npos);
  EXPECT_NE(entry(help, "tls-cert-file").find("(TAG_TLS_CERT_FILE)  [file: tls.cert_file]  default: none"),
            std::string::npos);
  EXPECT_NE(entry(help, "tls-key-file").find("(TAG_TLS_KEY_FILE)"), std::string::npos);
  EXPECT_NE(entry(help, "virtual-host-domain").find("default: localhost"), std::string::npos);
}

TEST(HelpTest, TlsNeedsBothFiles) {
  EXPECT_THROW(load({"--tls-cert-file", "/x.pem"}, {}), ConfigError);
  EXPECT_THROW(load({}, {{"TAG_TLS_KEY_FILE", "/x.key"}}), ConfigError);
  auto c = load({}, {{"TAG_TLS_CERT_FILE", "/x.pem"}, {"TAG_TLS_KEY_FILE", "/x.key"}});
  EXPECT_EQ(c.tls_cert_file, "/x.pem");
  EXPECT_EQ(c.tls_key_file, "/x.key");
}

}  // namespace
}  // namespace tagd::config
