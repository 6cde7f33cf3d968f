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
