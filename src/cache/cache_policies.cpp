#include "tagd/cache/policies.hpp"

namespace tagd::cache {

std::optional<CachePolicies> make_cache_policies(std::string_view eviction_policy, std::uint64_t fill_budget_bytes,
                                                 std::uint32_t max_fills) {
  auto budget = make_fill_budget(fill_budget_bytes, max_fills);
  if (eviction_policy == "hit-gated") {
    auto policy = make_hit_gated_eviction();
    return CachePolicies{std::move(policy.eviction), make_gated_admission(std::move(budget), std::move(policy.gate))};
  }
  auto eviction = make_eviction_policy(eviction_policy);
  if (!eviction) return std::nullopt;
  return CachePolicies{std::move(eviction), std::move(budget)};
}

}  // namespace tagd::cache
