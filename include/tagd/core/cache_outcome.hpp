#pragma once
// What the cache did for one object GET/HEAD. The X-Cache header and the cache outcome
// counters are both derived from this one value, in one place (the response writer), so
// they cannot drift apart (TAG bug 10).
#include <string_view>

namespace tagd {

enum class CacheOutcome {
  kNone,         // not an object read: no X-Cache header, no counter
  kHit,          // served from the cache (fresh, or stale because the upstream failed)
  kMiss,         // not cached (or changed): fetched upstream
  kRevalidated,  // cached copy confirmed by a conditional request, then served from the cache
  kBypass,       // the request may not use the cache (anonymous, no-store, unknown header/parameter)
  kDisabled,     // the cache is off
};

// "HIT", "MISS", ... ; empty for kNone.
std::string_view x_cache_label(CacheOutcome outcome);
// Bumps exactly the one counter that belongs to `outcome` (none for kNone).
void count_cache_outcome(CacheOutcome outcome);

}  // namespace tagd
