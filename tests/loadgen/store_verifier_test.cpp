// --verify's comparison: acknowledged readings against what the store returned.
#include <catch2/catch.hpp>

#include "loadgen/store_verifier.hpp"

using namespace citygate::loadgen;

namespace {

constexpr std::int64_t start = 1'732'262'400'000, step = 10'000;

// What the store would return for a sensor's measurement at the given sequences.
std::vector<std::pair<std::int64_t, double>> stored(const CityModel& city, std::size_t sensor,
                                                    std::size_t m, std::vector<std::uint64_t> seq) {
    std::vector<std::pair<std::int64_t, double>> out;
    for (auto s : seq) {
        std::int64_t ts = start + std::int64_t(s) * step;
        out.emplace_back(ts, city.value(sensor, m, ts));
    }
    return out;
}

void store_everything(const CityModel& city, StoreVerifier& verifier, std::size_t sensor,
                      std::vector<std::uint64_t> seq) {
    auto names = measurements(city.sensors()[sensor].type);
    for (std::size_t m = 0; m < names.size(); ++m)
        verifier.observe(names[m], city.sensors()[sensor].device, stored(city, sensor, m, seq));
}

}  // namespace

TEST_CASE("verify passes when every acknowledged reading is stored with its value") {
    CityModel city(6, 1);
    StoreVerifier verifier(city, start, step);
    for (std::size_t sensor = 0; sensor < 6; ++sensor) {
        verifier.expect(sensor, {0, 1, 2, 3});
        store_everything(city, verifier, sensor, {3, 2, 1, 0, 4});  // 4: stored, never acked
    }
    verifier.observe("pm25", "air-999999", {{start, 1.0}});  // someone else's series
    auto result = verifier.finish();
    CHECK(result.ok());
    CHECK(result.readings_missing == 0);
    CHECK(result.values_checked == result.readings_expected);
    CHECK(verifier.first_ms() == start);
    CHECK(verifier.last_ms() == start + 3 * step);
}

TEST_CASE("verify names a series whose readings are missing and counts them") {
    CityModel city(3, 1);
    StoreVerifier verifier(city, start, step);
    for (std::size_t sensor = 0; sensor < 3; ++sensor)
        verifier.expect(sensor, {0, 1, 2});
    store_everything(city, verifier, 0, {0, 1, 2});
    store_everything(city, verifier, 1, {0, 2});  // reading 1 lost
    // sensor 2: nothing stored at all
    auto result = verifier.finish();
    CHECK_FALSE(result.ok());
    std::size_t m1 = measurements(city.sensors()[1].type).size();
    std::size_t m2 = measurements(city.sensors()[2].type).size();
    CHECK(result.readings_missing == m1 + 3 * m2);
    CHECK(result.series_missing == m2);
    bool named = false;
    for (const auto& problem : result.problems) {
        INFO(problem);
        if (problem.find(city.sensors()[1].device) != std::string::npos) {
            CHECK_THAT(problem, Catch::Contains("1 of 3"));
            CHECK_THAT(problem, Catch::Contains(std::to_string(start + step)));
            named = true;
        }
    }
    CHECK(named);
}

TEST_CASE("verify catches a stored value that differs from the one sent") {
    CityModel city(1, 1);
    StoreVerifier verifier(city, start, step);
    verifier.expect(0, {0});
    auto names = measurements(city.sensors()[0].type);
    for (std::size_t m = 0; m < names.size(); ++m) {
        auto points = stored(city, 0, m, {0});
        if (m == 0) points[0].second += 0.1;
        verifier.observe(names[m], city.sensors()[0].device, points);
    }
    auto result = verifier.finish();
    CHECK_FALSE(result.ok());
    CHECK(result.value_mismatches == 1);
    REQUIRE(result.problems.size() == 1);
    CHECK_THAT(result.problems[0], Catch::Contains("wrong value"));
}
