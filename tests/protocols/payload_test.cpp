// Payload decoding: topic templates and JSON object payloads.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>

#include "protocols/payload/json_decoder.hpp"
#include "protocols/payload/topic_template.hpp"

using citygate::payload::JsonDecoder;
using citygate::payload::Reading;
using citygate::payload::Readings;
using citygate::payload::SkippedFields;
using citygate::payload::TopicTemplate;
namespace payload = citygate::payload;

namespace {

std::span<const std::uint8_t> bytes(const std::string& text) {
    return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}

}  // namespace

TEST_CASE("a topic template binds levels to tags") {
    auto tmpl = TopicTemplate::parse("city/{district}/{type}/{device}");
    REQUIRE(tmpl);
    std::vector<std::pair<std::string_view, std::string_view>> tags;
    REQUIRE(tmpl->match("city/pudong/air/a-0001", tags));
    REQUIRE(tags.size() == 3);
    CHECK(tags[0] == std::pair<std::string_view, std::string_view>("district", "pudong"));
    CHECK(tags[1] == std::pair<std::string_view, std::string_view>("type", "air"));
    CHECK(tags[2] == std::pair<std::string_view, std::string_view>("device", "a-0001"));
}

TEST_CASE("a topic template rejects topics of another shape") {
    auto tmpl = TopicTemplate::parse("city/{district}/{type}/{device}");
    REQUIRE(tmpl);
    std::vector<std::pair<std::string_view, std::string_view>> tags;
    CHECK_FALSE(tmpl->match("town/pudong/air/a-0001", tags));
    CHECK_FALSE(tmpl->match("city/pudong/air", tags));
    CHECK_FALSE(tmpl->match("city/pudong/air/a-0001/extra", tags));
    CHECK_FALSE(tmpl->match("city//air/a-0001", tags));
    CHECK(tags.empty());
}

TEST_CASE("malformed topic templates are refused with a reason") {
    std::string error;
    CHECK_FALSE(TopicTemplate::parse("", &error));
    CHECK_FALSE(TopicTemplate::parse("city/+/{type}", &error));
    CHECK(error.find("wildcards") != std::string::npos);
    CHECK_FALSE(TopicTemplate::parse("city/{a}/{a}", &error));
    CHECK(error.find("twice") != std::string::npos);
    CHECK_FALSE(TopicTemplate::parse("city/x{a}", &error));
    CHECK_FALSE(TopicTemplate::parse("city/{}", &error));
}

TEST_CASE("each numeric field of a JSON object becomes a reading stamped with ts") {
    JsonDecoder decoder;
    Readings out;
    SkippedFields skipped;
    auto ec = decoder.decode(bytes(R"({"ts": 1732262400000, "pm25": 35.2, "pm10": 60})"), 5, out,
                             skipped);
    REQUIRE_FALSE(ec);
    REQUIRE(out.size() == 2);
    CHECK(out[0].measurement == "pm25");
    CHECK(out[0].value == 35.2);
    CHECK(out[0].timestamp_ms == 1732262400000);
    CHECK(out[1].measurement == "pm10");
    CHECK(out[1].value == 60);
    CHECK(out[1].timestamp_ms == 1732262400000);
}

TEST_CASE("without ts the readings carry the arrival time") {
    JsonDecoder decoder;
    Readings out;
    SkippedFields skipped;
    REQUIRE_FALSE(decoder.decode(bytes(R"({"temperature": -3.5})"), 1234, out, skipped));
    REQUIRE(out.size() == 1);
    CHECK(out[0].timestamp_ms == 1234);
    CHECK(out[0].value == -3.5);
}

TEST_CASE("non-numeric fields are skipped and counted, numeric ones kept") {
    JsonDecoder decoder;
    Readings out;
    SkippedFields skipped;
    REQUIRE_FALSE(decoder.decode(
        bytes(
            R"({"status": "ok", "pm25": 1, "on": true, "nested": {"a": 1}, "list": [1, 2], "n": null})"),
        0, out, skipped));
    REQUIRE(out.size() == 1);
    CHECK(out[0].measurement == "pm25");
    CHECK(skipped.non_numeric == 5);
}

TEST_CASE("numbers beyond a double are refused, never stored as infinity") {
    JsonDecoder decoder;
    Readings out;
    SkippedFields skipped;
    CHECK(decoder.decode(bytes(R"({"a": 1e999, "b": 2})"), 0, out, skipped) ==
          payload::errc::invalid_number);
    CHECK(out.empty());
}

TEST_CASE("bad JSON payloads are errors and append nothing") {
    JsonDecoder decoder;
    Readings out;
    SkippedFields skipped;
    CHECK(decoder.decode(bytes(""), 0, out, skipped) == payload::errc::empty_payload);
    CHECK(decoder.decode(bytes("{\"a\": 1"), 0, out, skipped) == payload::errc::invalid_json);
    CHECK(decoder.decode(bytes("{\"a\": NaN}"), 0, out, skipped) == payload::errc::invalid_json);
    CHECK(decoder.decode(bytes("{\"a\": 1} x"), 0, out, skipped) == payload::errc::invalid_json);
    CHECK(decoder.decode(bytes("[1, 2]"), 0, out, skipped) == payload::errc::not_an_object);
    CHECK(decoder.decode(bytes("42"), 0, out, skipped) == payload::errc::not_an_object);
    CHECK(decoder.decode(bytes(R"({"s": "x"})"), 0, out, skipped) ==
          payload::errc::no_numeric_field);
    CHECK(decoder.decode(bytes(R"({"ts": "now", "a": 1})"), 0, out, skipped) ==
          payload::errc::bad_timestamp);
    CHECK(decoder.decode(bytes(R"({"ts": -5, "a": 1})"), 0, out, skipped) ==
          payload::errc::bad_timestamp);
    CHECK(decoder.decode(bytes(R"({"a": 1, "ts": 1.5})"), 0, out, skipped) ==
          payload::errc::bad_timestamp);
    CHECK(out.empty());
}

TEST_CASE("payloads over the limit are refused before parsing") {
    JsonDecoder decoder(16);
    Readings out;
    SkippedFields skipped;
    CHECK(decoder.decode(bytes(R"({"pm25": 35.2, "pm10": 60})"), 0, out, skipped) ==
          payload::errc::payload_too_large);
}

TEST_CASE("the decoder is reusable across payloads of different sizes") {
    JsonDecoder decoder;
    Readings out;
    SkippedFields skipped;
    std::string big = "{";
    for (int i = 0; i < 200; ++i)
        big += "\"m" + std::to_string(i) + "\": " + std::to_string(i) + ",";
    big.back() = '}';
    REQUIRE_FALSE(decoder.decode(bytes(big), 0, out, skipped));
    REQUIRE_FALSE(decoder.decode(bytes(R"({"x": 7})"), 0, out, skipped));
    REQUIRE(out.size() == 201);
    CHECK(out.back().value == 7);
}
