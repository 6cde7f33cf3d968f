// HTTP API helpers: query strings, URL decoding and JSON string escaping.
#include <catch2/catch.hpp>

#include "gateway/http/http_api.hpp"

using namespace citygate::gateway;

TEST_CASE("query parameters are found and percent-decoded") {
    std::string value;
    std::string_view query = "series=pm25%7Bdistrict%3D%22pudong%22%7D&start=10&end=20&empty=&flag";
    REQUIRE(query_parameter(query, "series", value));
    CHECK(value == "pm25{district=\"pudong\"}");
    REQUIRE(query_parameter(query, "end", value));
    CHECK(value == "20");
    REQUIRE(query_parameter(query, "empty", value));
    CHECK(value.empty());
    REQUIRE(query_parameter(query, "flag", value));
    CHECK(value.empty());
    CHECK_FALSE(query_parameter(query, "missing", value));
    CHECK_FALSE(query_parameter(query, "star", value));
}

TEST_CASE("bad percent escapes are refused") {
    std::string out;
    CHECK(url_decode("a+b%20c", out));
    CHECK(out == "a b c");
    CHECK_FALSE(url_decode("%", out));
    CHECK_FALSE(url_decode("%4", out));
    CHECK_FALSE(url_decode("%zz", out));
}

TEST_CASE("JSON strings are escaped") {
    std::string out;
    append_json_string(out, "pm25{a=\"b\\c\"}\n\x01");
    CHECK(out == R"("pm25{a=\"b\\c\"}\n\u0001")");
}

TEST_CASE("query_range parameters: raw, aggregated, and refusals that say why") {
    std::string error;
    auto raw = parse_range_request("series=pm25&start=10&end=20", 1000, error);
    REQUIRE(raw);
    CHECK(raw->start_ms == 10);
    CHECK(raw->end_ms == 20);
    CHECK_FALSE(raw->aggregate);

    auto steps =
        parse_range_request("match=pm25&start=0&end=599999&step=1m&function=max", 10, error);
    REQUIRE(steps);
    REQUIRE(steps->aggregate);
    CHECK(steps->aggregate->step_ms == 60'000);
    CHECK(steps->aggregate->end_ms == 600'000);  // the API's end is inclusive
    CHECK(steps->aggregate->function == citygate::storage::Aggregation::max);

    auto refused = [&](std::string_view query) {
        error.clear();
        bool parsed = parse_range_request(query, 10, error).has_value();
        return parsed ? std::string("(parsed)") : error;
    };
    CHECK(refused("start=0&end=1") == "missing parameter: series");
    CHECK(refused("series=pm25&start=0&end=660000&step=1m") ==
          "too many steps: widen the step or narrow the range");
    CHECK(refused("series=pm25&start=5&end=1") == "end is before start");
    CHECK(refused("series=pm25&start=0&end=1&step=0") == "step must be positive");
    // A duration whose ms do not fit in 64 bits is refused, not wrapped (found by UBSan).
    CHECK(refused("series=pm25&start=0&end=1&step=99999999999999d") ==
          "step must be ms or a duration like \"5m\"");
    // The whole int64 range: the span is computed without overflow.
    CHECK(refused("series=pm25&start=-9223372036854775808&end=9223372036854775807&step=1") ==
          "too many steps: widen the step or narrow the range");
    CHECK(refused("series=pm25&start=-9223372036854775808&end=9223372036854775807&step=1d") ==
          "too many steps: widen the step or narrow the range");
}

TEST_CASE("repeated parameters such as match[] are all found, their names decoded") {
    std::vector<std::string> values;
    REQUIRE(query_parameters("match[]=a&start=1&match%5B%5D=b%7Bx%3D%22y%22%7D&match=c", "match[]",
                             values));
    CHECK(values == std::vector<std::string>{"a", "b{x=\"y\"}"});
    REQUIRE(query_parameters("start=1", "match[]", values));
    CHECK(values.empty());
    CHECK_FALSE(query_parameters("match[]=%zz", "match[]", values));
}

TEST_CASE("API times are Unix seconds or RFC 3339, in ms") {
    std::int64_t ms = 0;
    REQUIRE(parse_api_time("1718409600", ms));
    CHECK(ms == 1'718'409'600'000);
    REQUIRE(parse_api_time("1718409600.25", ms));
    CHECK(ms == 1'718'409'600'250);
    REQUIRE(parse_api_time("-1.5", ms));
    CHECK(ms == -1500);
    REQUIRE(parse_api_time("2024-06-15T00:00:00Z", ms));
    CHECK(ms == 1'718'409'600'000);
    REQUIRE(parse_api_time("2024-06-15T00:00:00.123Z", ms));
    CHECK(ms == 1'718'409'600'123);
    REQUIRE(parse_api_time("2024-06-15T02:30:00+02:30", ms));
    CHECK(ms == 1'718'409'600'000);
    REQUIRE(parse_api_time("2024-06-14T23:00:00-01:00", ms));
    CHECK(ms == 1'718'409'600'000);
    for (const char* bad :
         {"", "yesterday", "2024-06-15", "2024-06-15T00:00:00", "2024-13-15T00:00:00Z",
          "2024-06-15T00:00:00.Z", "1e300", "nan", "2024-06-15T00:00:00Z junk"}) {
        INFO(bad);
        CHECK_FALSE(parse_api_time(bad, ms));
    }
}
