// The pread/pwrite device, and what it shares with the io_uring device: the cache file and
// the pread thread pool.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/append.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>
#include <cstring>
#include <string>

#include "block_device_file.hpp"
#include "tagd/cache/block_device.hpp"

namespace tagd::cache {

namespace asio = boost::asio;

namespace detail {

Status errno_status(const char* what, int err) {
  return Status(ErrorCode::kInternalError, std::string(what) + ": " + std::strerror(err));
}

CacheFile::~CacheFile() {
  if (fd >= 0) ::close(fd);
}

Result<std::unique_ptr<CacheFile>> open_cache_file(const FileDeviceOptions& o) {
  auto f = std::make_unique<CacheFile>();
  if (o.direct) {
    f->fd = ::open(o.path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_DIRECT, 0600);
    f->direct = f->fd >= 0;
  }
  if (f->fd < 0) f->fd = ::open(o.path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (f->fd < 0) return errno_status(("cannot open " + o.path).c_str(), errno);
  struct stat st {};
  if (::fstat(f->fd, &st) != 0) return errno_status("fstat", errno);
  if (S_ISREG(st.st_mode) && static_cast<std::uint64_t>(st.st_size) < o.size) {
    // Reserve the space now so "disk full" shows up at start-up, not mid-fill.
    int rc = ::posix_fallocate(f->fd, 0, static_cast<off_t>(o.size));
    if (rc != 0) return errno_status(("cannot preallocate " + o.path).c_str(), rc);
  }
  return f;
}

PreadPool::PreadPool(unsigned threads) : pool_(threads == 0 ? 1 : threads) {}
PreadPool::~PreadPool() {
  pool_.join();
}

asio::awaitable<Result<std::size_t>> PreadPool::read(int fd, std::uint64_t offset, std::span<std::byte> out) {
  // The handler resumes the coroutine. The work guard keeps the awaiting io_context's run()
  // from returning while the syscall is on the pool; the completion is posted back to the
  // coroutine's own executor, so the caller's loop never sees a foreign thread.
  auto initiation = [this, fd, offset, out](auto handler) {
    auto home = asio::prefer(asio::get_associated_executor(handler), asio::execution::outstanding_work.tracked);
    asio::post(pool_, [handler = std::move(handler), home = std::move(home), fd, offset, out]() mutable {
      ssize_t n = 0;
      do {
        n = ::pread(fd, out.data(), out.size(), static_cast<off_t>(offset));
      } while (n < 0 && errno == EINTR);
      const long result = n < 0 ? -static_cast<long>(errno) : static_cast<long>(n);
      asio::post(home, asio::append(std::move(handler), result));
    });
  };
  const long result = co_await asio::async_initiate<const asio::use_awaitable_t<>&, void(long)>(std::move(initiation),
                                                                                                asio::use_awaitable);
  if (result < 0) co_return errno_status("pread", static_cast<int>(-result));
  co_return static_cast<std::size_t>(result);
}

}  // namespace detail

namespace {

class PreadBlockDevice final : public BlockDevice {
 public:
  PreadBlockDevice(std::unique_ptr<detail::CacheFile> file, std::uint64_t size, unsigned threads)
      : file_(std::move(file)), size_(size), pool_(threads) {}
  std::uint64_t size() const noexcept override { return size_; }
  std::size_t alignment() const noexcept override { return file_->alignment; }
  const char* kind() const noexcept override { return "pread"; }
  bool direct() const noexcept override { return file_->direct; }

 protected:
  Result<std::size_t> read_impl(std::uint64_t offset, std::span<std::byte> out) override {
    for (;;) {
      ssize_t n = ::pread(file_->fd, out.data(), out.size(), static_cast<off_t>(offset));
      if (n >= 0) return static_cast<std::size_t>(n);
      if (errno != EINTR) return detail::errno_status("pread", errno);
    }
  }

  Result<std::size_t> write_impl(std::uint64_t offset, std::span<const std::byte> data) override {
    for (;;) {
      ssize_t n = ::pwrite(file_->fd, data.data(), data.size(), static_cast<off_t>(offset));
      if (n >= 0) return static_cast<std::size_t>(n);
      if (errno != EINTR) return detail::errno_status("pwrite", errno);
    }
  }

  Status sync_impl() override {
    return ::fdatasync(file_->fd) == 0 ? Status::ok() : detail::errno_status("fdatasync", errno);
  }

  asio::awaitable<Result<std::size_t>> async_read_impl(std::uint64_t offset, std::span<std::byte> out) override {
    Result<std::size_t> r = co_await pool_.read(file_->fd, offset, out);
    co_return r;
  }

 private:
  std::unique_ptr<detail::CacheFile> file_;
  std::uint64_t size_;
  detail::PreadPool pool_;  // after file_: joined before the file is closed
};

}  // namespace

Result<std::unique_ptr<BlockDevice>> open_pread_device(const FileDeviceOptions& options) {
  auto file = detail::open_cache_file(options);
  if (!file) return file.error();
  return std::unique_ptr<BlockDevice>(
      std::make_unique<PreadBlockDevice>(std::move(file.value()), options.size, options.pread_threads));
}

}  // namespace tagd::cache
