#include "tagd/cache/buffer_slabs.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>

#include <spdlog/spdlog.h>

#include "tagd/core/metrics.hpp"

namespace tagd::cache {

namespace {
// shmem huge pages forced for every mapping ("force" in shmem_enabled) would put a slot in
// a large folio shared with its neighbours, and a punched slot's pages could not leave
// the file alone (see the trap in the header). Anything else is refused per mapping with
// MADV_NOHUGEPAGE.
bool shmem_huge_pages_forced() {
  std::ifstream f("/sys/kernel/mm/transparent_hugepage/shmem_enabled");
  std::string line;
  return std::getline(f, line) && line.find("[force]") != std::string::npos;
}
}  // namespace

BufferSlabs::BufferSlabs(std::size_t classes, bool enabled, std::uint64_t class_span)
    : enabled_(enabled),
      page_size_(static_cast<std::size_t>(::sysconf(_SC_PAGESIZE))),
      class_span_(class_span),
      class_count_(classes),
      classes_(std::make_unique<Class[]>(classes)) {
  if (enabled_ && shmem_huge_pages_forced()) {
    std::lock_guard lock(mu_);
    broken_.store(true);
    warn_once_locked("shmem huge pages are forced on this host", 0);
  }
}

void BufferSlabs::warn_once_locked(const char* what, int err) {
  if (warned_) return;
  warned_ = true;
  spdlog::warn("cache: block buffers in plain memory ({}{}{}); their DRAM-tier hits are copied into the socket "
               "instead of sent from a file (tagd_cache_fill_buffers_unshared_total)",
               what, err != 0 ? ": " : "", err != 0 ? std::strerror(err) : "");
}

BufferSlabs::~BufferSlabs() {
  for (std::size_t c = 0; c < class_count_; ++c) {
    Class& k = classes_[c];
    if (std::byte* base = k.base.load(); base != nullptr) ::munmap(base, class_span_);
    if (k.fd >= 0) ::close(k.fd);
  }
}

bool BufferSlabs::reserve_locked(Class& k) {
  if (k.base.load(std::memory_order_relaxed) != nullptr) return true;
  if (k.failed) return false;
  const char* step = "memfd_create";
  k.fd = ::memfd_create("tagd-blocks", MFD_CLOEXEC);
  if (k.fd >= 0) {
    step = "reserving address space";
    void* p = ::mmap(nullptr, class_span_, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p != MAP_FAILED) {
      k.base.store(static_cast<std::byte*>(p), std::memory_order_release);
      return true;
    }
  }
  const int err = errno;
  if (k.fd >= 0) ::close(k.fd);
  k.fd = -1;
  k.failed = true;
  warn_once_locked(step, err);
  return false;
}

BufferSlabs::Slot BufferSlabs::allocate(std::size_t c, std::size_t capacity) {
  if (!enabled_ || c >= class_count_ || capacity == 0 || capacity % page_size_ != 0) return {};
  std::lock_guard lock(mu_);
  if (broken_.load(std::memory_order_relaxed)) {
    metrics().cache_fill_buffers_unshared.inc();
    return {};
  }
  Class& k = classes_[c];
  if (!reserve_locked(k)) {
    metrics().cache_fill_buffers_unshared.inc();
    return {};
  }
  std::byte* base = k.base.load(std::memory_order_relaxed);
  std::uint64_t slot = 0;
  if (!k.free.empty()) {
    slot = k.free.back();
    k.free.pop_back();
  } else {
    if ((k.slots + 1) * capacity > class_span_) {
      warn_once_locked("a size class ran out of slots", 0);
      metrics().cache_fill_buffers_unshared.inc();
      return {};
    }
    slot = k.slots;
    const auto end = static_cast<off_t>((slot + 1) * capacity);
    void* mapped = MAP_FAILED;
    if (::ftruncate(k.fd, end) == 0) {
      mapped = ::mmap(base + slot * capacity, capacity, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, k.fd,
                      static_cast<off_t>(slot * capacity));
      // Small pages only: a slot must be able to drop its pages without its neighbours'.
      if (mapped != MAP_FAILED && ::madvise(mapped, capacity, MADV_NOHUGEPAGE) != 0) {
        ::munmap(mapped, capacity);
        mapped = MAP_FAILED;
      }
    }
    if (mapped == MAP_FAILED) {
      warn_once_locked("mapping a slot failed", errno);
      metrics().cache_fill_buffers_unshared.inc();
      return {};
    }
    ++k.slots;
  }
  return Slot{base + slot * capacity, k.fd, slot * capacity};
}

BufferSlabs::Slot BufferSlabs::locate(std::size_t c, std::size_t capacity, const std::byte* data) const noexcept {
  if (c >= class_count_ || capacity == 0) return {};
  const Class& k = classes_[c];
  std::byte* base = k.base.load(std::memory_order_acquire);
  if (base == nullptr || data < base || data >= base + class_span_) return {};
  const auto offset = static_cast<std::uint64_t>(data - base);
  return Slot{base + offset, k.fd, offset};
}

bool BufferSlabs::drop_pages(std::size_t c, std::size_t capacity, const std::byte* data) noexcept {
  const Slot slot = locate(c, capacity, data);
  if (slot.fd < 0) return true;
  if (::fallocate(slot.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(slot.offset),
                  static_cast<off_t>(capacity)) == 0) {
    return true;
  }
  // The slot is leaked (never written again). No more slots are handed out: each lent one
  // would leak the same way.
  const int err = errno;
  std::lock_guard lock(mu_);
  broken_.store(true);
  warn_once_locked("dropping a lent slot's pages failed; that slot is never reused", err);
  return false;
}

void BufferSlabs::release(std::size_t c, std::size_t capacity, std::byte* data) noexcept {
  const Slot slot = locate(c, capacity, data);
  if (slot.fd < 0) return;
  if (!drop_pages(c, capacity, data)) return;  // leaked: its pages may still be queued in a socket
  std::lock_guard lock(mu_);
  classes_[c].free.push_back(slot.offset / capacity);
}

}  // namespace tagd::cache
