// Series keys and selector parsing.
#include <catch2/catch.hpp>

#include "storage/selector.hpp"

using namespace citygate::storage;

TEST_CASE("format_series_key sorts tags and escapes values") {
    auto key = format_series_key("pm25", {{"type", "air"}, {"district", "pu\"d\\ong\n"}});
    CHECK(key == R"(pm25{district="pu\"d\\ong\n",type="air"})");
    auto parsed = parse_series_key(key);
    REQUIRE(parsed.is_ok());
    CHECK(parsed.value().first == "pm25");
    REQUIRE(parsed.value().second.size() == 2);
    CHECK(parsed.value().second[0] == Tag{"district", "pu\"d\\ong\n"});
    CHECK(parsed.value().second[1] == Tag{"type", "air"});
}

TEST_CASE("format_series_key with no tags") {
    CHECK(format_series_key("temperature", {}) == "temperature{}");
    CHECK(parse_series_key("temperature{}").is_ok());
}

TEST_CASE("parse_series_key rejects malformed keys") {
    CHECK_FALSE(parse_series_key("pm25").is_ok());
    CHECK_FALSE(parse_series_key("{a=\"b\"}").is_ok());
    CHECK_FALSE(parse_series_key("pm25{a=\"b\"").is_ok());
    CHECK_FALSE(parse_series_key("pm25{a=b}").is_ok());
    CHECK_FALSE(parse_series_key("pm25{a=\"b\"}x").is_ok());
}

TEST_CASE("Selector::parse reads every operator") {
    auto s = Selector::parse(R"(pm25{district="pudong", type!="air",device=~"a-.*" , x!~"y|z",})");
    REQUIRE(s.is_ok());
    auto& m = s.value().matchers;
    REQUIRE(m.size() == 5);
    CHECK(m[0].name == "__name__");
    CHECK(m[0].value == "pm25");
    CHECK(m[1].op == Matcher::Op::equal);
    CHECK(m[2].op == Matcher::Op::not_equal);
    CHECK(m[3].op == Matcher::Op::regex);
    CHECK(m[3].value == "a-.*");
    CHECK(m[4].op == Matcher::Op::not_regex);
}

TEST_CASE("Selector::parse accepts __name__ and bare measurements") {
    auto a = Selector::parse(R"({__name__="pm25"})");
    REQUIRE(a.is_ok());
    CHECK(a.value().matchers.size() == 1);
    CHECK(a.value().matchers[0].name == "__name__");
    auto b = Selector::parse("pm25");
    REQUIRE(b.is_ok());
    CHECK(b.value().matchers[0].value == "pm25");
}

TEST_CASE("Selector::parse errors name the position") {
    auto bad = Selector::parse(R"(pm25{district="pudong" type="air"})");
    REQUIRE_FALSE(bad.is_ok());
    CHECK(bad.status().code() == Status::Code::invalid_argument);
    CHECK(bad.status().message().find("position 23") != std::string::npos);
    CHECK_FALSE(Selector::parse("").is_ok());
    CHECK_FALSE(Selector::parse(R"(pm25{a="b)").is_ok());
    CHECK_FALSE(Selector::parse(R"(pm25{a<"b"})").is_ok());
    CHECK_FALSE(Selector::parse(R"(pm25{a=~"(unclosed"})").is_ok());
}

TEST_CASE("regexes are RE2, fully anchored, and refuse syntax RE2 does not have") {
    auto ok = Selector::parse(R"x(pm25{device=~"a-.*|b-[0-9]+"})x");
    REQUIRE(ok.is_ok());
    // Backreferences and lookahead backtrack without bound; RE2 (like Prometheus) has neither.
    auto backreference = Selector::parse(R"x(pm25{device=~"(a)\\1"})x");
    REQUIRE_FALSE(backreference.is_ok());
    CHECK(backreference.status().message().find("bad regex") != std::string::npos);
    CHECK_FALSE(Selector::parse(R"x(pm25{device=~"a(?=b)"})x").is_ok());
}
