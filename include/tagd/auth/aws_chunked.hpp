#pragma once
// Streaming decoder for `Content-Encoding: aws-chunked` request bodies.
//
// Wire format (signed):   hex-size;chunk-signature=<64 hex>\r\n <data> \r\n ... 0;chunk-signature=..\r\n
//                         [trailer lines, each "name:value\r\n", then x-amz-trailer-signature:<hex>\r\n] \r\n
// Wire format (unsigned): hex-size\r\n <data> \r\n ... 0\r\n [name:value\r\n]* \r\n
//
// Each chunk signature chains off the previous one (the first off the request's seed
// signature):  string to sign = "AWS4-HMAC-SHA256-PAYLOAD\n" amz_date "\n" scope "\n"
//              previous_signature "\n" sha256("") "\n" sha256(chunk data)
// and the trailer signature ("AWS4-HMAC-SHA256-TRAILER\n" date scope previous
// sha256(trailer lines)). The trailer lines hashed are the received trailers (signature
// line excluded) as "name:value\n", lower-case names, trimmed values, sorted by name, as
// the AWS SDKs canonicalize them.
//
// Framing is strict in signed mode ("hex;chunk-signature=<64 hex>" and nothing else); in
// unsigned mode other chunk extensions are tolerated and ignored. A trailer that was not
// announced in expected_trailers, a missing one, or any trailer in the signed mode without
// -TRAILER is refused (kInvalidRequest). A checksum trailer whose value does not decode to
// a digest of the right size is kInvalidDigest; a well-formed mismatch is kBadDigest. An
// announced x-amz-checksum-* trailer naming an algorithm we cannot compute fails the first
// feed() with kInvalidRequest.
//
// Memory: the decoder holds at most one chunk-header line (bounded) and the trailer
// section (bounded); payload bytes are passed straight through. A chunk's signature can
// only be checked once all of its data has been seen, so callers must not commit the
// data of the last chunk fed until done() is true (see the upstream hold-back rule).
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tagd/auth/hashing.hpp"
#include "tagd/auth/sigv4.hpp"
#include "tagd/core/status.hpp"

namespace tagd::auth {

struct AwsChunkedOptions {
  bool signed_chunks = false;   // STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]
  Sha256Digest signing_key{};   // only when signed_chunks
  std::string amz_date;         // only when signed_chunks
  CredentialScope scope;        // only when signed_chunks
  std::string seed_signature;   // the request's own signature
  bool signed_trailer = false;  // the -TRAILER variant of the signed mode
  // Lower-case trailer header names announced in x-amz-trailer (e.g. x-amz-checksum-crc32).
  // A trailer must be present and its checksum must match the decoded payload.
  std::vector<std::string> expected_trailers;
  std::size_t max_chunk_header = 4096;
  std::size_t max_trailer_bytes = 16 * 1024;
};

// Chunk signature chained off previous_signature; chunk_sha256_hex is the hex SHA-256 of the
// chunk data (kEmptySha256 for the final zero-length chunk). Exposed for re-signing bodies
// sent upstream and for tests.
[[nodiscard]] std::string chunk_signature(const Sha256Digest& signing_key, std::string_view amz_date,
                                          const CredentialScope& scope, std::string_view previous_signature,
                                          std::string_view chunk_sha256_hex);
// Trailer signature; canonical_trailers is the exact "name:value\n" block that is hashed.
[[nodiscard]] std::string trailer_signature(const Sha256Digest& signing_key, std::string_view amz_date,
                                            const CredentialScope& scope, std::string_view previous_signature,
                                            std::string_view canonical_trailers);

class AwsChunkedDecoder {
 public:
  explicit AwsChunkedDecoder(AwsChunkedOptions options);
  AwsChunkedDecoder(const AwsChunkedDecoder&) = delete;
  AwsChunkedDecoder& operator=(const AwsChunkedDecoder&) = delete;

  // Consumes `input` (any split across calls is fine) and appends decoded payload bytes
  // to `out`. Errors: kSignatureDoesNotMatch (bad chunk or trailer signature),
  // kBadDigest (trailer checksum mismatch), kIncompleteBody / kInvalidRequest (framing),
  // kInvalidArgument (trailing bytes after the end). After an error the decoder is dead.
  [[nodiscard]] Status feed(std::string_view input, std::string& out);

  // True once the final zero-length chunk and the trailers were read and verified.
  [[nodiscard]] bool done() const noexcept;
  [[nodiscard]] std::uint64_t decoded_bytes() const noexcept;
  // Trailer headers as received (lower-case name, value), excluding the trailer signature.
  [[nodiscard]] const std::vector<std::pair<std::string, std::string>>& trailers() const noexcept;

  ~AwsChunkedDecoder();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tagd::auth
