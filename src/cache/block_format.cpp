#include "tagd/cache/block_format.hpp"

#include <algorithm>
#include <cstring>

#include "tagd/auth/hashing.hpp"

namespace tagd::cache {
namespace {

constexpr std::array<std::byte, 4> kMagic = {std::byte{'T'}, std::byte{'A'}, std::byte{'G'}, std::byte{'B'}};
constexpr std::size_t kEtagBytes = 64;
constexpr std::size_t kCrcOffset = 124;

template <class T>
void put(std::span<std::byte> out, std::size_t offset, T value) {
  for (std::size_t i = 0; i < sizeof(T); ++i) out[offset + i] = std::byte((value >> (8 * i)) & 0xFF);
}
template <class T>
T get(std::span<const std::byte> in, std::size_t offset) {
  T value = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) value |= static_cast<T>(std::to_integer<std::uint8_t>(in[offset + i])) << (8 * i);
  return value;
}

std::uint32_t crc(std::span<const std::byte> data) {
  return auth::crc32c(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(data.data()), data.size()));
}

}  // namespace

std::uint64_t hash_bytes(std::string_view data) {
  // FNV-1a, then a 64-bit finalizer (splitmix) so nearby keys spread across bits.
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : data) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 31;
  return h;
}

void encode_block_header(const BlockIdentity& id, std::span<const std::byte> payload,
                         std::span<std::byte, kBlockHeaderSize> out) {
  std::fill(out.begin(), out.end(), std::byte{0});
  std::copy(kMagic.begin(), kMagic.end(), out.begin());
  put<std::uint16_t>(out, 4, kBlockFormatVersion);
  put<std::uint16_t>(out, 6, static_cast<std::uint16_t>(kBlockHeaderSize));
  put<std::uint64_t>(out, 8, id.key_hash);
  put<std::uint64_t>(out, 16, id.block_number);
  put<std::uint32_t>(out, 24, static_cast<std::uint32_t>(payload.size()));
  put<std::uint32_t>(out, 28, crc(payload));
  put<std::uint64_t>(out, 32, hash_bytes(id.etag));
  std::memcpy(out.data() + 40, id.etag.data(), std::min(id.etag.size(), kEtagBytes));
  put<std::uint32_t>(out, kCrcOffset, crc(std::span<const std::byte>(out.data(), kCrcOffset)));
}

Result<BlockHeader> decode_block_header(std::span<const std::byte, kBlockHeaderSize> in, const BlockIdentity& expected,
                                        std::uint32_t max_length) {
  auto fail = [](std::string why) { return Status(ErrorCode::kInternalError, "cache block: " + why); };
  if (!std::equal(kMagic.begin(), kMagic.end(), in.begin())) return fail("bad magic");
  if (get<std::uint16_t>(in, 4) != kBlockFormatVersion) return fail("unknown format version");
  if (get<std::uint16_t>(in, 6) != kBlockHeaderSize) return fail("bad header size");
  if (get<std::uint32_t>(in, kCrcOffset) != crc(std::span<const std::byte>(in.data(), kCrcOffset))) {
    return fail("header checksum mismatch");
  }
  BlockHeader h;
  h.id.key_hash = get<std::uint64_t>(in, 8);
  h.id.block_number = get<std::uint64_t>(in, 16);
  h.length = get<std::uint32_t>(in, 24);
  h.payload_crc32c = get<std::uint32_t>(in, 28);
  std::uint64_t etag_hash = get<std::uint64_t>(in, 32);
  if (h.id.key_hash != expected.key_hash) return fail("key mismatch");
  if (h.id.block_number != expected.block_number) return fail("block number mismatch");
  if (etag_hash != hash_bytes(expected.etag) ||
      std::memcmp(in.data() + 40, expected.etag.data(), std::min(expected.etag.size(), kEtagBytes)) != 0) {
    return fail("ETag mismatch");
  }
  if (h.length > max_length) return fail("length out of range");
  h.id.etag = expected.etag;
  return h;
}

Status verify_block_payload(const BlockHeader& header, std::span<const std::byte> payload) {
  if (payload.size() != header.length) return Status(ErrorCode::kInternalError, "cache block: length mismatch");
  if (crc(payload) != header.payload_crc32c) {
    return Status(ErrorCode::kInternalError, "cache block: payload checksum mismatch");
  }
  return Status::ok();
}

std::uint64_t stored_block_size(std::uint32_t length, std::size_t alignment) {
  std::uint64_t raw = kBlockHeaderSize + length;
  return (raw + alignment - 1) / alignment * alignment;
}

}  // namespace tagd::cache
