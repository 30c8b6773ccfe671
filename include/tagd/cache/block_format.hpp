#pragma once
// On-disk block format, version 2. Every cached block is stored as
//   [BlockHeader: 128 bytes][piece table: 4 bytes per piece][payload: `length` bytes]
//   [zero padding to the device alignment]
// The payload is cut into pieces of kBlockPieceSize (64 KiB; the last may be shorter),
// each with its own CRC32C, so a read of a few KiB inside a 1 MiB block reads and checks
// only the pieces it needs (version 1 had one CRC per block: any read had to read all of
// it). All integers are little-endian, fixed width. The header carries its own CRC32C so
// a torn or overwritten header is detected before its fields are trusted.
//
//   off size field
//     0   4  magic "TAGB"
//     4   2  format version (2)
//     6   2  header size (128)
//     8   8  key hash (of bucket + '\0' + key + '\0' + version selector)
//    16   8  block number within the object
//    24   4  payload length
//    28   4  CRC32C of the piece table
//    32   8  ETag hash (the full ETag, quotes included)
//    40  64  ETag bytes, zero padded (truncated if longer; the hash above still covers all of it)
//   104   4  piece count (ceil(length / piece size))
//   108   1  log2 of the piece size (16)
//   109  15  reserved, zero
//   124   4  header CRC32C (of bytes 0..123)
//   128  4n  piece CRC32C, piece 0 first
// A block file written by another version is never read: the cache's files carry the
// version in their names, and start-up drops older ones (ObjectCache::open).
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tagd/core/status.hpp"

namespace tagd::cache {

inline constexpr std::size_t kBlockHeaderSize = 128;
inline constexpr std::uint16_t kBlockFormatVersion = 2;
inline constexpr std::uint32_t kBlockPieceShift = 16;
inline constexpr std::uint32_t kBlockPieceSize = 1u << kBlockPieceShift;

struct BlockIdentity {
  std::uint64_t key_hash = 0;
  std::uint64_t block_number = 0;
  std::string etag;
};

struct BlockHeader {
  BlockIdentity id;
  std::uint32_t length = 0;
  std::vector<std::uint32_t> piece_crc32c;
};

std::uint64_t hash_bytes(std::string_view data);  // 64-bit, stable across runs and builds

constexpr std::uint32_t block_piece_count(std::uint32_t length) {
  return (length + kBlockPieceSize - 1) >> kBlockPieceShift;
}
// Where the payload starts inside a stored block: after the header and the piece table.
constexpr std::uint32_t block_payload_offset(std::uint32_t length) {
  return static_cast<std::uint32_t>(kBlockHeaderSize) + 4 * block_piece_count(length);
}
// Bytes a block of `length` payload bytes occupies on a device with `alignment`.
std::uint64_t stored_block_size(std::uint32_t length, std::size_t alignment);

// The CRC32C of each piece of `payload`.
std::vector<std::uint32_t> block_piece_checksums(std::span<const std::byte> payload);

// Writes the header and piece table for `payload` (whose checksums are `pieces`) into
// out[0 .. block_payload_offset(payload.size())).
void encode_block_header(const BlockIdentity& id, std::span<const std::byte> payload,
                         std::span<const std::uint32_t> pieces, std::span<std::byte> out);

// Parses and checks a header and piece table read from disk (`in` holds at least the
// header and the table) against what the index says should be there.
// Errors (all kInternalError, message says which): bad magic, unknown version, header CRC
// mismatch, identity mismatch (key, block number, ETag), length out of range, bad piece
// geometry, piece table CRC mismatch, `in` too short for the table.
Result<BlockHeader> decode_block_header(std::span<const std::byte> in, const BlockIdentity& expected,
                                        std::uint32_t max_length);

// Checks `bytes`, the payload of pieces first_piece.. of a block of `length` payload bytes
// (starting at first_piece's first byte and ending at a piece boundary or the payload's
// end), against the block's piece checksums.
Status verify_block_pieces(std::span<const std::uint32_t> pieces, std::uint32_t length, std::uint32_t first_piece,
                           std::span<const std::byte> bytes);

}  // namespace tagd::cache
