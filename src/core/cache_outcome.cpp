#include "tagd/core/cache_outcome.hpp"

#include "tagd/core/metrics.hpp"

namespace tagd {

std::string_view x_cache_label(CacheOutcome outcome) {
  switch (outcome) {
    case CacheOutcome::kNone: return "";
    case CacheOutcome::kHit: return "HIT";
    case CacheOutcome::kMiss: return "MISS";
    case CacheOutcome::kRevalidated: return "REVALIDATED";
    case CacheOutcome::kBypass: return "BYPASS";
    case CacheOutcome::kDisabled: return "DISABLED";
  }
  return "";
}

void count_cache_outcome(CacheOutcome outcome) {
  auto& m = metrics();
  switch (outcome) {
    case CacheOutcome::kNone: return;
    case CacheOutcome::kHit: m.cache_hits.inc(); return;
    case CacheOutcome::kMiss: m.cache_misses.inc(); return;
    case CacheOutcome::kRevalidated: m.cache_revalidated.inc(); return;
    case CacheOutcome::kBypass: m.cache_bypass.inc(); return;
    case CacheOutcome::kDisabled: m.cache_disabled.inc(); return;
  }
}

}  // namespace tagd
