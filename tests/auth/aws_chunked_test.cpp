// Tests for the aws-chunked body decoder.
//
// Vector sources:
//  - Amazon S3 API Reference, "Signature Calculations for the Authorization Header:
//    Transferring Payload in Multiple Chunks" (sigv4-streaming): 64 KiB + 1 KiB of 'a',
//    seed signature 4f232c43..., chunk signatures ad80c730..., 0055627c..., b6c6ea8a...,
//    Content-Length 66824. The same values are asserted by AWS's own C signer
//    (awslabs/aws-c-auth tests/test_chunked_signing.c).
//  - Signed trailers: aws-c-auth tests/test_chunked_signing.c signs the trailers
//    first:1st, second:2nd, third:3rd after the final chunk above and expects
//    df5735bd...; that pins the documented rule (hash of the "name:value\n" lines).
//  - x-amz-checksum-crc32c of "a" = wdBDMA== (aws-c-auth); other digests are the FIPS /
//    RevEng check values also used in hashing_test.cpp.
#include "tagd/auth/aws_chunked.hpp"

#include <gtest/gtest.h>

#include <random>
#include <set>
#include <string>
#include <vector>

namespace tagd::auth {
namespace {

constexpr std::string_view kSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
constexpr std::string_view kAmzDate = "20130524T000000Z";
const CredentialScope kScope{"20130524", "us-east-1", "s3"};
constexpr std::string_view kSeed = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
constexpr std::string_view kSig1 = "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648";
constexpr std::string_view kSig2 = "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497";
constexpr std::string_view kSigFinal = "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9";
constexpr std::string_view kTrailerSig = "df5735bd9f3295cd9386572292562fefc93ba94e80a0a1ddcbd652c4e0a75e6c";

AwsChunkedOptions signed_options() {
  AwsChunkedOptions o;
  o.signed_chunks = true;
  o.signing_key = signing_key(kSecret, kScope);
  o.amz_date = std::string(kAmzDate);
  o.scope = kScope;
  o.seed_signature = std::string(kSeed);
  return o;
}

AwsChunkedOptions unsigned_options(std::vector<std::string> trailers) {
  AwsChunkedOptions o;
  o.expected_trailers = std::move(trailers);
  return o;
}

std::string chunk(std::string_view data, std::string_view signature) {
  std::string out;
  char size[32];
  std::snprintf(size, sizeof(size), "%zx", data.size());
  out += size;
  if (!signature.empty()) {
    out += ";chunk-signature=";
    out += signature;
  }
  out += "\r\n";
  out += data;
  if (!data.empty()) out += "\r\n";
  return out;
}

// The S3 documentation's chunked PUT body, without the final empty line.
std::string s3_example_chunks() {
  return chunk(std::string(65536, 'a'), kSig1) + chunk(std::string(1024, 'a'), kSig2) + chunk("", kSigFinal);
}

std::string s3_example_body() {
  return s3_example_chunks() + "\r\n";
}

struct Decoded {
  Status status;
  std::string out;
  bool done = false;
  std::uint64_t decoded_bytes = 0;
  std::vector<std::pair<std::string, std::string>> trailers;
};

// Feeds `body` cut at `cuts` (ascending offsets) and stops at the first error.
Decoded decode(const AwsChunkedOptions& options, std::string_view body,
               const std::vector<std::size_t>& cuts = {}) {
  AwsChunkedDecoder d(options);
  Decoded r;
  std::size_t pos = 0;
  auto feed_to = [&](std::size_t end) {
    if (!r.status.is_ok()) return;
    r.status = d.feed(body.substr(pos, end - pos), r.out);
    pos = end;
  };
  for (const std::size_t cut : cuts) feed_to(cut);
  feed_to(body.size());
  r.done = d.done();
  r.decoded_bytes = d.decoded_bytes();
  r.trailers = d.trailers();
  return r;
}

Decoded decode_bytewise(const AwsChunkedOptions& options, std::string_view body) {
  std::vector<std::size_t> cuts;
  for (std::size_t i = 1; i < body.size(); ++i) cuts.push_back(i);
  return decode(options, body, cuts);
}

void expect_ok(const Decoded& r, std::string_view payload) {
  EXPECT_TRUE(r.status.is_ok()) << r.status.message();
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.out.size(), payload.size());
  EXPECT_TRUE(r.out == payload);
  EXPECT_EQ(r.decoded_bytes, payload.size());
}

void expect_error(const Decoded& r, ErrorCode code) {
  EXPECT_FALSE(r.status.is_ok());
  EXPECT_EQ(r.status.code(), code) << s3_code(r.status.code()) << ": " << r.status.message();
  EXPECT_FALSE(r.done);
}

std::string checksum_b64(ChecksumAlgorithm algorithm, std::string_view data) {
  auto h = make_hasher(algorithm);
  h->update(data);
  return base64_encode(h->finish());
}

// ---------------------------------------------------------------------------------------
// The S3 documentation example.

TEST(AwsChunkedTest, ChunkSignaturesReproduceTheDocumentedChain) {
  const Sha256Digest key = signing_key(kSecret, kScope);
  EXPECT_EQ(chunk_signature(key, kAmzDate, kScope, kSeed, sha256_hex(std::string(65536, 'a'))), kSig1);
  EXPECT_EQ(chunk_signature(key, kAmzDate, kScope, kSig1, sha256_hex(std::string(1024, 'a'))), kSig2);
  EXPECT_EQ(chunk_signature(key, kAmzDate, kScope, kSig2, kEmptySha256), kSigFinal);
}

TEST(AwsChunkedTest, S3ExampleWholeBody) {
  const std::string body = s3_example_body();
  ASSERT_EQ(body.size(), 66824U);  // the example's Content-Length
  const Decoded r = decode(signed_options(), body);
  expect_ok(r, std::string(66560, 'a'));
  EXPECT_TRUE(r.trailers.empty());
}

TEST(AwsChunkedTest, S3ExampleOneByteAtATime) {
  expect_ok(decode_bytewise(signed_options(), s3_example_body()), std::string(66560, 'a'));
}

TEST(AwsChunkedTest, S3ExampleRandomSplits) {
  const std::string body = s3_example_body();
  const std::string payload(66560, 'a');
  std::mt19937 rng(1234);
  for (int round = 0; round < 200; ++round) {
    std::vector<std::size_t> cuts;
    const std::size_t max_piece = round % 3 == 0 ? 8 : round % 3 == 1 ? 300 : 20000;
    std::size_t pos = 0;
    while (true) {
      pos += 1 + rng() % max_piece;
      if (pos >= body.size()) break;
      cuts.push_back(pos);
    }
    const Decoded r = decode(signed_options(), body, cuts);
    ASSERT_TRUE(r.status.is_ok()) << "round " << round << ": " << r.status.message();
    ASSERT_TRUE(r.done) << "round " << round;
    ASSERT_TRUE(r.out == payload) << "round " << round;
  }
}

TEST(AwsChunkedTest, S3ExampleEveryTwoWaySplitNearFraming) {
  const std::string body = s3_example_body();
  const std::string payload(66560, 'a');
  // Every offset where framing lives (chunk lines, CRLFs, the end) plus a stride through
  // the data; splitting inside long runs of 'a' is all alike.
  const std::size_t first_data_end = 88 + 65536;
  std::set<std::size_t> splits;
  for (std::size_t i = 0; i <= 120; ++i) splits.insert(i);
  for (std::size_t i = first_data_end - 20; i <= first_data_end + 120; ++i) splits.insert(i);
  for (std::size_t i = body.size() - 260; i <= body.size(); ++i) splits.insert(i);
  for (std::size_t i = 0; i <= body.size(); i += 997) splits.insert(i);
  for (const std::size_t split : splits) {
    const Decoded r = decode(signed_options(), body, {split});
    ASSERT_TRUE(r.status.is_ok()) << split << ": " << r.status.message();
    ASSERT_TRUE(r.done) << split;
    ASSERT_TRUE(r.out == payload) << split;
  }
}

// A small signed body lets every 2- and 3-way split be tried.
TEST(AwsChunkedTest, SmallSignedBodyEveryTwoAndThreeWaySplit) {
  const Sha256Digest key = signing_key(kSecret, kScope);
  const std::string s1 = chunk_signature(key, kAmzDate, kScope, kSeed, sha256_hex("hello"));
  const std::string s2 = chunk_signature(key, kAmzDate, kScope, s1, sha256_hex("abc"));
  const std::string s3 = chunk_signature(key, kAmzDate, kScope, s2, kEmptySha256);
  const std::string body = chunk("hello", s1) + chunk("abc", s2) + chunk("", s3) + "\r\n";
  for (std::size_t a = 0; a <= body.size(); ++a) {
    for (std::size_t b = a; b <= body.size(); ++b) {
      const Decoded r = decode(signed_options(), body, {a, b});
      ASSERT_TRUE(r.status.is_ok()) << a << "," << b << ": " << r.status.message();
      ASSERT_TRUE(r.done) << a << "," << b;
      ASSERT_EQ(r.out, "helloabc") << a << "," << b;
    }
  }
}

// ---------------------------------------------------------------------------------------
// Tampering and truncation in signed mode.

TEST(AwsChunkedTest, TamperedChunkDataIsRejected) {
  std::string body = s3_example_body();
  // First byte of chunk 1, middle of chunk 1, middle of chunk 2 (which ends 88 bytes
  // before the end: CRLF, the 84-byte final chunk line, CRLF).
  for (const std::size_t at : {std::size_t{88}, std::size_t{88 + 40000}, body.size() - 88 - 500}) {
    std::string t = body;
    ASSERT_EQ(t[at], 'a');
    t[at] = 'b';
    expect_error(decode(signed_options(), t), ErrorCode::kSignatureDoesNotMatch);
  }
}

TEST(AwsChunkedTest, TamperedSignaturesAreRejected) {
  const std::string body = s3_example_body();
  for (const std::string_view sig : {kSig1, kSig2, kSigFinal}) {
    std::string t = body;
    const std::size_t at = t.find(sig);
    ASSERT_NE(at, std::string::npos);
    t[at + 10] = t[at + 10] == '0' ? '1' : '0';
    expect_error(decode(signed_options(), t), ErrorCode::kSignatureDoesNotMatch);
  }
  // Right signatures in the wrong order break the chain too.
  const std::string swapped = chunk(std::string(65536, 'a'), kSig2) + chunk(std::string(1024, 'a'), kSig1) +
                              chunk("", kSigFinal) + "\r\n";
  expect_error(decode(signed_options(), swapped), ErrorCode::kSignatureDoesNotMatch);
  // A different seed (another request's signature) invalidates the first chunk.
  AwsChunkedOptions other = signed_options();
  other.seed_signature = std::string(kSig1);
  expect_error(decode(other, body), ErrorCode::kSignatureDoesNotMatch);
}

TEST(AwsChunkedTest, TruncatedBodyIsNotDone) {
  const std::string body = s3_example_body();
  for (const std::size_t keep :
       {std::size_t{0}, std::size_t{5}, std::size_t{88}, std::size_t{30000}, std::size_t{88 + 65536 + 1},
        body.size() - 84 - 2, body.size() - 3, body.size() - 2, body.size() - 1}) {
    const Decoded r = decode(signed_options(), std::string_view(body).substr(0, keep));
    EXPECT_TRUE(r.status.is_ok()) << keep << ": " << r.status.message();
    EXPECT_FALSE(r.done) << keep;
  }
}

TEST(AwsChunkedTest, SignedFramingIsStrict) {
  const std::string data(1024, 'a');
  const std::string sig(kSig1);
  const std::string tail = "\r\n" + data + "\r\n";
  const std::string bad_headers[] = {
      "4g0;chunk-signature=" + sig,
      ";chunk-signature=" + sig,
      "400",
      "400;",
      "400;chunk-signature=",
      "400;chunk-signature=" + sig.substr(1),
      "400;chunk-signature=" + sig + "0",
      "400;chunk-signature=" + sig + ";x=y",
      "400;x=y;chunk-signature=" + sig,
      "400 ;chunk-signature=" + sig,
      "400;chunk-signature =" + sig,
      "400;Chunk-Signature=" + sig,
      "400;chunk-signature=AD80C730A21E5B8D04586A2213DD63B9A0E99E0E2307B0ADE35A65485A288648",
      "0x400;chunk-signature=" + sig,
      "-400;chunk-signature=" + sig,
      "10000000000000000;chunk-signature=" + sig,  // 17 hex digits: overflows 64 bits
  };
  for (const auto& header : bad_headers) {
    expect_error(decode(signed_options(), header + tail), ErrorCode::kInvalidRequest);
  }
}

TEST(AwsChunkedTest, LineEndingsAndLimits) {
  const std::string line = "10000;chunk-signature=" + std::string(kSig1);
  // Bare LF, stray CR.
  expect_error(decode(signed_options(), line + "\n"), ErrorCode::kInvalidRequest);
  expect_error(decode(signed_options(), "100\r00;chunk-signature=" + std::string(kSig1) + "\r\n"),
               ErrorCode::kInvalidRequest);
  // Chunk data not followed by CRLF.
  std::string body = s3_example_body();
  body[88 + 65536] = 'x';
  expect_error(decode(signed_options(), body), ErrorCode::kInvalidRequest);
  // A chunk header that never ends is cut off at max_chunk_header, whatever the split.
  const std::string endless(5000, '0');
  expect_error(decode(signed_options(), endless), ErrorCode::kInvalidRequest);
  expect_error(decode_bytewise(signed_options(), endless), ErrorCode::kInvalidRequest);
  AwsChunkedOptions small = signed_options();
  small.max_chunk_header = line.size() + 1;  // one byte short of the CRLF
  expect_error(decode(small, s3_example_body()), ErrorCode::kInvalidRequest);
  small.max_chunk_header = line.size() + 2;
  expect_ok(decode(small, s3_example_body()), std::string(66560, 'a'));
}

TEST(AwsChunkedTest, BytesAfterTheEndAreRejectedAndErrorsAreSticky) {
  AwsChunkedDecoder d(signed_options());
  std::string out;
  ASSERT_TRUE(d.feed(s3_example_body(), out).is_ok());
  ASSERT_TRUE(d.done());
  const Status extra = d.feed("x", out);
  EXPECT_EQ(extra.code(), ErrorCode::kInvalidArgument);
  EXPECT_FALSE(d.done());
  EXPECT_EQ(d.feed("", out).code(), ErrorCode::kInvalidArgument);

  AwsChunkedDecoder bad(signed_options());
  std::string t = s3_example_body();
  t[100] = 'b';
  EXPECT_EQ(bad.feed(t, out).code(), ErrorCode::kSignatureDoesNotMatch);
  EXPECT_EQ(bad.feed(s3_example_body(), out).code(), ErrorCode::kSignatureDoesNotMatch);
  EXPECT_FALSE(bad.done());
}

TEST(AwsChunkedTest, TrailersRefusedWithoutTheTrailerVariant) {
  const std::string body = s3_example_chunks() + "x-amz-checksum-crc32:AAAAAA==\r\n\r\n";
  AwsChunkedOptions o = signed_options();
  o.expected_trailers = {"x-amz-checksum-crc32"};
  expect_error(decode(o, body), ErrorCode::kInvalidRequest);
}

// ---------------------------------------------------------------------------------------
// STREAMING-UNSIGNED-PAYLOAD-TRAILER.

struct ChecksumCase {
  std::string_view trailer;
  std::string_view data;
  std::string_view value;  // published / catalogue value
};

TEST(AwsChunkedUnsignedTest, ChecksumTrailersKnownAnswers) {
  const ChecksumCase cases[] = {
      {"x-amz-checksum-crc32", "123456789", "y/Q5Jg=="},
      {"x-amz-checksum-crc32c", "a", "wdBDMA=="},
      {"x-amz-checksum-sha1", "abc", "qZk+NkcGgWq6PiVxeFDCbJzQ2J0="},
      {"x-amz-checksum-sha256", "abc", "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="},
  };
  for (const auto& c : cases) {
    // Split the data over two chunks where there is enough of it, so the checksum streams;
    // an empty chunk would end the body.
    std::string body = chunk(c.data.substr(0, 1), "");
    if (c.data.size() > 1) body += chunk(c.data.substr(1), "");
    body += "0\r\n" + std::string(c.trailer) + ":" + std::string(c.value) + "\r\n\r\n";
    const AwsChunkedOptions o = unsigned_options({std::string(c.trailer)});
    for (const Decoded& r : {decode(o, body), decode_bytewise(o, body)}) {
      expect_ok(r, c.data);
      ASSERT_EQ(r.trailers.size(), 1U) << c.trailer;
      EXPECT_EQ(r.trailers[0].first, c.trailer);
      EXPECT_EQ(r.trailers[0].second, c.value);
    }
  }
}

TEST(AwsChunkedUnsignedTest, LargerBodiesForEveryAlgorithm) {
  std::mt19937 rng(99);
  std::string payload(70000, '\0');
  for (char& c : payload) c = static_cast<char>(rng());
  const std::pair<std::string_view, ChecksumAlgorithm> algorithms[] = {
      {"x-amz-checksum-crc32", ChecksumAlgorithm::kCrc32},
      {"x-amz-checksum-crc32c", ChecksumAlgorithm::kCrc32c},
      {"x-amz-checksum-sha1", ChecksumAlgorithm::kSha1},
      {"x-amz-checksum-sha256", ChecksumAlgorithm::kSha256},
  };
  for (const auto& [name, algorithm] : algorithms) {
    const std::string body = chunk(std::string_view(payload).substr(0, 65536), "") +
                             chunk(std::string_view(payload).substr(65536), "") + "0\r\n" +
                             std::string(name) + ":" + checksum_b64(algorithm, payload) + "\r\n\r\n";
    const AwsChunkedOptions o = unsigned_options({std::string(name)});
    expect_ok(decode(o, body), payload);
    expect_ok(decode(o, body, {3, 70, 65540, 65600, 70010, body.size() - 3}), payload);

    // Same framing, checksum of different data.
    const std::string wrong = chunk(payload, "") + "0\r\n" + std::string(name) + ":" +
                              checksum_b64(algorithm, payload.substr(1)) + "\r\n\r\n";
    expect_error(decode(o, wrong), ErrorCode::kBadDigest);
  }
}

TEST(AwsChunkedUnsignedTest, BadChecksumValues) {
  const AwsChunkedOptions o = unsigned_options({"x-amz-checksum-crc32"});
  auto body_with = [](std::string_view value) {
    return chunk("123456789", "") + "0\r\nx-amz-checksum-crc32:" + std::string(value) + "\r\n\r\n";
  };
  expect_ok(decode(o, body_with("y/Q5Jg==")), "123456789");
  expect_ok(decode(o, body_with("  y/Q5Jg==  ")), "123456789");  // optional whitespace around the value
  expect_error(decode(o, body_with("y/Q5Jw==")), ErrorCode::kBadDigest);
  expect_error(decode(o, body_with("AAAAAA==")), ErrorCode::kBadDigest);
  expect_error(decode(o, body_with("y/Q5Jg")), ErrorCode::kInvalidDigest);
  expect_error(decode(o, body_with("not base64!")), ErrorCode::kInvalidDigest);
  expect_error(decode(o, body_with("")), ErrorCode::kInvalidDigest);
  expect_error(decode(o, body_with("y/Q5JgAA")), ErrorCode::kInvalidDigest);  // 6 bytes, crc32 has 4
}

TEST(AwsChunkedUnsignedTest, AnnouncedTrailersMustMatchWhatArrives) {
  const std::string data = chunk("123456789", "");
  const AwsChunkedOptions crc = unsigned_options({"x-amz-checksum-crc32"});
  // Missing announced trailer.
  expect_error(decode(crc, data + "0\r\n\r\n"), ErrorCode::kInvalidRequest);
  // Not announced.
  expect_error(decode(unsigned_options({}), data + "0\r\nx-amz-checksum-crc32:y/Q5Jg==\r\n\r\n"),
               ErrorCode::kInvalidRequest);
  expect_error(decode(crc, data + "0\r\nx-amz-checksum-crc32:y/Q5Jg==\r\nx-amz-meta-a:b\r\n\r\n"),
               ErrorCode::kInvalidRequest);
  // Repeated.
  expect_error(
      decode(crc, data + "0\r\nx-amz-checksum-crc32:y/Q5Jg==\r\nx-amz-checksum-crc32:y/Q5Jg==\r\n\r\n"),
      ErrorCode::kInvalidRequest);
  // A trailer signature where none was negotiated.
  expect_error(decode(crc, data + "0\r\nx-amz-checksum-crc32:y/Q5Jg==\r\nx-amz-trailer-signature:" +
                               std::string(kTrailerSig) + "\r\n\r\n"),
               ErrorCode::kInvalidRequest);
  // Malformed trailer lines.
  expect_error(decode(crc, data + "0\r\nx-amz-checksum-crc32 y/Q5Jg==\r\n\r\n"), ErrorCode::kInvalidRequest);
  expect_error(decode(crc, data + "0\r\n:y/Q5Jg==\r\n\r\n"), ErrorCode::kInvalidRequest);
  // Names are case-insensitive on the wire.
  expect_ok(decode(crc, data + "0\r\nX-Amz-Checksum-CRC32:y/Q5Jg==\r\n\r\n"), "123456789");
  // No trailers at all in plain unsigned aws-chunked.
  expect_ok(decode(unsigned_options({}), data + "0\r\n\r\n"), "123456789");
  // Truncated before the final empty line.
  const Decoded cut = decode(crc, data + "0\r\nx-amz-checksum-crc32:y/Q5Jg==\r\n");
  EXPECT_TRUE(cut.status.is_ok());
  EXPECT_FALSE(cut.done);
}

TEST(AwsChunkedUnsignedTest, ExtensionsAreAllowedButSizesStillChecked) {
  const AwsChunkedOptions o = unsigned_options({});
  expect_ok(decode(o, "9;foo=bar;baz\r\n123456789\r\n0;last\r\n\r\n"), "123456789");
  expect_ok(decode(o, "9;chunk-signature=whatever\r\n123456789\r\n0\r\n\r\n"), "123456789");
  expect_ok(decode(o, "0009\r\n123456789\r\n0\r\n\r\n"), "123456789");
  expect_error(decode(o, "9 \r\n123456789\r\n0\r\n\r\n"), ErrorCode::kInvalidRequest);
  expect_error(decode(o, "z\r\n"), ErrorCode::kInvalidRequest);
  expect_error(decode(o, "\r\n"), ErrorCode::kInvalidRequest);
  expect_error(decode(o, "fffffffffffffffff\r\n"), ErrorCode::kInvalidRequest);
  expect_error(decode(o, std::string("9;a\0b\r\n", 7)), ErrorCode::kInvalidRequest);
}

TEST(AwsChunkedUnsignedTest, UnsupportedChecksumTrailerFailsUpFront) {
  const Decoded r = decode(unsigned_options({"x-amz-checksum-crc64nvme"}), "0\r\n\r\n");
  expect_error(r, ErrorCode::kInvalidRequest);
}

TEST(AwsChunkedUnsignedTest, TrailerSectionIsBounded) {
  AwsChunkedOptions o = unsigned_options({"x-amz-meta-big"});
  o.max_trailer_bytes = 100;
  const std::string head = chunk("x", "") + "0\r\n";
  expect_ok(decode(o, head + "x-amz-meta-big:" + std::string(50, 'v') + "\r\n\r\n"), "x");
  expect_error(decode(o, head + "x-amz-meta-big:" + std::string(200, 'v') + "\r\n\r\n"),
               ErrorCode::kInvalidRequest);
  expect_error(decode_bytewise(o, head + "x-amz-meta-big:" + std::string(200, 'v')),
               ErrorCode::kInvalidRequest);
}

// ---------------------------------------------------------------------------------------
// STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER.

AwsChunkedOptions signed_trailer_options(std::vector<std::string> trailers) {
  AwsChunkedOptions o = signed_options();
  o.signed_trailer = true;
  o.expected_trailers = std::move(trailers);
  return o;
}

TEST(AwsChunkedSignedTrailerTest, AwsCAuthTrailerVector) {
  const Sha256Digest key = signing_key(kSecret, kScope);
  EXPECT_EQ(trailer_signature(key, kAmzDate, kScope, kSigFinal, "first:1st\nsecond:2nd\nthird:3rd\n"),
            kTrailerSig);

  const std::string body =
      s3_example_chunks() +
      "first:1st\r\nsecond:2nd\r\nthird:3rd\r\nx-amz-trailer-signature:" + std::string(kTrailerSig) +
      "\r\n\r\n";
  const AwsChunkedOptions o = signed_trailer_options({"first", "second", "third"});
  for (const Decoded& r : {decode(o, body), decode_bytewise(o, body)}) {
    expect_ok(r, std::string(66560, 'a'));
    const std::vector<std::pair<std::string, std::string>> expected = {
        {"first", "1st"}, {"second", "2nd"}, {"third", "3rd"}};
    EXPECT_EQ(r.trailers, expected);
  }
  // The hash covers the trailers in name order, whatever order they arrive in.
  const std::string reordered =
      s3_example_chunks() +
      "third:3rd\r\nfirst:1st\r\nsecond:2nd\r\nx-amz-trailer-signature:" + std::string(kTrailerSig) +
      "\r\n\r\n";
  expect_ok(decode(o, reordered), std::string(66560, 'a'));
  // Any changed value breaks it.
  const std::string changed =
      s3_example_chunks() +
      "first:1st\r\nsecond:2nd\r\nthird:4th\r\nx-amz-trailer-signature:" + std::string(kTrailerSig) +
      "\r\n\r\n";
  expect_error(decode(o, changed), ErrorCode::kSignatureDoesNotMatch);
}

// Built like aws-c-auth's integration body: one byte "a", crc32c trailer, signed.
class SignedChecksumTrailerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    key_ = signing_key(kSecret, kScope);
    sig1_ = chunk_signature(key_, kAmzDate, kScope, kSeed, sha256_hex("a"));
    final_ = chunk_signature(key_, kAmzDate, kScope, sig1_, kEmptySha256);
  }

  // The documented trailer string to sign, assembled by hand rather than through
  // trailer_signature() so the decoder is checked against the rule, not against itself.
  std::string manual_trailer_signature(std::string_view trailer_block) const {
    const std::string sts = "AWS4-HMAC-SHA256-TRAILER\n" + std::string(kAmzDate) + "\n" + kScope.to_string() +
                            "\n" + final_ + "\n" + sha256_hex(trailer_block);
    return to_hex(hmac_sha256(key_, sts));
  }

  std::string body(std::string_view checksum, std::string_view signature) const {
    std::string b =
        chunk("a", sig1_) + chunk("", final_) + "x-amz-checksum-crc32c:" + std::string(checksum) + "\r\n";
    if (!signature.empty()) b += "x-amz-trailer-signature:" + std::string(signature) + "\r\n";
    return b + "\r\n";
  }

  Sha256Digest key_{};
  std::string sig1_;
  std::string final_;
  const AwsChunkedOptions options_ = signed_trailer_options({"x-amz-checksum-crc32c"});
};

