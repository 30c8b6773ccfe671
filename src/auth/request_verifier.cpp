#include "tagd/auth/request_verifier.hpp"
#include "tagd/auth/signing_key_cache.hpp"

#include <algorithm>
#include <cctype>
#include <utility>

#include "tagd/auth/repeated_headers.hpp"
#include "tagd/auth/sigv2.hpp"
#include "tagd/auth/unsigned_headers.hpp"
#include "tagd/core/strings.hpp"

namespace tagd::auth {
namespace {

constexpr std::string_view kSigV4aAlgorithm = "AWS4-ECDSA-P256-SHA256";

std::uint64_t next_generation() {
  static std::atomic<std::uint64_t> counter{0};
  return counter.fetch_add(1, std::memory_order_relaxed) + 1;
}

bool is_hex64(std::string_view s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// Content-MD5 and x-amz-checksum-* promised in headers.
// `composite`: CompleteMultipartUpload, whose x-amz-checksum-* describe the object built
// from the parts (e.g. "...-3"), not the XML body, so only Content-MD5 applies.
Result<std::vector<ExpectedChecksum>> expected_checksums(const HeaderList& headers, bool composite) {
  std::vector<ExpectedChecksum> out;
  if (const auto* md5 = find_header(headers, "content-md5")) {
    auto digest = base64_decode(*md5);
    if (!digest || digest->size() != digest_size(ChecksumAlgorithm::kMd5)) {
      return Status(ErrorCode::kInvalidDigest, "The Content-MD5 you specified is not valid.");
    }
    out.push_back({ChecksumAlgorithm::kMd5, std::move(*digest), "Content-MD5"});
  }
  for (const auto& [name, value] : headers) {
    if (!is_checksum_value_header(name) || composite) continue;
    std::string n = to_lower(name);
    auto algorithm = checksum_algorithm_from_name(std::string_view(n).substr(std::string_view("x-amz-checksum-").size()));
    // An algorithm tagd cannot compute (e.g. crc64nvme) is left to the upstream to check.
    if (!algorithm) continue;
    auto digest = base64_decode(value);
    if (!digest || digest->size() != digest_size(*algorithm)) {
      return Status(ErrorCode::kInvalidRequest, "Value for " + n + " header is invalid.");
    }
    out.push_back({*algorithm, std::move(*digest), n});
  }
  return out;
}

std::optional<std::uint64_t> parse_u64(std::string_view s) {
  if (s.empty() || s.size() > 19) return std::nullopt;
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return v;
}

// What a SigV4 signature gives aws-chunked bodies: the chain of chunk signatures. Views
// into the request, copied only into a streaming body's plan.
struct SigV4ChunkContext {
  Sha256Digest signing_key;
  std::string_view amz_date;
  std::string_view date, region, service;
  std::string_view seed_signature;
};

// How the body must be checked, from the payload hash the signature covers (the
// x-amz-content-sha256 value, or UNSIGNED-PAYLOAD). `v4` is null for SigV2, which has no
// chunk-signature chain: signed aws-chunked bodies are then refused.
Status plan_body(BodyPlan& plan, const HeaderList& headers, std::string_view payload_hash,
                 const SigV4ChunkContext* v4, bool presigned) {
  if (is_hex64(payload_hash)) {
    plan.mode = PayloadMode::kSignedSha256;
    plan.expected_sha256 = payload_hash;
    return Status::ok();
  }
  if (payload_hash == kUnsignedPayload) {
    plan.mode = PayloadMode::kUnsigned;
    return Status::ok();
  }
  if (payload_hash == kStreamingSignedPayload || payload_hash == kStreamingSignedPayloadTrailer ||
      payload_hash == kStreamingUnsignedPayloadTrailer) {
    if (presigned) return Status(ErrorCode::kInvalidRequest, "streaming payloads need header authorization");
    const bool signed_chunks = payload_hash != kStreamingUnsignedPayloadTrailer;
    if (signed_chunks && v4 == nullptr) {
      return Status(ErrorCode::kInvalidRequest,
                    "x-amz-content-sha256 " + std::string(payload_hash) + " needs a SigV4 signature");
    }
    const std::string* decoded = find_header(headers, "x-amz-decoded-content-length");
    if (decoded == nullptr) {
      return Status(ErrorCode::kMissingContentLength, "x-amz-decoded-content-length is required for aws-chunked");
    }
    plan.decoded_length = parse_u64(*decoded);
    if (!plan.decoded_length) return Status(ErrorCode::kInvalidArgument, "x-amz-decoded-content-length is invalid");
    AwsChunkedOptions options;
    options.signed_chunks = signed_chunks;
    options.signed_trailer = payload_hash == kStreamingSignedPayloadTrailer;
    if (v4 != nullptr) {
      options.signing_key = v4->signing_key;
      options.amz_date = v4->amz_date;
      options.scope = CredentialScope{std::string(v4->date), std::string(v4->region), std::string(v4->service)};
      options.seed_signature = v4->seed_signature;
    }
    const std::string* trailer = find_header(headers, "x-amz-trailer");
    // Only the -TRAILER variants carry trailers; the plain signed-chunk format has none.
    if (payload_hash == kStreamingSignedPayload) trailer = nullptr;
    if (trailer != nullptr) {
      std::string_view t = *trailer;
      while (!t.empty()) {
        auto comma = t.find(',');
        std::string name = to_lower(t.substr(0, comma));
        name.erase(0, name.find_first_not_of(" \t"));
        name.erase(name.find_last_not_of(" \t") + 1);
        if (!name.empty()) options.expected_trailers.push_back(std::move(name));
        if (comma == std::string_view::npos) break;
        t.remove_prefix(comma + 1);
      }
    }
    plan.mode = options.signed_chunks ? PayloadMode::kAwsChunkedSigned : PayloadMode::kAwsChunkedUnsigned;
    plan.chunked = std::move(options);
    return Status::ok();
  }
  if (payload_hash.starts_with("STREAMING-")) {
    return Status(ErrorCode::kNotImplemented, "x-amz-content-sha256 " + std::string(payload_hash) + " is not supported");
  }
  return Status(ErrorCode::kInvalidArgument, "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-*, or a "
                                             "hex SHA-256 digest");
}

}  // namespace

const std::string* find_header(const HeaderList& headers, std::string_view name) {
  for (const auto& [n, v] : headers) {
    if (iequals(n, name)) return &v;
  }
  return nullptr;
}

RequestVerifier::RequestVerifier(const CredentialStore& store, std::chrono::seconds max_skew, bool allow_anonymous)
    // Aliasing an empty owner: points at `store`, owns nothing, costs no reference count.
    : current_(std::shared_ptr<const void>(), &store),
      generation_(next_generation()),
      max_skew_(max_skew),
      allow_anonymous_(allow_anonymous) {}

RequestVerifier::RequestVerifier(std::shared_ptr<const CredentialStore> store, std::chrono::seconds max_skew,
                                 bool allow_anonymous)
    : current_(std::move(store)),
      generation_(next_generation()),
      max_skew_(max_skew),
      allow_anonymous_(allow_anonymous) {}

void RequestVerifier::replace_store(std::shared_ptr<const CredentialStore> store) {
  std::shared_ptr<const CredentialStore> old;
  {
    std::lock_guard lock(mutex_);
    old = std::exchange(current_, std::move(store));
    generation_.store(next_generation(), std::memory_order_release);
  }
  // `old` is released here, outside the lock (threads may still hold their references).
}

std::shared_ptr<const CredentialStore> RequestVerifier::store() const {
  // One reference per thread: copying it per request touches a reference count only this
  // thread (event loop) uses, where a shared atomic<shared_ptr> would bounce one cache
  // line between every loop on every request.
  struct Pin {
    std::uint64_t generation = 0;
    std::shared_ptr<const CredentialStore> store;
  };
  thread_local Pin pin;
  if (pin.generation != generation_.load(std::memory_order_acquire)) {
    std::lock_guard lock(mutex_);
    auto holder = std::make_shared<std::shared_ptr<const CredentialStore>>(current_);
    pin.store = std::shared_ptr<const CredentialStore>(holder, holder->get());
    pin.generation = generation_.load(std::memory_order_relaxed);
  }
  return pin.store;
}

Result<VerifiedRequest> RequestVerifier::verify(const RequestHead& head,
                                                std::chrono::system_clock::time_point now) const {
  const HeaderList& headers = *head.headers;
  if (Status s = check_repeated_headers(headers); !s) return s;
  std::optional<QueryParams> parsed;
  if (head.query == nullptr) {
    parsed = parse_query(head.raw_query);
    if (!parsed) return Status(ErrorCode::kInvalidArgument, "malformed percent-escape in query string");
  }
  const QueryParams* query = head.query != nullptr ? head.query : &*parsed;
  const bool complete_multipart =
      head.method == "POST" && std::any_of(query->begin(), query->end(), [](const auto& kv) {
        return kv.first == "uploadId";
      });
  auto checksums = expected_checksums(headers, complete_multipart);
  if (!checksums) return checksums.error();

  VerifiedRequest out;
  out.body.expected_checksums = std::move(checksums.value());
  const std::string* authorization = find_header(headers, "authorization");

  // SigV4a: asymmetric keys tagd does not hold. Refused explicitly, not as malformed.
  const bool sigv4a_query = std::any_of(query->begin(), query->end(), [](const auto& kv) {
    return kv.first == "X-Amz-Algorithm" && kv.second == kSigV4aAlgorithm;
  });
  if ((authorization != nullptr && authorization->rfind(kSigV4aAlgorithm, 0) == 0) || sigv4a_query) {
    return Status(ErrorCode::kNotImplemented, "AWS4-ECDSA-P256-SHA256 (SigV4a) signatures are not supported");
  }

  const bool presigned = has_presigned_query(*query);
  const bool sigv2_header = authorization != nullptr && sigv2::is_sigv2_authorization(*authorization);
  const bool sigv2_query = sigv2::has_presigned_query(*query);
  if (static_cast<int>(authorization != nullptr) + static_cast<int>(presigned) + static_cast<int>(sigv2_query) > 1) {
    return Status(ErrorCode::kInvalidArgument, "Only one auth mechanism allowed");
  }
  if (authorization == nullptr && !presigned && !sigv2_query) {
    if (!allow_anonymous_) return Status(ErrorCode::kAccessDenied, "Anonymous access is not allowed");
    out.body.mode = PayloadMode::kUnsigned;
    return out;
  }

  if (sigv2_header || sigv2_query) {
    // Every x-amz-* header is in the SigV2 string to sign; x-tigris-* never are.
    if (Status s = check_unsigned_headers(headers, std::vector<std::string>{}, SignatureKind::kSigV2); !s) return s;
    sigv2::Request request{head.method, head.raw_path, head.raw_query, head.virtual_host_bucket, &headers,
                           query};
    auto store = this->store();
    auto v = sigv2::verify(request, *store, now, max_skew_);
    if (!v) return v.error();
    out.identity = v->identity;
    out.store = std::move(store);
    out.presigned = v->presigned;
    out.sigv2 = true;
    // SigV2 does not sign the body. A client may still promise its digest in
    // x-amz-content-sha256 (signed here as an x-amz-* header), which is then checked.
    const std::string* content_sha = find_header(headers, "x-amz-content-sha256");
    const std::string_view payload_hash = content_sha != nullptr ? std::string_view(*content_sha) : kUnsignedPayload;
    if (Status s = plan_body(out.body, headers, payload_hash, nullptr, out.presigned); !s) return s;
    return out;
  }

  // Everything below reads views into the request (its decoded query, its headers) and
  // builds the canonical request and the string to sign in this thread's reused buffers:
  // verify() never suspends, so nothing else runs on this thread meanwhile.
  SignatureFieldsView fields;
  std::string date_from_http;  // amz_date when only a Date header dates the request
  std::string_view payload_hash = kUnsignedPayload;

  if (presigned) {
    auto p = parse_presigned_query_view(*query);
    if (!p) return p.error();
    fields = *p;
    auto signed_at = parse_amz_date(fields.amz_date);
    if (!signed_at) return Status(ErrorCode::kAuthorizationQueryParametersError, "X-Amz-Date is malformed");
    if (now > *signed_at + std::chrono::seconds(fields.expires_seconds)) {
      return Status(ErrorCode::kExpiredPresign, "Request has expired");
    }
    if (*signed_at > now + max_skew_) return Status(ErrorCode::kAccessDenied, "Request is not valid yet");
    if (const auto* h = find_header(headers, "x-amz-content-sha256")) payload_hash = *h;
    out.presigned = true;
  } else {
    auto a = parse_authorization_header_view(*authorization);
    if (!a) return a.error();
    fields = *a;
    const std::string* date = find_header(headers, "x-amz-date");
    std::optional<std::chrono::system_clock::time_point> when;
    if (date != nullptr) {
      when = parse_amz_date(*date);
      fields.amz_date = *date;
    } else if (const auto* http_date = find_header(headers, "date")) {
      when = parse_http_date(*http_date);
      if (when) {
        date_from_http = format_amz_date(*when);
        fields.amz_date = date_from_http;
      }
    }
    if (!when) return Status(ErrorCode::kAccessDenied, "AWS authentication requires a valid Date or x-amz-date header");
    auto skew = now > *when ? now - *when : *when - now;
    if (skew > max_skew_) {
      return Status(ErrorCode::kRequestTimeTooSkewed,
                    "The difference between the request time and the current time is too large.");
    }
    const std::string* content_sha = find_header(headers, "x-amz-content-sha256");
    if (content_sha == nullptr) {
      return Status(ErrorCode::kInvalidRequest, "Missing required header for this request: x-amz-content-sha256");
    }
    payload_hash = *content_sha;
  }

  if (fields.service != "s3") {
    return Status(ErrorCode::kAuthorizationHeaderMalformed, "credential scope service must be s3");
  }
  if (fields.amz_date.substr(0, 8) != fields.date) {
    return Status(ErrorCode::kSignatureDoesNotMatch, "credential scope date does not match the request date");
  }
  struct Buffers {
    std::vector<std::string_view> signed_headers;
    std::string lowered_names;
    std::string canonical_request;
    std::string string_to_sign;
  };
  thread_local Buffers buffers;
  signed_header_names(fields.signed_headers, buffers.signed_headers, buffers.lowered_names);
  const std::vector<std::string_view>& signed_headers = buffers.signed_headers;
  if (std::find(signed_headers.begin(), signed_headers.end(), "host") == signed_headers.end()) {
    return Status(ErrorCode::kAccessDenied, "host must be a signed header");
  }
  if (Status s = check_unsigned_header_views(
          headers, signed_headers, presigned ? SignatureKind::kSigV4Presigned : SignatureKind::kSigV4Header);
      !s) {
    return s;
  }
  auto store = this->store();
  const Identity* identity = store->find(fields.access_key_id);
  if (identity == nullptr) {
    return Status(ErrorCode::kInvalidAccessKeyId, "The AWS Access Key Id you provided does not exist in our records.");
  }

  // The request's own path and query, read in place (a presigned URL's signature left out).
  ReceivedRequest received{head.method, head.raw_path, head.raw_query, query,
                           presigned ? std::string_view("X-Amz-Signature") : std::string_view(),
                           &headers, &signed_headers, payload_hash};
  buffers.canonical_request.clear();
  if (Status s = append_canonical_request(buffers.canonical_request, received); !s) return s;
  const Sha256Digest key = cached_signing_key(identity->secret_access_key, fields.date, fields.region, fields.service);
  buffers.string_to_sign.clear();
  append_string_to_sign(buffers.string_to_sign, fields.amz_date, fields.date, fields.region, fields.service,
                        buffers.canonical_request);
  const Sha256Digest mac = hmac_sha256(key, buffers.string_to_sign);
  char expected[2 * mac.size()];
  to_hex(mac, expected);
  if (!constant_time_equal(std::string_view(expected, sizeof expected), fields.signature)) {
    return Status(ErrorCode::kSignatureDoesNotMatch,
                  "The request signature we calculated does not match the signature you provided.");
  }
  out.identity = identity;
  out.store = std::move(store);

  SigV4ChunkContext chunk_context{key, fields.amz_date, fields.date, fields.region, fields.service, fields.signature};
  if (Status s = plan_body(out.body, headers, payload_hash, &chunk_context, presigned); !s) return s;
  return out;
}

BodyVerifier::BodyVerifier(BodyPlan plan) : plan_(std::move(plan)) {
  if (plan_.chunked) decoder_ = std::make_unique<AwsChunkedDecoder>(*plan_.chunked);
  if (plan_.mode == PayloadMode::kSignedSha256) sha256_ = make_hasher(ChecksumAlgorithm::kSha256);
  for (const auto& c : plan_.expected_checksums) checksum_hashers_.push_back(make_hasher(c.algorithm));
}

void BodyVerifier::hash(std::string_view payload) {
  if (payload.empty()) return;
  payload_bytes_ += payload.size();
  if (sha256_) sha256_->update(payload);
  for (auto& h : checksum_hashers_) h->update(payload);
}

Status BodyVerifier::feed(std::string_view raw, std::string& payload_out) {
  if (!decoder_) {
    payload_out.append(raw);
    hash(raw);
    return Status::ok();
  }
  std::size_t before = payload_out.size();
  Status s = decoder_->feed(raw, payload_out);
  hash(std::string_view(payload_out).substr(before));
  if (plan_.decoded_length && payload_bytes_ > *plan_.decoded_length) {
    return Status(ErrorCode::kIncompleteBody, "aws-chunked body is longer than x-amz-decoded-content-length");
  }
  return s;
}

const std::vector<std::pair<std::string, std::string>>& BodyVerifier::trailers() const noexcept {
  static const std::vector<std::pair<std::string, std::string>> kNone;
  return decoder_ ? decoder_->trailers() : kNone;
}

Status BodyVerifier::finish() {
  if (decoder_) {
    if (!decoder_->done()) return Status(ErrorCode::kIncompleteBody, "aws-chunked body ended early");
    if (plan_.decoded_length && payload_bytes_ != *plan_.decoded_length) {
      return Status(ErrorCode::kIncompleteBody,
                    "You did not provide the number of bytes specified by x-amz-decoded-content-length");
    }
  }
  if (sha256_) {
    auto digest = sha256_->finish();
    if (!constant_time_equal(to_hex(digest), plan_.expected_sha256)) {
      return Status(ErrorCode::kXAmzContentSHA256Mismatch,
                    "The provided 'x-amz-content-sha256' header does not match what was computed.");
    }
  }
  for (std::size_t i = 0; i < checksum_hashers_.size(); ++i) {
    auto digest = checksum_hashers_[i]->finish();
    const auto& want = plan_.expected_checksums[i];
    if (digest != want.digest) {
      return Status(ErrorCode::kBadDigest, "The " + want.header + " you specified did not match the calculated checksum.");
    }
  }
  return Status::ok();
}

}  // namespace tagd::auth
