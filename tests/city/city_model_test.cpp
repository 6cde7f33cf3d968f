// The city model is deterministic, covers every district and type, and reads plausibly.
#include <catch2/catch.hpp>

#include <cmath>
#include <set>

#include "city/city_model.hpp"

using namespace citygate::loadgen;

TEST_CASE("the city model is deterministic and order-independent") {
    CityModel a(500, 7), b(500, 7), c(500, 8);
    std::int64_t t = 1'718'409'600'000;
    for (std::size_t s = 0; s < 500; s += 37) {
        CHECK(a.sensors()[s].device == b.sensors()[s].device);
        CHECK(a.value(s, 0, t + 10'000) == b.value(s, 0, t + 10'000));
    }
    // Reading later first gives the same values.
    double later = a.value(3, 0, t + 3'600'000);
    (void)a.value(3, 0, t);
    CHECK(a.value(3, 0, t + 3'600'000) == later);
    int differ = 0;
    for (std::size_t s = 0; s < 100; ++s)
        differ += a.value(s, 0, t) != c.value(s, 0, t);
    CHECK(differ > 50);
}

TEST_CASE("the city covers the 16 districts and every sensor type") {
    CityModel city(1000, 1);
    std::set<std::string> districts_seen;
    std::set<SensorType> types;
    std::set<std::string> devices;
    for (const auto& s : city.sensors()) {
        districts_seen.insert(s.district);
        types.insert(s.type);
        devices.insert(s.device);
    }
    CHECK(districts_seen.size() == 16);
    CHECK(types.size() == 6);
    CHECK(devices.size() == 1000);
    CHECK(districts().size() == 16);
    CHECK(districts()[3] == "jingan");
}

TEST_CASE("topics follow city/{district}/{type}/{device}") {
    CityModel city(20, 1);
    const auto& s = city.sensors()[5];
    CHECK(topic(s) == "city/" + s.district + "/" + std::string(type_name(s.type)) + "/" + s.device);
    CHECK(topic(s).starts_with("city/"));
}

TEST_CASE("readings are plausible, at sensor precision, and change smoothly") {
    CityModel city(200, 3);
    std::int64_t t = 1'718'409'600'000;
    for (std::size_t s = 0; s < 200; ++s) {
        std::vector<Reading> r;
        city.readings(s, t, r);
        CHECK(r.size() == measurements(city.sensors()[s].type).size());
        for (std::size_t m = 0; m < r.size(); ++m) {
            CHECK(std::isfinite(r[m].value));
            CHECK(r[m].value >= -20);
            double ten = r[m].value * 100;
            CHECK(std::fabs(ten - std::round(ten)) < 1e-6);  // at most two decimals
            double next = city.value(s, m, t + 10'000);
            CHECK(std::fabs(next - r[m].value) < 0.25 * std::fabs(r[m].value) + 10);
        }
    }
    CHECK(city.points_between(t, t + 3'600'000, 10'000) > 200 * 360);
}
