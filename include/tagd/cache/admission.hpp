#pragma once
// Admission: whether a fill may start. TAG bounded fills by count only; tagd bounds the
// bytes in flight and the number of concurrent fills. When the budget is spent the object
// is still served (forwarded), just not cached.
#include <atomic>
#include <cstdint>
#include <memory>

namespace tagd::cache {

enum class AdmitResult {
  kAdmitted,     // reserved: the caller holds an Admission for `bytes`
  kBudgetSpent,  // cache.fill_budget / cache.max_fills: a degraded mode (metric, warning)
  kDeclined,     // the eviction policy would rather keep what it holds: nothing reserved;
                 // counted by the policy (tagd_cache_fills_declined_total), not a fault
};

class AdmissionPolicy {
 public:
  virtual ~AdmissionPolicy() = default;
  // Reserves `bytes` for a fill; false = do not cache this one. Budget only: used for the
  // later runs of an object whose fill was admitted, and for fills a user asked for (warm).
  virtual bool try_admit(std::uint64_t bytes) = 0;
  // The decision for a miss that would start caching an object: a policy may decline it
  // before any budget is reserved. kAdmitted reserves `bytes` exactly as try_admit does.
  virtual AdmitResult admit(std::uint64_t bytes) {
    return try_admit(bytes) ? AdmitResult::kAdmitted : AdmitResult::kBudgetSpent;
  }
  // The same decision without a reservation, for a miss that would start caching an
  // object again without going through admit(): its metadata is cached but the blocks a
  // request needs first were evicted (block fills hold no budget). False = serve it
  // without caching (declined by the eviction policy, counted there).
  virtual bool wants_object() { return true; }
  // False when wants_object() always says yes: the read path then skips the presence
  // check it needs only to ask (a hit pays nothing for a policy it does not use).
  virtual bool gates_objects() const noexcept { return false; }
  // Returns a reservation (the fill finished, failed or was abandoned).
  virtual void release(std::uint64_t bytes) = 0;
  virtual const char* name() const noexcept = 0;
};

std::unique_ptr<AdmissionPolicy> make_fill_budget(std::uint64_t max_bytes_in_flight, std::uint32_t max_fills);

// Scan resistance: whether the cache should take a new object at all. Implemented by an
// eviction policy that can tell (make_hit_gated_eviction); thread-safe, called once per
// miss that would start a fill, from any event loop.
class FillGate {
 public:
  virtual ~FillGate() = default;
  // A miss happened; true = cache it, false = every region holds data still being read.
  virtual bool admit_new_object() = 0;
};

// The fill budget behind a gate: admit() asks the gate first (a declined miss reserves
// nothing), try_admit() and release() are the budget's.
std::unique_ptr<AdmissionPolicy> make_gated_admission(std::unique_ptr<AdmissionPolicy> budget,
                                                      std::shared_ptr<FillGate> gate);

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
