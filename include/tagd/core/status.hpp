#pragma once
// Error values for the data path. Exceptions are reserved for start-up and config;
// everything a request can hit returns a Status or a Result<T>.
#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace tagd {

// S3 error codes tagd itself produces. Upstream errors are relayed verbatim and never
// mapped through this enum.
enum class ErrorCode {
  kOk = 0,
  kAccessDenied,
  kInvalidAccessKeyId,
  kSignatureDoesNotMatch,
  kRequestTimeTooSkewed,
  kExpiredPresign,  // S3 answers AccessDenied "Request has expired"
  kAuthorizationHeaderMalformed,
  kAuthorizationQueryParametersError,
  kXAmzContentSHA256Mismatch,
  kBadDigest,
  kInvalidDigest,
  kInvalidRequest,
  kInvalidArgument,
  kInvalidBucketName,
  kIncompleteBody,
  kMissingContentLength,
  kMalformedXML,
  kRequestHeaderSectionTooLarge,
  kRequestTimeout,
  kMethodNotAllowed,
  kPreconditionFailed,
  kInvalidRange,
  kNotImplemented,
  kSlowDown,
  kInternalError,
  kServiceUnavailable,  // upstream unreachable (connect refused, DNS)
  kBadGateway,          // upstream broke the protocol or the connection mid-response
  kGatewayTimeout,      // upstream did not answer in time
};

// HTTP status and S3 <Code> string for an error code.
int http_status(ErrorCode code) noexcept;
const char* s3_code(ErrorCode code) noexcept;

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status ok() { return {}; }

  bool is_ok() const noexcept { return code_ == ErrorCode::kOk; }
  explicit operator bool() const noexcept { return is_ok(); }
  ErrorCode code() const noexcept { return code_; }
  const std::string& message() const noexcept { return message_; }

 private:
  ErrorCode code_ = ErrorCode::kOk;
  std::string message_;
};

// std::expected-like result (C++20 has no std::expected).
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Status error) : v_(std::move(error)) {  // NOLINT(google-explicit-constructor)
    assert(!std::get<Status>(v_).is_ok() && "Result built from an ok Status");
  }

  bool has_value() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }
  T& value() & {
    assert(has_value());
    return std::get<0>(v_);
  }
  const T& value() const& {
    assert(has_value());
    return std::get<0>(v_);
  }
  T&& value() && {
    assert(has_value());
    return std::get<0>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }
  const Status& error() const {
    assert(!has_value());
    return std::get<1>(v_);
  }

 private:
  std::variant<T, Status> v_;
};

}  // namespace tagd