TEST_F(SignedChecksumTrailerTest, GoodBody) {
  const std::string sig = manual_trailer_signature("x-amz-checksum-crc32c:wdBDMA==\n");
  EXPECT_EQ(trailer_signature(key_, kAmzDate, kScope, final_, "x-amz-checksum-crc32c:wdBDMA==\n"), sig);
  const std::string b = body("wdBDMA==", sig);
  for (const Decoded& r : {decode(options_, b), decode_bytewise(options_, b)}) {
    expect_ok(r, "a");
    ASSERT_EQ(r.trailers.size(), 1U);
    EXPECT_EQ(r.trailers[0], (std::pair<std::string, std::string>{"x-amz-checksum-crc32c", "wdBDMA=="}));
  }
}

TEST_F(SignedChecksumTrailerTest, TamperedTrailerValue) {
  const std::string sig = manual_trailer_signature("x-amz-checksum-crc32c:wdBDMA==\n");
  expect_error(decode(options_, body("AAAAAA==", sig)), ErrorCode::kSignatureDoesNotMatch);
}

TEST_F(SignedChecksumTrailerTest, TamperedTrailerSignature) {
  std::string sig = manual_trailer_signature("x-amz-checksum-crc32c:wdBDMA==\n");
  sig[0] = sig[0] == 'a' ? 'b' : 'a';
  expect_error(decode(options_, body("wdBDMA==", sig)), ErrorCode::kSignatureDoesNotMatch);
  expect_error(decode(options_, body("wdBDMA==", "nothex")), ErrorCode::kSignatureDoesNotMatch);
}

