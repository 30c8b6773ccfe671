#pragma once
// Private to the file-backed block devices (pread_block_device.cpp, uring_block_device.cpp):
// the cache file both open, and the pread thread pool both use for asynchronous reads (the
// pread device always, the io_uring device when its event loop has no ring).
#include <boost/asio/awaitable.hpp>
#include <boost/asio/thread_pool.hpp>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "tagd/cache/block_device.hpp"
#include "tagd/core/status.hpp"

namespace tagd::cache::detail {

Status errno_status(const char* what, int err);

// An open, preallocated cache file. O_DIRECT is tried first: tmpfs and some overlay
// filesystems refuse it, and then page-cache I/O is the only option.
struct CacheFile {
  int fd = -1;
  bool direct = false;
  std::size_t alignment = 4096;

  CacheFile() = default;
  CacheFile(const CacheFile&) = delete;
  CacheFile& operator=(const CacheFile&) = delete;
  ~CacheFile();
};

Result<std::unique_ptr<CacheFile>> open_cache_file(const FileDeviceOptions& options);

// pread(2) on a few threads of its own; the awaiting coroutine resumes on its own executor.
// Destroying the pool joins its threads: no read may be in flight then (the device outlives
// its readers).
class PreadPool {
 public:
  explicit PreadPool(unsigned threads);
  ~PreadPool();
  PreadPool(const PreadPool&) = delete;
  PreadPool& operator=(const PreadPool&) = delete;

  // One pread: the bytes read (possibly short; 0 at the end of the file) or the error.
  boost::asio::awaitable<Result<std::size_t>> read(int fd, std::uint64_t offset, std::span<std::byte> out);

 private:
  boost::asio::thread_pool pool_;
};

}  // namespace tagd::cache::detail
