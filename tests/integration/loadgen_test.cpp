// citygate-loadgen against the real gateway at small scale: every acknowledged reading arrives.
#include <catch2/catch.hpp>

#include <simdjson.h>

#include "tests/integration/gateway_fixture.hpp"

using citygate::test::GatewayUnderTest;
using citygate::test::run_command;

namespace {

std::string last_line(const std::string& text) {
    std::size_t end = text.find_last_not_of('\n');
    std::size_t start = text.rfind('\n', end);
    return text.substr(start == std::string::npos ? 0 : start + 1, end - start);
}

}  // namespace

TEST_CASE("the load generator's QoS 1 readings are all acknowledged and stored") {
    GatewayUnderTest gateway;
    std::string output;
    int status = run_command(std::string(CITYGATE_LOADGEN_BINARY) + " --port " +
                                 std::to_string(gateway.mqtt_port()) +
                                 " --clients 20 --messages 50 --qos 1 --inflight 8 --threads 2",
                             &output);
    INFO(output);
    REQUIRE(status == 0);
    simdjson::dom::parser parser;
    simdjson::dom::element report = parser.parse(last_line(output));
    CHECK(uint64_t(report["connected"]) == 20);
    CHECK(uint64_t(report["acknowledged"]) == 1000);
    CHECK(uint64_t(report["protocol_errors"]) == 0);
    CHECK(double(report["ack_ms"]["p99"]) > 0);

    CHECK(gateway.metric(R"(citygate_messages_received_total{qos="1"})") == 1000);
    CHECK(gateway.metric(R"(citygate_errors_total{kind="payload_invalid"})") == 0);
    CHECK(gateway.metric(R"(citygate_errors_total{kind="storage_rejected"})") == 0);
    // 20 sensors, 50 readings each: every one of their series holds 50 points.
    auto series = gateway.get("/api/v1/series", {{"match", R"({district=~".+"})"}});
    REQUIRE(series.status == 200);
    simdjson::dom::element listed = parser.parse(series.body);
    simdjson::dom::array keys = listed["data"];
    REQUIRE(keys.size() >= 20);
    for (simdjson::dom::element key : keys) {
        auto reply =
            gateway.get("/api/v1/query_range", {{"series", std::string(std::string_view(key))},
                                                {"start", "0"},
                                                {"end", "9000000000000"}});
        REQUIRE(reply.status == 200);
        simdjson::dom::parser points_parser;
        simdjson::dom::element points = points_parser.parse(reply.body);
        CHECK(points["data"]["result"].at(0)["values"].get_array().size() == 50);
    }
}

TEST_CASE("the load generator fails loudly when no broker listens") {
    std::string output;
    int status = run_command(
        std::string(CITYGATE_LOADGEN_BINARY) + " --port 1 --clients 2 --messages 1 --threads 1",
        &output);
    INFO(output);
    CHECK(status == 1);
    CHECK_THAT(last_line(output), Catch::Contains("\"connect_failed\":2"));
}
