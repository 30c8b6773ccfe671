#include "tagd/auth/unsigned_headers.hpp"

#include <algorithm>

#include "tagd/core/strings.hpp"

namespace tagd::auth {
namespace {

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

}  // namespace

bool is_signature_required_header(std::string_view name) {
  return starts_with_ci(name, "x-amz-") || starts_with_ci(name, "x-tigris-");
}

namespace {

// Runs before the access key is looked up, over as many headers and signed names as fit
// in limits.max_header_bytes (thousands): past a handful, lookups go through sorted copies
// instead of comparing every header with every name.
constexpr std::size_t kLinearUpTo = 16;

template <typename Names>
Status check_unsigned(const HeaderList& headers, const Names& signed_headers, SignatureKind kind) {
  std::vector<std::string_view> sorted_signed;
  if (signed_headers.size() > kLinearUpTo) {
    sorted_signed.assign(signed_headers.begin(), signed_headers.end());
    std::sort(sorted_signed.begin(), sorted_signed.end(), iless);
  }
  std::vector<std::string> unsigned_names;
  for (const auto& [raw_name, value] : headers) {
    if (!is_signature_required_header(raw_name)) continue;
    bool covered = false;
    switch (kind) {
      case SignatureKind::kSigV2:
        // CanonicalizedAmzHeaders takes every x-amz-* header; x-tigris-* are never in it.
        covered = starts_with_ci(raw_name, "x-amz-");
        break;
      case SignatureKind::kSigV4Presigned:
        // The payload-hash line of the canonical request carries it (see the header).
        if (iequals(raw_name, "x-amz-content-sha256")) {
          covered = true;
          break;
        }
        [[fallthrough]];
      case SignatureKind::kSigV4Header:
        // (raw_name bound to a local first: clang 14, the fuzz build's compiler, cannot
        // capture a structured binding in a lambda.)
        if (!sorted_signed.empty()) {
          covered = std::binary_search(sorted_signed.begin(), sorted_signed.end(), std::string_view(raw_name), iless);
        } else {
          covered = std::any_of(
              signed_headers.begin(), signed_headers.end(),
              [&, wanted = std::string_view(raw_name)](const auto& name) { return iequals(name, wanted); });
        }
        break;
    }
    if (covered) continue;
    std::string name = to_lower(raw_name);
    if (unsigned_names.size() > kLinearUpTo ||
        std::find(unsigned_names.begin(), unsigned_names.end(), name) == unsigned_names.end()) {
      unsigned_names.push_back(std::move(name));
    }
  }
  if (unsigned_names.empty()) return Status::ok();
  if (unsigned_names.size() > kLinearUpTo) {  // deduplicated here instead (sorted, then)
    std::sort(unsigned_names.begin(), unsigned_names.end());
    unsigned_names.erase(std::unique(unsigned_names.begin(), unsigned_names.end()), unsigned_names.end());
  }
  std::string message(kHeadersNotSignedMessage);
  message += ": ";
  for (std::size_t i = 0; i < unsigned_names.size(); ++i) {
    if (i != 0) message += ", ";
    message += unsigned_names[i];
  }
  return Status(ErrorCode::kAccessDenied, std::move(message));
}

}  // namespace

Status check_unsigned_headers(const HeaderList& headers, const std::vector<std::string>& signed_headers,
                              SignatureKind kind) {
  return check_unsigned(headers, signed_headers, kind);
}

Status check_unsigned_header_views(const HeaderList& headers, const std::vector<std::string_view>& signed_headers,
                                   SignatureKind kind) {
  return check_unsigned(headers, signed_headers, kind);
}

}  // namespace tagd::auth
