#include "tagd/cache/block_store.hpp"

#include <algorithm>
#include <cstring>
#include <numeric>

namespace tagd::cache {

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
  store->generations_ = std::move(generations.value());

  // Regions written before a restart are sealed, oldest first, so FIFO resumes where it
  // stopped. The one that was being filled is sealed too: its indexed blocks are whole
  // (bytes before index entries), and the rest of it is simply unused.
  std::vector<std::uint32_t> used;
  for (std::uint32_t r = 0; r < count; ++r) {
    if (store->generations_[r] != 0) used.push_back(r);
    store->next_generation_ = std::max(store->next_generation_, store->generations_[r] + 1);
  }
  std::sort(used.begin(), used.end(),
            [&](std::uint32_t a, std::uint32_t b) { return store->generations_[a] < store->generations_[b]; });
  for (std::uint32_t r : used) {
    store->eviction_->on_sealed(r);
  }
  std::lock_guard lock(store->mu_);
  if (Status s = store->start_new_region_locked(); !s) return s;
  return store;
}

Status BlockStore::start_new_region_locked() {
  // Free regions (never written) first, then the policy's victim.
  std::uint32_t region = UINT32_MAX;
  for (std::uint32_t r = 0; r < generations_.size(); ++r) {
    if (generations_[r] == 0) {
      region = r;
      break;
    }
  }
  if (region == UINT32_MAX) {
    region = eviction_->pick_victim();
    ++stats_.regions_evicted;
  }
  std::uint64_t generation = next_generation_++;
  // Persist the new generation before any block lands in the region: from here on, every
  // index entry of the region's previous life is stale.
  if (Status s = index_.put_region_generation(region, generation); !s) return s;
  generations_[region] = generation;
  active_region_ = region;
  active_offset_ = 0;
  return Status::ok();
}

Status BlockStore::put(const BlockIdentity& id, std::span<const std::byte> payload) {
  if (payload.size() > options_.max_block_payload) {
    return Status(ErrorCode::kInvalidArgument, "block larger than the configured block size");
  }
  const std::size_t alignment = device_.alignment();
  const std::uint64_t stored = stored_block_size(static_cast<std::uint32_t>(payload.size()), alignment);
  AlignedBuffer buffer(stored, std::max<std::size_t>(alignment, 64));
  std::memset(buffer.data(), 0, stored);
  encode_block_header(id, payload, std::span<std::byte, kBlockHeaderSize>(buffer.data(), kBlockHeaderSize));
  std::memcpy(buffer.data() + kBlockHeaderSize, payload.data(), payload.size());

  std::lock_guard lock(mu_);
  if (active_offset_ + stored > options_.region_size) {
    eviction_->on_sealed(active_region_);
    if (Status s = start_new_region_locked(); !s) return s;
  }
  BlockLocation location{active_region_, generations_[active_region_],
                         std::uint64_t{active_region_} * options_.region_size + active_offset_,
                         static_cast<std::uint32_t>(payload.size())};
  if (Status s = device_.write(location.offset, {buffer.data(), stored}); !s) return s;
  active_offset_ += stored;
  ++stats_.blocks_written;
  stats_.bytes_written += stored;
  return index_.put_block(id.key_hash, id.etag, id.block_number, location);
}

ReadOutcome BlockStore::get(const BlockIdentity& id, std::vector<std::byte>& out) {
  auto found = index_.get_block(id.key_hash, id.etag, id.block_number);
  if (!found || !found->has_value()) return ReadOutcome::kMissing;
  const BlockLocation location = **found;
  {
    std::lock_guard lock(mu_);
    if (location.region >= generations_.size() || generations_[location.region] != location.generation) {
      ++stats_.stale_lookups;
      (void)index_.erase_block(id.key_hash, id.etag, id.block_number);
      return ReadOutcome::kStale;
    }
  }
  // Read without the lock: if the region is recycled meanwhile, the header check below
  // sees another block's identity and reports it, so stale bytes are never returned.
  const std::uint64_t stored = stored_block_size(location.length, device_.alignment());
  AlignedBuffer buffer(stored, std::max<std::size_t>(device_.alignment(), 64));
  auto corrupt = [&] {
    std::lock_guard lock(mu_);
    ++stats_.corrupt_blocks;
    (void)index_.erase_block(id.key_hash, id.etag, id.block_number);
    return ReadOutcome::kCorrupt;
  };
  if (!device_.read(location.offset, buffer.span()).is_ok()) return corrupt();
  auto header = decode_block_header(std::span<const std::byte, kBlockHeaderSize>(buffer.data(), kBlockHeaderSize),
                                    id, options_.max_block_payload);
  if (!header || header->length != location.length) return corrupt();
  std::span<const std::byte> payload(buffer.data() + kBlockHeaderSize, header->length);
  if (!verify_block_payload(*header, payload).is_ok()) return corrupt();
  out.assign(payload.begin(), payload.end());
  std::lock_guard lock(mu_);
  eviction_->on_hit(location.region);
  return ReadOutcome::kHit;
}

BlockStoreStats BlockStore::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

}  // namespace tagd::cache
