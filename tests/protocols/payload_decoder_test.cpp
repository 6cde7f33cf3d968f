// PayloadDecoder as the gateway calls it: plain numbers, format detection and names, JSON
// objects, payload limits, buffer reuse, error categories, and the packed ReadingTags.
#include <catch2/catch.hpp>

#include <string>

#include "protocols/payload/payload_decoder.hpp"

using citygate::payload::Format;
using citygate::payload::PayloadDecoder;
using citygate::payload::PayloadLimits;
using citygate::payload::Reading;
using citygate::payload::Readings;
using citygate::payload::ReadingTags;
using citygate::payload::SkippedFields;
using citygate::payload::TimePrecision;
namespace payload = citygate::payload;

namespace {

constexpr std::int64_t arrival = 1732262400000;

std::span<const std::uint8_t> bytes(std::string_view text) {
    return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}

struct Decoded {
    boost::system::error_code ec;
    Readings readings;
    SkippedFields skipped;
};

Decoded decode(Format format, std::string_view text, std::string_view measurement = "level") {
    PayloadDecoder decoder;
    Decoded result;
    result.ec =
        decoder.decode(format, bytes(text), measurement, arrival, result.readings, result.skipped);
    return result;
}

}  // namespace

TEST_CASE("a plain number is one reading named by the caller, stamped on arrival") {
    for (auto [text, value] :
         {std::pair{"35.2", 35.2}, std::pair{" -1e3\n", -1000.0}, std::pair{"+7", 7.0},
          std::pair{"0", 0.0}, std::pair{".5", 0.5}, std::pair{"\t42\r\n", 42.0}}) {
        INFO(text);
        auto r = decode(Format::number, text, "water_level");
        REQUIRE_FALSE(r.ec);
        REQUIRE(r.readings.size() == 1);
        CHECK(r.readings[0].measurement == "water_level");
        CHECK(r.readings[0].value == value);
        CHECK(r.readings[0].timestamp_ms == arrival);
        CHECK(r.readings[0].tags.empty());
    }
}

TEST_CASE("a plain number that is not finite, not one number, or nameless is refused") {
    CHECK(decode(Format::number, "NaN").ec == payload::errc::invalid_number);
    CHECK(decode(Format::number, "inf").ec == payload::errc::invalid_number);
    CHECK(decode(Format::number, "-Infinity").ec == payload::errc::invalid_number);
    CHECK(decode(Format::number, "1e999").ec == payload::errc::invalid_number);
    CHECK(decode(Format::number, "abc").ec == payload::errc::not_a_number);
    CHECK(decode(Format::number, "1 2").ec == payload::errc::not_a_number);
    CHECK(decode(Format::number, "0x10").ec == payload::errc::not_a_number);
    CHECK(decode(Format::number, "++1").ec == payload::errc::not_a_number);
    CHECK(decode(Format::number, "+-1").ec == payload::errc::not_a_number);
    CHECK(decode(Format::number, "\"35\"").ec == payload::errc::not_a_number);
    CHECK(decode(Format::number, "").ec == payload::errc::empty_payload);
    CHECK(decode(Format::number, "  \n").ec == payload::errc::empty_payload);
    CHECK(decode(Format::number, "1", "").ec == payload::errc::no_measurement);
    CHECK(decode(Format::number, "1", std::string(129, 'm')).ec == payload::errc::no_measurement);
}

TEST_CASE("the caller's measurement name is mapped like every payload name") {
    CHECK(decode(Format::number, "1", "pm2.5").readings.at(0).measurement == "pm2.5");
    CHECK(decode(Format::number, "1", "3303").readings.at(0).measurement == "_3303");
    CHECK(decode(Format::number, "1", "air quality/pm").readings.at(0).measurement ==
          "air_quality_pm");
}

TEST_CASE("detection reads the first non-blank byte and whether there is an '='") {
    using payload::detect_format;
    CHECK(detect_format(bytes(R"(  {"a": 1})")) == Format::json);
    CHECK(detect_format(bytes("\n[{\"v\": 1}]")) == Format::senml);
    CHECK(detect_format(bytes("35.2")) == Format::number);
    CHECK(detect_format(bytes("-1e3")) == Format::number);
    CHECK(detect_format(bytes(".5")) == Format::number);
    CHECK(detect_format(bytes("NaN")) == Format::number);  // refused as a number
    CHECK(detect_format(bytes("cpu value=1")) == Format::line);
    CHECK(detect_format(bytes("1wire,bus=2 t=20")) == Format::line);
    CHECK(detect_format(bytes("")) == Format::number);
}

TEST_CASE("detect mode decodes each format") {
    auto json = decode(Format::detect, R"({"pm25": 35.2})");
    REQUIRE_FALSE(json.ec);
    CHECK(json.readings.at(0).measurement == "pm25");
    auto senml = decode(Format::detect, R"([{"n": "pm25", "u": "ug/m3", "v": 35.2}])");
    REQUIRE_FALSE(senml.ec);
    CHECK(senml.readings.at(0).tags.find("unit") == "ug/m3");
    auto number = decode(Format::detect, " 35.2 ", "pm25");
    REQUIRE_FALSE(number.ec);
    CHECK(number.readings.at(0).measurement == "pm25");
    auto line = decode(Format::detect, "air pm25=35.2");
    REQUIRE_FALSE(line.ec);
    CHECK(line.readings.at(0).measurement == "air_pm25");
    CHECK(decode(Format::detect, "NaN").ec == payload::errc::invalid_number);
    CHECK(decode(Format::detect, "   ").ec == payload::errc::empty_payload);
}

