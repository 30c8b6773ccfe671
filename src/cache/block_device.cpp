// BlockDevice's public calls (checks, resumption of short transfers, counters), the
// aligned buffer, and the in-memory device. The file devices live in
// pread_block_device.cpp and uring_block_device.cpp.
#include "tagd/cache/block_device.hpp"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "tagd/core/metrics.hpp"

namespace tagd::cache {

namespace asio = boost::asio;

namespace {

// Buffers of up to kPooledBytes (every chunk a hit reads from disk, and small whole
// blocks) come from a per-thread free list of fixed-size buffers. Why: with many streams
// reading from disk at once, these short-lived 128 KiB allocations, interleaved with
// everything else, left glibc's heap fragmented: RSS grew by about 490 KiB per slow
// stream where each holds one 132 KiB buffer (tests/integration/test_hits.py,
// ManyStreamsTest). Fixed-size reuse keeps it at what is in use plus a bounded reserve.
// A second, smaller list holds buffers of up to kLargePooledBytes: the chunks a fast
// sequential reader's widened read-ahead window reads (up to 1 MiB, plus the pieces and
// alignment around it; cached_body.cpp) and whole 1 MiB blocks, for the same reason.
constexpr std::size_t kPooledBytes = 160 * 1024;
constexpr std::size_t kLargePooledBytes = (1 << 20) + 128 * 1024;
constexpr std::size_t kPooledAlignment = 4096;
constexpr std::size_t kMaxPooledPerThread = 64;       // 10 MiB per thread at most
constexpr std::size_t kMaxLargePooledPerThread = 8;   // 9 MiB per thread at most

struct BufferPool {
  std::vector<std::byte*> free;
  ~BufferPool() {
    for (std::byte* b : free) std::free(b);
  }
};
BufferPool& buffer_pool(std::size_t size) {
  thread_local BufferPool pool;
  thread_local BufferPool large;
  return size <= kPooledBytes ? pool : large;
}

bool pooled(std::size_t size, std::size_t alignment) {
  return size <= kLargePooledBytes && alignment <= kPooledAlignment && kPooledAlignment % alignment == 0;
}

}  // namespace

AlignedBuffer::AlignedBuffer(std::size_t size, std::size_t alignment) : size_(size) {
  if (size == 0) return;
  if (pooled(size, alignment)) {
    pooled_ = true;
    capacity_ = size <= kPooledBytes ? kPooledBytes : kLargePooledBytes;
    auto& pool = buffer_pool(size);
    if (!pool.free.empty()) {
      data_ = pool.free.back();
      pool.free.pop_back();
      return;
    }
    data_ = static_cast<std::byte*>(std::aligned_alloc(kPooledAlignment, capacity_));
  } else {
    std::size_t rounded = (size + alignment - 1) / alignment * alignment;
    capacity_ = rounded;
    data_ = static_cast<std::byte*>(std::aligned_alloc(alignment, rounded));
  }
  if (data_ == nullptr) throw std::bad_alloc();
}

// A pooled buffer may be released on another thread than the one that made it (a DRAM
// tier entry evicted by another loop): it simply joins that thread's pool.
static void release(std::byte* data, std::size_t size, bool pooled) {
  if (data == nullptr) return;
  if (pooled) {
    auto& pool = buffer_pool(size);
    if (pool.free.size() < (size <= kPooledBytes ? kMaxPooledPerThread : kMaxLargePooledPerThread)) {
      pool.free.push_back(data);
      return;
    }
  }
  std::free(data);
}

AlignedBuffer::~AlignedBuffer() { release(data_, size_, pooled_); }
AlignedBuffer::AlignedBuffer(AlignedBuffer&& other) noexcept
    : data_(other.data_), size_(other.size_), capacity_(other.capacity_), pooled_(other.pooled_) {
  other.data_ = nullptr;
  other.size_ = 0;
  other.capacity_ = 0;
  other.pooled_ = false;
}
AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& other) noexcept {
  if (this != &other) {
    release(data_, size_, pooled_);
    data_ = other.data_;
    size_ = other.size_;
    capacity_ = other.capacity_;
    pooled_ = other.pooled_;
    other.data_ = nullptr;
    other.size_ = 0;
    other.capacity_ = 0;
    other.pooled_ = false;
  }
  return *this;
}

namespace {

constexpr auto kRelaxed = std::memory_order_relaxed;

// Accounts one transfer attempt of a read or write loop: advances `done`, or says why the
// loop must stop. An implementation returning more than asked is a bug, not data.
Status advance(const Result<std::size_t>& r, std::size_t remaining, std::size_t& done,
               std::atomic<std::uint64_t>* short_transfers) {
  if (!r) return r.error();
  const std::size_t n = r.value();
  if (n == 0) return Status(ErrorCode::kInternalError, "block device: unexpected end of device");
  if (n > remaining) return Status(ErrorCode::kInternalError, "block device: transfer longer than asked");
  if (n < remaining && short_transfers != nullptr) short_transfers->fetch_add(1, kRelaxed);
  done += n;
  return Status::ok();
}

// Counts an asynchronous read in flight for as long as its coroutine frame lives, so a
// read abandoned with its io_context is still taken off the gauge.
class InFlight {
 public:
  InFlight(std::atomic<std::uint64_t>& now, std::atomic<std::uint64_t>& high) : now_(now) {
    const std::uint64_t n = now_.fetch_add(1, kRelaxed) + 1;
    std::uint64_t seen = high.load(kRelaxed);
    while (n > seen && !high.compare_exchange_weak(seen, n, kRelaxed)) {
    }
    metrics().disk_reads_in_flight.add(1);
  }
  ~InFlight() {
    now_.fetch_sub(1, kRelaxed);
    metrics().disk_reads_in_flight.add(-1);
  }
  InFlight(const InFlight&) = delete;
  InFlight& operator=(const InFlight&) = delete;

