#pragma once
// On-disk block header, format version 1. Every cached block is stored as
//   [BlockHeader: 128 bytes][payload: `length` bytes][zero padding to the device alignment]
// All integers are little-endian, fixed width; the header carries its own CRC32C so a torn
// or overwritten header is detected before its fields are trusted, and the payload's CRC32C
// so a flipped data bit is detected before a client sees it.
//
//   off size field
//     0   4  magic "TAGB"
//     4   2  format version (1)
//     6   2  header size (128)
//     8   8  key hash (of bucket + '\0' + key + '\0' + version selector)
//    16   8  block number within the object
//    24   4  payload length
//    28   4  payload CRC32C
//    32   8  ETag hash (the full ETag, quotes included)
//    40  64  ETag bytes, zero padded (truncated if longer; the hash above still covers all of it)
//   104  20  reserved, zero
//   124   4  header CRC32C (of bytes 0..123)
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "tagd/core/status.hpp"

namespace tagd::cache {

inline constexpr std::size_t kBlockHeaderSize = 128;
inline constexpr std::uint16_t kBlockFormatVersion = 1;

struct BlockIdentity {
  std::uint64_t key_hash = 0;
  std::uint64_t block_number = 0;
  std::string etag;
};

struct BlockHeader {
  BlockIdentity id;
  std::uint32_t length = 0;
  std::uint32_t payload_crc32c = 0;
};

std::uint64_t hash_bytes(std::string_view data);  // 64-bit, stable across runs and builds

// Writes the header for `payload` into out[0..128).
void encode_block_header(const BlockIdentity& id, std::span<const std::byte> payload,
                         std::span<std::byte, kBlockHeaderSize> out);

// Parses and checks a header read from disk against what the index says should be there.
// Errors (all kInternalError, message says which): bad magic, unknown version, header CRC
// mismatch, identity mismatch (key, block number, ETag), length out of range.
Result<BlockHeader> decode_block_header(std::span<const std::byte, kBlockHeaderSize> in, const BlockIdentity& expected,
                                        std::uint32_t max_length);

// Checks the payload against the header's CRC32C.
Status verify_block_payload(const BlockHeader& header, std::span<const std::byte> payload);

// Bytes a block of `length` payload bytes occupies on a device with `alignment`.
std::uint64_t stored_block_size(std::uint32_t length, std::size_t alignment);

}  // namespace tagd::cache
