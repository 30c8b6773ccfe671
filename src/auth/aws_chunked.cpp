#include "tagd/auth/aws_chunked.hpp"

#include <algorithm>
#include <limits>

namespace tagd::auth {
namespace {

constexpr std::string_view kChunkSignaturePrefix = ";chunk-signature=";
constexpr std::string_view kTrailerSignatureName = "x-amz-trailer-signature";
constexpr std::string_view kChecksumPrefix = "x-amz-checksum-";

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool is_space(char c) {
  return c == ' ' || c == '\t';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

bool is_lower_hex64(std::string_view s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

bool is_token_char(char c) {
  if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7F) return false;
  static constexpr std::string_view kSeparators = "\"(),/:;<=>?@[\\]{}";
  return kSeparators.find(c) == std::string_view::npos;
}

Status framing_error(std::string message) {
  return Status(ErrorCode::kInvalidRequest, std::move(message));
}

std::string sign_with_prefix(std::string_view prefix, const Sha256Digest& signing_key,
                             std::string_view amz_date, const CredentialScope& scope,
                             std::string_view previous_signature, std::string_view last_line) {
  std::string sts(prefix);
  sts.push_back('\n');
  sts.append(amz_date);
  sts.push_back('\n');
  sts += scope.to_string();
  sts.push_back('\n');
  sts.append(previous_signature);
  sts.push_back('\n');
  sts.append(last_line);
  return signature_hex(signing_key, sts);
}

}  // namespace

std::string chunk_signature(const Sha256Digest& signing_key, std::string_view amz_date,
                            const CredentialScope& scope, std::string_view previous_signature,
                            std::string_view chunk_sha256_hex) {
  std::string tail(kEmptySha256);
  tail.push_back('\n');
  tail.append(chunk_sha256_hex);
  return sign_with_prefix("AWS4-HMAC-SHA256-PAYLOAD", signing_key, amz_date, scope, previous_signature, tail);
}

std::string trailer_signature(const Sha256Digest& signing_key, std::string_view amz_date,
                              const CredentialScope& scope, std::string_view previous_signature,
                              std::string_view canonical_trailers) {
  return sign_with_prefix("AWS4-HMAC-SHA256-TRAILER", signing_key, amz_date, scope, previous_signature,
                          sha256_hex(canonical_trailers));
}

struct AwsChunkedDecoder::Impl {
  enum class State { kChunkHeader, kData, kDataCr, kDataLf, kTrailers, kDone, kFailed };

  struct ChecksumState {
    std::string name;  // trailer name, e.g. x-amz-checksum-crc32
    std::unique_ptr<Hasher> hasher;
  };

  explicit Impl(AwsChunkedOptions o) : options(std::move(o)), previous_signature(options.seed_signature) {
    if (options.signed_trailer && !options.signed_chunks) {
      config_error =
          Status(ErrorCode::kInternalError, "aws-chunked decoder: signed trailer without signed chunks");
    }
    for (const auto& name : options.expected_trailers) {
      if (!std::string_view(name).starts_with(kChecksumPrefix)) continue;
      const auto algorithm =
          checksum_algorithm_from_name(std::string_view(name).substr(kChecksumPrefix.size()));
      if (!algorithm) {
        config_error = framing_error("unsupported checksum trailer '" + name + "'");
        continue;
      }
      checksums.push_back({name, make_hasher(*algorithm)});
    }
  }

  Status fail(Status status) {
    state = State::kFailed;
    failure = status;
    // Nothing buffered is useful after an error; drop it so a dead decoder holds no data.
    line.clear();
    line.shrink_to_fit();
    return status;
  }

  // Appends input up to and including the next LF to `line`. `complete` is set once a
  // whole CRLF-terminated line (CRLF stripped) is in `line`. `limit` bounds the line
  // including its CRLF so a peer cannot make us buffer without end.
  Status take_line(std::string_view& in, std::size_t limit, bool& complete) {
    complete = false;
    const std::size_t lf = in.find('\n');
    const std::size_t take = lf == std::string_view::npos ? in.size() : lf + 1;
    if (line.size() + take > limit) return framing_error("aws-chunked line too long");
    line.append(in.substr(0, take));
    in.remove_prefix(take);
    if (lf == std::string_view::npos) return Status::ok();
    if (line.size() < 2 || line[line.size() - 2] != '\r')
      return framing_error("aws-chunked line not ended by CRLF");
    line.resize(line.size() - 2);
    if (line.find('\r') != std::string::npos) return framing_error("stray CR in aws-chunked line");
    complete = true;
    return Status::ok();
  }

