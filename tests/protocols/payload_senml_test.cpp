// SenML JSON (RFC 8428) through PayloadDecoder: the §5.1 examples, base fields, time rules,
// name mapping, unit tags, and refusals.
#include <catch2/catch.hpp>

#include <string>

#include "protocols/payload/payload_decoder.hpp"

using citygate::payload::Format;
using citygate::payload::PayloadDecoder;
using citygate::payload::PayloadLimits;
using citygate::payload::Reading;
using citygate::payload::Readings;
using citygate::payload::SkippedFields;
namespace payload = citygate::payload;

namespace {

constexpr std::int64_t arrival = 1732262400000;  // 2024-11-22T08:00:00Z

struct Decoded {
    boost::system::error_code ec;
    Readings readings;
    SkippedFields skipped;
};

Decoded senml(const std::string& text, std::string_view default_measurement = "",
              PayloadLimits limits = {}) {
    PayloadDecoder decoder(limits);
    Decoded result;
    result.ec = decoder.decode(Format::senml,
                               {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()},
                               default_measurement, arrival, result.readings, result.skipped);
    return result;
}

std::string unit_of(const Reading& reading) {
    return std::string(reading.tags.find("unit").value_or("<none>"));
}

}  // namespace

TEST_CASE("RFC 8428 5.1.1: a single datapoint taken now, unit as a tag") {
    auto r = senml(R"([{"n":"urn:dev:ow:10e2073a01080063","u":"Cel","v":23.1}])");
    REQUIRE_FALSE(r.ec);
    REQUIRE(r.readings.size() == 1);
    CHECK(r.readings[0].measurement == "urn_dev_ow_10e2073a01080063");
    CHECK(r.readings[0].value == 23.1);
    CHECK(r.readings[0].timestamp_ms == arrival);
    CHECK(unit_of(r.readings[0]) == "Cel");
    CHECK(r.readings[0].tags.size() == 1);
}

TEST_CASE("RFC 8428 5.1.2: multiple datapoints, base name prefixes each name") {
    auto r = senml(R"([{"bn":"urn:dev:ow:10e2073a01080063:","n":"voltage","u":"V","v":120.1},
                       {"n":"current","u":"A","v":1.2}])");
    REQUIRE_FALSE(r.ec);
    REQUIRE(r.readings.size() == 2);
    CHECK(r.readings[0].measurement == "urn_dev_ow_10e2073a01080063_voltage");
    CHECK(r.readings[0].value == 120.1);
    CHECK(unit_of(r.readings[0]) == "V");
    CHECK(r.readings[1].measurement == "urn_dev_ow_10e2073a01080063_current");
    CHECK(r.readings[1].value == 1.2);
    CHECK(unit_of(r.readings[1]) == "A");
    CHECK(r.readings[1].timestamp_ms == arrival);
}

TEST_CASE("RFC 8428 5.1.2: base time, base unit and relative times from it") {
    auto r = senml(R"([{"bn":"urn:dev:ow:10e2073a0108006:","bt":1.276020076001e+09,
                        "bu":"A","bver":5,"n":"voltage","u":"V","v":120.1},
                       {"n":"current","t":-5,"v":1.2},
                       {"n":"current","t":-4,"v":1.3},
                       {"n":"current","t":-3,"v":1.4},
                       {"n":"current","t":-2,"v":1.5},
                       {"n":"current","t":-1,"v":1.6},
                       {"n":"current","v":1.7}])");
    REQUIRE_FALSE(r.ec);
    REQUIRE(r.readings.size() == 7);
    CHECK(r.readings[0].measurement == "urn_dev_ow_10e2073a0108006_voltage");
    CHECK(r.readings[0].timestamp_ms == 1276020076001);
    CHECK(unit_of(r.readings[0]) == "V");  // u wins over bu
    for (int i = 1; i <= 6; ++i) {
        INFO("record " << i);
        CHECK(r.readings[i].measurement == "urn_dev_ow_10e2073a0108006_current");
        CHECK(r.readings[i].timestamp_ms == 1276020076001 - (6 - i) * 1000);
        CHECK(r.readings[i].value == Approx(1.1 + 0.1 * i));
        CHECK(unit_of(r.readings[i]) == "A");
    }
}

