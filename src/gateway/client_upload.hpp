#pragma once
// Internal to the gateway module: a client's request body on its way upstream. Every byte
// is read through the body verifier (signatures, digests, aws-chunked decoding), and the
// newest piece is always held back, so the upstream sees the end of the body only after
// every check passed; a failed check aborts the upload instead (the upstream client
// resets the connection). A checksum the client sent as an aws-chunked trailer is
// re-framed as unsigned aws-chunked with the verified trailer, so the upstream checks it too.
#include <boost/asio/awaitable.hpp>
#include <optional>
#include <string>

#include "exchange.hpp"
#include "tagd/auth/request_verifier.hpp"
#include "tagd/config/config.hpp"
#include "tagd/upstream/aws_chunked_encoder.hpp"
#include "tagd/upstream/client.hpp"

namespace tagd::gateway {

class ClientUpload final : public upstream::RequestBody {
 public:
  ClientUpload(const config::Config& config, Exchange& ex);

  // Reads the first piece (a body that fits in it is verified whole before a byte leaves,
  // and can be replayed on a retry). With `whole` (DeleteObjects: every key is authorized
  // first), reads all of it, up to `limit` bytes.
  [[nodiscard]] boost::asio::awaitable<Status> start(bool whole, std::size_t limit);
  // The whole body was read by start(); finish() checked it.
  bool complete() const noexcept { return complete_; }
  const std::string& held() const noexcept { return held_; }
  // The checksum trailer forwarded upstream (an aws-chunked upload announced it), if any.
  const std::optional<std::string>& trailer() const noexcept { return trailer_; }
  // Bytes the upstream request body has on the wire for `payload` payload bytes.
  std::uint64_t framed_length(std::uint64_t payload) const;
  std::uint64_t payload_bytes() const noexcept { return verifier_.payload_bytes(); }
  bool is_aws_chunked() const noexcept { return verifier_.is_aws_chunked(); }

  bool replayable() const override { return complete_; }
  void rewind() override;
  boost::asio::awaitable<Result<std::string_view>> next() override;

 private:
  boost::asio::awaitable<Status> read_piece(std::string& payload);
  Status counted(Status s);
  // The verifier's verdict on the whole body (counted and logged when it fails).
  Status finish_verification(std::string_view when);
  std::string_view frame(std::string_view payload, bool last);

  const config::Config& config_;
  Exchange& ex_;
  auth::BodyVerifier verifier_;
  std::optional<std::string> trailer_;
  std::optional<upstream::AwsChunkedEncoder> encoder_;
  std::string held_;     // payload read but not sent yet
  std::string sending_;  // payload handed to the upstream client by the last next()
  std::string framed_;   // its aws-chunked framing
  bool complete_ = false;
  bool sent_last_ = false;
};

}  // namespace tagd::gateway