  Status on_chunk_header() {
    const std::string_view text = line;
    std::size_t i = 0;
    std::uint64_t size = 0;
    while (i < text.size()) {
      const int d = hex_value(text[i]);
      if (d < 0) break;
      // Refuse before shifting: a size that does not fit cannot be a real body anyway.
      if (size > (std::numeric_limits<std::uint64_t>::max() >> 4))
        return framing_error("chunk size overflows");
      size = size << 4 | static_cast<std::uint64_t>(d);
      ++i;
    }
    if (i == 0) return framing_error("chunk size is not hexadecimal");
    const std::string_view rest = text.substr(i);
    if (options.signed_chunks) {
      // Exactly one extension, the signature: anything else would be unsigned data
      // smuggled next to signed data.
      if (!rest.starts_with(kChunkSignaturePrefix) ||
          !is_lower_hex64(rest.substr(kChunkSignaturePrefix.size()))) {
        return framing_error("signed chunk header must be 'size;chunk-signature=<64 hex>'");
      }
      claimed_signature.assign(rest.substr(kChunkSignaturePrefix.size()));
    } else if (!rest.empty()) {
      if (rest.front() != ';') return framing_error("malformed chunk size line");
      const bool printable = std::all_of(rest.begin(), rest.end(), [](char c) {
        return c == '\t' || (static_cast<unsigned char>(c) >= 0x20 && static_cast<unsigned char>(c) != 0x7F);
      });
      if (!printable) return framing_error("control character in chunk extension");
    }
    line.clear();

    if (size > std::numeric_limits<std::uint64_t>::max() - decoded)
      return framing_error("body size overflows");
    if (size == 0) {
      if (options.signed_chunks) {
        Status s = verify_chunk(kEmptySha256);
        if (!s) return s;
      }
      state = State::kTrailers;
      return Status::ok();
    }
    remaining = size;
    if (options.signed_chunks) chunk_hasher = make_hasher(ChecksumAlgorithm::kSha256);
    state = State::kData;
    return Status::ok();
  }

  Status verify_chunk(std::string_view data_sha256_hex) {
    const std::string expected = chunk_signature(options.signing_key, options.amz_date, options.scope,
                                                 previous_signature, data_sha256_hex);
    if (!constant_time_equal(expected, claimed_signature)) {
      return Status(ErrorCode::kSignatureDoesNotMatch, "aws-chunked chunk signature does not match");
    }
    previous_signature = claimed_signature;
    return Status::ok();
  }

  Status on_data(std::string_view& in, std::string& out) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(remaining, in.size()));
    const std::string_view piece = in.substr(0, n);
    out.append(piece);
    if (chunk_hasher) chunk_hasher->update(piece);
    for (auto& c : checksums) c.hasher->update(piece);
    in.remove_prefix(n);
    remaining -= n;
    decoded += n;
    if (remaining != 0) return Status::ok();
    state = State::kDataCr;
    if (chunk_hasher) {
      const std::string hash = to_hex(chunk_hasher->finish());
      chunk_hasher.reset();
      return verify_chunk(hash);
    }
    return Status::ok();
  }

  Status on_trailer_line() {
    const std::string_view text = line;
    const std::size_t colon = text.find(':');
    if (colon == std::string_view::npos || colon == 0) return framing_error("malformed trailer line");
    std::string name(text.substr(0, colon));
    if (!std::all_of(name.begin(), name.end(), is_token_char)) return framing_error("malformed trailer name");
    for (char& c : name) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    const std::string_view value = trim(text.substr(colon + 1));

    if (name == kTrailerSignatureName) {
      if (!options.signed_trailer)
        return framing_error("trailer signature in a request without signed trailers");
      if (trailer_signature_seen) return framing_error("repeated trailer signature");
      trailer_signature_seen = true;
      claimed_signature.assign(value);
    } else {
      if (options.signed_chunks && !options.signed_trailer) {
        return framing_error("trailers are not allowed with STREAMING-AWS4-HMAC-SHA256-PAYLOAD");
      }
      if (std::find(options.expected_trailers.begin(), options.expected_trailers.end(), name) ==
          options.expected_trailers.end()) {
        return framing_error("trailer '" + name + "' was not announced in x-amz-trailer");
      }
      const bool repeated =
          std::any_of(trailers.begin(), trailers.end(), [&](const auto& t) { return t.first == name; });
      if (repeated) return framing_error("repeated trailer '" + name + "'");
      trailers.emplace_back(std::move(name), std::string(value));
    }
    line.clear();
    return Status::ok();
  }

  const std::string* trailer_value(std::string_view name) const {
    for (const auto& [n, v] : trailers) {
      if (n == name) return &v;
    }
    return nullptr;
  }

