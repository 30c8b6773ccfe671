#pragma once
// Where pooled block buffers live: one memfd per size class, each buffer a fixed slot of
// it, mapped at a fixed place in an address range reserved for the class. A buffer's bytes
// then have a file and an offset, so a writer can hand them to the kernel by reference
// (sendfile into a plain socket: the socket queues the pages themselves) instead of
// copying them into the socket (about four fifths of the CPU of a 1 MiB DRAM-tier hit).
//
// The trap: a page handed over that way stays in the socket's queue until the peer has
// read it, long after sendfile returned and the buffer may have been let go of. Writing
// new bytes into that page would send them instead. So a slot whose pages were lent
// (BlockBuffer::lend_to_kernel) has them dropped from the file (a punched hole) before it
// is written again: the socket keeps the old pages, the next write faults in fresh ones.
// A slot let go of for good is punched too: it holds no memory while it waits for reuse.
//
// Fallback: when memfd_create, the reservation or a mapping is refused, a class's range
// is full, shmem huge pages are forced on the host, or a punch ever failed (that slot is
// leaked, never rewritten), allocate() returns no slot and the pool takes plain memory
// (the writer then copies); counted in tagd_cache_fill_buffers_unshared_total, logged
// once. Slots use the host's page size and refuse huge pages (MADV_NOHUGEPAGE): a punched
// slot must drop its own pages only.
//
// Threading: one mutex, taken only when a slot is allocated or let go of for good (rare:
// the pool reuses idle buffers); drop_pages() takes no lock. Lifetime: the pool owns it;
// mappings and files end with it (every buffer holds the pool, so none is live then).
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace tagd::cache {

class BufferSlabs {
 public:
  struct Slot {
    std::byte* data = nullptr;
    int fd = -1;
    std::uint64_t offset = 0;
  };
  // Address space reserved per size class (virtual only: PROT_NONE, nothing committed).
  static constexpr std::uint64_t kClassSpan = 16ull << 30;

  // `classes`: how many size classes the pool has. `enabled` false: every allocate()
  // returns no slot (plain memory everywhere). `class_span`: the address range (and most
  // file bytes) per class; tests make it small to run a class out of slots.
  BufferSlabs(std::size_t classes, bool enabled, std::uint64_t class_span = kClassSpan);
  ~BufferSlabs();
  BufferSlabs(const BufferSlabs&) = delete;
  BufferSlabs& operator=(const BufferSlabs&) = delete;

  // A slot of `capacity` bytes in class `c` (none unless a multiple of the page size); a slot with
  // null data when there is none to be had (use plain memory).
  [[nodiscard]] Slot allocate(std::size_t c, std::size_t capacity);
  // Where `data` lies, if it is a slot of class `c` (fd < 0 otherwise).
  [[nodiscard]] Slot locate(std::size_t c, std::size_t capacity, const std::byte* data) const noexcept;
  // The slot's pages leave the file (see the trap above); its mapping stays. False (a
  // warning logged): they could not be dropped, and the slot must never be written again.
  [[nodiscard]] bool drop_pages(std::size_t c, std::size_t capacity, const std::byte* data) noexcept;
  // Back to its class's free slots, holding no memory.
  void release(std::size_t c, std::size_t capacity, std::byte* data) noexcept;

 private:
  struct Class {
    int fd = -1;
    std::atomic<std::byte*> base{nullptr};  // set once; read without the lock by locate()
    std::uint64_t slots = 0;  // slots made so far (the file is this many slots long)
    std::vector<std::uint64_t> free;
    bool failed = false;
  };
  bool reserve_locked(Class& k);

  void warn_once_locked(const char* what, int err);

  const bool enabled_;
  const std::size_t page_size_;
  const std::uint64_t class_span_;
  const std::size_t class_count_;
  mutable std::mutex mu_;
  std::unique_ptr<Class[]> classes_;
  bool warned_ = false;
  // A punch failed, or shmem huge pages are forced: no new slots (plain memory from then on).
  std::atomic<bool> broken_{false};
};

}  // namespace tagd::cache
