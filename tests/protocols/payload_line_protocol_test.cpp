// InfluxDB line protocol through PayloadDecoder: naming, escaping, value types, timestamps at
// every precision, several lines, errors with line and column, limits, topic tag precedence.
#include <catch2/catch.hpp>

#include <string>

#include "protocols/payload/payload_decoder.hpp"

using citygate::payload::Format;
using citygate::payload::PayloadDecoder;
using citygate::payload::PayloadLimits;
using citygate::payload::Reading;
using citygate::payload::Readings;
using citygate::payload::SkippedFields;
using citygate::payload::TimePrecision;
namespace payload = citygate::payload;

namespace {

constexpr std::int64_t arrival = 1732262400000;

struct Decoded {
    boost::system::error_code ec;
    Readings readings;
    SkippedFields skipped;
    std::string detail;
};

Decoded line(const std::string& text, TimePrecision precision = TimePrecision::ns,
             PayloadLimits limits = {}) {
    PayloadDecoder decoder(limits);
    Decoded result;
    result.ec = decoder.decode(Format::line,
                               {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()},
                               "", arrival, result.readings, result.skipped, precision);
    result.detail = decoder.error_detail();
    return result;
}

std::vector<std::pair<std::string, std::string>> tags_of(const Reading& reading) {
    std::vector<std::pair<std::string, std::string>> tags;
    for (auto [name, value] : reading.tags)
        tags.emplace_back(name, value);
    return tags;
}

using Tags = std::vector<std::pair<std::string, std::string>>;

}  // namespace

TEST_CASE("each field is a reading named measurement_field, with the line's tags and time") {
    auto r = line(
        "air,district=pudong,device=air-000042 pm25=35.2,pm10=60,no2=0.1 "
        "1732262400500000000");
    REQUIRE_FALSE(r.ec);
    REQUIRE(r.readings.size() == 3);
    CHECK(r.readings[0].measurement == "air_pm25");
    CHECK(r.readings[0].value == 35.2);
    CHECK(r.readings[1].measurement == "air_pm10");
    CHECK(r.readings[2].measurement == "air_no2");
    for (const auto& reading : r.readings) {
        CHECK(reading.timestamp_ms == 1732262400500);
        CHECK(tags_of(reading) == Tags{{"district", "pudong"}, {"device", "air-000042"}});
    }
}

TEST_CASE("a field called value maps to the measurement alone and no timestamp means arrival") {
    auto r = line("temperature,room=kitchen value=21.5");
    REQUIRE_FALSE(r.ec);
    REQUIRE(r.readings.size() == 1);
    CHECK(r.readings[0].measurement == "temperature");
    CHECK(r.readings[0].timestamp_ms == arrival);
}

TEST_CASE("integer and unsigned suffixes, float spellings") {
    auto r = line("m a=12i,b=18446744073709551615u,c=-3i,d=1e3,e=-.5,f=+2,g=0u");
    REQUIRE_FALSE(r.ec);
    REQUIRE(r.readings.size() == 7);
    CHECK(r.readings[0].value == 12);
    CHECK(r.readings[1].value == 18446744073709551615.0);
    CHECK(r.readings[2].value == -3);
    CHECK(r.readings[3].value == 1000);
    CHECK(r.readings[4].value == -0.5);
    CHECK(r.readings[5].value == 2);
    CHECK(r.readings[6].value == 0);
    CHECK(line("m a=12.5i").ec == payload::errc::invalid_line);
    CHECK(line("m a=-1u").ec == payload::errc::invalid_line);
    CHECK(line("m a=i").ec == payload::errc::invalid_line);
    CHECK(line("m a=0x10").ec == payload::errc::invalid_line);
}

TEST_CASE("strings and booleans are skipped and counted, quoted text may hold anything") {
    auto r = line("m s=\"hello, world = x\",on=true,off=F,v=1,q=\"say \\\"hi\\\"\nnext\",w=2");
    REQUIRE_FALSE(r.ec);
    REQUIRE(r.readings.size() == 2);
    CHECK(r.readings[0].measurement == "m_v");
    CHECK(r.readings[1].measurement == "m_w");
    CHECK(r.skipped.non_numeric == 4);
    CHECK(line("m s=\"only text\"").ec == payload::errc::no_numeric_field);
}

