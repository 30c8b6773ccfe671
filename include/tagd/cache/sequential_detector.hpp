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
// A client that reads in parallel itself (s3transfer: 10 ranged GETs of 8 MiB in flight on
// one object) gets no read-ahead: its own requests already keep the upstream busy, and
// fetches stacked on top of them only compete with them (up to 21 upstream requests were
// in flight for download_file). So the detector also keeps, per object, the ranged GETs
// being answered (ActiveReader) and the fetches in flight (FetchSlot): fetches ahead of
// readers (read-ahead, parallel parts) start only while the object has fewer than
// cache.fetch_parallelism fetches in flight; a fetch a reader waits for always starts
// (and counts).
//
// Threading: shared by every event loop; one mutex around a bounded table (one call per
// ranged GET or upstream fetch, never per byte). A stream not seen for long is forgotten
// (LRU, bounded count), so memory is constant whatever the number of objects; an object's
// activity entry exists only while it has readers or fetches in flight.
#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <utility>

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
  // stream), or nothing. `parallel_reader`: other ranged GETs of the object are being
  // answered now; the stream is marked parallel (until a jump resets it), and a parallel
  // stream's frontier follows its reads, but nothing is fetched ahead.
  std::optional<ByteRange> observe(std::uint64_t key_hash, ByteRange read, std::uint64_t size,
                                   bool parallel_reader = false);
  // What the fetch of observe()'s answer really covered: up to `until` (exclusive; less
  // when the per-object fetch limit or the prefetch budget stopped it, more when it was
  // rounded up to whole parts). The next read that continues the stream asks from there.
  void covered(std::uint64_t key_hash, std::uint64_t until);

  // Per-object activity. begin_reader() returns how many other ranged GETs of the object
  // are being answered; end_reader() when this one's body is gone (ActiveReader does both).
  std::size_t begin_reader(std::uint64_t key_hash);
  void end_reader(std::uint64_t key_hash);
  // Upstream fetches of the object in flight. try_begin_fetch: a fetch ahead of readers,
  // started only below `limit`. begin_fetch: a fetch a reader waits for (never refused).
  bool try_begin_fetch(std::uint64_t key_hash, std::size_t limit);
  void begin_fetch(std::uint64_t key_hash);
  void end_fetch(std::uint64_t key_hash);
  std::size_t fetches_in_flight(std::uint64_t key_hash);
  std::size_t readers(std::uint64_t key_hash);

  const ReadAheadSettings& settings() const noexcept { return settings_; }

 private:
  struct Activity {
    std::size_t readers = 0;
    std::size_t fetches = 0;
  };
  void release_locked(std::unordered_map<std::uint64_t, Activity>::iterator it);
  std::unordered_map<std::uint64_t, Activity> active_;

  struct Stream {
    std::uint64_t frontier = 0;         // one past the furthest byte read
    std::uint64_t window = 0;           // bytes ahead of the frontier to keep fetched
    std::uint64_t requested_until = 0;  // one past the furthest byte already asked for
    unsigned continued = 0;             // reads in a row that continued the stream
    // Reads of this stream were seen overlapping: the client reads in parallel itself, so
    // it gets no read-ahead until the stream is reset by a jump. Sticky, because parallel
    // parts finishing together would otherwise leave one alone for a moment.
    bool parallel = false;
    std::list<std::uint64_t>::iterator lru;
  };
  ReadAheadSettings settings_;
  std::mutex mu_;
  std::unordered_map<std::uint64_t, Stream> streams_;
  std::list<std::uint64_t> lru_;  // front: most recently used
};

// A ranged GET of an object being answered, from its begin_reader() until this is
// dropped (a CachedBody holds it until the body is gone). Move-only.
class ActiveReader {
 public:
  ActiveReader() = default;
  ActiveReader(SequentialDetector& detector, std::uint64_t key_hash)
      : detector_(&detector), key_hash_(key_hash), others_(detector.begin_reader(key_hash)) {}
  ActiveReader(ActiveReader&& o) noexcept
      : detector_(std::exchange(o.detector_, nullptr)), key_hash_(o.key_hash_), others_(o.others_) {}
  ActiveReader& operator=(ActiveReader&& o) noexcept {
    if (this != &o) {
      reset();
      detector_ = std::exchange(o.detector_, nullptr);
      key_hash_ = o.key_hash_;
      others_ = o.others_;
    }
    return *this;
  }
  ~ActiveReader() { reset(); }
  // Other ranged GETs of the object that were being answered when this one began.
  std::size_t others() const noexcept { return others_; }
  void reset() {
    if (detector_ != nullptr) detector_->end_reader(key_hash_);
    detector_ = nullptr;
  }

 private:
  SequentialDetector* detector_ = nullptr;
  std::uint64_t key_hash_ = 0;
  std::size_t others_ = 0;
};

// One upstream fetch of an object counted in flight (begin_fetch or a successful
// try_begin_fetch), until this is dropped or release()d. Move-only.
class FetchSlot {
 public:
  FetchSlot() = default;
  FetchSlot(SequentialDetector& detector, std::uint64_t key_hash) : detector_(&detector), key_hash_(key_hash) {}
  FetchSlot(FetchSlot&& o) noexcept : detector_(std::exchange(o.detector_, nullptr)), key_hash_(o.key_hash_) {}
  FetchSlot& operator=(FetchSlot&& o) noexcept {
    if (this != &o) {
      release();
      detector_ = std::exchange(o.detector_, nullptr);
      key_hash_ = o.key_hash_;
    }
    return *this;
  }
  ~FetchSlot() { release(); }
  void release() {
    if (detector_ != nullptr) detector_->end_fetch(key_hash_);
    detector_ = nullptr;
  }

 private:
  SequentialDetector* detector_ = nullptr;
  std::uint64_t key_hash_ = 0;
};

}  // namespace tagd::cache
