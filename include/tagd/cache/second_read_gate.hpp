#pragma once
// Which blocks read from disk may displace others in a full DRAM tier: only those read
// from disk twice within a short window (2Q's ghost list, bounded in bytes).
//
// Why: in a training epoch over more data than the tier holds, every object is read once
// per epoch in a new order. Keeping each block just read from disk (the tier's old rule)
// evicts the blocks not yet read this epoch for blocks that will not be read again until
// the next one, so the tier served ~2 % of an epoch whose data was 4x its size. Declining
// them keeps a stable part of the dataset (a quarter of it, hit every epoch), the same
// reasoning as the block file's hit-gated fills (eviction.hpp). A block that really is
// hot comes back from disk within the window and is let in.
//
// Not thread-safe: MemoryTier calls it under its own lock.
#include <cstdint>
#include <deque>
#include <unordered_map>

namespace tagd::cache {

class SecondReadGate {
 public:
  // `window_bytes`: how much declined data is remembered (blocks' footprints, each
  // charged at least kMinCharge so that tiny blocks cannot make the bookkeeping outgrow
  // the tier: ~60 bytes per entry, at most window / 4 KiB entries). Half the tier: a
  // window as long as an epoch would let a block back every epoch and churn.
  explicit SecondReadGate(std::uint64_t window_bytes) : window_(window_bytes) {}

  static constexpr std::uint64_t kMinCharge = 4096;

  // A block read from disk that would need an eviction, named by a 64-bit fingerprint of
  // its key: true if it was declined within the window (forgotten then: it goes in);
  // false (and remembered) otherwise. The newest decline is always remembered, even one
  // larger than the window (a small tier still lets in a block read twice in a row).
  bool admit(std::uint64_t fingerprint, std::uint64_t footprint);

  std::uint64_t remembered_bytes() const noexcept { return bytes_; }

 private:
  struct Declined {
    std::uint64_t fingerprint;
    std::uint64_t charge;  // the footprint, at least kMinCharge: what bytes_ counts
  };
  std::uint64_t window_;
  std::uint64_t bytes_ = 0;
  std::deque<Declined> order_;  // oldest first
  struct Remembered {
    std::uint32_t entries = 0;  // in order_
    bool live = false;          // false once admitted: its entries only wait to age out
  };
  // A fingerprint collision can only let a block in early: it never decides which bytes
  // are served.
  std::unordered_map<std::uint64_t, Remembered> remembered_;
};

}  // namespace tagd::cache