TEST_CASE("NaN, infinities and out-of-range numbers are skipped and counted, never stored") {
    auto r = line(
        "m a=NaN,b=inf,c=-Infinity,d=1e999,e=9223372036854775808i,f=18446744073709551616u,"
        "g=2");
    REQUIRE_FALSE(r.ec);
    REQUIRE(r.readings.size() == 1);
    CHECK(r.readings[0].measurement == "m_g");
    CHECK(r.skipped.out_of_range == 6);
}

TEST_CASE("escaped commas, spaces and equals signs in names and tag values") {
    auto r = line(R"(my\ meas\,ure,tag\ key=tag\,val\=ue\ x,path=a\\ f\=ie\ ld=1)");
    REQUIRE_FALSE(r.ec);
    REQUIRE(r.readings.size() == 1);
    // Names keep letters, digits, '_', '.', '-'; everything else becomes '_'.
    CHECK(r.readings[0].measurement == "my_meas_ure_f_ie_ld");
    CHECK(tags_of(r.readings[0]) == Tags{{"tag_key", "tag,val=ue x"}, {"path", "a\\"}});

    SECTION("an '=' needs no escape in a measurement") {
        auto m = line("a=b value=1");
        REQUIRE_FALSE(m.ec);
        CHECK(m.readings[0].measurement == "a_b");
    }
    SECTION("a backslash before an ordinary character is itself") {
        auto m = line(R"(m,t=a\b v=1)");
        REQUIRE_FALSE(m.ec);
        CHECK(tags_of(m.readings[0]) == Tags{{"t", "a\\b"}});
    }
    SECTION("tag keys map like measurement names") {
        auto m = line("m,3d:pos=x,host.name=h v=1");
        REQUIRE_FALSE(m.ec);
        CHECK(tags_of(m.readings[0]) == Tags{{"_3d_pos", "x"}, {"host.name", "h"}});
    }
}

TEST_CASE("several lines, blank lines, comments and CRLF endings") {
    auto r = line(
        "# a comment\n\ncpu,host=a usage=1 1000000000\r\n  \nmem free=2i 2000000000\n"
        "disk value=3\n");
    REQUIRE_FALSE(r.ec);
    REQUIRE(r.readings.size() == 3);
    CHECK(r.readings[0].measurement == "cpu_usage");
    CHECK(r.readings[0].timestamp_ms == 1000);
    CHECK(r.readings[1].measurement == "mem_free");
    CHECK(r.readings[1].timestamp_ms == 2000);
    CHECK(r.readings[1].tags.empty());
    CHECK(r.readings[2].measurement == "disk");
    CHECK(r.readings[2].timestamp_ms == arrival);
}

TEST_CASE("timestamps in each precision, truncated to ms") {
    CHECK(line("m v=1 1732262400500999999", TimePrecision::ns).readings.at(0).timestamp_ms ==
          1732262400500);
    CHECK(line("m v=1 1732262400500999", TimePrecision::us).readings.at(0).timestamp_ms ==
          1732262400500);
    CHECK(line("m v=1 1732262400500", TimePrecision::ms).readings.at(0).timestamp_ms ==
          1732262400500);
    CHECK(line("m v=1 1732262400", TimePrecision::s).readings.at(0).timestamp_ms == 1732262400000);
    CHECK(line("m v=1 0").readings.at(0).timestamp_ms == 0);
    CHECK(line("m v=1 1732262400 ", TimePrecision::s).readings.at(0).timestamp_ms == 1732262400000);
}

TEST_CASE("negative, overflowing and malformed timestamps are refused") {
    CHECK(line("m v=1 -5").ec == payload::errc::bad_timestamp);
    CHECK(line("m v=1 99999999999999999999").ec == payload::errc::bad_timestamp);
    CHECK(line("m v=1 9223372036854775807", TimePrecision::s).ec == payload::errc::bad_timestamp);
    // Found by payload_fuzz: refused, not scaled first (that overflowed, undefined behaviour).
    CHECK(line("m v=1 -1732262400500000000", TimePrecision::s).ec == payload::errc::bad_timestamp);
    CHECK(line("m v=1 -9223372036854775807", TimePrecision::s).ec == payload::errc::bad_timestamp);
    CHECK(line("m v=1 12abc").ec == payload::errc::invalid_line);
    CHECK(line("m v=1 1.5").ec == payload::errc::invalid_line);
}

