#include "tagd/cache/second_read_gate.hpp"

#include <algorithm>

namespace tagd::cache {

bool SecondReadGate::admit(std::uint64_t fingerprint, std::uint64_t footprint) {
  if (auto it = remembered_.find(fingerprint); it != remembered_.end() && it->second.live) {
    it->second.live = false;
    return true;
  }
  const std::uint64_t charge = std::max(footprint, kMinCharge);
  Remembered& r = remembered_[fingerprint];
  ++r.entries;
  r.live = true;
  order_.push_back({fingerprint, charge});
  bytes_ += charge;
  while (bytes_ > window_ && order_.size() > 1) {
    const Declined oldest = order_.front();
    order_.pop_front();
    bytes_ -= oldest.charge;
    auto it = remembered_.find(oldest.fingerprint);
    if (--it->second.entries == 0) remembered_.erase(it);
  }
  return false;
}

}  // namespace tagd::cache