TEST_CASE("JSON objects decode through PayloadDecoder as through JsonDecoder") {
    auto r = decode(Format::json, R"({"ts": 1732262400500, "pm25": 35.2, "status": "ok"})");
    REQUIRE_FALSE(r.ec);
    REQUIRE(r.readings.size() == 1);
    CHECK(r.readings[0].timestamp_ms == 1732262400500);
    CHECK(r.skipped.non_numeric == 1);
    CHECK(decode(Format::json, "[1]").ec == payload::errc::not_an_object);
    CHECK(decode(Format::json, R"({"a": 1e999})").ec == payload::errc::invalid_number);
    CHECK(decode(Format::json, "35").ec == payload::errc::not_an_object);
}

TEST_CASE("format and precision names round-trip and unknown names are refused") {
    for (Format format :
         {Format::json, Format::senml, Format::line, Format::number, Format::detect})
        CHECK(payload::parse_format(payload::format_name(format)) == format);
    CHECK_FALSE(payload::parse_format("xml"));
    CHECK_FALSE(payload::parse_format("JSON"));
    for (TimePrecision precision :
         {TimePrecision::ns, TimePrecision::us, TimePrecision::ms, TimePrecision::s})
        CHECK(payload::parse_precision(payload::precision_name(precision)) == precision);
    CHECK_FALSE(payload::parse_precision("m"));
}

TEST_CASE("payloads over the size limit are refused in every format before parsing") {
    PayloadLimits limits;
    limits.max_payload = 16;
    PayloadDecoder decoder(limits);
    Readings out;
    SkippedFields skipped;
    std::string big(17, ' ');
    big[16] = '1';
    for (Format format :
         {Format::json, Format::senml, Format::line, Format::number, Format::detect}) {
        INFO(payload::format_name(format));
        CHECK(decoder.decode(format, bytes(big), "m", 0, out, skipped) ==
              payload::errc::payload_too_large);
    }
    CHECK_FALSE(decoder.decode(Format::number, bytes(big.substr(1)), "m", 0, out, skipped));
}

TEST_CASE("one decoder serves payloads of every format and size in turn") {
    PayloadDecoder decoder;
    Readings out;
    SkippedFields skipped;
    std::string big = "[";
    for (int i = 0; i < 500; ++i)
        big += R"({"n":"m)" + std::to_string(i) + R"(","v":)" + std::to_string(i) + "},";
    big.back() = ']';
    REQUIRE_FALSE(decoder.decode(Format::senml, bytes(big), "", arrival, out, skipped));
    REQUIRE_FALSE(decoder.decode(Format::line, bytes("a,t=1 v=1"), "", arrival, out, skipped));
    REQUIRE(decoder.decode(Format::line, bytes("a v"), "", arrival, out, skipped));
    CHECK_FALSE(decoder.error_detail().empty());
    REQUIRE_FALSE(decoder.decode(Format::json, bytes(R"({"x": 7})"), "", arrival, out, skipped));
    CHECK(decoder.error_detail().empty());
    REQUIRE_FALSE(decoder.decode(Format::number, bytes("8"), "y", arrival, out, skipped));
    REQUIRE(out.size() == 503);
    CHECK(out[499].measurement == "m499");
    CHECK(out[500].tags.find("t") == "1");
    CHECK(out[502].value == 8);
}

TEST_CASE("errors carry the payload category and a message per value") {
    boost::system::error_code ec = payload::errc::invalid_line;
    CHECK(std::string(ec.category().name()) == "citygate.payload");
    CHECK(ec.message() == "invalid line protocol");
    for (int value = 1; value <= static_cast<int>(payload::errc::no_measurement); ++value)
        CHECK(payload::make_error_code(static_cast<payload::errc>(value)).message() !=
              "unknown payload error");
    // Values the gateway already counts by keep their numbers.
    CHECK(static_cast<int>(payload::errc::empty_payload) == 1);
    CHECK(static_cast<int>(payload::errc::invalid_number) == 7);
}

TEST_CASE("reading tags pack names and values of any bytes and iterate in order") {
    ReadingTags tags;
    CHECK(tags.empty());
    CHECK(tags.size() == 0);
    tags.add("unit", "Cel");
    tags.add("", "");
    std::string odd("a\0b", 3);
    tags.add(odd, std::string(300, 'v'));
    CHECK(tags.size() == 3);
    CHECK(tags.find("unit") == "Cel");
    CHECK(tags.find("") == "");
    CHECK(tags.find(odd)->size() == 300);
    CHECK_FALSE(tags.find("missing"));
    std::vector<std::string> names;
    for (auto [name, value] : tags)
        names.emplace_back(name);
    CHECK(names == std::vector<std::string>{"unit", "", odd});
    ReadingTags copy = tags;
    CHECK(copy == tags);
    tags.clear();
    CHECK(tags.empty());
    CHECK(tags.begin() == tags.end());
}

TEST_CASE("merge_tags keeps topic tags first and adds the payload's new names") {
    ReadingTags payload_tags;
    payload_tags.add("unit", "Cel");
    payload_tags.add("district", "elsewhere");
    std::vector<std::pair<std::string_view, std::string_view>> topic = {{"district", "pudong"}};
    std::vector<std::pair<std::string, std::string>> merged = {{"stale", "x"}};
    CHECK(payload::merge_tags(topic, payload_tags, merged) == 1);
    CHECK(merged == std::vector<std::pair<std::string, std::string>>{{"district", "pudong"},
                                                                     {"unit", "Cel"}});
    CHECK(payload::merge_tags({}, ReadingTags{}, merged) == 0);
    CHECK(merged.empty());
}
