#include "tagd/http/framing.hpp"

#include <string>
#include <vector>

#include "tagd/core/strings.hpp"

namespace tagd::http {

namespace bhttp = boost::beast::http;

Status check_request_framing(const bhttp::fields& head, unsigned version) {
  std::vector<std::string> codings;
  bool present = false;
  bool has_parameters = false;
  for (const auto& field : head) {
    if (field.name() != bhttp::field::transfer_encoding) continue;
    present = true;
    std::string_view value = field.value();
    while (!value.empty()) {
      auto comma = value.find(',');
      std::string_view token = trim_ows(value.substr(0, comma));
      // A coding with parameters (";p", "chunked;x=1") is refused: HTTP parsers disagree
      // on whether "chunked;x=1" is chunked, and ";p" has no name at all. Only empty
      // list elements (", ,") are skipped, as RFC 9110 §5.6.1 allows.
      if (token.find(';') != std::string_view::npos) has_parameters = true;
      if (!token.empty()) codings.push_back(to_lower(token));
      if (comma == std::string_view::npos) break;
      value.remove_prefix(comma + 1);
    }
  }
  if (!present) return Status::ok();
  auto bad = [](std::string why) { return Status(ErrorCode::kInvalidRequest, "Transfer-Encoding: " + why); };
  if (version < 11) return bad("not allowed in an HTTP/1.0 request");
  if (head.find(bhttp::field::content_length) != head.end()) return bad("sent together with Content-Length");
  if (has_parameters) return bad("transfer coding parameters are not supported");
  if (codings.empty() || codings.back() != "chunked") return bad("the final coding must be chunked");
  for (std::size_t i = 0; i + 1 < codings.size(); ++i) {
    if (codings[i] == "chunked") return bad("chunked applied more than once");
  }
  if (codings.size() > 1) {
    return Status(ErrorCode::kNotImplemented,
                  "A header you provided implies functionality that is not implemented: Transfer-Encoding " +
                      codings.front());
  }
  return Status::ok();
}

}  // namespace tagd::http