TEST_CASE("RFC 8428 5.1.3 and 5.1.4: multiple measurements equal their resolved form") {
    auto packed = senml(R"([{"bn":"urn:dev:ow:10e2073a01080063","bt":1.320067464e+09,
                             "bu":"%RH","v":20},
                            {"u":"lon","v":24.30621},
                            {"u":"lat","v":60.07965},
                            {"t":60,"v":20.3},
                            {"u":"lon","t":60,"v":24.30622},
                            {"u":"lat","t":60,"v":60.07965},
                            {"t":120,"v":20.7},
                            {"u":"lon","t":120,"v":24.30623},
                            {"u":"lat","t":120,"v":60.07966},
                            {"u":"%EL","t":150,"v":98},
                            {"t":180,"v":21.2},
                            {"u":"lon","t":180,"v":24.30628},
                            {"u":"lat","t":180,"v":60.07967}])");
    auto resolved = senml(R"([
        {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067464e+09,"v":20},
        {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067464e+09,"v":24.30621},
        {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067464e+09,"v":60.07965},
        {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067524e+09,"v":20.3},
        {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067524e+09,"v":24.30622},
        {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067524e+09,"v":60.07965},
        {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067584e+09,"v":20.7},
        {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067584e+09,"v":24.30623},
        {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067584e+09,"v":60.07966},
        {"n":"urn:dev:ow:10e2073a01080063","u":"%EL","t":1.320067614e+09,"v":98},
        {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067644e+09,"v":21.2},
        {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067644e+09,"v":24.30628},
        {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067644e+09,"v":60.07967}])");
    REQUIRE_FALSE(packed.ec);
    REQUIRE_FALSE(resolved.ec);
    REQUIRE(packed.readings.size() == 13);
    REQUIRE(resolved.readings.size() == 13);
    for (std::size_t i = 0; i < 13; ++i) {
        INFO("record " << i);
        CHECK(packed.readings[i].measurement == "urn_dev_ow_10e2073a01080063");
        CHECK(packed.readings[i].measurement == resolved.readings[i].measurement);
        CHECK(packed.readings[i].value == resolved.readings[i].value);
        CHECK(packed.readings[i].timestamp_ms == resolved.readings[i].timestamp_ms);
        CHECK(packed.readings[i].tags == resolved.readings[i].tags);
    }
    // One name in four units stays four series, told apart by the unit tag.
    CHECK(unit_of(packed.readings[1]) == "lon");
    CHECK(unit_of(packed.readings[9]) == "%EL");
    CHECK(packed.readings[9].timestamp_ms == 1320067614000);
    CHECK(packed.readings[12].timestamp_ms == 1320067644000);
}

TEST_CASE("RFC 8428 5.1.5: string, boolean and data values are skipped and counted") {
    auto r = senml(R"([{"bn":"urn:dev:ow:10e2073a01080063:","n":"temp","u":"Cel","v":23.1},
                       {"n":"label","vs":"Machine Room"},
                       {"n":"open","vb":false},
                       {"n":"nfc-reader","vd":"aGkgCg"}])");
    REQUIRE_FALSE(r.ec);
    REQUIRE(r.readings.size() == 1);
    CHECK(r.readings[0].measurement == "urn_dev_ow_10e2073a01080063_temp");
    CHECK(r.skipped.non_numeric == 3);
}

