#pragma once
// Frames a verified payload as an unsigned aws-chunked body with one checksum trailer
// (x-amz-content-sha256: STREAMING-UNSIGNED-PAYLOAD-TRAILER), so an upload whose client
// sent its checksum as a trailer reaches the upstream with that checksum: the upstream
// stores it and checks it again. Chunks have a fixed size, so the framed length — the
// upstream's Content-Length — is known before the first byte is sent.
//
// Memory: at most one chunk of payload is buffered between encode() calls.
#include <cstdint>
#include <string>
#include <string_view>

namespace tagd::upstream {

class AwsChunkedEncoder {
 public:
  AwsChunkedEncoder(std::size_t chunk_size, std::string trailer_name);

  // Bytes on the wire for `payload_bytes` of payload and a trailer value of
  // `trailer_value_bytes` characters.
  [[nodiscard]] std::uint64_t encoded_length(std::uint64_t payload_bytes, std::size_t trailer_value_bytes) const;

  // Appends the framing of every complete chunk to `out`; a partial chunk stays buffered.
  void encode(std::string_view payload, std::string& out);
  // Appends the last partial chunk, the final zero-length chunk and the trailer.
  void finish(std::string_view trailer_value, std::string& out);

 private:
  void emit_chunk(std::string_view data, std::string& out) const;

  std::size_t chunk_size_;
  std::string trailer_name_;
  std::string partial_;
};

}  // namespace tagd::upstream
