#pragma once
// Admission: whether a fill may start. TAG bounded fills by count only; tagd bounds the
// bytes in flight and the number of concurrent fills. When the budget is spent the object
// is still served (forwarded), just not cached.
#include <atomic>
#include <cstdint>
#include <memory>

namespace tagd::cache {

class AdmissionPolicy {
 public:
  virtual ~AdmissionPolicy() = default;
  // Reserves `bytes` for a fill; false = do not cache this one.
  virtual bool try_admit(std::uint64_t bytes) = 0;
  // Returns a reservation (the fill finished, failed or was abandoned).
  virtual void release(std::uint64_t bytes) = 0;
  virtual const char* name() const noexcept = 0;
};

std::unique_ptr<AdmissionPolicy> make_fill_budget(std::uint64_t max_bytes_in_flight, std::uint32_t max_fills);

// RAII reservation.
class Admission {
 public:
  Admission() = default;
  Admission(AdmissionPolicy* policy, std::uint64_t bytes) : policy_(policy), bytes_(bytes) {}
  Admission(const Admission&) = delete;
  Admission& operator=(const Admission&) = delete;
  Admission(Admission&& o) noexcept : policy_(o.policy_), bytes_(o.bytes_) { o.policy_ = nullptr; }
  Admission& operator=(Admission&& o) noexcept {
    if (this != &o) {
      reset();
      policy_ = o.policy_;
      bytes_ = o.bytes_;
      o.policy_ = nullptr;
    }
    return *this;
  }
  ~Admission() { reset(); }
  explicit operator bool() const noexcept { return policy_ != nullptr; }
  void reset() {
    if (policy_ != nullptr) policy_->release(bytes_);
    policy_ = nullptr;
  }

 private:
  AdmissionPolicy* policy_ = nullptr;
  std::uint64_t bytes_ = 0;
};

}  // namespace tagd::cache
