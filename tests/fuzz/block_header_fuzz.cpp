// The on-disk block header (cache/block_format.hpp): bytes read back from the cache file,
// which a torn write, a bit flip or a stale region can make arbitrary.
//
// Input, byte 0 even ("raw"): byte 1 is t, then 128 + t bytes are a header and piece
//   table as read from disk, followed by the identity the index expects: u64 key hash,
//   u64 block number, u32 max length (all little-endian), then the ETag.
//   Invariants: an accepted header matches the expected identity and length bound, and
//   its piece table has exactly one CRC per 64 KiB piece, all within the bytes given.
// Input, byte 0 odd ("round trip"): identity and payload from the rest (FuzzedDataProvider);
//   decode(encode(x)) == x, every piece verifies (alone and all together), and 1-3
//   flipped header or table bits or one flipped payload bit are always detected.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

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

void raw(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return;
  const std::size_t header_size = cache::kBlockHeaderSize + data[0];
  ++data;
  --size;
  if (size < header_size + 20) return;
  std::vector<std::byte> header(header_size);
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
  TAGD_FUZZ_CHECK(decoded->piece_crc32c.size() == cache::block_piece_count(decoded->length));
  TAGD_FUZZ_CHECK(cache::block_payload_offset(decoded->length) <= header.size());
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
  for (unsigned i = 0; i < flips; ++i) bits[i] = fdp.ConsumeIntegral<unsigned>();
  const unsigned payload_bit = fdp.ConsumeIntegral<unsigned>();
  // Up to three pieces and a bit: every piece-boundary case without huge inputs.
  const auto repeat = fdp.ConsumeIntegralInRange<std::size_t>(1, 4096);
  std::vector<std::uint8_t> bytes = fdp.ConsumeRemainingBytes<std::uint8_t>();
  if (!bytes.empty() && repeat > 1) {
    const std::size_t target = std::min<std::size_t>(bytes.size() * repeat, 3 * cache::kBlockPieceSize + 7);
    bytes.resize(target, static_cast<std::uint8_t>(repeat));
  }
  const std::span<const std::byte> payload(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size());
  const auto length = static_cast<std::uint32_t>(payload.size());

  std::vector<std::byte> header(cache::block_payload_offset(length));
  const auto pieces = cache::block_piece_checksums(payload);
  cache::encode_block_header(id, payload, pieces, header);
  const std::uint32_t max_length = length;
  auto decoded = cache::decode_block_header(header, id, max_length);
  TAGD_FUZZ_CHECK(decoded.has_value());
  TAGD_FUZZ_CHECK(decoded->id.key_hash == id.key_hash);
  TAGD_FUZZ_CHECK(decoded->id.block_number == id.block_number);
  TAGD_FUZZ_CHECK(decoded->id.etag == id.etag);
  TAGD_FUZZ_CHECK(decoded->length == payload.size());
  TAGD_FUZZ_CHECK(decoded->piece_crc32c == pieces);
  TAGD_FUZZ_CHECK(cache::verify_block_pieces(decoded->piece_crc32c, length, 0, payload).is_ok());
  for (std::uint32_t p = 0; p < pieces.size(); ++p) {
    const std::size_t at = std::size_t{p} * cache::kBlockPieceSize;
    const auto one = payload.subspan(at, std::min<std::size_t>(cache::kBlockPieceSize, payload.size() - at));
    TAGD_FUZZ_CHECK(cache::verify_block_pieces(decoded->piece_crc32c, length, p, one).is_ok());
  }
  if (max_length > 0) TAGD_FUZZ_CHECK(!cache::decode_block_header(header, id, max_length - 1).has_value());

  // Another identity never accepts this header.
  cache::BlockIdentity other = id;
  other.block_number ^= 1;
  TAGD_FUZZ_CHECK(!cache::decode_block_header(header, other, max_length).has_value());
  other = id;
  other.etag += 'x';
  TAGD_FUZZ_CHECK(!cache::decode_block_header(header, other, max_length).has_value());

  std::vector<std::byte> damaged = header;
  for (unsigned i = 0; i < flips; ++i) {
    const unsigned bit = bits[i] % (damaged.size() * 8);
    damaged[bit / 8] ^= std::byte(1u << (bit % 8));
  }
  if (damaged != header) TAGD_FUZZ_CHECK(!cache::decode_block_header(damaged, id, max_length).has_value());

  if (!bytes.empty()) {
    std::vector<std::uint8_t> flipped = bytes;
    const unsigned bit = payload_bit % (flipped.size() * 8);
    flipped[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    const std::span<const std::byte> bad(reinterpret_cast<const std::byte*>(flipped.data()), flipped.size());
    TAGD_FUZZ_CHECK(!cache::verify_block_pieces(decoded->piece_crc32c, length, 0, bad).is_ok());
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
