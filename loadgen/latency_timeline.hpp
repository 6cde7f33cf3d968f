// Latency histograms per one-second slot of a run, so the report can show how latency moved over
// time instead of only whole-run percentiles. Single writer; merge and read after it has stopped.
#pragma once

#include <chrono>
#include <cstddef>
#include <vector>

#include "loadgen/latency_histogram.hpp"

namespace citygate::loadgen {

class LatencyTimeline {
  public:
    using clock = std::chrono::steady_clock;
    // Bounds memory (a slot is a few KiB): samples later than this land in the last slot.
    static constexpr std::size_t max_slots = 4 * 3600;

    // Slot 0 begins at `origin`; samples before it count in slot 0.
    void start(clock::time_point origin) { origin_ = origin; }
    // A sample completed at `now`; slots are allocated as the run reaches them.
    void record(clock::time_point now, std::chrono::nanoseconds latency);
    // Adds another writer's slots; both must have started at the same origin.
    void merge(const LatencyTimeline& other);

    std::size_t slots() const { return slots_.size(); }
    // Slots [first, last) merged into one histogram; slots past the end count as empty.
    LatencyHistogram merged(std::size_t first, std::size_t last) const;

  private:
    clock::time_point origin_{};
    std::vector<LatencyHistogram> slots_;
};

}  // namespace citygate::loadgen