  Status finish_trailers() {
    for (const auto& name : options.expected_trailers) {
      if (trailer_value(name) == nullptr) return framing_error("announced trailer '" + name + "' is missing");
    }
    if (options.signed_trailer && (trailer_signature_seen || !trailers.empty())) {
      if (!trailer_signature_seen) {
        return Status(ErrorCode::kSignatureDoesNotMatch, "signed trailers without x-amz-trailer-signature");
      }
      std::vector<const std::pair<std::string, std::string>*> sorted;
      sorted.reserve(trailers.size());
      for (const auto& t : trailers) sorted.push_back(&t);
      std::sort(sorted.begin(), sorted.end(),
                [](const auto* a, const auto* b) { return a->first < b->first; });
      std::string canonical;
      for (const auto* t : sorted) {
        canonical += t->first;
        canonical.push_back(':');
        canonical += t->second;
        canonical.push_back('\n');
      }
      const std::string expected = trailer_signature(options.signing_key, options.amz_date, options.scope,
                                                     previous_signature, canonical);
      if (!is_lower_hex64(claimed_signature) || !constant_time_equal(expected, claimed_signature)) {
        return Status(ErrorCode::kSignatureDoesNotMatch, "aws-chunked trailer signature does not match");
      }
    }
    // Checked after the signature so a tampered value reports as tampering, not as a
    // corrupt upload.
    for (auto& c : checksums) {
      const std::string* value = trailer_value(c.name);
      const std::vector<std::uint8_t> actual = c.hasher->finish();
      const auto claimed = base64_decode(value != nullptr ? *value : std::string_view());
      if (!claimed || claimed->size() != actual.size()) {
        return Status(ErrorCode::kInvalidDigest, "value of trailer '" + c.name + "' is not a valid checksum");
      }
      if (*claimed != actual) {
        return Status(ErrorCode::kBadDigest,
                      "the " + c.name + " you specified did not match the calculated checksum");
      }
    }
    line.clear();
    line.shrink_to_fit();
    state = State::kDone;
    return Status::ok();
  }

  Status feed(std::string_view in, std::string& out) {
    if (state == State::kFailed) return failure;
    if (!config_error.is_ok()) return fail(config_error);
    while (!in.empty()) {
      switch (state) {
        case State::kChunkHeader: {
          bool complete = false;
          Status s = take_line(in, options.max_chunk_header, complete);
          if (!s) return fail(std::move(s));
          if (complete) {
            s = on_chunk_header();
            if (!s) return fail(std::move(s));
          }
          break;
        }
        case State::kData: {
          Status s = on_data(in, out);
          if (!s) return fail(std::move(s));
          break;
        }
        case State::kDataCr:
          if (in.front() != '\r') return fail(framing_error("chunk data not followed by CRLF"));
          in.remove_prefix(1);
          state = State::kDataLf;
          break;
        case State::kDataLf:
          if (in.front() != '\n') return fail(framing_error("chunk data not followed by CRLF"));
          in.remove_prefix(1);
          state = State::kChunkHeader;
          break;
        case State::kTrailers: {
          const std::size_t budget =
              options.max_trailer_bytes > trailer_bytes ? options.max_trailer_bytes - trailer_bytes : 0;
          const std::size_t before = in.size();
          bool complete = false;
          Status s = take_line(in, budget + line.size(), complete);
          if (!s) return fail(std::move(s));
          trailer_bytes += before - in.size();
          if (!complete) break;
          s = line.empty() ? finish_trailers() : on_trailer_line();
          if (!s) return fail(std::move(s));
          break;
        }
        case State::kDone:
          return fail(Status(ErrorCode::kInvalidArgument, "data after the end of the aws-chunked body"));
        case State::kFailed: return failure;
      }
    }
    return Status::ok();
  }

  AwsChunkedOptions options;
  Status config_error;
  State state = State::kChunkHeader;
  Status failure;
  std::string line;  // the one chunk-size or trailer line being assembled
  std::uint64_t remaining = 0;
  std::uint64_t decoded = 0;
  std::size_t trailer_bytes = 0;
  std::string previous_signature;
  std::string claimed_signature;
  std::unique_ptr<Hasher> chunk_hasher;
  std::vector<ChecksumState> checksums;
  std::vector<std::pair<std::string, std::string>> trailers;
  bool trailer_signature_seen = false;
};

AwsChunkedDecoder::AwsChunkedDecoder(AwsChunkedOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}

AwsChunkedDecoder::~AwsChunkedDecoder() = default;

Status AwsChunkedDecoder::feed(std::string_view input, std::string& out) {
  return impl_->feed(input, out);
}

bool AwsChunkedDecoder::done() const noexcept {
  return impl_->state == Impl::State::kDone;
}

std::uint64_t AwsChunkedDecoder::decoded_bytes() const noexcept {
  return impl_->decoded;
}

const std::vector<std::pair<std::string, std::string>>& AwsChunkedDecoder::trailers() const noexcept {
  return impl_->trailers;
}

}  // namespace tagd::auth
