#include <mutex>

#include "tagd/cache/admission.hpp"

namespace tagd::cache {
namespace {

class FillBudget final : public AdmissionPolicy {
 public:
  FillBudget(std::uint64_t max_bytes, std::uint32_t max_fills) : max_bytes_(max_bytes), max_fills_(max_fills) {}
  bool try_admit(std::uint64_t bytes) override {
    std::lock_guard lock(mu_);
    if (fills_ >= max_fills_ || bytes_ + bytes > max_bytes_) return false;
    ++fills_;
    bytes_ += bytes;
    return true;
  }
  void release(std::uint64_t bytes) override {
    std::lock_guard lock(mu_);
    --fills_;
    bytes_ -= bytes;
  }
  const char* name() const noexcept override { return "fill-budget"; }

 private:
  std::mutex mu_;
  std::uint64_t max_bytes_;
  std::uint32_t max_fills_;
  std::uint64_t bytes_ = 0;
  std::uint32_t fills_ = 0;
};

}  // namespace

std::unique_ptr<AdmissionPolicy> make_fill_budget(std::uint64_t max_bytes_in_flight, std::uint32_t max_fills) {
  return std::make_unique<FillBudget>(max_bytes_in_flight, max_fills);
}

}  // namespace tagd::cache
