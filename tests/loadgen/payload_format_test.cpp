// Load generator payloads decode back to the model's readings through the gateway's decoder.
#include <catch2/catch.hpp>

#include "loadgen/city_model.hpp"
#include "loadgen/payload_format.hpp"
#include "protocols/payload/json_decoder.hpp"

using namespace citygate;

TEST_CASE("a JSON payload carries ts and every reading, exactly") {
    loadgen::CityModel city(50, 7);
    payload::JsonDecoder decoder;
    for (std::size_t sensor = 0; sensor < city.sensors().size(); ++sensor) {
        std::vector<loadgen::Reading> readings;
        std::int64_t ts = 1732262400000 + static_cast<std::int64_t>(sensor) * 10'000;
        city.readings(sensor, ts, readings);
        std::string text;
        loadgen::format_json(ts, readings, text);

        std::vector<payload::Reading> decoded;
        payload::SkippedFields skipped;
        auto bytes = std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
        INFO(text);
        REQUIRE_FALSE(decoder.decode(bytes, 0, decoded, skipped));
        REQUIRE(decoded.size() == readings.size());
        for (std::size_t i = 0; i < readings.size(); ++i) {
            CHECK(decoded[i].measurement == readings[i].measurement);
            CHECK(decoded[i].value == readings[i].value);
            CHECK(decoded[i].timestamp_ms == ts);
        }
    }
}
