#pragma once
// Internal to the gateway module: one request's state, from its head to the access log.
#include <array>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "tagd/auth/request_verifier.hpp"
#include "tagd/gateway/gateway.hpp"
#include "tagd/http/response_writer.hpp"
#include "tagd/s3/operation.hpp"
#include "tagd/s3/request.hpp"

namespace tagd::gateway {

// Per-direction transfer unit. Memory per request is two of these at most on the
// forwarding path, whatever the object size.
inline constexpr std::size_t kPiece = 64 * 1024;

// A kPiece-byte buffer, taken on first use from this thread's free list (each event loop
// is one thread) and returned when the exchange ends: a request costs no 64 KiB
// allocation and no zero-fill (a cached hit lends its bytes and never needs one).
class PieceBuffer {
 public:
  PieceBuffer() = default;
  ~PieceBuffer();
  PieceBuffer(const PieceBuffer&) = delete;
  PieceBuffer& operator=(const PieceBuffer&) = delete;
  char* get();

 private:
  std::unique_ptr<char[]> buffer_;
};

// next_request_id() without the string: 16 upper-case hex digits, inline.
struct RequestId {
  std::array<char, 16> digits;
  std::string_view view() const noexcept { return std::string_view(digits.data(), digits.size()); }
};
RequestId make_request_id();

struct Exchange {
  Exchange(ClientConnection& c, http::RequestParser& p, std::chrono::milliseconds idle_timeout)
      : client(c), parser(p), writer(c.stream, p, make_request_id().view(), idle_timeout) {}

  ClientConnection& client;
  http::RequestParser& parser;
  http::ResponseWriter writer;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  s3::RequestScratch scratch;  // target and header copy, with capacity from this loop's earlier requests
  s3::Target& target = scratch.target();
  s3::Operation op;
  auth::VerifiedRequest verified;
  PieceBuffer piece;
  std::uint64_t bytes_in = 0;
  std::string error;  // the S3 error code (or a tagd condition) for the access log

  std::string_view request_id() const { return writer.request_id(); }
  bool body_pending() const { return !parser.is_done(); }
};

}  // namespace tagd::gateway
