#pragma once
// The storage seam under the block cache: a fixed-size byte range addressed by offset.
// Three implementations share one typed test suite: io_uring (the production path),
// pread/pwrite (fallback when io_uring is unavailable) and memory (tests, fault
// injection).
//
// Shape (as CacheLib Navy's Device): the public calls are not virtual. They check range
// and alignment, loop on short transfers, and count, once, here; an implementation only
// moves bytes (the *_impl calls, which may transfer fewer bytes than asked).
//
// Two ways to read:
// - read()/write()/sync(): synchronous, for start-up and for fills (their writes are not
//   on a hit's path).
// - async_read(): the hit path. Completes on the awaiting coroutine's executor; many may
//   be in flight per event loop, completions in any order, no lock on the way. io_uring:
//   one liburing ring per io_context (a service of that io_context, its eventfd watched
//   by the loop; Asio's own file backend keeps one read in flight per file, so it is not
//   used), so a loop's disk reads complete through the loop that serves its sockets.
//   pread: a small thread pool does the syscall and posts the completion back. memory:
//   completes inline or after an injected delay.
//
// Threading: every call is safe from several event loops at once (positional I/O has no
// shared cursor). Lifetime: the device outlives every io_context that used async_read,
// and no async_read is in flight when an io_context is destroyed (the server stops its
// loops first).
// Alignment: offsets and lengths are multiples of alignment(); with O_DIRECT the buffers
// must be aligned too (AlignedBuffer).
#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "tagd/core/status.hpp"

namespace tagd::cache {

struct BlockDeviceStats {
  std::uint64_t reads = 0;         // completed read() and async_read() calls
  std::uint64_t bytes_read = 0;
  std::uint64_t async_reads = 0;   // of which asynchronous
  std::uint64_t short_reads = 0;   // transfers the implementation returned short (then resumed)
  std::uint64_t read_errors = 0;
  std::uint64_t writes = 0;
  std::uint64_t bytes_written = 0;
  std::uint64_t write_errors = 0;
  std::uint64_t reads_in_flight = 0;      // asynchronous reads started and not completed
  std::uint64_t max_reads_in_flight = 0;  // high-water mark of the above
};

class BlockDevice {
 public:
  virtual ~BlockDevice() = default;
  BlockDevice() = default;
  BlockDevice(const BlockDevice&) = delete;
  BlockDevice& operator=(const BlockDevice&) = delete;

  virtual std::uint64_t size() const noexcept = 0;
  virtual std::size_t alignment() const noexcept = 0;
  virtual const char* kind() const noexcept = 0;  // "io_uring", "pread", "memory"
  // True if the file was opened with O_DIRECT (reads bypass the page cache).
  virtual bool direct() const noexcept { return false; }

  // Errors: kInvalidArgument (out of range or misaligned), kInternalError (I/O error, end
  // of device). A failed write leaves the range's content unspecified.
  [[nodiscard]] Status read(std::uint64_t offset, std::span<std::byte> out);
  [[nodiscard]] Status write(std::uint64_t offset, std::span<const std::byte> data);
  [[nodiscard]] Status sync();
  // Same contract as read(). `out` must stay valid until the awaitable completes.
  [[nodiscard]] boost::asio::awaitable<Status> async_read(std::uint64_t offset, std::span<std::byte> out);

  BlockDeviceStats stats() const noexcept;

 protected:
  // One transfer attempt: the bytes moved, possibly fewer than asked (the base resumes
  // with the rest); 0 means the end of the device; an error Status otherwise.
  virtual Result<std::size_t> read_impl(std::uint64_t offset, std::span<std::byte> out) = 0;
  virtual Result<std::size_t> write_impl(std::uint64_t offset, std::span<const std::byte> data) = 0;
  virtual Status sync_impl() = 0;
  virtual boost::asio::awaitable<Result<std::size_t>> async_read_impl(std::uint64_t offset,
                                                                      std::span<std::byte> out) = 0;

 private:
  Status check_range(std::uint64_t offset, std::size_t length) const;

