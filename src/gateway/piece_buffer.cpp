#include <vector>

#include "exchange.hpp"

namespace tagd::gateway {
namespace {

// Bounded, so a burst of many connections does not pin its buffers forever: 256 pieces
// (16 MiB) per loop at most are kept for reuse.
constexpr std::size_t kMaxFree = 256;

std::vector<std::unique_ptr<char[]>>& free_pieces() {
  thread_local std::vector<std::unique_ptr<char[]>> pieces;
  return pieces;
}

}  // namespace

char* PieceBuffer::get() {
  if (!buffer_) {
    auto& pool = free_pieces();
    if (pool.empty()) {
      buffer_ = std::make_unique_for_overwrite<char[]>(kPiece);
    } else {
      buffer_ = std::move(pool.back());
      pool.pop_back();
    }
  }
  return buffer_.get();
}

PieceBuffer::~PieceBuffer() {
  if (!buffer_) return;
  auto& pool = free_pieces();
  if (pool.size() < kMaxFree) pool.push_back(std::move(buffer_));
}

}  // namespace tagd::gateway
