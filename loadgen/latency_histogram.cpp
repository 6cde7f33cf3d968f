// Log-linear bucketing: values below 16 µs get a bucket each; above, each power of two is split
// into 16 equal buckets.
#include "loadgen/latency_histogram.hpp"

#include <algorithm>
#include <bit>
#include <cmath>

namespace citygate::loadgen {

std::size_t LatencyHistogram::index_of(std::uint64_t micros) {
    if (micros < sub_buckets) return micros;
    int exponent = std::bit_width(micros) - 1;  // micros in [2^e, 2^(e+1))
    int shift = exponent - 4;                   // 16 sub-buckets = 4 bits of mantissa
    std::uint64_t mantissa = (micros >> shift) - sub_buckets;
    std::size_t index = static_cast<std::size_t>(shift + 1) * sub_buckets + mantissa;
    return std::min(index, static_cast<std::size_t>(sub_buckets * exponents - 1));
}

std::uint64_t LatencyHistogram::upper_edge(std::size_t index) {
    if (index < sub_buckets) return index + 1;
    std::size_t shift = index / sub_buckets - 1;
    std::uint64_t mantissa = index % sub_buckets + sub_buckets;
    return (mantissa + 1) << shift;
}

void LatencyHistogram::record(std::chrono::nanoseconds latency) {
    std::int64_t nanos = std::max<std::int64_t>(0, latency.count());
    ++buckets_[index_of(static_cast<std::uint64_t>(nanos / 1000))];
    ++count_;
    max_ = std::max(max_, nanos);
}

void LatencyHistogram::merge(const LatencyHistogram& other) {
    for (std::size_t i = 0; i < buckets_.size(); ++i)
        buckets_[i] += other.buckets_[i];
    count_ += other.count_;
    max_ = std::max(max_, other.max_);
}

std::chrono::nanoseconds LatencyHistogram::quantile(double q) const {
    if (count_ == 0) return std::chrono::nanoseconds(0);
    auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(count_)));
    rank = std::clamp<std::uint64_t>(rank, 1, count_);
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < buckets_.size(); ++i) {
        seen += buckets_[i];
        if (seen >= rank) {
            auto edge = std::chrono::microseconds(upper_edge(i));
            return std::min<std::chrono::nanoseconds>(edge, max());
        }
    }
    return max();
}

}  // namespace citygate::loadgen
