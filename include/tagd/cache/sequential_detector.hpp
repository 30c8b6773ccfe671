#pragma once
// Read-ahead across requests: notices a client reading an object in order (ranged GETs
// that follow one another, as s3transfer, PyTorch readers and mountpoint-style clients
// send) and says which bytes to fetch ahead of it. The window starts small, doubles with
// each read that continues the stream, up to a cap, and resets on a jump, so a random
// reader (a parquet footer, a safetensors header then tensors) costs no prefetch.
//
// "Continues" is judged against the furthest byte read so far, with slack both ways:
// parallel readers (s3transfer's 10 threads over 8 MiB parts) send their parts slightly
// out of order, and that must not look like a jump.
//
// Threading: shared by every event loop; one mutex around a bounded table (one call per
// ranged GET, never per byte). A stream not seen for long is forgotten (LRU, bounded
// count), so memory is constant whatever the number of objects.
#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "tagd/cache/http_semantics.hpp"

namespace tagd::cache {

struct ReadAheadSettings {
  std::uint64_t initial_window = 1ull << 20;  // bytes ahead after the first read that continues a stream
  std::uint64_t max_window = 64ull << 20;     // 0 disables read-ahead
  std::size_t max_streams = 4096;             // objects tracked at once
};

class SequentialDetector {
 public:
  explicit SequentialDetector(ReadAheadSettings settings) : settings_(settings) {}

  // A GET read bytes `read` of the object `key_hash` of `size` bytes. Returns the bytes to
  // fetch ahead of the reader (never past the object's end, never asked twice for one
  // stream), or nothing.
  std::optional<ByteRange> observe(std::uint64_t key_hash, ByteRange read, std::uint64_t size);

  const ReadAheadSettings& settings() const noexcept { return settings_; }

 private:
  struct Stream {
    std::uint64_t frontier = 0;         // one past the furthest byte read
    std::uint64_t window = 0;           // bytes ahead of the frontier to keep fetched
    std::uint64_t requested_until = 0;  // one past the furthest byte already asked for
    unsigned continued = 0;             // reads in a row that continued the stream
    std::list<std::uint64_t>::iterator lru;
  };
  ReadAheadSettings settings_;
  std::mutex mu_;
  std::unordered_map<std::uint64_t, Stream> streams_;
  std::list<std::uint64_t> lru_;  // front: most recently used
};

}  // namespace tagd::cache
