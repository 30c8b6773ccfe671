#include "tagd/auth/signing_key_cache.hpp"

#include <gtest/gtest.h>

#include <string>
#include <thread>

namespace tagd::auth {
namespace {

// The cache must never answer a key for another secret, date, region or service, however
// the table's entries are replaced.
TEST(SigningKeyCacheTest, AlwaysTheDerivedKey) {
  for (int round = 0; round < 3; ++round) {
    for (int secret = 0; secret < 5; ++secret) {
      for (const char* date : {"20150830", "20150831"}) {
        for (const char* region : {"us-east-1", "auto"}) {
          CredentialScope scope{date, region, "s3"};
          const std::string s = "secret-" + std::to_string(secret);
          EXPECT_EQ(cached_signing_key(s, scope), signing_key(s, scope)) << s << " " << date << " " << region;
        }
      }
    }
  }
  CredentialScope iam{"20150830", "us-east-1", "iam"};
  EXPECT_EQ(cached_signing_key("secret-0", iam), signing_key("secret-0", iam));
  // A secret that is a prefix of another is another secret.
  CredentialScope s3{"20150830", "us-east-1", "s3"};
  EXPECT_EQ(cached_signing_key("secret-01", s3), signing_key("secret-01", s3));
  EXPECT_NE(cached_signing_key("secret-01", s3), cached_signing_key("secret-0", s3));
}

TEST(SigningKeyCacheTest, EachThreadHasItsOwnTable) {
  CredentialScope scope{"20150830", "us-east-1", "s3"};
  const auto expected = signing_key("k", scope);
  Sha256Digest other{};
  std::thread t([&] { other = cached_signing_key("k", scope); });
  t.join();
  EXPECT_EQ(other, expected);
  EXPECT_EQ(cached_signing_key("k", scope), expected);
}

}  // namespace
}  // namespace tagd::auth
