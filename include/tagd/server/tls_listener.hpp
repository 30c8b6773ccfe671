#pragma once
// HTTPS on the listen port: the certificate and key new client connections get, and their
// reload on SIGHUP. TLS 1.2 and 1.3 only, with Mozilla's "intermediate" cipher list (every
// TLS 1.2 suite is forward-secret AEAD: ECDHE/DHE with AES-GCM or ChaCha20-Poly1305);
// renegotiation off.
//
// A reload builds a whole new context from the files and publishes it only if the pair
// loads and matches: a broken or half-written file is refused and the certificate in use
// stays. A connection keeps the context it was accepted with (its session holds a
// reference), so a reload never drops or changes an open connection.
#include <atomic>
#include <boost/asio/ssl/context.hpp>
#include <cstdint>
#include <memory>
#include <string>

#include "tagd/core/status.hpp"

namespace tagd::server {

// What the log line and the expiry gauge say about a certificate.
struct CertificateInfo {
  std::string subject;
  std::string serial;          // hex
  std::int64_t not_after = 0;  // Unix seconds
};

// A server context from PEM files (`cert_file`: the chain, leaf first). Error: a Status
// naming the file and OpenSSL's reason (unreadable, not PEM, key not matching).
Result<std::shared_ptr<boost::asio::ssl::context>> make_listener_tls_context(const std::string& cert_file,
                                                                             const std::string& key_file);
CertificateInfo describe_certificate(boost::asio::ssl::context& context);

class TlsListener {
 public:
  // Start-up: throws std::runtime_error when the pair cannot be loaded.
  TlsListener(std::string cert_file, std::string key_file);

  // The context for a new connection (any thread).
  std::shared_ptr<boost::asio::ssl::context> current() const { return current_.load(std::memory_order_acquire); }
  const CertificateInfo& info() const noexcept { return info_; }  // loop 0 (the reloading thread) only

  // Re-reads both files. On error the current context stays and the error is returned;
  // counted in tagd_tls_reloads_total either way.
  [[nodiscard]] Status reload();

 private:
  std::string cert_file_;
  std::string key_file_;
  std::atomic<std::shared_ptr<boost::asio::ssl::context>> current_;
  CertificateInfo info_;
};

}  // namespace tagd::server
