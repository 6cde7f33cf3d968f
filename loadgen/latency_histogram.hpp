// An HDR-style latency histogram: log-linear buckets (16 per power of two, about 6 % wide) from
// 1 µs to about an hour, fixed memory, mergeable across threads.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>

namespace citygate::loadgen {

class LatencyHistogram {
  public:
    void record(std::chrono::nanoseconds latency);
    void merge(const LatencyHistogram& other);

    std::uint64_t count() const { return count_; }
    std::chrono::nanoseconds max() const { return std::chrono::nanoseconds(max_); }
    // The smallest recorded latency bound at or above fraction `q` (0..1) of the samples; the
    // bucket's upper edge, so it never understates. 0 when empty.
    std::chrono::nanoseconds quantile(double q) const;

  private:
    static constexpr int sub_buckets = 16;
    static constexpr int exponents = 32;  // 2^32 µs is 71 minutes
    static std::size_t index_of(std::uint64_t micros);
    static std::uint64_t upper_edge(std::size_t index);

    std::array<std::uint64_t, sub_buckets * exponents> buckets_{};
    std::uint64_t count_ = 0;
    std::int64_t max_ = 0;
};

}  // namespace citygate::loadgen
