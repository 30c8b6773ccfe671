#include <cassert>

#include "tagd/cache/eviction.hpp"

namespace tagd::cache {
namespace {

class FifoEviction final : public EvictionPolicy {
 public:
  void on_sealed(std::uint32_t region) override { sealed_.push_back(region); }
  void on_hit(std::uint32_t) override {}  // FIFO ignores recency by design
  bool wants_hits() const noexcept override { return false; }
  std::uint32_t pick_victim() override {
    assert(!sealed_.empty() && "pick_victim with no sealed region");
    std::uint32_t r = sealed_.front();
    sealed_.pop_front();
    return r;
  }
  const char* name() const noexcept override { return "fifo"; }

 private:
  std::deque<std::uint32_t> sealed_;
};

}  // namespace

std::unique_ptr<EvictionPolicy> make_fifo_eviction() { return std::make_unique<FifoEviction>(); }

std::unique_ptr<EvictionPolicy> make_eviction_policy(std::string_view name) {
  if (name == "fifo") return make_fifo_eviction();
  return nullptr;
}

}  // namespace tagd::cache
