// The listener's TLS context: modern settings, what a broken or mismatched pair does, and
// a reload that keeps the context in use on failure and swaps it on success.
#include "tagd/server/tls_listener.hpp"

#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include <fstream>

#include "support/test_certificate.hpp"
#include "tagd/core/metrics.hpp"

namespace tagd::server {
namespace {

using tagd::testing::TestCertificate;

void copy_file(const std::string& from, const std::string& to) {
  std::ifstream in(from, std::ios::binary);
  std::ofstream out(to, std::ios::binary | std::ios::trunc);
  out << in.rdbuf();
}

TEST(TlsListenerTest, ModernSettingsAndWhatTheCertificateSays) {
  TestCertificate cert("tagd-unit", 4242);
  auto ctx = make_listener_tls_context(cert.cert_file(), cert.key_file());
  ASSERT_TRUE(ctx.has_value()) << ctx.error().message();
  SSL_CTX* native = (*ctx)->native_handle();
  EXPECT_EQ(SSL_CTX_get_min_proto_version(native), TLS1_2_VERSION);
  EXPECT_NE(SSL_CTX_get_options(native) & SSL_OP_NO_RENEGOTIATION, 0u);
  // Every TLS 1.2 suite offered is forward-secret AEAD.
  SSL* ssl = SSL_new(native);
  STACK_OF(SSL_CIPHER)* ciphers = SSL_get1_supported_ciphers(ssl);
  ASSERT_NE(ciphers, nullptr);
  for (int i = 0; i < sk_SSL_CIPHER_num(ciphers); ++i) {
    const SSL_CIPHER* c = sk_SSL_CIPHER_value(ciphers, i);
    std::string name = SSL_CIPHER_get_name(c);
    if (name.rfind("TLS_", 0) == 0) continue;  // TLS 1.3 suites: all AEAD
    EXPECT_TRUE(name.rfind("ECDHE-", 0) == 0 || name.rfind("DHE-", 0) == 0) << name;
    EXPECT_TRUE(name.find("GCM") != std::string::npos || name.find("CHACHA20") != std::string::npos) << name;
  }
  sk_SSL_CIPHER_free(ciphers);
  SSL_free(ssl);
  auto info = describe_certificate(**ctx);
  EXPECT_EQ(info.subject, "/CN=tagd-unit");
  EXPECT_EQ(info.serial, "1092");  // 4242
  EXPECT_GT(info.not_after, 0);
}

TEST(TlsListenerTest, BrokenOrMismatchedPairsAreRefused) {
  TestCertificate a("a", 1), b("b", 2);
  auto mismatched = make_listener_tls_context(a.cert_file(), b.key_file());
  ASSERT_FALSE(mismatched.has_value());
  EXPECT_NE(mismatched.error().message().find(b.key_file()), std::string::npos) << mismatched.error().message();
  auto missing = make_listener_tls_context(a.dir() + "/nope.pem", a.key_file());
  ASSERT_FALSE(missing.has_value());
  EXPECT_NE(missing.error().message().find("nope.pem"), std::string::npos);
  std::ofstream(b.dir() + "/garbage.pem") << "-----BEGIN CERTIFICATE-----\nnot base64\n";
  EXPECT_FALSE(make_listener_tls_context(b.dir() + "/garbage.pem", b.key_file()).has_value());
  EXPECT_THROW(TlsListener(a.cert_file(), b.key_file()), std::runtime_error);
}

TEST(TlsListenerTest, ReloadSwapsOnSuccessAndKeepsTheOldContextOnFailure) {
  TestCertificate one("one", 1), two("two", 2);
  TestCertificate live("live", 9);  // the files the listener is configured with
  copy_file(one.cert_file(), live.cert_file());
  copy_file(one.key_file(), live.key_file());
  TlsListener listener(live.cert_file(), live.key_file());
  EXPECT_EQ(listener.info().subject, "/CN=one");
  auto first = listener.current();
  const auto ok0 = metrics().tls_reloads_ok.get();
  const auto failed0 = metrics().tls_reloads_failed.get();

  // A new certificate without its key yet (renewal half done): refused.
  copy_file(two.cert_file(), live.cert_file());
  EXPECT_FALSE(listener.reload().is_ok());
  EXPECT_EQ(listener.current(), first);
  EXPECT_EQ(listener.info().subject, "/CN=one");

  copy_file(two.key_file(), live.key_file());
  ASSERT_TRUE(listener.reload().is_ok());
  EXPECT_NE(listener.current(), first);
  EXPECT_EQ(listener.info().subject, "/CN=two");
  EXPECT_EQ(describe_certificate(*first).subject, "/CN=one");  // still usable by its connections
  EXPECT_EQ(metrics().tls_reloads_ok.get(), ok0 + 1);
  EXPECT_EQ(metrics().tls_reloads_failed.get(), failed0 + 1);
}

}  // namespace
}  // namespace tagd::server