 private:
  std::atomic<std::uint64_t>& now_;
};

// splitmix64: a cheap, well-mixed sequence from a counter, so injected delays are
// reproducible from run to run.
std::uint64_t mix(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace

Status BlockDevice::check_range(std::uint64_t offset, std::size_t length) const {
  if (offset > size() || length > size() - offset) {
    return Status(ErrorCode::kInvalidArgument, "block device access out of range");
  }
  if (offset % alignment() != 0 || length % alignment() != 0) {
    return Status(ErrorCode::kInvalidArgument, "block device access not aligned");
  }
  return Status::ok();
}

// Misuse (kInvalidArgument) is the caller's bug and is not counted as a device error.
Status BlockDevice::read(std::uint64_t offset, std::span<std::byte> out) {
  if (Status s = check_range(offset, out.size()); !s) return s;
  std::size_t done = 0;
  while (done < out.size()) {
    Result<std::size_t> r = read_impl(offset + done, out.subspan(done));
    if (Status s = advance(r, out.size() - done, done, &counters_.short_reads); !s) {
      counters_.read_errors.fetch_add(1, kRelaxed);
      return s;
    }
  }
  counters_.reads.fetch_add(1, kRelaxed);
  counters_.bytes_read.fetch_add(out.size(), kRelaxed);
  return Status::ok();
}

Status BlockDevice::write(std::uint64_t offset, std::span<const std::byte> data) {
  if (Status s = check_range(offset, data.size()); !s) return s;
  std::size_t done = 0;
  while (done < data.size()) {
    Result<std::size_t> r = write_impl(offset + done, data.subspan(done));
    if (Status s = advance(r, data.size() - done, done, nullptr); !s) {
      counters_.write_errors.fetch_add(1, kRelaxed);
      return s;
    }
  }
  counters_.writes.fetch_add(1, kRelaxed);
  counters_.bytes_written.fetch_add(data.size(), kRelaxed);
  return Status::ok();
}

Status BlockDevice::sync() {
  return sync_impl();
}

asio::awaitable<Status> BlockDevice::async_read(std::uint64_t offset, std::span<std::byte> out) {
  if (Status s = check_range(offset, out.size()); !s) co_return s;
  InFlight in_flight(counters_.reads_in_flight, counters_.max_reads_in_flight);
  std::size_t done = 0;
  while (done < out.size()) {
    Result<std::size_t> r = co_await async_read_impl(offset + done, out.subspan(done));
    if (Status s = advance(r, out.size() - done, done, &counters_.short_reads); !s) {
      counters_.read_errors.fetch_add(1, kRelaxed);
      co_return s;
    }
  }
  counters_.reads.fetch_add(1, kRelaxed);
  counters_.async_reads.fetch_add(1, kRelaxed);
  counters_.bytes_read.fetch_add(out.size(), kRelaxed);
  co_return Status::ok();
}

BlockDeviceStats BlockDevice::stats() const noexcept {
  BlockDeviceStats s;
  s.reads = counters_.reads.load(kRelaxed);
  s.bytes_read = counters_.bytes_read.load(kRelaxed);
  s.async_reads = counters_.async_reads.load(kRelaxed);
  s.short_reads = counters_.short_reads.load(kRelaxed);
  s.read_errors = counters_.read_errors.load(kRelaxed);
  s.writes = counters_.writes.load(kRelaxed);
  s.bytes_written = counters_.bytes_written.load(kRelaxed);
  s.write_errors = counters_.write_errors.load(kRelaxed);
  s.reads_in_flight = counters_.reads_in_flight.load(kRelaxed);
  s.max_reads_in_flight = counters_.max_reads_in_flight.load(kRelaxed);
  return s;
}

MemoryBlockDevice::MemoryBlockDevice(std::uint64_t size, std::size_t alignment) : bytes_(size), alignment_(alignment) {}

Result<std::size_t> MemoryBlockDevice::read_impl(std::uint64_t offset, std::span<std::byte> out) {
  if (fail_read_at_ >= offset && fail_read_at_ - offset < out.size()) {
    return Status(ErrorCode::kInternalError, "injected read failure (EIO)");
  }
  std::size_t n = out.size();
  if (short_reads_ && n > alignment_) {
    n = std::max(alignment_, n / 2 / alignment_ * alignment_);
  }
  std::memcpy(out.data(), bytes_.data() + offset, n);
  return n;
}

Result<std::size_t> MemoryBlockDevice::write_impl(std::uint64_t offset, std::span<const std::byte> data) {
  if (writes_.fetch_add(1, kRelaxed) + 1 > fail_after_) {
    return Status(ErrorCode::kInternalError, "injected write failure (ENOSPC)");
  }
  std::memcpy(bytes_.data() + offset, data.data(), data.size());
  return data.size();
}

asio::awaitable<Result<std::size_t>> MemoryBlockDevice::async_read_impl(std::uint64_t offset,
                                                                        std::span<std::byte> out) {
  if (async_delay_max_.count() > 0) {
    const auto range = static_cast<std::uint64_t>(async_delay_max_.count()) + 1;
    const std::chrono::microseconds delay(mix(delay_seed_.fetch_add(1, kRelaxed)) % range);
    auto executor = co_await asio::this_coro::executor;
    asio::steady_timer timer(executor, delay);
    auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    (void)ec;  // cancelled only with its io_context, which then never resumes us
  }
  // Copied at completion, not at the start: a delayed read sees what is there by then, as
  // a real device may.
  co_return read_impl(offset, out);
}

}  // namespace tagd::cache
