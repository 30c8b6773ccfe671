#include "tagd/cache/block_format.hpp"

#include <algorithm>
#include <cstring>

#include "tagd/cache/piece_crc.hpp"

namespace tagd::cache {
namespace {

constexpr std::array<std::byte, 4> kMagic = {std::byte{'T'}, std::byte{'A'}, std::byte{'G'}, std::byte{'B'}};
constexpr std::size_t kEtagBytes = 64;
constexpr std::size_t kPieceCountOffset = 104;
constexpr std::size_t kPieceShiftOffset = 108;
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

std::uint32_t crc(std::span<const std::byte> data) { return piece_crc32c(data); }

Status fail(const std::string& why) { return Status(ErrorCode::kInternalError, "cache block: " + why); }

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

std::vector<std::uint32_t> block_piece_checksums(std::span<const std::byte> payload) {
  std::vector<std::uint32_t> out;
  out.reserve(block_piece_count(static_cast<std::uint32_t>(payload.size())));
  for (std::size_t at = 0; at < payload.size(); at += kBlockPieceSize) {
    out.push_back(crc(payload.subspan(at, std::min<std::size_t>(kBlockPieceSize, payload.size() - at))));
  }
  return out;
}

void encode_block_header(const BlockIdentity& id, std::span<const std::byte> payload,
                         std::span<const std::uint32_t> pieces, std::span<std::byte> out) {
  const auto length = static_cast<std::uint32_t>(payload.size());
  const std::uint32_t count = block_piece_count(length);
  // Invariants of the caller (BlockStore::put), not untrusted input.
  if (pieces.size() != count || out.size() < block_payload_offset(length)) std::abort();
  std::fill(out.begin(), out.begin() + block_payload_offset(length), std::byte{0});
  for (std::uint32_t i = 0; i < count; ++i) put<std::uint32_t>(out, kBlockHeaderSize + 4 * i, pieces[i]);
  std::copy(kMagic.begin(), kMagic.end(), out.begin());
  put<std::uint16_t>(out, 4, kBlockFormatVersion);
  put<std::uint16_t>(out, 6, static_cast<std::uint16_t>(kBlockHeaderSize));
  put<std::uint64_t>(out, 8, id.key_hash);
  put<std::uint64_t>(out, 16, id.block_number);
  put<std::uint32_t>(out, 24, length);
  put<std::uint32_t>(out, 28, crc(out.subspan(kBlockHeaderSize, 4 * count)));
  put<std::uint64_t>(out, 32, hash_bytes(id.etag));
  std::memcpy(out.data() + 40, id.etag.data(), std::min(id.etag.size(), kEtagBytes));
  put<std::uint32_t>(out, kPieceCountOffset, count);
  out[kPieceShiftOffset] = std::byte{kBlockPieceShift};
  put<std::uint32_t>(out, kCrcOffset, crc(out.first(kCrcOffset)));
}

Result<BlockHeader> decode_block_header(std::span<const std::byte> in, const BlockIdentity& expected,
                                        std::uint32_t max_length) {
  if (in.size() < kBlockHeaderSize) return fail("header truncated");
  if (!std::equal(kMagic.begin(), kMagic.end(), in.begin())) return fail("bad magic");
  if (get<std::uint16_t>(in, 4) != kBlockFormatVersion) return fail("unknown format version");
  if (get<std::uint16_t>(in, 6) != kBlockHeaderSize) return fail("bad header size");
  if (get<std::uint32_t>(in, kCrcOffset) != crc(in.first(kCrcOffset))) return fail("header checksum mismatch");
  BlockHeader h;
  h.id.key_hash = get<std::uint64_t>(in, 8);
  h.id.block_number = get<std::uint64_t>(in, 16);
  h.length = get<std::uint32_t>(in, 24);
  const std::uint64_t etag_hash = get<std::uint64_t>(in, 32);
  if (h.id.key_hash != expected.key_hash) return fail("key mismatch");
  if (h.id.block_number != expected.block_number) return fail("block number mismatch");
  if (etag_hash != hash_bytes(expected.etag) ||
      std::memcmp(in.data() + 40, expected.etag.data(), std::min(expected.etag.size(), kEtagBytes)) != 0) {
    return fail("ETag mismatch");
  }
  if (h.length > max_length) return fail("length out of range");
  const std::uint32_t count = get<std::uint32_t>(in, kPieceCountOffset);
  if (count != block_piece_count(h.length) || std::to_integer<std::uint32_t>(in[kPieceShiftOffset]) != kBlockPieceShift) {
    return fail("bad piece geometry");
  }
  if (in.size() < block_payload_offset(h.length)) return fail("piece table truncated");
  const auto table = in.subspan(kBlockHeaderSize, 4 * std::size_t{count});
  if (get<std::uint32_t>(in, 28) != crc(table)) return fail("piece table checksum mismatch");
  h.piece_crc32c.resize(count);
  for (std::uint32_t i = 0; i < count; ++i) h.piece_crc32c[i] = get<std::uint32_t>(table, 4 * i);
  h.id.etag = expected.etag;
  return h;
}

Status verify_block_pieces(std::span<const std::uint32_t> pieces, std::uint32_t length, std::uint32_t first_piece,
                           std::span<const std::byte> bytes) {
  const std::uint64_t start = std::uint64_t{first_piece} << kBlockPieceShift;
  if (pieces.size() != block_piece_count(length) || start + bytes.size() > length ||
      (start + bytes.size() != length && bytes.size() % kBlockPieceSize != 0)) {
    return fail("piece range does not match the block");
  }
  for (std::size_t at = 0, piece = first_piece; at < bytes.size(); at += kBlockPieceSize, ++piece) {
    if (crc(bytes.subspan(at, std::min<std::size_t>(kBlockPieceSize, bytes.size() - at))) != pieces[piece]) {
      return fail("payload checksum mismatch in piece " + std::to_string(piece));
    }
  }
  return Status::ok();
}

std::uint64_t stored_block_size(std::uint32_t length, std::size_t alignment) {
  const std::uint64_t raw = std::uint64_t{block_payload_offset(length)} + length;
  return (raw + alignment - 1) / alignment * alignment;
}

}  // namespace tagd::cache
