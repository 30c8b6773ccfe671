#pragma once
// Decides who sent a request (SigV4 header or presigned URL, SigV2 header or query, or
// anonymous) and how its body must be checked while it streams. Before any signature is
// looked at, a repeated security-relevant header is refused (repeated_headers.hpp); an
// x-amz-*/x-tigris-* header the signature does not cover is refused (unsigned_headers.hpp);
// SigV4a (AWS4-ECDSA-P256-SHA256) is refused with NotImplemented. Header-level checks happen before any body byte
// is read; body-level checks (payload hash, aws-chunked signatures, Content-MD5,
// x-amz-checksum-*) run in BodyVerifier as bytes pass through.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "tagd/auth/aws_chunked.hpp"
#include "tagd/auth/credentials.hpp"
#include "tagd/auth/hashing.hpp"
#include "tagd/auth/sigv4.hpp"
#include "tagd/core/status.hpp"

namespace tagd::auth {

struct RequestHead {
  std::string_view method;
  std::string_view raw_path;   // as received, still percent-encoded
  std::string_view raw_query;  // without '?'
  const HeaderList* headers = nullptr;
  // The bucket when the Host header names it (virtual-hosted style), else empty. Only
  // Signature Version 2 needs it: its CanonicalizedResource is "/bucket" + raw_path.
  std::string_view virtual_host_bucket;
  // The query already decoded from raw_query (the router does it): when given, it is not
  // parsed again. Must be exactly parse_query(raw_query).
  const QueryParams* query = nullptr;
};

enum class PayloadMode {
  kSignedSha256,        // x-amz-content-sha256 is the hex digest of the body
  kUnsigned,            // UNSIGNED-PAYLOAD, presigned URLs, anonymous
  kAwsChunkedSigned,    // STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]
  kAwsChunkedUnsigned,  // STREAMING-UNSIGNED-PAYLOAD-TRAILER
};

struct ExpectedChecksum {
  ChecksumAlgorithm algorithm;
  std::vector<std::uint8_t> digest;
  std::string header;  // which header promised it (for the error message)
};

struct BodyPlan {
  PayloadMode mode = PayloadMode::kUnsigned;
  std::string expected_sha256;                     // kSignedSha256
  std::optional<AwsChunkedOptions> chunked;        // kAwsChunked*
  std::vector<ExpectedChecksum> expected_checksums;  // Content-MD5, x-amz-checksum-*
  std::optional<std::uint64_t> decoded_length;     // x-amz-decoded-content-length
};

struct VerifiedRequest {
  const Identity* identity = nullptr;  // nullptr: anonymous (only when allowed)
  // The key store `identity` lives in, held for as long as the request is: a SIGHUP that
  // swaps the store meanwhile cannot free it under the request.
  std::shared_ptr<const CredentialStore> store;
  bool presigned = false;              // X-Amz-Signature or (SigV2) Signature in the query
  bool sigv2 = false;                  // Signature Version 2 (header or query form)
  BodyPlan body;
};

class RequestVerifier {
 public:
  // A store that outlives the verifier and is never replaced (tests, fuzzers).
  RequestVerifier(const CredentialStore& store, std::chrono::seconds max_skew, bool allow_anonymous);
  // A shared store that replace_store() may swap (tagd: SIGHUP reloads the keys).
  RequestVerifier(std::shared_ptr<const CredentialStore> store, std::chrono::seconds max_skew,
                  bool allow_anonymous);
  RequestVerifier(const RequestVerifier&) = delete;
  RequestVerifier& operator=(const RequestVerifier&) = delete;

  Result<VerifiedRequest> verify(const RequestHead& head, std::chrono::system_clock::time_point now) const;

  // Publishes a new key store, from any thread: requests verified from now on use it;
  // requests already verified keep theirs (VerifiedRequest::store) to their end.
  void replace_store(std::shared_ptr<const CredentialStore> store);
  // The store in use. No lock per call: each thread keeps its own reference (under a
  // control block only that thread counts) and refreshes it, under mutex_, only on the
  // first call after a replace_store().
  std::shared_ptr<const CredentialStore> store() const;

 private:
  mutable std::mutex mutex_;                        // guards current_
  std::shared_ptr<const CredentialStore> current_;  // what replace_store() published last
  // Unique across all verifiers of the process (a thread's cached reference names the
  // generation it holds, so it can never be mistaken for another verifier's store).
  std::atomic<std::uint64_t> generation_;
  std::chrono::seconds max_skew_;
  bool allow_anonymous_;
};

// Checks a body as it streams. feed() turns raw client bytes into payload bytes (identical
// unless aws-chunked); finish() runs once the client body ended and reports the first
// digest that failed. Until finish() returns ok, nothing fed may be committed upstream.
class BodyVerifier {
 public:
  explicit BodyVerifier(BodyPlan plan);
  BodyVerifier(const BodyVerifier&) = delete;
  BodyVerifier& operator=(const BodyVerifier&) = delete;

  Status feed(std::string_view raw, std::string& payload_out);
  Status finish();
  std::uint64_t payload_bytes() const noexcept { return payload_bytes_; }
  bool is_aws_chunked() const noexcept { return decoder_ != nullptr; }
  // Trailer headers of an aws-chunked body (lower-case name, value); valid once finish()
  // returned ok. Empty for other bodies.
  const std::vector<std::pair<std::string, std::string>>& trailers() const noexcept;

 private:
  void hash(std::string_view payload);

  BodyPlan plan_;
  std::unique_ptr<AwsChunkedDecoder> decoder_;
  std::unique_ptr<Hasher> sha256_;
  std::vector<std::unique_ptr<Hasher>> checksum_hashers_;  // parallel to plan_.expected_checksums
  std::uint64_t payload_bytes_ = 0;
};

// Looks a header up case-insensitively; the first occurrence wins.
const std::string* find_header(const HeaderList& headers, std::string_view name);

}  // namespace tagd::auth
