#include "tagd/auth/repeated_headers.hpp"

#include <array>
#include <string>

#include "tagd/core/strings.hpp"

namespace tagd::auth {
namespace {

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

}  // namespace

bool is_unrepeatable_header(std::string_view name) {
  if (starts_with_ci(name, "x-amz-")) return !starts_with_ci(name, "x-amz-meta-");
  if (starts_with_ci(name, "x-tigris-")) return true;
  static constexpr std::array<std::string_view, 5> kNames = {"authorization", "host", "content-md5", "content-type",
                                                             "date"};
  for (auto n : kNames) {
    if (iequals(name, n)) return true;
  }
  return false;
}

Status check_repeated_headers(const HeaderList& headers) {
  // Only the unrepeatable names are compared, and NameList stays cheap however many
  // headers fit in limits.max_header_bytes (thousands of tiny ones do).
  NameList names;
  for (const auto& h : headers) {
    if (is_unrepeatable_header(h.first)) names.push_back(h.first);
  }
  if (auto repeated = names.repeated(true)) {
    return Status(ErrorCode::kInvalidArgument,
                  "Header " + to_lower(*repeated) + " appears more than once; it may be sent only once.");
  }
  return Status::ok();
}

}  // namespace tagd::auth
