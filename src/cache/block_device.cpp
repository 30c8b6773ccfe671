#include "tagd/cache/block_device.hpp"

#include <fcntl.h>
#include <liburing.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>

namespace tagd::cache {

AlignedBuffer::AlignedBuffer(std::size_t size, std::size_t alignment) : size_(size) {
  if (size == 0) return;
  std::size_t rounded = (size + alignment - 1) / alignment * alignment;
  data_ = static_cast<std::byte*>(std::aligned_alloc(alignment, rounded));
  if (data_ == nullptr) throw std::bad_alloc();
}
AlignedBuffer::~AlignedBuffer() { std::free(data_); }
AlignedBuffer::AlignedBuffer(AlignedBuffer&& other) noexcept : data_(other.data_), size_(other.size_) {
  other.data_ = nullptr;
  other.size_ = 0;
}
AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& other) noexcept {
  if (this != &other) {
    std::free(data_);
    data_ = other.data_;
    size_ = other.size_;
    other.data_ = nullptr;
    other.size_ = 0;
  }
  return *this;
}

namespace {

Status check_range(const BlockDevice& d, std::uint64_t offset, std::size_t length) {
  if (offset > d.size() || length > d.size() - offset) {
    return Status(ErrorCode::kInvalidArgument, "block device access out of range");
  }
  if (offset % d.alignment() != 0 || length % d.alignment() != 0) {
    return Status(ErrorCode::kInvalidArgument, "block device access not aligned");
  }
  return Status::ok();
}

Status errno_status(const char* what, int err) {
  return Status(ErrorCode::kInternalError, std::string(what) + ": " + std::strerror(err));
}

// An open, preallocated cache file. O_DIRECT is tried first: tmpfs and some overlay
// filesystems refuse it, and then page-cache I/O is the only option.
struct CacheFile {
  int fd = -1;
  bool direct = false;
  std::size_t alignment = 4096;

  ~CacheFile() {
    if (fd >= 0) ::close(fd);
  }
};

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

class PreadBlockDevice final : public BlockDevice {
 public:
  PreadBlockDevice(std::unique_ptr<CacheFile> file, std::uint64_t size) : file_(std::move(file)), size_(size) {}
  std::uint64_t size() const noexcept override { return size_; }
  std::size_t alignment() const noexcept override { return file_->alignment; }
  const char* kind() const noexcept override { return "pread"; }