TEST_CASE("RFC 8428 5.1.6: a collection of resources, base name replaced, base time kept") {
    auto r = senml(R"([{"bn":"2001:db8::2/","bt":1.320078429e+09,
                        "n":"temperature","u":"Cel","v":25.2},
                       {"n":"humidity","u":"%RH","v":30},
                       {"bn":"2001:db8::1/","n":"temperature","u":"Cel","v":12.3},
                       {"n":"humidity","u":"%RH","v":67}])");
    REQUIRE_FALSE(r.ec);
    REQUIRE(r.readings.size() == 4);
    // A name starting with a digit gets a leading '_' for the series key grammar.
    CHECK(r.readings[0].measurement == "_2001_db8__2_temperature");
    CHECK(r.readings[1].measurement == "_2001_db8__2_humidity");
    CHECK(r.readings[2].measurement == "_2001_db8__1_temperature");
    CHECK(r.readings[3].measurement == "_2001_db8__1_humidity");
    for (const auto& reading : r.readings)
        CHECK(reading.timestamp_ms == 1320078429000);
    CHECK(r.readings[3].value == 67);
}

TEST_CASE("RFC 8428 5.1.7: a record of base fields only yields nothing itself") {
    auto r = senml(R"([{"bn":"urn:dev:ow:10e2073a01080063:"},
                       {"n":"temp","u":"Cel","v":23.1},
                       {"n":"heat","u":"/","v":1},
                       {"n":"fan","u":"/","v":0}])");
    REQUIRE_FALSE(r.ec);
    REQUIRE(r.readings.size() == 3);
    CHECK(r.readings[1].measurement == "urn_dev_ow_10e2073a01080063_heat");
    CHECK(unit_of(r.readings[1]) == "/");
    CHECK(r.readings[2].value == 0);
    CHECK(r.skipped.total() == 0);
}

TEST_CASE("SenML times below 2^28 are relative to the arrival time, others absolute") {
    SECTION("relative record times, sub-second ones rounded to ms") {
        auto r = senml(R"([{"n":"a","t":-5,"v":1},{"n":"a","t":0.1,"v":2},{"n":"a","v":3}])");
        REQUIRE_FALSE(r.ec);
        CHECK(r.readings[0].timestamp_ms == arrival - 5000);
        CHECK(r.readings[1].timestamp_ms == arrival + 100);
        CHECK(r.readings[2].timestamp_ms == arrival);
    }
    SECTION("a relative base time") {
        auto r = senml(R"([{"bt":-10,"n":"a","v":1},{"n":"a","t":5,"v":2}])");
        REQUIRE_FALSE(r.ec);
        CHECK(r.readings[0].timestamp_ms == arrival - 10000);
        CHECK(r.readings[1].timestamp_ms == arrival - 5000);
    }
    SECTION("2^28 itself is absolute, just below is relative") {
        auto r = senml(R"([{"n":"a","t":268435456,"v":1},{"n":"a","t":268435455,"v":2}])");
        REQUIRE_FALSE(r.ec);
        CHECK(r.readings[0].timestamp_ms == 268435456000);
        CHECK(r.readings[1].timestamp_ms == arrival + 268435455000);
    }
    SECTION("the resolved time decides: absolute base time plus a negative offset") {
        auto r = senml(R"([{"bt":1732262400.5,"n":"a","t":-0.25,"v":1}])");
        REQUIRE_FALSE(r.ec);
        CHECK(r.readings[0].timestamp_ms == 1732262400250);
    }
}

TEST_CASE("SenML base value and base sum add to each record's value and sum") {
    auto r = senml(R"([{"bn":"meter/","bv":100,"bs":1000,"n":"energy","u":"kWh","v":1,"s":5},
                       {"n":"energy","v":2},
                       {"n":"total","s":7}])");
    REQUIRE_FALSE(r.ec);
    REQUIRE(r.readings.size() == 4);
    CHECK(r.readings[0].measurement == "meter_energy");
    CHECK(r.readings[0].value == 101);
    CHECK(r.readings[1].measurement == "meter_energy_sum");
    CHECK(r.readings[1].value == 1005);
    CHECK(unit_of(r.readings[1]) == "kWh");
    CHECK(r.readings[2].value == 102);
    CHECK(r.readings[3].measurement == "meter_total_sum");
    CHECK(r.readings[3].value == 1007);
}