  struct Counters {
    std::atomic<std::uint64_t> reads{0}, bytes_read{0}, async_reads{0}, short_reads{0}, read_errors{0};
    std::atomic<std::uint64_t> writes{0}, bytes_written{0}, write_errors{0};
    std::atomic<std::uint64_t> reads_in_flight{0}, max_reads_in_flight{0};
  };
  Counters counters_;
};

// Heap buffer aligned for O_DIRECT.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  AlignedBuffer(std::size_t size, std::size_t alignment);
  ~AlignedBuffer();
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  AlignedBuffer(AlignedBuffer&& other) noexcept;
  AlignedBuffer& operator=(AlignedBuffer&& other) noexcept;

  std::byte* data() noexcept { return data_; }
  const std::byte* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  // Bytes actually allocated for it: a pooled buffer is one of two fixed sizes, larger
  // than most reads (what a DRAM-tier entry holding it must count).
  std::size_t capacity() const noexcept { return capacity_; }
  std::span<std::byte> span() noexcept { return {data_, size_}; }

 private:
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
  bool pooled_ = false;  // from the per-thread pool of fixed-size buffers (block_device.cpp)
};

// In-memory device. Fault injection for tests:
// - fail_writes_after(n): every write after the n-th fails (disk full / I/O error);
// - corrupt(offset): flips a byte behind the cache's back;
// - fail_reads_at(offset): reads whose range covers `offset` fail (kInternalError);
// - short_reads(true): every transfer returns at most half of what was asked (at least
//   one alignment unit), so callers see the base resume;
// - async_delay(max): each async_read completes after a pseudo-random delay in
//   [0, max] on a timer, so reads in flight complete out of order.
class MemoryBlockDevice final : public BlockDevice {
 public:
  explicit MemoryBlockDevice(std::uint64_t size, std::size_t alignment = 512);
  std::uint64_t size() const noexcept override { return bytes_.size(); }
  std::size_t alignment() const noexcept override { return alignment_; }
  const char* kind() const noexcept override { return "memory"; }

  void fail_writes_after(std::uint64_t n) { fail_after_ = n; }
  void corrupt(std::uint64_t offset) { bytes_.at(offset) ^= std::byte{0x5A}; }
  void fail_reads_at(std::uint64_t offset) { fail_read_at_ = offset; }
  void short_reads(bool on) { short_reads_ = on; }
  void async_delay(std::chrono::microseconds max) { async_delay_max_ = max; }

 protected:
  Result<std::size_t> read_impl(std::uint64_t offset, std::span<std::byte> out) override;
  Result<std::size_t> write_impl(std::uint64_t offset, std::span<const std::byte> data) override;
  Status sync_impl() override { return Status::ok(); }
  boost::asio::awaitable<Result<std::size_t>> async_read_impl(std::uint64_t offset, std::span<std::byte> out) override;

 private:
  std::vector<std::byte> bytes_;
  std::size_t alignment_;
  std::atomic<std::uint64_t> writes_{0};
  std::uint64_t fail_after_ = UINT64_MAX;
  std::uint64_t fail_read_at_ = UINT64_MAX;
  bool short_reads_ = false;
  std::chrono::microseconds async_delay_max_{0};
  std::atomic<std::uint64_t> delay_seed_{1};
};

struct FileDeviceOptions {
  std::string path;
  std::uint64_t size = 0;   // the file is preallocated (fallocate) to this size
  bool direct = true;       // O_DIRECT when the filesystem allows it; silently off otherwise
  // pread device only: threads doing the asynchronous reads' syscalls.
  unsigned pread_threads = 4;
};

// pread/pwrite on a preallocated file (or a raw block device); async_read runs pread on
// a small thread pool.
Result<std::unique_ptr<BlockDevice>> open_pread_device(const FileDeviceOptions& options);
// io_uring on the same file layout. Fails where io_uring is unavailable; the caller falls
// back to open_pread_device.
Result<std::unique_ptr<BlockDevice>> open_uring_device(const FileDeviceOptions& options);
// Fault injection (tests): while set, an event loop's io_uring ring setup fails as if the
// kernel refused it, so that loop's reads take the pread fallback. Clearing it also
// forgets earlier fallbacks (tagd_disk_io_uring may say 1 again).
void inject_uring_ring_setup_failure(bool fail);

}  // namespace tagd::cache