  Status read(std::uint64_t offset, std::span<std::byte> out) override {
    if (Status s = check_range(*this, offset, out.size()); !s) return s;
    std::size_t done = 0;
    while (done < out.size()) {
      ssize_t n = ::pread(file_->fd, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return errno_status("pread", errno);
      if (n == 0) return Status(ErrorCode::kInternalError, "pread: unexpected end of cache file");
      done += static_cast<std::size_t>(n);
    }
    return Status::ok();
  }

  Status write(std::uint64_t offset, std::span<const std::byte> data) override {
    if (Status s = check_range(*this, offset, data.size()); !s) return s;
    std::size_t done = 0;
    while (done < data.size()) {
      ssize_t n = ::pwrite(file_->fd, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return errno_status("pwrite", errno);
      done += static_cast<std::size_t>(n);
    }
    return Status::ok();
  }

  Status sync() override { return ::fdatasync(file_->fd) == 0 ? Status::ok() : errno_status("fdatasync", errno); }

 private:
  std::unique_ptr<CacheFile> file_;
  std::uint64_t size_;
};

class UringBlockDevice final : public BlockDevice {
 public:
  UringBlockDevice(std::unique_ptr<CacheFile> file, std::uint64_t size) : file_(std::move(file)), size_(size) {}
  ~UringBlockDevice() override { io_uring_queue_exit(&ring_); }

  Status init() {
    int rc = io_uring_queue_init(64, &ring_, 0);
    if (rc < 0) return errno_status("io_uring_queue_init", -rc);
    // Registering the file saves an fget/fput per operation.
    if (io_uring_register_files(&ring_, &file_->fd, 1) == 0) registered_ = true;
    return Status::ok();
  }

  std::uint64_t size() const noexcept override { return size_; }
  std::size_t alignment() const noexcept override { return file_->alignment; }
  const char* kind() const noexcept override { return "io_uring"; }

  Status read(std::uint64_t offset, std::span<std::byte> out) override {
    if (Status s = check_range(*this, offset, out.size()); !s) return s;
    return transfer(true, offset, out.data(), out.size());
  }
  Status write(std::uint64_t offset, std::span<const std::byte> data) override {
    if (Status s = check_range(*this, offset, data.size()); !s) return s;
    return transfer(false, offset, const_cast<std::byte*>(data.data()), data.size());
  }
  Status sync() override {
    std::lock_guard lock(mu_);
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    io_uring_prep_fsync(sqe, registered_ ? 0 : file_->fd, IORING_FSYNC_DATASYNC);
    if (registered_) sqe->flags |= IOSQE_FIXED_FILE;
    int res = 0;
    if (Status s = submit_and_wait(res); !s) return s;
    return res < 0 ? errno_status("io_uring fsync", -res) : Status::ok();
  }

 private:
  Status submit_and_wait(int& res) {
    int rc = io_uring_submit(&ring_);
    if (rc < 0) return errno_status("io_uring_submit", -rc);
    io_uring_cqe* cqe = nullptr;
    do {
      rc = io_uring_wait_cqe(&ring_, &cqe);
    } while (rc == -EINTR);
    if (rc < 0) return errno_status("io_uring_wait_cqe", -rc);
    res = cqe->res;
    io_uring_cqe_seen(&ring_, cqe);
    return Status::ok();
  }

  // Loops on short transfers, as the kernel may return fewer bytes than asked.
  Status transfer(bool is_read, std::uint64_t offset, std::byte* buf, std::size_t len) {
    std::lock_guard lock(mu_);
    std::size_t done = 0;
    while (done < len) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
      int fd = registered_ ? 0 : file_->fd;
      if (is_read) {
        io_uring_prep_read(sqe, fd, buf + done, static_cast<unsigned>(len - done), offset + done);
      } else {
        io_uring_prep_write(sqe, fd, buf + done, static_cast<unsigned>(len - done), offset + done);
      }
      if (registered_) sqe->flags |= IOSQE_FIXED_FILE;
      int res = 0;
      if (Status s = submit_and_wait(res); !s) return s;
      if (res == -EINTR || res == -EAGAIN) continue;
      if (res < 0) return errno_status(is_read ? "io_uring read" : "io_uring write", -res);
      if (res == 0) return Status(ErrorCode::kInternalError, "io_uring: unexpected end of cache file");
      done += static_cast<std::size_t>(res);
    }
    return Status::ok();
  }

  std::unique_ptr<CacheFile> file_;
  std::uint64_t size_;
  io_uring ring_{};
  bool registered_ = false;
  std::mutex mu_;
};

}  // namespace

MemoryBlockDevice::MemoryBlockDevice(std::uint64_t size, std::size_t alignment)
    : bytes_(size), alignment_(alignment) {}

Status MemoryBlockDevice::read(std::uint64_t offset, std::span<std::byte> out) {
  if (Status s = check_range(*this, offset, out.size()); !s) return s;
  std::memcpy(out.data(), bytes_.data() + offset, out.size());
  return Status::ok();
}

Status MemoryBlockDevice::write(std::uint64_t offset, std::span<const std::byte> data) {
  if (Status s = check_range(*this, offset, data.size()); !s) return s;
  if (++writes_ > fail_after_) return Status(ErrorCode::kInternalError, "injected write failure (ENOSPC)");
  std::memcpy(bytes_.data() + offset, data.data(), data.size());
  return Status::ok();
}

Result<std::unique_ptr<BlockDevice>> open_pread_device(const FileDeviceOptions& options) {
  auto file = open_cache_file(options);
  if (!file) return file.error();
  return std::unique_ptr<BlockDevice>(std::make_unique<PreadBlockDevice>(std::move(file.value()), options.size));
}

Result<std::unique_ptr<BlockDevice>> open_uring_device(const FileDeviceOptions& options) {
  auto file = open_cache_file(options);
  if (!file) return file.error();
  auto device = std::make_unique<UringBlockDevice>(std::move(file.value()), options.size);
  if (Status s = device->init(); !s) return s;
  return std::unique_ptr<BlockDevice>(std::move(device));
}

}  // namespace tagd::cache
