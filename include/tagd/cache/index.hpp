#pragma once
// The cache's index: object metadata and block locations. Two implementations behind one
// interface and one typed test suite: RocksDB (persistent, the production path) and memory.
//
// Keys:  "o" bucket \0 key \0 variant          → ObjectMeta (versioned JSON)
//        "b" key_hash(8) etag_hash(8) block(8)  → BlockLocation (fixed 24 bytes)
//        "r" region(4)                          → region generation (8)
//        "p" bucket \0 key \0 variant          → PinRecord (fixed 13 bytes + ETag)
//        "p" bucket \0 prefix \0 \x01           → a pinned prefix (PinRecord, kPinPrefixRecord)
// Pin records are a key family of their own: an index without them (written before pins
// existed) reads as "nothing pinned", and a tagd without pins ignores them, so adding
// them needed no version bump.
// Every variant of one object (plain, versionId=..., snapshot=..., see
// http_semantics.hpp) shares the prefix "o" bucket \0 key \0, so a write erases them all
// with one prefix scan (erase_object_variants), whatever the cache's size.
// Blocks are keyed by the ETag, so an overwrite can never pair new metadata with old
// bytes: old blocks are simply never asked for again, and die with their region.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tagd/core/status.hpp"

namespace tagd::cache {

struct ObjectKey {
  std::string bucket;
  std::string key;
  std::string variant;  // "" = the plain object; e.g. "versionId=3" for a version (make_variant)
  std::string encoded() const;
  // The prefix every variant of (bucket, key) is encoded under.
  static std::string variants_prefix(const std::string& bucket, const std::string& key);
  std::uint64_t hash() const;
};

// The fixed part of a cached object's response head, serialised once per object version
// (http_semantics.hpp, prepare_head).
struct PreparedHead;

struct ObjectMeta {
  std::uint64_t size = 0;
  std::string etag;           // exactly as the upstream sent it, quotes included
  std::string last_modified;  // HTTP date as sent
  // Response headers replayed on a hit: Content-Type, Content-Encoding, Cache-Control,
  // Content-Disposition, Content-Language, Expires, x-amz-meta-*, x-amz-version-id, ...
  std::vector<std::pair<std::string, std::string>> headers;
  std::int64_t fetched_at_ms = 0;   // wall clock
  std::int64_t fresh_until_ms = 0;  // wall clock
  std::uint32_t block_size = 0;     // block size the object was cached with
  // The object's x-amz-checksum-* and x-amz-checksum-type headers, returned only to
  // clients in checksum mode on whole-object responses (return_checksums()). Known once a
  // whole-object answer to a checksum-mode request was seen (a 200, a HEAD, or a 206 that
  // covers every byte); a fill of a range learns nothing about them.
  std::vector<std::pair<std::string, std::string>> checksums;
  bool checksums_known = false;
  // Built by the in-memory index when it installs this version (never encoded): a hit
  // appends it instead of setting every field again. Null when no index prepared it, and
  // reset by whoever changes a copy of the metadata (it would describe the old fields).
  std::shared_ptr<const PreparedHead> prepared;
};
// Metadata encoding version (the "v" field). Entries of another version are dropped on
// read, never misread.
inline constexpr int kObjectMetaVersion = 2;

struct BlockLocation {
  std::uint32_t region = 0;
  std::uint64_t generation = 0;  // the region's generation when written; stale if it moved on
  std::uint64_t offset = 0;      // device offset of the block header
  std::uint32_t length = 0;      // payload bytes
  // The CRC32C of each 64 KiB piece (block_format.hpp), also in the block's own header:
  // kept here so a read of part of a block checks the pieces it reads without reading
  // the header.
  std::vector<std::uint32_t> piece_crc32c;
};
// Block location encoding version: the index directory carries it in its name
// (ObjectCache::open), so an index of another version is never opened.
inline constexpr int kBlockLocationVersion = 2;

// A pinned object (docs/warm.md, "Pins"): enough to name its blocks (ETag, size, block
// size) so start-up can pin them again and unpin can release them; or a pinned prefix.
struct PinRecord {
  std::string etag;
  std::uint64_t size = 0;
  std::uint32_t block_size = 0;
  // Who holds it (kPin* bits): the encoding's byte 12, which records written before owners
  // existed have 0 (held by the key: what every pin was then). A tagd that predates the
  // bits ignores them, and drops prefix records as undecodable (their block size is 0).
  std::uint8_t flags = 0;
};
inline constexpr std::uint8_t kPinPrefixRecord = 1;  // a pinned prefix: ObjectKey::key is the prefix
inline constexpr std::uint8_t kPinNotByKey = 2;      // its key does not hold it (prefix records or a run ahead do)
inline constexpr std::uint8_t kPinUntilRead = 4;     // a key-list job's run ahead, until a client reads it
// The variant that marks a prefix record (no object variant starts with \x01).
inline constexpr std::string_view kPinPrefixVariant = "\x01";

class CacheIndex {
 public:
  virtual ~CacheIndex() = default;
  CacheIndex() = default;
  CacheIndex(const CacheIndex&) = delete;
  CacheIndex& operator=(const CacheIndex&) = delete;

