// Series limits through the real binary: a client creating new series past its identity's limit
// is refused (MQTT 5: PUBACK 0x97; 3.1.1: disconnected without a PUBACK), counted and warned
// about, while its existing series and other identities keep being stored.
#include <catch2/catch.hpp>

#include <mqtt/client.h>

#include <thread>

#include "tests/integration/gateway_fixture.hpp"

using citygate::test::GatewayUnderTest;

namespace {

// A JSON payload with fields f<first> .. f<first + count - 1>.
std::string fields(int first, int count) {
    std::string json = "{";
    for (int i = first; i < first + count; ++i)
        json += (i > first ? ", \"f" : "\"f") + std::to_string(i) + "\": " + std::to_string(i);
    return json + "}";
}

std::size_t series_count(const GatewayUnderTest& gateway, const std::string& selector) {
    auto reply = gateway.get("/api/v1/series", {{"match", selector}});
    REQUIRE(reply.status == 200);
    std::size_t n = 0;
    for (std::size_t at = 0; (at = reply.body.find("device=", at)) != std::string::npos; ++at)
        ++n;
    return n;
}

const char* kLimits = "[ingest]\nmax_series_per_identity = 20\nmax_new_series_per_minute = 0\n";

}  // namespace

TEST_CASE("a client over its identity's series limit is refused with 0x97 while others write") {
    GatewayUnderTest gateway(kLimits);
    auto port = std::to_string(gateway.mqtt_port());
    auto v5 = mqtt::connect_options_builder().mqtt_version(MQTTVERSION_5).finalize();
    mqtt::client exploder("tcp://127.0.0.1:" + port, "exploder",
                          mqtt::create_options(MQTTVERSION_5));
    exploder.connect(v5);
    auto publish = [&](const std::string& payload) {
        exploder.publish(mqtt::message("city/pudong/air/exploder", payload, 1, false));
    };
    publish(fields(0, 10));
    publish(fields(10, 10));  // 20 series: the limit
    CHECK_THROWS_WITH(publish(fields(20, 10)), Catch::Contains("Quota exceeded"));
    // Its existing series are accepted; a message mixing both stores the existing one's reading
    // and is refused for the rest.
    CHECK_NOTHROW(publish(fields(0, 10)));
    CHECK_THROWS_WITH(publish(R"({"f5": 55, "f99": 99})"), Catch::Contains("Quota exceeded"));

    // Another identity (an anonymous client is known by its client id) writes new series.
    mqtt::client newcomer("tcp://127.0.0.1:" + port, "newcomer",
                          mqtt::create_options(MQTTVERSION_5));
    newcomer.connect(v5);
    CHECK_NOTHROW(newcomer.publish(
        mqtt::message("city/pudong/air/newcomer-1", R"({"pm25": 7, "no2": 3})", 1, false)));
    newcomer.disconnect();
    // A reconnect does not reset the identity's count.
    exploder.disconnect();
    exploder.connect(v5);
    CHECK_THROWS_WITH(publish(fields(40, 1)), Catch::Contains("Quota exceeded"));
    exploder.disconnect();

    CHECK(series_count(gateway, R"({device="exploder"})") == 20);
    CHECK(series_count(gateway, R"({device="newcomer-1"})") == 2);
    auto f5 = gateway.get(
        "/api/v1/query_range",
        {{"series", R"(f5{device="exploder"})"}, {"start", "0"}, {"end", "9000000000000"}});
    CHECK(f5.body.find("55") != std::string::npos);  // stored from the mixed message
    CHECK(gateway.metric(R"(citygate_series_refused_total{limit="identity"})") == 10 + 1 + 1);
    CHECK(gateway.metric(R"(citygate_errors_total{kind="series_limit"})") == 3);
    CHECK(gateway.metric(R"(citygate_series_refused_total{limit="global"})") == 0);
    CHECK(gateway.process().log().find("identity 'anonymous:exploder'") != std::string::npos);
    CHECK(gateway.process().log().find("ingest.max_series_per_identity") != std::string::npos);
}

TEST_CASE("an MQTT 3.1.1 client over its series limit is disconnected without a PUBACK") {
    GatewayUnderTest gateway(kLimits);
    const std::string address = "tcp://127.0.0.1:" + std::to_string(gateway.mqtt_port());
    auto options = mqtt::connect_options_builder().mqtt_version(MQTTVERSION_3_1_1).finalize();
    auto publish = [](mqtt::client& device, const std::string& payload) {
        device.publish(mqtt::message("city/pudong/air/old-device", payload, 1, false));
    };
    {
        mqtt::client device(address, "old-device", mqtt::create_options(MQTTVERSION_3_1_1));
        device.set_timeout(std::chrono::seconds(20));
        device.connect(options);
        publish(device, fields(0, 20));
        // No PUBACK: the publish fails (connection lost or no acknowledgement), never succeeds.
        CHECK_THROWS(publish(device, fields(20, 5)));
        for (int i = 0; i < 100 && device.is_connected(); ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        CHECK_FALSE(device.is_connected());
    }
    // Connected again (the same client id: the same identity), its existing series are
    // acknowledged as before.
    mqtt::client device(address, "old-device", mqtt::create_options(MQTTVERSION_3_1_1));
    device.set_timeout(std::chrono::seconds(20));
    device.connect(options);
    CHECK_NOTHROW(publish(device, fields(0, 3)));
    device.disconnect();
    CHECK(series_count(gateway, R"({device="old-device"})") == 20);
    CHECK(gateway.metric(R"(citygate_series_refused_total{limit="identity"})") == 5);
    CHECK(gateway.process().log().find("MQTT 3.1.1: disconnected without PUBACK") !=
          std::string::npos);
}
