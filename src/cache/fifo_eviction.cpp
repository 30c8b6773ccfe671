#include <algorithm>
#include <vector>

#include "tagd/cache/eviction.hpp"

namespace tagd::cache {
namespace {

class FifoEviction final : public EvictionPolicy {
 public:
  void attach(std::uint32_t region_count) override { pinned_.resize(std::max<std::size_t>(pinned_.size(), region_count)); }
  void on_sealed(std::uint32_t region) override { sealed_.push_back(region); }
  void on_hit(std::uint32_t) override {}  // FIFO ignores recency by design
  bool wants_hits() const noexcept override { return false; }
  void on_pinned(std::uint32_t region, bool pinned) override {
    if (region >= pinned_.size()) pinned_.resize(region + 1);
    pinned_[region] = pinned;
  }
  // The oldest unpinned region; pinned ones keep their place, so once unpinned they are
  // next in line again as their age says.
  std::uint32_t pick_victim() override {
    auto it = std::find_if(sealed_.begin(), sealed_.end(),
                           [&](std::uint32_t r) { return r >= pinned_.size() || !pinned_[r]; });
    if (it == sealed_.end()) return kNoVictim;
    const std::uint32_t r = *it;
    sealed_.erase(it);
    return r;
  }
  const char* name() const noexcept override { return "fifo"; }

 private:
  std::deque<std::uint32_t> sealed_;
  std::vector<bool> pinned_;
};

}  // namespace

std::unique_ptr<EvictionPolicy> make_fifo_eviction() { return std::make_unique<FifoEviction>(); }

std::unique_ptr<EvictionPolicy> make_eviction_policy(std::string_view name) {
  if (name == "fifo") return make_fifo_eviction();
  return nullptr;
}

}  // namespace tagd::cache
