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
  // Requests carry a few dozen headers at most: quadratic is cheaper than a set here.
  for (std::size_t i = 0; i < headers.size(); ++i) {
    const std::string& name = headers[i].first;
    if (!is_unrepeatable_header(name)) continue;
    for (std::size_t j = i + 1; j < headers.size(); ++j) {
      if (iequals(headers[j].first, name)) {
        return Status(ErrorCode::kInvalidArgument,
                      "Header " + to_lower(name) + " appears more than once; it may be sent only once.");
      }
    }
  }
  return Status::ok();
}

}  // namespace tagd::auth
