// Per-device client ids and credentials.
#include <catch2/catch.hpp>

#include "loadgen/device_template.hpp"

using namespace citygate::loadgen;

TEST_CASE("device templates expand every placeholder and keep other text") {
    Sensor sensor;
    sensor.index = 7;
    sensor.district = "xuhui";
    sensor.type = SensorType::noise;
    sensor.device = "noise-000007";
    CHECK(expand_device_template("u-{device}", sensor) == "u-noise-000007");
    CHECK(expand_device_template("{district}/{type}/{index}", sensor) == "xuhui/noise/7");
    CHECK(expand_device_template("secret", sensor) == "secret");
    CHECK(expand_device_template("{unknown}{device", sensor) == "{unknown}{device");
}
