// The on-disk block header (cache/block_format.hpp): bytes read back from the cache file,
// which a torn write, a bit flip or a stale region can make arbitrary.
//
// Input, byte 0 even ("raw"): bytes 1..128 are a header as read from disk, followed by the
//   identity the index expects: u64 key hash, u64 block number, u32 max length (all
//   little-endian), then the ETag.
//   Invariants: an accepted header matches the expected identity and length bound.
// Input, byte 0 odd ("round trip"): identity and payload from the rest (FuzzedDataProvider);
//   decode(encode(x)) == x, the payload verifies, and 1-3 flipped header bits or one
//   flipped payload bit are always detected.
#include <fuzzer/FuzzedDataProvider.h>

#include <array>
#include <cstring>

#include "fuzz_common.hpp"
#include "tagd/cache/block_format.hpp"

using namespace tagd;

namespace {

template <class T>
T read_le(const std::uint8_t* p) {
  T v = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) v |= static_cast<T>(p[i]) << (8 * i);
  return v;
}

using Header = std::array<std::byte, cache::kBlockHeaderSize>;

void raw(const std::uint8_t* data, std::size_t size) {
  if (size < cache::kBlockHeaderSize + 20) return;
  Header header;
  std::memcpy(header.data(), data, header.size());
  data += header.size();
  size -= header.size();
  cache::BlockIdentity expected;
  expected.key_hash = read_le<std::uint64_t>(data);
  expected.block_number = read_le<std::uint64_t>(data + 8);
  const auto max_length = read_le<std::uint32_t>(data + 16);
  expected.etag.assign(reinterpret_cast<const char*>(data + 20), size - 20);
  auto decoded = cache::decode_block_header(header, expected, max_length);
  if (fuzz::debug()) std::fprintf(stderr, "decode: %s\n", decoded ? "ok" : decoded.error().message().c_str());
  if (!decoded) {
    TAGD_FUZZ_CHECK(decoded.error().code() == ErrorCode::kInternalError);
    return;
  }
  TAGD_FUZZ_CHECK(decoded->id.key_hash == expected.key_hash);
  TAGD_FUZZ_CHECK(decoded->id.block_number == expected.block_number);
  TAGD_FUZZ_CHECK(decoded->id.etag == expected.etag);
  TAGD_FUZZ_CHECK(decoded->length <= max_length);
  TAGD_FUZZ_CHECK(cache::stored_block_size(decoded->length, 4096) % 4096 == 0);
}

void round_trip(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider fdp(data, size);
  cache::BlockIdentity id;
  id.key_hash = fdp.ConsumeIntegral<std::uint64_t>();
  id.block_number = fdp.ConsumeIntegral<std::uint64_t>();
  id.etag = fdp.ConsumeRandomLengthString(160);
  const unsigned flips = fdp.ConsumeIntegralInRange<unsigned>(1, 3);
  std::array<unsigned, 3> bits{};
  for (unsigned i = 0; i < flips; ++i) bits[i] = fdp.ConsumeIntegralInRange<unsigned>(0, cache::kBlockHeaderSize * 8 - 1);
  const unsigned payload_bit = fdp.ConsumeIntegral<unsigned>();
  const std::vector<std::uint8_t> bytes = fdp.ConsumeRemainingBytes<std::uint8_t>();
  const std::span<const std::byte> payload(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size());

  Header header;
  cache::encode_block_header(id, payload, header);
  const auto max_length = static_cast<std::uint32_t>(payload.size());
  auto decoded = cache::decode_block_header(header, id, max_length);
  TAGD_FUZZ_CHECK(decoded.has_value());
  TAGD_FUZZ_CHECK(decoded->id.key_hash == id.key_hash);
  TAGD_FUZZ_CHECK(decoded->id.block_number == id.block_number);
  TAGD_FUZZ_CHECK(decoded->id.etag == id.etag);
  TAGD_FUZZ_CHECK(decoded->length == payload.size());
  TAGD_FUZZ_CHECK(cache::verify_block_payload(*decoded, payload).is_ok());
  if (max_length > 0) TAGD_FUZZ_CHECK(!cache::decode_block_header(header, id, max_length - 1).has_value());

  // Another identity never accepts this header.
  cache::BlockIdentity other = id;
  other.block_number ^= 1;
  TAGD_FUZZ_CHECK(!cache::decode_block_header(header, other, max_length).has_value());
  other = id;
  other.etag += 'x';
  TAGD_FUZZ_CHECK(!cache::decode_block_header(header, other, max_length).has_value());

  Header damaged = header;
  for (unsigned i = 0; i < flips; ++i) damaged[bits[i] / 8] ^= std::byte(1u << (bits[i] % 8));
  if (damaged != header) TAGD_FUZZ_CHECK(!cache::decode_block_header(damaged, id, max_length).has_value());

  if (!bytes.empty()) {
    std::vector<std::uint8_t> flipped = bytes;
    const unsigned bit = payload_bit % (flipped.size() * 8);
    flipped[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    const std::span<const std::byte> bad(reinterpret_cast<const std::byte*>(flipped.data()), flipped.size());
    TAGD_FUZZ_CHECK(!cache::verify_block_payload(*decoded, bad).is_ok());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  if (data[0] & 1) {
    round_trip(data + 1, size - 1);
  } else {
    raw(data + 1, size - 1);
  }
  return 0;
}
