#pragma once
// The cache's eviction and admission policies, built together from the configuration:
// some eviction policies (hit-gated) also decide admission, so the two must share state.
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>

#include "tagd/cache/admission.hpp"
#include "tagd/cache/eviction.hpp"

namespace tagd::cache {

struct CachePolicies {
  std::unique_ptr<EvictionPolicy> eviction;    // for BlockStore::open
  std::unique_ptr<AdmissionPolicy> admission;  // the fill budget, behind the gate if there is one
};

// `eviction_policy` is cache.eviction_policy ("fifo", "hit-gated"); nullopt if unknown.
std::optional<CachePolicies> make_cache_policies(std::string_view eviction_policy, std::uint64_t fill_budget_bytes,
                                                 std::uint32_t max_fills);

}  // namespace tagd::cache
