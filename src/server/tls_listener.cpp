#include "tagd/server/tls_listener.hpp"

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <spdlog/spdlog.h>

#include <boost/system/system_error.hpp>
#include <ctime>
#include <stdexcept>

#include "tagd/core/metrics.hpp"

namespace tagd::server {

namespace asio = boost::asio;

namespace {

// Mozilla's "intermediate" configuration (v5.7) for TLS 1.2; TLS 1.3 keeps OpenSSL's
// suites, which are all AEAD. Servers that must also talk to clients older than TLS 1.2
// are out of scope: every SDK tagd serves speaks 1.2.
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305";
constexpr const char* kGroups = "X25519:prime256v1:secp384r1";

std::string openssl_reason() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

}  // namespace

Result<std::shared_ptr<asio::ssl::context>> make_listener_tls_context(const std::string& cert_file,
                                                                      const std::string& key_file) {
  ERR_clear_error();
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  SSL_CTX* native = ctx->native_handle();
  ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::single_dh_use);
  SSL_CTX_set_options(native, SSL_OP_NO_RENEGOTIATION);
  if (SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_cipher_list(native, kTls12Ciphers) != 1 || SSL_CTX_set1_groups_list(native, kGroups) != 1 ||
      SSL_CTX_set_dh_auto(native, 1) != 1) {
    return Status(ErrorCode::kInternalError, "TLS settings refused by OpenSSL: " + openssl_reason());
  }
  // Loaded through OpenSSL directly: asio's wrappers throw, and a reload must not.
  if (SSL_CTX_use_certificate_chain_file(native, cert_file.c_str()) != 1) {
    return Status(ErrorCode::kInvalidArgument, "certificate " + cert_file + ": " + openssl_reason());
  }
  if (SSL_CTX_use_PrivateKey_file(native, key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    return Status(ErrorCode::kInvalidArgument, "private key " + key_file + ": " + openssl_reason());
  }
  if (SSL_CTX_check_private_key(native) != 1) {
    return Status(ErrorCode::kInvalidArgument,
                  "private key " + key_file + " does not match certificate " + cert_file + ": " + openssl_reason());
  }
  return ctx;
}

CertificateInfo describe_certificate(asio::ssl::context& context) {
  CertificateInfo out;
  X509* cert = SSL_CTX_get0_certificate(context.native_handle());
  if (cert == nullptr) return out;
  char name[512];
  X509_NAME_oneline(X509_get_subject_name(cert), name, sizeof name);
  out.subject = name;
  if (BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr)) {
    if (char* hex = BN_bn2hex(bn)) {
      out.serial = hex;
      OPENSSL_free(hex);
    }
    BN_free(bn);
  }
  std::tm tm{};
  if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) == 1) out.not_after = static_cast<std::int64_t>(timegm(&tm));
  return out;
}

TlsListener::TlsListener(std::string cert_file, std::string key_file)
    : cert_file_(std::move(cert_file)), key_file_(std::move(key_file)) {
  auto ctx = make_listener_tls_context(cert_file_, key_file_);
  if (!ctx) throw std::runtime_error(ctx.error().message());
  info_ = describe_certificate(**ctx);
  current_.store(std::move(ctx.value()), std::memory_order_release);
  metrics().tls_enabled.set(1);
  metrics().tls_certificate_expiry.set(info_.not_after);
}

Status TlsListener::reload() {
  auto ctx = make_listener_tls_context(cert_file_, key_file_);
  if (!ctx) {
    metrics().tls_reloads_failed.inc();
    return ctx.error();
  }
  info_ = describe_certificate(**ctx);
  current_.store(std::move(ctx.value()), std::memory_order_release);
  metrics().tls_reloads_ok.inc();
  metrics().tls_certificate_expiry.set(info_.not_after);
  return Status::ok();
}

}  // namespace tagd::server
