#include "tagd/core/status.hpp"

namespace tagd {

int http_status(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::kOk: return 200;
    case ErrorCode::kAccessDenied:
    case ErrorCode::kInvalidAccessKeyId:
    case ErrorCode::kSignatureDoesNotMatch:
    case ErrorCode::kRequestTimeTooSkewed:
    case ErrorCode::kExpiredPresign: return 403;
    case ErrorCode::kAuthorizationHeaderMalformed:
    case ErrorCode::kAuthorizationQueryParametersError:
    case ErrorCode::kXAmzContentSHA256Mismatch:
    case ErrorCode::kBadDigest:
    case ErrorCode::kInvalidDigest:
    case ErrorCode::kInvalidRequest:
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kInvalidBucketName:
    case ErrorCode::kIncompleteBody:
    case ErrorCode::kMalformedXML:
    case ErrorCode::kRequestHeaderSectionTooLarge:
    case ErrorCode::kRequestTimeout: return 400;
    case ErrorCode::kMissingContentLength: return 411;
    case ErrorCode::kMethodNotAllowed: return 405;
    case ErrorCode::kPreconditionFailed: return 412;
    case ErrorCode::kInvalidRange: return 416;
    case ErrorCode::kNotImplemented: return 501;
    case ErrorCode::kSlowDown:
    case ErrorCode::kServiceUnavailable: return 503;
    case ErrorCode::kInternalError: return 500;
    case ErrorCode::kBadGateway: return 502;
    case ErrorCode::kGatewayTimeout: return 504;
  }
  return 500;
}

const char* s3_code(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::kOk: return "OK";
    case ErrorCode::kAccessDenied: return "AccessDenied";
    case ErrorCode::kInvalidAccessKeyId: return "InvalidAccessKeyId";
    case ErrorCode::kSignatureDoesNotMatch: return "SignatureDoesNotMatch";
    case ErrorCode::kRequestTimeTooSkewed: return "RequestTimeTooSkewed";
    case ErrorCode::kExpiredPresign: return "AccessDenied";
    case ErrorCode::kAuthorizationHeaderMalformed: return "AuthorizationHeaderMalformed";
    case ErrorCode::kAuthorizationQueryParametersError: return "AuthorizationQueryParametersError";
    case ErrorCode::kXAmzContentSHA256Mismatch: return "XAmzContentSHA256Mismatch";
    case ErrorCode::kBadDigest: return "BadDigest";
    case ErrorCode::kInvalidDigest: return "InvalidDigest";
    case ErrorCode::kInvalidRequest: return "InvalidRequest";
    case ErrorCode::kInvalidArgument: return "InvalidArgument";
    case ErrorCode::kInvalidBucketName: return "InvalidBucketName";
    case ErrorCode::kIncompleteBody: return "IncompleteBody";
    case ErrorCode::kMissingContentLength: return "MissingContentLength";
    case ErrorCode::kMalformedXML: return "MalformedXML";
    case ErrorCode::kRequestHeaderSectionTooLarge: return "RequestHeaderSectionTooLarge";
    case ErrorCode::kRequestTimeout: return "RequestTimeout";
    case ErrorCode::kMethodNotAllowed: return "MethodNotAllowed";
    case ErrorCode::kPreconditionFailed: return "PreconditionFailed";
    case ErrorCode::kInvalidRange: return "InvalidRange";
    case ErrorCode::kNotImplemented: return "NotImplemented";
    case ErrorCode::kSlowDown: return "SlowDown";
    case ErrorCode::kInternalError: return "InternalError";
    case ErrorCode::kServiceUnavailable: return "ServiceUnavailable";
    case ErrorCode::kBadGateway: return "BadGateway";
    case ErrorCode::kGatewayTimeout: return "GatewayTimeout";
  }
  return "InternalError";
}

}  // namespace tagd
