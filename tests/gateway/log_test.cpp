// The logger: text and JSON lines, fields, levels and formats by name.
#include <catch2/catch.hpp>

#include <string>

#include "gateway/ops/log.hpp"

using namespace citygate;

TEST_CASE("a text line is timestamp, level, message, then key=value fields") {
    std::vector<log::Field> fields = {{"port", "1883", false}, {"peer", "a b", true}};
    CHECK(log::format_line(log::Format::text, "2026-01-02T03:04:05.006Z", log::Level::warn,
                           "listening", fields) ==
          "2026-01-02T03:04:05.006Z warn listening port=1883 peer=\"a b\"");
}

TEST_CASE("a JSON line is one object with ts, level, msg and the fields") {
    std::vector<log::Field> fields = {
        {"port", "1883", false}, {"topic", "city/\"x\"\n", true}, {"msg", "ignored", true}};
    CHECK(log::format_line(log::Format::json, "2026-01-02T03:04:05.006Z", log::Level::info,
                           "mqtt \"listening\"\\", fields) ==
          R"({"ts":"2026-01-02T03:04:05.006Z","level":"info","msg":"mqtt \"listening\"\\",)"
          R"("port":1883,"topic":"city/\"x\"\n"})");
    CHECK(log::format_line(log::Format::json, "t", log::Level::error, "a\x01", {}) ==
          R"({"ts":"t","level":"error","msg":"a\u0001"})");
}

TEST_CASE("levels and formats parse by name and the level changes at run time") {
    log::Level level = log::Level::info;
    CHECK(log::parse_level("warn", level));
    CHECK(level == log::Level::warn);
    CHECK_FALSE(log::parse_level("WARN", level));
    log::Format format = log::Format::text;
    CHECK(log::parse_format("json", format));
    CHECK(format == log::Format::json);
    CHECK_FALSE(log::parse_format("xml", format));
    CHECK(std::string(log::level_name(log::Level::debug)) == "debug");

    log::Level before = log::level();
    log::set_level(log::Level::error);
    CHECK(log::level() == log::Level::error);
    CHECK_FALSE(log::enabled(log::Level::warn));
    int evaluated = 0;
    auto expensive = [&] { return ++evaluated; };
    CG_LOG(info).with("n", expensive()) << expensive();
    CHECK(evaluated == 0);  // a disabled line costs neither its message nor its fields
    log::set_level(before);
}

TEST_CASE("a rate limit lets one line through per interval and counts those held back") {
    log::RateLimit limit(std::chrono::seconds(10));
    auto start = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
    CHECK(limit.admit(start) == std::optional<std::uint64_t>(0));
    CHECK_FALSE(limit.admit(start + std::chrono::seconds(1)));
    CHECK_FALSE(limit.admit(start + std::chrono::seconds(9)));
    // The next line through says how many were held back, then the count starts again.
    CHECK(limit.admit(start + std::chrono::seconds(10)) == std::optional<std::uint64_t>(2));
    CHECK_FALSE(limit.admit(start + std::chrono::seconds(11)));
    CHECK(limit.admit(start + std::chrono::seconds(30)) == std::optional<std::uint64_t>(1));
}
