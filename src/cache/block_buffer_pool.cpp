#include "tagd/cache/block_buffer_pool.hpp"

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <cstring>
#include <new>

#include "tagd/core/metrics.hpp"

namespace tagd::cache {

namespace {
std::byte* allocate(std::size_t capacity) {
  if (capacity == 0) return nullptr;
  // malloc, not new std::byte[n]{}: the bytes are written by the fill before anyone reads them.
  auto* p = static_cast<std::byte*>(std::malloc(capacity));
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
}  // namespace

BlockBuffer::BlockBuffer(std::size_t length) : data_(allocate(length)), capacity_(length) {}

BlockBuffer::BlockBuffer(BufferSlabs::Slot slot, std::size_t capacity, std::shared_ptr<BlockBufferPool> pool) noexcept
    : data_(slot.data), capacity_(capacity), fd_(slot.fd), file_offset_(slot.offset), pool_(std::move(pool)) {}

BlockBuffer::~BlockBuffer() {
  if (pool_) {
    pool_->give_back(data_, capacity_, lent_to_kernel_.load(std::memory_order_relaxed));
  } else {
    std::free(data_);
  }
}

std::size_t BlockBuffer::append(const std::byte* bytes, std::size_t n) noexcept {
  n = std::min(n, capacity_ - size_);
  if (n > 0) std::memcpy(data_ + size_, bytes, n);
  size_ += n;
  return n;
}

std::shared_ptr<BlockBufferPool> BlockBufferPool::create(std::uint64_t idle_limit, std::size_t max_length,
                                                         bool file_backed, std::uint64_t slab_span) {
  return std::shared_ptr<BlockBufferPool>(new BlockBufferPool(idle_limit, max_length, file_backed, slab_span));
}

BlockBufferPool::BlockBufferPool(std::uint64_t idle_limit, std::size_t max_length, bool file_backed,
                                 std::uint64_t slab_span)
    : idle_limit_(idle_limit), max_length_(max_length), slabs_(kClasses, file_backed, slab_span) {
  // give_back never allocates: each class can hold what the limit allows of it.
  for (std::size_t c = 0; c < kClasses; ++c)
    idle_[c].reserve(idle_limit_ / std::max<std::size_t>(capacity_of_class(c), 1));
}

BlockBufferPool::~BlockBufferPool() {
  // Every buffer handed out holds the pool, so only idle ones are left here.
  for (std::size_t c = 0; c < kClasses; ++c) {
    for (std::byte* p : idle_[c]) {
      if (slabs_.locate(c, capacity_of_class(c), p).fd < 0) std::free(p);  // slots end with slabs_
    }
  }
  metrics().cache_fill_buffer_pool_bytes.add(-static_cast<std::int64_t>(idle_bytes_));
}

std::size_t BlockBufferPool::capacity_for(std::size_t length) const noexcept {
  if (length < kMinPooled || length > max_length_) return 0;
  const std::size_t power = std::bit_floor(length);
  if (power > (std::size_t{1} << 24)) return 0;
  const std::size_t step = power / 4;
  return std::min((length + step - 1) / step * step, max_length_);
}

std::size_t BlockBufferPool::class_of(std::size_t capacity) const noexcept {
  if (capacity == max_length_) return kClasses - 1;
  std::size_t power = std::bit_floor(capacity);
  const std::size_t step = power / 4;
  const std::size_t exponent = static_cast<std::size_t>(std::countr_zero(power)) - 16;  // 64 KiB = 2^16
  return exponent * 4 + (capacity - power) / step;
}

std::size_t BlockBufferPool::capacity_of_class(std::size_t c) const noexcept {
  if (c == kClasses - 1) return max_length_;
  const std::size_t power = std::size_t{1} << (16 + c / 4);
  return power + (c % 4) * (power / 4);
}

std::shared_ptr<BlockBuffer> BlockBufferPool::acquire(std::size_t length) {
  const std::size_t capacity = capacity_for(length);
  if (capacity == 0) return std::make_shared<BlockBuffer>(length);
  std::byte* data = nullptr;
  {
    std::lock_guard lock(mu_);
    auto& list = idle_[class_of(capacity)];
    if (!list.empty()) {
      data = list.back();
      list.pop_back();
      idle_bytes_ -= capacity;
      --idle_buffers_;
      ++reused_;
    } else {
      ++allocated_;
    }
  }
  const std::size_t c = class_of(capacity);
  BufferSlabs::Slot slot;
  if (data != nullptr) {
    metrics().cache_fill_buffer_pool_bytes.add(-static_cast<std::int64_t>(capacity));
    slot = slabs_.locate(c, capacity, data);
    slot.data = data;
  } else {
    metrics().cache_fill_buffers_allocated.inc();
    slot = slabs_.allocate(c, capacity);
    if (slot.data == nullptr) slot.data = allocate(capacity);
  }
  return std::shared_ptr<BlockBuffer>(new BlockBuffer(slot, capacity, shared_from_this()));
}

void BlockBufferPool::discard(std::byte* data, std::size_t capacity) noexcept {
  const std::size_t c = class_of(capacity);
  if (slabs_.locate(c, capacity, data).fd >= 0) {
    slabs_.release(c, capacity, data);
  } else {
    std::free(data);
  }
}

void BlockBufferPool::give_back(std::byte* data, std::size_t capacity, bool lent_to_kernel) noexcept {
  // Its pages may still be queued in a socket: the next fill must not write into them.
  if (lent_to_kernel && !slabs_.drop_pages(class_of(capacity), capacity, data)) return;  // leaked, never reused
  std::int64_t idle_change = 0;
  {
    std::lock_guard lock(mu_);
    // Room is made from the classes holding the most idle bytes (another size's buffers
    // sitting idle while this size is what fills use now), never from this one.
    const std::size_t mine = class_of(capacity);
    while (idle_bytes_ + capacity > idle_limit_) {
      std::size_t victim = kClasses;
      std::uint64_t most = 0;
      for (std::size_t c = 0; c < kClasses; ++c) {
        if (c == mine || idle_[c].empty()) continue;
        const std::uint64_t held = idle_[c].size() * capacity_of_class(c);
        if (held > most) {
          most = held;
          victim = c;
        }
      }
      if (victim == kClasses) break;
      const std::size_t victim_capacity = capacity_of_class(victim);
      discard(idle_[victim].back(), victim_capacity);  // rare: the sizes fills use changed
      idle_[victim].pop_back();
      ++freed_;
      idle_bytes_ -= victim_capacity;
      --idle_buffers_;
      idle_change -= static_cast<std::int64_t>(victim_capacity);
    }
    if (idle_bytes_ + capacity <= idle_limit_) {
      idle_[mine].push_back(data);
      idle_bytes_ += capacity;
      ++idle_buffers_;
      idle_change += static_cast<std::int64_t>(capacity);
      data = nullptr;
    }
    if (data != nullptr) ++freed_;
  }
  if (idle_change != 0) metrics().cache_fill_buffer_pool_bytes.add(idle_change);
  if (data != nullptr) discard(data, capacity);
}

BlockBufferPool::Stats BlockBufferPool::stats() const {
  std::lock_guard lock(mu_);
  return Stats{idle_bytes_, idle_buffers_, allocated_, reused_, freed_};
}

}  // namespace tagd::cache
