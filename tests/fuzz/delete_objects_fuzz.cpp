// DeleteObjects request bodies: the keys tagd authorizes one by one before the body goes
// upstream.
//
// Input: the XML body.
// Invariants: errors are MalformedXML; at most one key per "<Key>" in the body; a key is
// never longer than the body; re-serializing the keys (xml_escape) into a fresh <Delete>
// document parses back to the same keys.
#include "fuzz_common.hpp"
#include "tagd/s3/request.hpp"

using namespace tagd;

namespace {
std::size_t count(std::string_view text, std::string_view what) {
  std::size_t n = 0;
  for (auto pos = text.find(what); pos != std::string_view::npos; pos = text.find(what, pos + 1)) ++n;
  return n;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view xml = fuzz::as_view(data, size);
  auto keys = s3::delete_objects_keys(xml);
  if (!keys) {
    TAGD_FUZZ_CHECK(keys.error().code() == ErrorCode::kMalformedXML);
    return 0;
  }
  TAGD_FUZZ_CHECK(keys->size() <= count(xml, "<Key>"));
  std::string rebuilt = "<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">";
  for (const auto& key : *keys) {
    TAGD_FUZZ_CHECK(key.size() <= xml.size());
    rebuilt += "<Object><Key>" + s3::xml_escape(key) + "</Key></Object>";
  }
  rebuilt += "</Delete>";
  auto again = s3::delete_objects_keys(rebuilt);
  TAGD_FUZZ_CHECK(again.has_value());
  TAGD_FUZZ_CHECK(*again == *keys);
  return 0;
}
