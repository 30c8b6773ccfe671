// Which events an endpoint receives: every condition set must hold (bucket in the list,
// key prefix, key suffix, event type in the list); an unset condition takes everything.
#include <algorithm>

#include "tagd/notify/settings.hpp"

namespace tagd::notify {

bool Filter::matches(std::string_view bucket, std::string_view key, EventType type) const noexcept {
  if (!buckets.empty() && std::find(buckets.begin(), buckets.end(), bucket) == buckets.end()) return false;
  if (key.size() < prefix.size() || key.substr(0, prefix.size()) != prefix) return false;
  if (key.size() < suffix.size() || key.substr(key.size() - suffix.size()) != suffix) return false;
  if (!events.empty() && std::find(events.begin(), events.end(), type) == events.end()) return false;
  return true;
}

}  // namespace tagd::notify
