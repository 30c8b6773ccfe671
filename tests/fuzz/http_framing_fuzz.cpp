// A request head as it arrives on a client connection: Boost.Beast's parser (as
// http::Server configures it: header limit, empty body not read) followed by
// http::check_request_framing, which decides whether the body framing is unambiguous.
//
// Input: raw bytes of a request head (fed in two pieces split at the first input byte).
// Invariants: an accepted framing never combines Transfer-Encoding with Content-Length or
// with HTTP/1.0, and a Transfer-Encoding it accepts ends in chunked.
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>

#include "fuzz_common.hpp"
#include "tagd/http/framing.hpp"

using namespace tagd;
namespace bhttp = boost::beast::http;


extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::size_t split = data[0];
  const std::string_view raw = fuzz::as_view(data + 1, size - 1);

  bhttp::request_parser<bhttp::empty_body> parser;
  parser.header_limit(16 * 1024);
  parser.eager(false);
  boost::system::error_code ec;
  std::size_t used = 0;
  const std::string_view first = raw.substr(0, std::min(split, raw.size()));
  used = parser.put(boost::asio::buffer(first.data(), first.size()), ec);
  if (ec == bhttp::error::need_more) ec = {};
  if (!ec && !parser.is_header_done()) {
    const std::string_view rest = raw.substr(used);
    parser.put(boost::asio::buffer(rest.data(), rest.size()), ec);
  }
  if (!parser.is_header_done()) return 0;

  const auto& req = parser.get();
  const Status framing = http::check_request_framing(req.base(), req.version());
  if (framing) {
    if (req.base().find(bhttp::field::transfer_encoding) != req.base().end()) {
      TAGD_FUZZ_CHECK(req.version() >= 11);
      TAGD_FUZZ_CHECK(req.base().find(bhttp::field::content_length) == req.base().end());
      TAGD_FUZZ_CHECK(parser.chunked());
    }
  } else {
    TAGD_FUZZ_CHECK(framing.code() == ErrorCode::kInvalidRequest || framing.code() == ErrorCode::kNotImplemented);
  }
  return 0;
}
