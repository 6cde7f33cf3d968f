// What PromQL evaluates to: scalars, strings, instant vectors and matrices of float samples.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <variant>
#include <vector>

#include "promql/labels.hpp"

namespace citygate::promql {

// Prometheus' staleness marker: a NaN with this exact bit pattern ends a series (a scrape target
// went away). Any other NaN is an ordinary value.
inline constexpr std::uint64_t stale_nan_bits = 0x7ff0000000000002ULL;
inline double stale_nan() {
    double v;
    std::memcpy(&v, &stale_nan_bits, sizeof v);
    return v;
}
inline bool is_stale_nan(double v) {
    std::uint64_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    return bits == stale_nan_bits;
}

struct Point {
    std::int64_t t = 0;  // ms since the epoch
    double v = 0;
};

struct Series {
    Labels labels;
    std::vector<Point> points;  // ascending t
};

struct Sample {
    Labels labels;
    std::int64_t t = 0;
    double v = 0;
};

using Vector = std::vector<Sample>;
using Matrix = std::vector<Series>;

struct Scalar {
    std::int64_t t = 0;
    double v = 0;
};
struct String {
    std::int64_t t = 0;
    std::string v;
};

// A query's answer. An instant query of an instant-vector expression gives a Vector, of a
// range-vector expression a Matrix; a range query always gives a Matrix sorted by labels.
using Value = std::variant<Scalar, String, Vector, Matrix>;

}  // namespace citygate::promql
