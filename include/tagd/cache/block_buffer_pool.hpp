#pragma once
// Buffers of blocks being filled (InflightBlock), recycled when their last reference drops.
//
// Why: a fill's block buffer lives on as the DRAM tier's copy of the block (BlockData) and
// dies when the tier evicts it, the writer has written it and no reader holds it. Taking
// each new one from malloc cost a page fault per 4 KiB on every fill: glibc serves 1 MiB
// from mmap (munmap on free) and trims the heap under smaller ones, so the kernel zeroes
// fresh pages for every block (about a fifth of tagd's CPU on a miss). Reusing the buffers
// the tier evicts keeps a cache whose tier is full from touching fresh memory at all.
//
// Bounds: buffers are in use (held by fills, the DRAM tier or readers: counted where they
// are held) or idle in the pool, at most `idle_limit` bytes (tagd_cache_fill_buffer_pool_bytes;
// ObjectCache sets it to an eighth of cache.memory_size, at least 8 blocks). A buffer given
// back beyond the limit frees idle ones of other sizes first (the sizes in use now are the
// ones worth keeping), else is freed itself.
//
// Sizes: a buffer's capacity is its length rounded up to a quarter of its power of two
// (100 KiB -> 112 KiB), so objects of any size share a few classes; the DRAM tier counts
// that capacity (BlockData::footprint). Below 64 KiB glibc's own bins do as well, and
// buffers are not pooled.
//
// Bytes are never zero-filled: a buffer's size() is what was appended.
//
// Pooled buffers live in memfd slots (BufferSlabs) so a hit can be sent from the file
// (BlockBuffer::file); a slot whose pages were lent to the kernel gets fresh pages before
// it is filled again. Plain memory when that is off or refused.
// Threading: one mutex, taken once per block acquired or given back (any thread).
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "tagd/cache/buffer_slabs.hpp"

namespace tagd::cache {

class BlockBufferPool;

class BlockBuffer {
 public:
  // Not pooled (tests, and blocks registered without a pool): capacity exactly `length`.
  explicit BlockBuffer(std::size_t length);
  ~BlockBuffer();
  BlockBuffer(const BlockBuffer&) = delete;
  BlockBuffer& operator=(const BlockBuffer&) = delete;

  const std::byte* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  std::size_t capacity() const noexcept { return capacity_; }
  // Appends at most capacity() - size() bytes; returns how many it appended.
  std::size_t append(const std::byte* bytes, std::size_t n) noexcept;

  // The memfd its bytes lie in and their offset there (fd < 0: plain memory).
  int file_descriptor() const noexcept { return fd_; }
  std::uint64_t file_offset() const noexcept { return file_offset_; }
  // Called before its pages are handed to the kernel by reference (sendfile): they may
  // sit in a socket's queue after this buffer is let go of, so they are dropped before
  // the buffer is filled again.
  void lend_to_kernel() const noexcept { lent_to_kernel_.store(true, std::memory_order_relaxed); }

 private:
  friend class BlockBufferPool;
  BlockBuffer(BufferSlabs::Slot slot, std::size_t capacity, std::shared_ptr<BlockBufferPool> pool) noexcept;
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
  int fd_ = -1;
  std::uint64_t file_offset_ = 0;
  mutable std::atomic<bool> lent_to_kernel_{false};
  std::shared_ptr<BlockBufferPool> pool_;  // null: freed, not given back
};

class BlockBufferPool : public std::enable_shared_from_this<BlockBufferPool> {
 public:
  static constexpr std::size_t kMinPooled = 64 * 1024;

  struct Stats {
    std::uint64_t idle_bytes = 0;
    std::uint64_t idle_buffers = 0;
    std::uint64_t allocated = 0;  // buffers taken from malloc
    std::uint64_t reused = 0;     // buffers handed out again
    std::uint64_t freed = 0;      // buffers given back beyond the limit (or on the pool's end)
  };

  // `max_length`: the block size (longer buffers are not pooled). `file_backed`: pooled
  // buffers in memfd slots (false: plain memory, hits always copied).
  // `slab_span`: BufferSlabs' address range per size class (tests shrink it).
  static std::shared_ptr<BlockBufferPool> create(std::uint64_t idle_limit, std::size_t max_length,
                                                 bool file_backed = true,
                                                 std::uint64_t slab_span = BufferSlabs::kClassSpan);
  ~BlockBufferPool();
  BlockBufferPool(const BlockBufferPool&) = delete;
  BlockBufferPool& operator=(const BlockBufferPool&) = delete;

  // An empty buffer of at least `length` bytes; an idle one of its class if there is one.
  // A buffer is idle only once nothing holds it, so no reader ever sees its bytes change.
  std::shared_ptr<BlockBuffer> acquire(std::size_t length);
  // The capacity a buffer of `length` bytes gets (0: not pooled).
  std::size_t capacity_for(std::size_t length) const noexcept;
  std::uint64_t idle_limit() const noexcept { return idle_limit_; }
  Stats stats() const;

 private:
  BlockBufferPool(std::uint64_t idle_limit, std::size_t max_length, bool file_backed, std::uint64_t slab_span);
  friend class BlockBuffer;
  void give_back(std::byte* data, std::size_t capacity, bool lent_to_kernel) noexcept;
  // A buffer no longer kept: a slot goes back to its class holding no memory, else free().
  void discard(std::byte* data, std::size_t capacity) noexcept;
  std::size_t class_of(std::size_t capacity) const noexcept;
  std::size_t capacity_of_class(std::size_t c) const noexcept;

  // Classes: 64 KiB .. max_length in quarter steps of each power of two (4 per doubling,
  // up to 2^24 bytes), the last one being max_length itself.
  static constexpr std::size_t kClasses = 4 * 9 + 1;
  const std::uint64_t idle_limit_;
  const std::size_t max_length_;
  BufferSlabs slabs_;
  mutable std::mutex mu_;
  std::array<std::vector<std::byte*>, kClasses> idle_{};
  std::uint64_t idle_bytes_ = 0;
  std::uint64_t idle_buffers_ = 0;
  std::uint64_t allocated_ = 0;
  std::uint64_t reused_ = 0;
  std::uint64_t freed_ = 0;
};

}  // namespace tagd::cache