  // Metadata of another encoding version (or undecodable) is erased and reported missing.
  [[nodiscard]] virtual Result<std::optional<ObjectMeta>> get_object(const ObjectKey& key) = 0;
  // get_object without a copy: the in-memory index hands out the version it holds, which
  // nobody changes (a new version replaces it). Null when missing. Default: a copy of
  // get_object's answer.
  [[nodiscard]] virtual Result<std::shared_ptr<const ObjectMeta>> get_object_shared(const ObjectKey& key) {
    auto found = get_object(key);
    if (!found) return found.error();
    if (!found->has_value()) return std::shared_ptr<const ObjectMeta>();
    return std::make_shared<const ObjectMeta>(std::move(**found));
  }
  [[nodiscard]] virtual Status put_object(const ObjectKey& key, const ObjectMeta& meta) = 0;
  [[nodiscard]] virtual Status erase_object(const ObjectKey& key) = 0;
  // Erases every variant of (bucket, key): one prefix scan, O(variants of that key).
  [[nodiscard]] virtual Status erase_object_variants(const std::string& bucket, const std::string& key) = 0;

  [[nodiscard]] virtual Result<std::optional<BlockLocation>> get_block(std::uint64_t key_hash, const std::string& etag,
                                                                       std::uint64_t block) = 0;
  [[nodiscard]] virtual Status put_block(std::uint64_t key_hash, const std::string& etag, std::uint64_t block,
                                         const BlockLocation& location) = 0;
  [[nodiscard]] virtual Status erase_block(std::uint64_t key_hash, const std::string& etag, std::uint64_t block) = 0;

  [[nodiscard]] virtual Status put_region_generation(std::uint32_t region, std::uint64_t generation) = 0;
  // Every region's persisted generation (missing regions: 0).
  [[nodiscard]] virtual Result<std::vector<std::uint64_t>> region_generations(std::uint32_t region_count) = 0;

  // Not pure: an index that keeps no pins (a test's fake) refuses to record one and lists
  // none; both real indexes keep them.
  [[nodiscard]] virtual Status put_pin(const ObjectKey& /*key*/, const PinRecord& /*pin*/) {
    return Status(ErrorCode::kNotImplemented, "this cache index keeps no pins");
  }
  [[nodiscard]] virtual Status erase_pin(const ObjectKey& /*key*/) { return Status::ok(); }
  // Pins of objects in `bucket` whose key starts with `prefix` (an empty bucket: every
  // pin), in key order. Undecodable records are skipped (and erased).
  [[nodiscard]] virtual Result<std::vector<std::pair<ObjectKey, PinRecord>>> pins(const std::string& /*bucket*/,
                                                                                 const std::string& /*prefix*/) {
    return std::vector<std::pair<ObjectKey, PinRecord>>{};
  }
};

std::unique_ptr<CacheIndex> make_memory_index();
// The durable index behind a bounded in-memory copy of what hits need (object metadata
// decoded once, block locations), so a hit costs no RocksDB lookup and no JSON parse.
// Writes go to both (durable first); erasures to both. Entries beyond `max_entries` are
// dropped from memory only (the next lookup reads the durable index again).
// src/cache/memory_cached_index.cpp.
std::unique_ptr<CacheIndex> make_memory_cached_index(std::unique_ptr<CacheIndex> durable, std::size_t max_entries);
// Opens (creating if needed) a RocksDB index in `directory`. Errors: kInternalError with
// RocksDB's message (start-up decides whether to wipe and retry).
Result<std::unique_ptr<CacheIndex>> open_rocksdb_index(const std::string& directory);

// Serialization, exposed for tests and tools.
// nullopt when a string in it is not valid UTF-8 (JSON cannot carry it unchanged).
std::optional<std::string> encode_meta(const ObjectMeta& meta);
std::optional<ObjectMeta> decode_meta(std::string_view data);

}  // namespace tagd::cache
