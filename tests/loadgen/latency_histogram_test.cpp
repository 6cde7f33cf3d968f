// The latency histogram against exact percentiles of known data.
#include <catch2/catch.hpp>

#include <algorithm>
#include <random>
#include <vector>

#include "loadgen/latency_histogram.hpp"

using citygate::loadgen::LatencyHistogram;
using namespace std::chrono_literals;

TEST_CASE("an empty histogram reports zero") {
    LatencyHistogram histogram;
    CHECK(histogram.count() == 0);
    CHECK(histogram.quantile(0.99) == 0ns);
}

TEST_CASE("quantiles are within one bucket (about 6 %) above the exact value") {
    std::mt19937_64 random(42);
    std::lognormal_distribution<double> spread(7.0, 1.5);  // median about 1 ms in µs
    std::vector<std::int64_t> micros;
    LatencyHistogram histogram;
    for (int i = 0; i < 100'000; ++i) {
        auto value = static_cast<std::int64_t>(spread(random)) + 1;
        micros.push_back(value);
        histogram.record(std::chrono::microseconds(value));
    }
    std::sort(micros.begin(), micros.end());
    for (double q : {0.5, 0.9, 0.99, 0.999}) {
        auto exact = micros[static_cast<std::size_t>(q * micros.size()) - 1];
        auto estimate =
            std::chrono::duration_cast<std::chrono::microseconds>(histogram.quantile(q)).count();
        INFO("q=" << q << " exact=" << exact << " estimate=" << estimate);
        CHECK(estimate >= exact);
        CHECK(estimate <= exact * 1.07 + 1);
    }
    CHECK(histogram.max() == std::chrono::microseconds(micros.back()));
    CHECK(histogram.quantile(1.0) == histogram.max());
}

TEST_CASE("merging adds counts and keeps the larger maximum") {
    LatencyHistogram a, b;
    a.record(100us);
    b.record(5ms);
    b.record(7ms);
    a.merge(b);
    CHECK(a.count() == 3);
    CHECK(a.max() == 7ms);
    CHECK(a.quantile(0.34) >= 5ms);
}