TEST_CASE("bad lines are refused whole, saying which line and column") {
    struct Case {
        const char* text;
        const char* detail;
    };
    const Case cases[] = {
        {"cpu", "line 1, column 4: expected a space and the field set"},
        {"cpu,host=a", "line 1, column 11: expected a space and the field set"},
        {"cpu v", "line 1, column 6: expected '=' after the field key"},
        {"cpu v=", "line 1, column 7: expected a field value"},
        {"cpu v=x", "line 1, column 7: invalid field value"},
        {"cpu  ,v=1", "line 1, column 6: expected a field key"},
        {"cpu v=1 123 extra", "line 1, column 13: unexpected text after the point"},
        {"cpu s=\"open", "line 1, column 12: unterminated string field"},
        {"cpu,host v=1", "line 1, column 9: expected '=' after the tag key"},
        {"cpu,=a v=1", "line 1, column 5: expected a tag key"},
        {"cpu,a= v=1", "line 1, column 7: expected a tag value"},
        {"cpu,a=b=c v=1", "line 1, column 8: unescaped '=' in a tag value"},
        {"cpu,a=1,a=2 v=1", "line 1, column 12: tag key given twice"},
        {",a=1 v=1", "line 1, column 1: expected a measurement"},
        {"a v=1\nb v=x", "line 2, column 5: invalid field value"},
        {"a v=1,\n", "line 1, column 7: expected a field key"},
    };
    for (const auto& c : cases) {
        INFO(c.text);
        PayloadDecoder decoder;
        Readings out(1);
        SkippedFields skipped;
        std::string text = c.text;
        auto ec = decoder.decode(Format::line,
                                 {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()},
                                 "", arrival, out, skipped);
        CHECK(ec == payload::errc::invalid_line);
        CHECK(decoder.error_detail() == c.detail);
        CHECK(out.size() == 1);
        CHECK(skipped.total() == 0);
    }
}

TEST_CASE("too many tags, overlong tag values and names") {
    std::string many = "m";
    for (int i = 0; i < 65; ++i)
        many += ",t" + std::to_string(i) + "=x";
    CHECK(line(many + " v=1").ec == payload::errc::invalid_line);
    CHECK(line("m,t=" + std::string(1025, 'x') + " v=1").ec == payload::errc::invalid_line);
    CHECK(line("m," + std::string(129, 'k') + "=x v=1").ec == payload::errc::invalid_line);
    auto r = line("m " + std::string(128, 'f') + "=1,ok=2");
    REQUIRE_FALSE(r.ec);
    CHECK(r.readings.size() == 1);
    CHECK(r.skipped.bad_name == 1);
}

TEST_CASE("more lines than the limit are refused but blank lines and comments do not count") {
    PayloadLimits limits;
    limits.max_lines = 2;
    CHECK_FALSE(line("# c\na v=1\n\nb v=2\n# d\n", TimePrecision::ns, limits).ec);
    auto r = line("a v=1\nb v=2\nc v=3", TimePrecision::ns, limits);
    CHECK(r.ec == payload::errc::too_many_lines);
    CHECK(r.readings.empty());
    CHECK(line("# only a comment\n\n").ec == payload::errc::no_numeric_field);
}

TEST_CASE("topic tags win over line protocol tags of the same name") {
    auto r = line("air,device=someone-else,firmware=1.2 pm25=3");
    REQUIRE_FALSE(r.ec);
    std::vector<std::pair<std::string_view, std::string_view>> topic = {{"district", "pudong"},
                                                                        {"device", "a-0001"}};
    std::vector<std::pair<std::string, std::string>> merged;
    CHECK(payload::merge_tags(topic, r.readings[0].tags, merged) == 1);
    CHECK(merged == Tags{{"district", "pudong"}, {"device", "a-0001"}, {"firmware", "1.2"}});
}
