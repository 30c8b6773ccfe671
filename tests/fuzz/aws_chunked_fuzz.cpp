// AwsChunkedDecoder in both modes, fed the body split at fuzzer-chosen points.
//
// Input: byte 0 = mode, byte 1 = number of split points k (mod 9), then k little-endian
// u16 split offsets, then the body.
//   mode bit 0: signed chunks (STREAMING-AWS4-HMAC-SHA256-PAYLOAD, AWS's example key,
//               date 20130524T000000Z, scope 20130524/us-east-1/s3, seed signature 4f232c43...)
//   mode bit 1: signed trailer (-TRAILER variant; only with bit 0)
//   mode bits 2-4: announced trailers (x-amz-trailer), see kTrailerSets
// Invariants: the payload is never longer than the body; decoded_bytes() matches what was
// appended; the result does not depend on how the body was split (same status code,
// same payload, same done()), compared with a one-shot feed and, for small bodies, a
// byte-at-a-time feed; a finished decoder refuses further bytes.
#include <algorithm>
#include <array>

#include "fuzz_common.hpp"
#include "tagd/auth/aws_chunked.hpp"

using namespace tagd;

namespace {

const std::array<std::vector<std::string>, 8> kTrailerSets = {{
    {},
    {"x-amz-checksum-crc32"},
    {"x-amz-checksum-crc32c"},
    {"x-amz-checksum-sha1"},
    {"x-amz-checksum-sha256"},
    {"x-amz-checksum-crc32", "x-amz-meta-note"},
    {"x-amz-checksum-crc64nvme"},
    {"x-amz-checksum-crc32c", "x-amz-checksum-sha256"},
}};

auth::AwsChunkedOptions options_for(std::uint8_t mode) {
  auth::AwsChunkedOptions o;
  o.signed_chunks = (mode & 1) != 0;
  o.signed_trailer = o.signed_chunks && (mode & 2) != 0;
  o.expected_trailers = kTrailerSets[(mode >> 2) & 7];
  if (o.signed_chunks) {
    o.scope = auth::CredentialScope{"20130524", "us-east-1", "s3"};
    static const auto key = auth::signing_key("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", o.scope);
    o.signing_key = key;
    o.amz_date = "20130524T000000Z";
    o.seed_signature = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
  }
  o.max_chunk_header = 512;  // small bounds so the fuzzer reaches them
  o.max_trailer_bytes = 1024;
  return o;
}

struct Run {
  Status status;
  std::string out;
  bool done = false;
  std::uint64_t decoded = 0;
  std::vector<std::pair<std::string, std::string>> trailers;
};

Run run(std::uint8_t mode, std::string_view body, const std::vector<std::size_t>& cuts) {
  auth::AwsChunkedDecoder decoder(options_for(mode));
  Run r;
  std::size_t pos = 0;
  for (std::size_t cut : cuts) {
    if (!r.status) break;
    r.status = decoder.feed(body.substr(pos, cut - pos), r.out);
    pos = cut;
  }
  if (r.status) r.status = decoder.feed(body.substr(pos), r.out);
  r.done = decoder.done();
  r.decoded = decoder.decoded_bytes();
  r.trailers = decoder.trailers();
  TAGD_FUZZ_CHECK(r.out.size() <= body.size());
  if (r.status) TAGD_FUZZ_CHECK(r.decoded == r.out.size());
  if (r.done && r.status) {
    // A finished body takes no more bytes.
    std::string more;
    TAGD_FUZZ_CHECK(!decoder.feed("0\r\n\r\n", more));
    TAGD_FUZZ_CHECK(more.empty());
  }
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::uint8_t mode = data[0];
  const std::size_t k = data[1] % 9;
  if (size < 2 + 2 * k) return 0;
  const std::string_view body = fuzz::as_view(data + 2 + 2 * k, size - 2 - 2 * k);
  std::vector<std::size_t> cuts;
  for (std::size_t i = 0; i < k; ++i) {
    const std::size_t off = data[2 + 2 * i] | (static_cast<std::size_t>(data[3 + 2 * i]) << 8);
    cuts.push_back(body.empty() ? 0 : off % (body.size() + 1));
  }
  std::sort(cuts.begin(), cuts.end());

  const Run split = run(mode, body, cuts);
  const Run whole = run(mode, body, {});
  if (fuzz::debug()) {
    std::fprintf(stderr, "mode %u: %s, done=%d, %zu payload bytes\n", mode,
                 whole.status ? "ok" : whole.status.message().c_str(), whole.done, whole.out.size());
  }
  TAGD_FUZZ_CHECK(split.status.is_ok() == whole.status.is_ok());
  TAGD_FUZZ_CHECK(split.status.code() == whole.status.code());
  TAGD_FUZZ_CHECK(split.done == whole.done);
  if (whole.status) {
    TAGD_FUZZ_CHECK(split.out == whole.out);
    TAGD_FUZZ_CHECK(split.trailers == whole.trailers);
  }
  if (body.size() <= 2048) {
    std::vector<std::size_t> every;
    for (std::size_t i = 1; i < body.size(); ++i) every.push_back(i);
    const Run bytewise = run(mode, body, every);
    TAGD_FUZZ_CHECK(bytewise.status.code() == whole.status.code());
    TAGD_FUZZ_CHECK(bytewise.done == whole.done);
    if (whole.status) TAGD_FUZZ_CHECK(bytewise.out == whole.out);
  }
  return 0;
}
