#pragma once
// Whether a request head frames its body in a way tagd reads exactly as the client meant
// it. Anything else is refused before a body byte is read, and the connection is closed:
// a body tagd took for "none" would otherwise run as the next request (one request, one
// response). Pure function over the parsed head.
#include <boost/beast/http/fields.hpp>

#include "tagd/core/status.hpp"

namespace tagd::http {

// RFC 9112 §6: Transfer-Encoding whose final coding is not `chunked`, `chunked` applied
// twice, Transfer-Encoding together with Content-Length, or Transfer-Encoding in an
// HTTP/1.0 request → kInvalidRequest (400). A coding other than `chunked` (gzip, ...) that
// is otherwise well placed → kNotImplemented (501): tagd does not decode transfer codings.
[[nodiscard]] Status check_request_framing(const boost::beast::http::fields& head, unsigned version);

}  // namespace tagd::http