TEST_CASE("SenML names outside RFC 8428's alphabet are skipped as bad names") {
    auto r =
        senml(R"([{"n":"a b","v":1},{"n":"-x","v":2},{"n":"ok.name-1_x","v":3},{"n":"","v":4}])",
              "fallback");
    REQUIRE_FALSE(r.ec);
    REQUIRE(r.readings.size() == 2);
    CHECK(r.readings[0].measurement == "ok.name-1_x");
    // A record with no name at all takes the caller's default measurement.
    CHECK(r.readings[1].measurement == "fallback");
    CHECK(r.skipped.bad_name == 2);
}

TEST_CASE("a nameless SenML record without a default measurement refuses the pack") {
    CHECK(senml(R"([{"v":1}])").ec == payload::errc::no_measurement);
}

TEST_CASE("SenML values beyond a double are refused, sums to infinity skipped") {
    CHECK(senml(R"([{"n":"a","v":1e999}])").ec == payload::errc::invalid_number);
    CHECK(senml(R"([{"n":"a","v":NaN}])").ec == payload::errc::invalid_json);
    auto r = senml(R"([{"bv":1.7e308,"n":"a","v":1.7e308},{"n":"b","bv":0,"v":1}])");
    REQUIRE_FALSE(r.ec);
    REQUIRE(r.readings.size() == 1);
    CHECK(r.skipped.out_of_range == 1);
    CHECK(senml(R"([{"bv":1.7e308,"n":"a","v":1.7e308}])").ec == payload::errc::no_numeric_field);
}

TEST_CASE("malformed SenML packs are refused and append nothing") {
    PayloadDecoder decoder;
    Readings out(1);
    SkippedFields skipped;
    auto decode = [&](std::string text) {
        return decoder.decode(Format::senml,
                              {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()}, "",
                              arrival, out, skipped);
    };
    CHECK(decode(R"({"n":"a","v":1})") == payload::errc::invalid_senml);
    CHECK(decode(R"([1, 2])") == payload::errc::invalid_senml);
    CHECK(decode(R"([{"n":"a","v":1},{"bn":5}])") == payload::errc::invalid_senml);
    CHECK(decode(R"([{"n":7,"v":1}])") == payload::errc::invalid_senml);
    CHECK(decode(R"([{"n":"a","t":"now","v":1}])") == payload::errc::invalid_senml);
    CHECK(decode(R"([{"n":"a","s":"x"}])") == payload::errc::invalid_senml);
    CHECK(decode(R"([{"bver":11,"n":"a","v":1}])") == payload::errc::unsupported_senml);
    CHECK(decode(R"([{"n":"a","v":1,"ext_":1}])") == payload::errc::unsupported_senml);
    CHECK(decode(R"([{"n":"a","v":1,"t":1e300}])") == payload::errc::bad_timestamp);
    CHECK(decode(R"([{"n":"a","v":1,"t":-1e10}])") == payload::errc::bad_timestamp);
    CHECK(decode(R"([])") == payload::errc::no_numeric_field);
    CHECK(decode(R"([{"n":"a","v":1}] x)") == payload::errc::invalid_json);
    CHECK(out.size() == 1);
    CHECK(skipped.total() == 0);
    // Unknown labels without a trailing '_' (and update time) are ignored.
    CHECK_FALSE(decode(R"([{"n":"a","v":1,"ut":5,"extension":"x"}])"));
    CHECK(out.size() == 2);
}

TEST_CASE("a SenML pack with more records than the limit is refused before decoding") {
    PayloadLimits limits;
    limits.max_records = 3;
    CHECK_FALSE(senml(R"([{"n":"a","v":1},{"n":"a","v":2},{"n":"a","v":3}])", "", limits).ec);
    CHECK(senml(R"([{"n":"a","v":1},{"n":"a","v":2},{"n":"a","v":3},{"n":"a","v":4}])", "", limits)
              .ec == payload::errc::too_many_records);
}
