#pragma once
// A throwaway self-signed P-256 certificate and key for tests, made with OpenSSL's API and
// written as PEM files in a fresh temporary directory (removed with the object).
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace tagd::testing {

class TestCertificate {
 public:
  // `common_name` becomes the subject CN; `serial` the certificate's serial number.
  explicit TestCertificate(const std::string& common_name = "tagd-test", long serial = 1) {
    char dir_template[] = "/tmp/tagd-cert-XXXXXX";
    if (mkdtemp(dir_template) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = dir_template;
    cert_file_ = dir_ + "/cert.pem";
    key_file_ = dir_ + "/key.pem";
    EVP_PKEY* key = EVP_EC_gen("P-256");
    X509* cert = X509_new();
    if (key == nullptr || cert == nullptr) throw std::runtime_error("OpenSSL key/cert allocation failed");
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), serial);
    X509_gmtime_adj(X509_getm_notBefore(cert), -60);
    X509_gmtime_adj(X509_getm_notAfter(cert), 24 * 3600);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(common_name.c_str()),
                               -1, -1, 0);
    X509_set_issuer_name(cert, name);
    X509_set_pubkey(cert, key);
    if (X509_sign(cert, key, EVP_sha256()) == 0) throw std::runtime_error("X509_sign failed");
    write(cert_file_, [&](FILE* f) { return PEM_write_X509(f, cert); });
    write(key_file_, [&](FILE* f) { return PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr); });
    X509_free(cert);
    EVP_PKEY_free(key);
  }
  ~TestCertificate() {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  TestCertificate(const TestCertificate&) = delete;
  TestCertificate& operator=(const TestCertificate&) = delete;

  const std::string& cert_file() const { return cert_file_; }
  const std::string& key_file() const { return key_file_; }
  const std::string& dir() const { return dir_; }

 private:
  template <class F>
  static void write(const std::string& path, F&& f) {
    FILE* out = std::fopen(path.c_str(), "w");
    if (out == nullptr) throw std::runtime_error("cannot write " + path);
    const int ok = f(out);
    std::fclose(out);
    if (ok == 0) throw std::runtime_error("PEM write failed for " + path);
  }

  std::string dir_, cert_file_, key_file_;
};

}  // namespace tagd::testing