TEST_F(SignedChecksumTrailerTest, MissingTrailerSignature) {
  expect_error(decode(options_, body("wdBDMA==", "")), ErrorCode::kSignatureDoesNotMatch);
}

TEST_F(SignedChecksumTrailerTest, SignedButWrongChecksumIsBadDigest) {
  const std::string sig = manual_trailer_signature("x-amz-checksum-crc32c:AAAAAA==\n");
  expect_error(decode(options_, body("AAAAAA==", sig)), ErrorCode::kBadDigest);
}

TEST_F(SignedChecksumTrailerTest, MissingAnnouncedTrailer) {
  const std::string sig = manual_trailer_signature("");
  const std::string b = chunk("a", sig1_) + chunk("", final_) + "x-amz-trailer-signature:" + sig + "\r\n\r\n";
  expect_error(decode(options_, b), ErrorCode::kInvalidRequest);
}

TEST_F(SignedChecksumTrailerTest, ChunkTamperingStillCaughtFirst) {
  const std::string sig = manual_trailer_signature("x-amz-checksum-crc32c:wdBDMA==\n");
  std::string b = body("wdBDMA==", sig);
  const std::size_t data_at = b.find("\r\na\r\n") + 2;
  b[data_at] = 'b';
  expect_error(decode(options_, b), ErrorCode::kSignatureDoesNotMatch);
}

}  // namespace
}  // namespace tagd::auth
