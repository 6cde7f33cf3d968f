// Load generator payloads decode back to the model's readings through the gateway's decoder.
#include <catch2/catch.hpp>

#include "city/city_model.hpp"
#include "loadgen/payload_format.hpp"
#include "protocols/payload/json_decoder.hpp"

#include <simdjson.h>

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

        payload::Readings decoded;
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

namespace {

loadgen::Sensor air_sensor() {
    loadgen::Sensor sensor;
    sensor.index = 42;
    sensor.district = "pudong";
    sensor.type = loadgen::SensorType::air;
    sensor.device = "air-000042";
    return sensor;
}

const std::vector<loadgen::Reading> air_readings = {{"pm25", 35.2}, {"pm10", 60}, {"no2", 0.1}};

}  // namespace

TEST_CASE("a SenML payload is an RFC 8428 pack: base name and time once, unit per record") {
    std::string text;
    loadgen::format_senml(air_sensor(), 1732262400500, air_readings, text);
    CHECK(text ==
          R"([{"bn":"urn:dev:city:air-000042:","bt":1732262400.5,"n":"pm25","u":"ug/m3","v":35.2},)"
          R"({"n":"pm10","u":"ug/m3","v":60},{"n":"no2","u":"ug/m3","v":0.1}])");
}

TEST_CASE("a SenML pack parses as JSON and carries every reading exactly") {
    loadgen::CityModel city(40, 3);
    simdjson::dom::parser parser;
    for (std::size_t sensor = 0; sensor < city.sensors().size(); ++sensor) {
        std::vector<loadgen::Reading> readings;
        std::int64_t ts = 1732262400123 + static_cast<std::int64_t>(sensor) * 10'000;
        city.readings(sensor, ts, readings);
        std::string text;
        loadgen::format_senml(city.sensors()[sensor], ts, readings, text);
        INFO(text);
        simdjson::dom::array pack = parser.parse(text).get_array();
        REQUIRE(pack.size() == readings.size());
        CHECK(std::int64_t(double(pack.at(0)["bt"]) * 1000 + 0.5) == ts);
        std::size_t i = 0;
        for (simdjson::dom::element record : pack) {
            CHECK(std::string_view(record["n"]) == readings[i].measurement);
            CHECK(double(record["v"]) == readings[i].value);
            CHECK_FALSE(std::string_view(record["u"]).empty());
            ++i;
        }
    }
}

TEST_CASE("a line protocol payload is one line: type, topic tags, fields, time in ns") {
    std::string text;
    loadgen::format_line_protocol(air_sensor(), 1732262400500, air_readings, text);
    CHECK(text ==
          "air,district=pudong,device=air-000042 pm25=35.2,pm10=60,no2=0.1 "
          "1732262400500000000");
}

TEST_CASE("format names round-trip and unknown names are refused") {
    for (auto format : {loadgen::PayloadFormat::json, loadgen::PayloadFormat::senml,
                        loadgen::PayloadFormat::line})
        CHECK(loadgen::parse_payload_format(loadgen::payload_format_name(format)) == format);
    CHECK_FALSE(loadgen::parse_payload_format("xml"));
}
