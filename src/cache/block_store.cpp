#include "tagd/cache/block_store.hpp"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "tagd/core/metrics.hpp"

namespace tagd::cache {

namespace {
constexpr std::size_t kBufferAlignment = 4096;

std::uint64_t align_down(std::uint64_t v, std::uint64_t a) { return v / a * a; }
std::uint64_t align_up(std::uint64_t v, std::uint64_t a) { return (v + a - 1) / a * a; }
}  // namespace

BlockStore::BlockStore(BlockDevice& device, CacheIndex& index, std::unique_ptr<EvictionPolicy> eviction,
                       BlockStoreOptions options)
    : device_(device), index_(index), eviction_(std::move(eviction)), options_(options) {}

Result<std::unique_ptr<BlockStore>> BlockStore::open(BlockDevice& device, CacheIndex& index,
                                                     std::unique_ptr<EvictionPolicy> eviction,
                                                     BlockStoreOptions options) {
  if (options.region_size % device.alignment() != 0 ||
      options.region_size < stored_block_size(options.max_block_payload, device.alignment())) {
    return Status(ErrorCode::kInvalidArgument, "cache region must be aligned and hold at least one block");
  }
  std::uint64_t count = device.size() / options.region_size;
  if (count < 2) return Status(ErrorCode::kInvalidArgument, "cache device must hold at least two regions");
  std::unique_ptr<BlockStore> store(new BlockStore(device, index, std::move(eviction), options));
  auto generations = index.region_generations(static_cast<std::uint32_t>(count));
  if (!generations) return generations.error();
  store->region_count_ = static_cast<std::uint32_t>(count);
  store->generations_ = std::make_unique<std::atomic<std::uint64_t>[]>(count);
  for (std::uint32_t r = 0; r < count; ++r) store->generations_[r].store(generations.value()[r]);

  // Regions written before a restart are sealed, oldest first, so FIFO resumes where it
  // stopped. The one that was being filled is sealed too: its indexed blocks are whole
  // (bytes before index entries), and the rest of it is simply unused.
  std::vector<std::uint32_t> used;
  for (std::uint32_t r = 0; r < count; ++r) {
    const std::uint64_t g = generations.value()[r];
    if (g != 0) used.push_back(r);
    store->next_generation_ = std::max(store->next_generation_, g + 1);
  }
  std::sort(used.begin(), used.end(), [&](std::uint32_t a, std::uint32_t b) {
    return generations.value()[a] < generations.value()[b];
  });
  store->eviction_->attach(static_cast<std::uint32_t>(count));
  for (std::uint32_t r : used) store->eviction_->on_sealed(r);
  // Whole regions: one that holds any block counts as used (start_new_region_locked adds
  // each free region it takes).
  metrics().cache_capacity_bytes.set(static_cast<std::int64_t>(store->capacity_bytes()));
  metrics().cache_used_bytes.set(static_cast<std::int64_t>(used.size() * options.region_size));
  std::lock_guard lock(store->mu_);
  if (Status s = store->start_new_region_locked(); !s) return s;
  return store;
}

Status BlockStore::start_new_region_locked() {
  // Free regions (never written) first, then the policy's victim.
  std::uint32_t region = UINT32_MAX;
  for (std::uint32_t r = 0; r < region_count_; ++r) {
    if (generations_[r].load(std::memory_order_relaxed) == 0) {
      region = r;
      break;
    }
  }
  if (region == UINT32_MAX) {
    region = eviction_->pick_victim();
    ++stats_.regions_evicted;
    metrics().cache_region_evictions.inc();
    metrics().cache_evicted_bytes.inc(options_.region_size);
  } else {
    metrics().cache_used_bytes.add(static_cast<std::int64_t>(options_.region_size));  // a free region taken
  }
  std::uint64_t generation = next_generation_++;
  // Persist the new generation before any block lands in the region: from here on, every
  // index entry of the region's previous life is stale. The in-memory generation moves
  // first, so a read racing the reuse fails its after-read check.
  generations_[region].store(generation, std::memory_order_release);
  if (Status s = index_.put_region_generation(region, generation); !s) return s;
  active_region_ = region;
  active_offset_ = 0;
  return Status::ok();
}

Status BlockStore::put(const BlockIdentity& id, std::span<const std::byte> payload) {
  if (payload.size() > options_.max_block_payload) {
    return Status(ErrorCode::kInvalidArgument, "block larger than the configured block size");
  }
  const auto length = static_cast<std::uint32_t>(payload.size());
  const std::size_t alignment = device_.alignment();
  const std::uint64_t stored = stored_block_size(length, alignment);
  const std::uint32_t payload_offset = block_payload_offset(length);
  std::vector<std::uint32_t> pieces = block_piece_checksums(payload);
  AlignedBuffer buffer(stored, std::max(alignment, kBufferAlignment));
  encode_block_header(id, payload, pieces, buffer.span().first(payload_offset));
  std::memcpy(buffer.data() + payload_offset, payload.data(), payload.size());
  // Only the padding is zeroed (deterministic bytes on disk), not the whole buffer.
  std::memset(buffer.data() + payload_offset + length, 0, stored - payload_offset - length);

  std::lock_guard lock(mu_);
  if (active_offset_ + stored > options_.region_size) {
    eviction_->on_sealed(active_region_);
    if (Status s = start_new_region_locked(); !s) return s;
  }
  BlockLocation location{active_region_, generations_[active_region_].load(std::memory_order_relaxed),
                         std::uint64_t{active_region_} * options_.region_size + active_offset_, length,
                         std::move(pieces)};
  if (Status s = device_.write(location.offset, {buffer.data(), stored}); !s) return s;
  active_offset_ += stored;
  eviction_->on_written(active_region_);
  ++stats_.blocks_written;
  stats_.bytes_written += stored;
  return index_.put_block(id.key_hash, id.etag, id.block_number, location);
}

bool BlockStore::current(const BlockLocation& location) const {
  return location.region < region_count_ &&
         generations_[location.region].load(std::memory_order_acquire) == location.generation;
}

BlockRead BlockStore::drop(const BlockIdentity& id, ReadOutcome why) {
  (why == ReadOutcome::kStale ? stale_lookups_ : corrupt_blocks_).fetch_add(1, std::memory_order_relaxed);
  (void)index_.erase_block(id.key_hash, id.etag, id.block_number);
  return BlockRead{why, nullptr};
}

void BlockStore::count_hit(const BlockLocation& location) {
  if (!eviction_->wants_hits()) return;
  if (!eviction_->hits_need_store_lock()) {
    eviction_->on_hit(location.region);
    return;
  }
  std::lock_guard lock(mu_);
  eviction_->on_hit(location.region);
}

bool BlockStore::contains(const BlockIdentity& id) {
  auto found = index_.get_block(id.key_hash, id.etag, id.block_number);
  return found && found->has_value() && current(**found);
}

boost::asio::awaitable<BlockRead> BlockStore::read(const BlockIdentity& id) {
  auto found = index_.get_block(id.key_hash, id.etag, id.block_number);
  if (!found || !found->has_value()) co_return BlockRead{};
  const BlockLocation location = std::move(**found);
  if (!current(location)) co_return drop(id, ReadOutcome::kStale);
  const std::uint64_t stored = stored_block_size(location.length, device_.alignment());
  AlignedBuffer buffer(stored, std::max(device_.alignment(), kBufferAlignment));
  const Status io = co_await device_.async_read(location.offset, buffer.span());
  // A region recycled while the read was in flight: whatever was read is not this block.
  if (!current(location)) co_return drop(id, ReadOutcome::kStale);
  if (!io.is_ok()) co_return drop(id, ReadOutcome::kCorrupt);
  auto header = decode_block_header(buffer.span(), id, options_.max_block_payload);
  if (!header || header->length != location.length || header->piece_crc32c != location.piece_crc32c) {
    co_return drop(id, ReadOutcome::kCorrupt);
  }
  const std::uint32_t payload_offset = block_payload_offset(location.length);
  if (!verify_block_pieces(header->piece_crc32c, location.length, 0,
                           std::span<const std::byte>(buffer.data() + payload_offset, location.length))
           .is_ok()) {
    co_return drop(id, ReadOutcome::kCorrupt);
  }
  count_hit(location);
  co_return BlockRead{ReadOutcome::kHit,
                      std::make_shared<const BlockData>(std::move(buffer), payload_offset, location.length), 0,
                      true};
}

boost::asio::awaitable<BlockRead> BlockStore::read_range(const BlockIdentity& id, std::uint32_t offset,
                                                         std::uint32_t length) {
  auto found = index_.get_block(id.key_hash, id.etag, id.block_number);
  if (!found || !found->has_value()) co_return BlockRead{};
  const BlockLocation location = std::move(**found);
  if (!current(location)) co_return drop(id, ReadOutcome::kStale);
  if (length == 0 || std::uint64_t{offset} + length > location.length ||
      location.piece_crc32c.size() != block_piece_count(location.length)) {
    co_return drop(id, ReadOutcome::kCorrupt);
  }
  // The pieces holding [offset, offset + length), and the aligned device range holding them.
  const std::uint32_t first_piece = offset >> kBlockPieceShift;
  const std::uint32_t last_piece = (offset + length - 1) >> kBlockPieceShift;
  const std::uint64_t pieces_begin = std::uint64_t{first_piece} << kBlockPieceShift;
  const std::uint64_t pieces_end = std::min<std::uint64_t>(std::uint64_t{last_piece + 1} << kBlockPieceShift,
                                                           location.length);
  const std::uint64_t payload_at = location.offset + block_payload_offset(location.length);
  const std::uint64_t device_begin = align_down(payload_at + pieces_begin, device_.alignment());
  const std::uint64_t device_end = align_up(payload_at + pieces_end, device_.alignment());
  AlignedBuffer buffer(device_end - device_begin, std::max(device_.alignment(), kBufferAlignment));
  const Status io = co_await device_.async_read(device_begin, buffer.span());
  if (!current(location)) co_return drop(id, ReadOutcome::kStale);
  if (!io.is_ok()) co_return drop(id, ReadOutcome::kCorrupt);
  const std::size_t pieces_at = payload_at + pieces_begin - device_begin;
  if (!verify_block_pieces(location.piece_crc32c, location.length, first_piece,
                           std::span<const std::byte>(buffer.data() + pieces_at, pieces_end - pieces_begin))
           .is_ok()) {
    co_return drop(id, ReadOutcome::kCorrupt);
  }
  count_hit(location);
  const std::size_t wanted_at = pieces_at + (offset - pieces_begin);
  co_return BlockRead{ReadOutcome::kHit, std::make_shared<const BlockData>(std::move(buffer), wanted_at, length),
                      offset};
}

BlockStoreStats BlockStore::stats() const {
  std::lock_guard lock(mu_);
  BlockStoreStats s = stats_;
  s.corrupt_blocks = corrupt_blocks_.load(std::memory_order_relaxed);
  s.stale_lookups = stale_lookups_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace tagd::cache
