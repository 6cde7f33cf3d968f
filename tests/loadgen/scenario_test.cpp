// Scenario presets.
#include <catch2/catch.hpp>

#include "loadgen/scenario.hpp"
#include "loadgen/source_addresses.hpp"

using namespace citygate::loadgen;

TEST_CASE("every preset is bounded in count and time and names valid source addresses") {
    for (auto name : scenario_names()) {
        INFO(name);
        auto s = scenario_preset(name);
        REQUIRE(s);
        CHECK(s->name == name);
        CHECK(s->duration_s > 0);
        CHECK(s->duration_s <= 600);
        CHECK(s->clients > 0);
        if (!s->bind.empty()) {
            std::string error;
            CHECK(parse_source_addresses(s->bind, error).size() * 60'000 >= s->clients);
        }
    }
    CHECK_FALSE(scenario_preset("rush"));
}

TEST_CASE("the presets have the shapes they are named for") {
    CHECK(scenario_preset("million-idle")->clients == 1'000'000);
    CHECK(scenario_preset("million-idle")->messages == 0);
    CHECK(scenario_preset("million-idle")->hold);
    CHECK(scenario_preset("peak-hour")->interval_ms == 10'000);
    CHECK(scenario_preset("connect-storm")->connect_rate == 0);
}
