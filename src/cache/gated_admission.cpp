// The fill budget behind a FillGate (admission.hpp): the gate decides whether a new object
// is worth caching, the budget whether there is room in flight for it.
#include "tagd/cache/admission.hpp"

namespace tagd::cache {
namespace {

class GatedAdmission final : public AdmissionPolicy {
 public:
  GatedAdmission(std::unique_ptr<AdmissionPolicy> budget, std::shared_ptr<FillGate> gate)
      : budget_(std::move(budget)), gate_(std::move(gate)) {}
  bool try_admit(std::uint64_t bytes) override { return budget_->try_admit(bytes); }
  // The gate first: a declined miss must not take budget from one that will be cached.
  AdmitResult admit(std::uint64_t bytes) override {
    if (!gate_->admit_new_object()) return AdmitResult::kDeclined;
    return budget_->try_admit(bytes) ? AdmitResult::kAdmitted : AdmitResult::kBudgetSpent;
  }
  bool wants_object() override { return gate_->admit_new_object(); }
  bool gates_objects() const noexcept override { return true; }
  void release(std::uint64_t bytes) override { budget_->release(bytes); }
  const char* name() const noexcept override { return "gated-fill-budget"; }

 private:
  std::unique_ptr<AdmissionPolicy> budget_;
  std::shared_ptr<FillGate> gate_;
};

}  // namespace

std::unique_ptr<AdmissionPolicy> make_gated_admission(std::unique_ptr<AdmissionPolicy> budget,
                                                      std::shared_ptr<FillGate> gate) {
  return std::make_unique<GatedAdmission>(std::move(budget), std::move(gate));
}

}  // namespace tagd::cache
