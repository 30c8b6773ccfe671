#pragma once
// The storage seam under the block cache: a fixed-size byte range addressed by offset.
// Three implementations share one typed test suite: io_uring (the production path),
// pread/pwrite (fallback when io_uring is unavailable) and memory (tests, fault
// injection).
//
// Threading: every implementation is safe to call from several event loops at once
// (positional I/O has no shared cursor; the io_uring ring is guarded).
// Alignment: callers pass offsets and lengths that are multiples of alignment(); with
// O_DIRECT the buffers must be aligned too (AlignedBuffer).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "tagd/core/status.hpp"

namespace tagd::cache {

class BlockDevice {
 public:
  virtual ~BlockDevice() = default;
  BlockDevice() = default;
  BlockDevice(const BlockDevice&) = delete;
  BlockDevice& operator=(const BlockDevice&) = delete;

  virtual std::uint64_t size() const noexcept = 0;
  virtual std::size_t alignment() const noexcept = 0;
  virtual const char* kind() const noexcept = 0;  // "io_uring", "pread", "memory"

  // Errors: kInvalidArgument (out of range or misaligned), kInternalError (I/O error,
  // short transfer). A failed write leaves the range's content unspecified.
  [[nodiscard]] virtual Status read(std::uint64_t offset, std::span<std::byte> out) = 0;
  [[nodiscard]] virtual Status write(std::uint64_t offset, std::span<const std::byte> data) = 0;
  [[nodiscard]] virtual Status sync() = 0;
};

// Heap buffer aligned for O_DIRECT.
class AlignedBuffer {
 public:
  AlignedBuffer(std::size_t size, std::size_t alignment);
  ~AlignedBuffer();
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  AlignedBuffer(AlignedBuffer&& other) noexcept;
  AlignedBuffer& operator=(AlignedBuffer&& other) noexcept;

  std::byte* data() noexcept { return data_; }
  const std::byte* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  std::span<std::byte> span() noexcept { return {data_, size_}; }

 private:
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

// In-memory device. Fault injection for tests: fail_writes_after(n) makes every write after
// the n-th fail (disk full / I/O error); corrupt(offset) flips a byte behind the cache's back.
class MemoryBlockDevice final : public BlockDevice {
 public:
  explicit MemoryBlockDevice(std::uint64_t size, std::size_t alignment = 512);
  std::uint64_t size() const noexcept override { return bytes_.size(); }
  std::size_t alignment() const noexcept override { return alignment_; }
  const char* kind() const noexcept override { return "memory"; }
  Status read(std::uint64_t offset, std::span<std::byte> out) override;
  Status write(std::uint64_t offset, std::span<const std::byte> data) override;
  Status sync() override { return Status::ok(); }

  void fail_writes_after(std::uint64_t n) { fail_after_ = n; }
  void corrupt(std::uint64_t offset) { bytes_.at(offset) ^= std::byte{0x5A}; }

 private:
  std::vector<std::byte> bytes_;
  std::size_t alignment_;
  std::uint64_t writes_ = 0;
  std::uint64_t fail_after_ = UINT64_MAX;
};

struct FileDeviceOptions {
  std::string path;
  std::uint64_t size = 0;   // the file is preallocated (fallocate) to this size
  bool direct = true;       // O_DIRECT when the filesystem allows it; silently off otherwise
};

// pread/pwrite on a preallocated file (or a raw block device).
Result<std::unique_ptr<BlockDevice>> open_pread_device(const FileDeviceOptions& options);
// io_uring (liburing) on the same file layout. Fails where io_uring is unavailable; the
// caller falls back to open_pread_device.
Result<std::unique_ptr<BlockDevice>> open_uring_device(const FileDeviceOptions& options);

}  // namespace tagd::cache
