// Per-second latency slots.
#include "loadgen/latency_timeline.hpp"

#include <algorithm>

namespace citygate::loadgen {

void LatencyTimeline::record(clock::time_point now, std::chrono::nanoseconds latency) {
    auto since = std::chrono::duration_cast<std::chrono::seconds>(now - origin_).count();
    auto slot = std::min<std::size_t>(static_cast<std::size_t>(std::max<std::int64_t>(0, since)),
                                      max_slots - 1);
    if (slot >= slots_.size()) slots_.resize(slot + 1);
    slots_[slot].record(latency);
}

void LatencyTimeline::merge(const LatencyTimeline& other) {
    if (other.slots_.size() > slots_.size()) slots_.resize(other.slots_.size());
    for (std::size_t i = 0; i < other.slots_.size(); ++i)
        slots_[i].merge(other.slots_[i]);
}

LatencyHistogram LatencyTimeline::merged(std::size_t first, std::size_t last) const {
    LatencyHistogram out;
    for (std::size_t i = first; i < std::min(last, slots_.size()); ++i)
        out.merge(slots_[i]);
    return out;
}

}  // namespace citygate::loadgen
