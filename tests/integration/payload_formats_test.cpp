// Every payload format through the real binary: JSON, SenML, InfluxDB line protocol and plain
// numbers, chosen by topic or detected; bad values are counted, never stored.
#include <catch2/catch.hpp>

#include <mqtt/client.h>
#include <simdjson.h>

#include "tests/integration/gateway_fixture.hpp"

using citygate::test::GatewayUnderTest;

namespace {

struct Stored {
    std::string series;
    std::vector<std::pair<std::int64_t, double>> points;
};

std::vector<Stored> query(const GatewayUnderTest& gateway, const std::string& selector) {
    auto reply = gateway.get("/api/v1/query_range",
                             {{"series", selector}, {"start", "0"}, {"end", "9000000000000"}});
    INFO(reply.body);
    REQUIRE(reply.status == 200);
    simdjson::dom::parser parser;
    simdjson::dom::element doc = parser.parse(reply.body);
    std::vector<Stored> result;
    for (simdjson::dom::element series : doc["data"]["result"].get_array()) {
        Stored stored{std::string(std::string_view(series["series"])), {}};
        for (simdjson::dom::array pair : series["values"].get_array()) {
            stored.points.emplace_back(int64_t(pair.at(0)), double(pair.at(1)));
        }
        result.push_back(std::move(stored));
    }
    return result;
}

std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace

TEST_CASE("JSON, SenML, line protocol and plain numbers are stored by topic rule or detection") {
    GatewayUnderTest gateway(R"(
[ingest]
topic_templates = ["city/{district}/{type}/{device}", "num/{district}/{device}/{measurement}"]
line_precision = "ms"
[[ingest.format]]
topic = "city/+/water/#"
format = "line"
)");
    mqtt::client client("tcp://127.0.0.1:" + std::to_string(gateway.mqtt_port()), "formats",
                        mqtt::create_options(MQTTVERSION_5));
    client.connect(mqtt::connect_options_builder().mqtt_version(MQTTVERSION_5).finalize());
    std::int64_t t = now_ms() / 1000 * 1000 - 60'000;
    auto publish = [&](const std::string& topic, const std::string& payload) {
        client.publish(mqtt::message(topic, payload, 1, false));
    };

    // SenML, detected from '[': base name + name, base time in seconds, unit as a tag.
    publish(
        "city/hongkou/weather/w-1",
        R"([{"bn":"w1_","bt":)" + std::to_string(t / 1000) +
            R"(,"n":"temperature","u":"Cel","v":21.5},{"n":"humidity","u":"%RH","v":40,"t":10}])");
    // Line protocol by topic rule: tags merged under the topic's, field -> measurement_field.
    publish("city/fengxian/water/l-9", "river,station=s1 level=3.25,flow=12i " + std::to_string(t) +
                                           "\n"
                                           "river,station=s1 level=3.5 " +
                                           std::to_string(t + 1000));
    // A plain number named by the template's {measurement} level.
    publish("num/chongming/n-1/noise", " 48.5 ");
    // Bad values: a NaN field (skipped, the rest of its line kept), and a payload that is no
    // number at all (refused whole).
    publish("city/fengxian/water/l-10", "river level=NaN,flow=7i " + std::to_string(t));
    // Refused whole: an MQTT 5 client hears why (PUBACK 0x99, payload format invalid).
    CHECK_THROWS_WITH(publish("num/chongming/n-1/noise", "loud"),
                      Catch::Contains("Payload format invalid"));
    // A topic no template matches: PUBACK 0x90, topic name invalid.
    CHECK_THROWS_WITH(publish("elsewhere/x", R"({"a": 1})"), Catch::Contains("Topic name invalid"));
    client.disconnect();

    auto temperature = query(gateway, "w1_temperature");
    REQUIRE(temperature.size() == 1);
    CHECK(temperature[0].series ==
          R"(w1_temperature{device="w-1",district="hongkou",type="weather",unit="Cel"})");
    REQUIRE(temperature[0].points.size() == 1);
    CHECK(temperature[0].points[0] == std::pair<std::int64_t, double>(t, 21.5));
    auto humidity = query(gateway, "w1_humidity");
    REQUIRE(humidity.size() == 1);
    CHECK(humidity[0].points.at(0) == std::pair<std::int64_t, double>(t + 10'000, 40));

    auto level = query(gateway, R"(river_level{device="l-9"})");
    REQUIRE(level.size() == 1);
    CHECK(level[0].series ==
          R"(river_level{device="l-9",district="fengxian",station="s1",type="water"})");
    REQUIRE(level[0].points.size() == 2);
    CHECK(level[0].points[1] == std::pair<std::int64_t, double>(t + 1000, 3.5));
    auto flow = query(gateway, R"(river_flow{device="l-9"})");
    REQUIRE(flow.size() == 1);
    CHECK(flow[0].points.at(0).second == 12);

    auto noise = query(gateway, "noise");
    REQUIRE(noise.size() == 1);
    CHECK(noise[0].series == R"(noise{device="n-1",district="chongming"})");
    REQUIRE(noise[0].points.size() == 1);
    CHECK(noise[0].points[0].second == 48.5);

    CHECK(query(gateway, R"(river_level{device="l-10"})").empty());
    CHECK(query(gateway, R"(river_flow{device="l-10"})").size() == 1);
    CHECK(gateway.metric(R"(citygate_errors_total{kind="field_skipped"})") == 1);    // the NaN
    CHECK(gateway.metric(R"(citygate_errors_total{kind="payload_invalid"})") == 1);  // "loud"
}

TEST_CASE("close_on_bad_payload ends the connection with reason 0x99 (MQTT 5)") {
    GatewayUnderTest gateway("[ingest]\nclose_on_bad_payload = true\n");
    std::string output;
    int status = citygate::test::run_command("mosquitto_pub -h 127.0.0.1 -p " +
                                                 std::to_string(gateway.mqtt_port()) +
                                                 " -V mqttv5 -q 1 -t city/a/b/c -m '{broken'",
                                             &output);
    INFO(output);
    CHECK(status != 0);
    CHECK(gateway.metric(R"(citygate_errors_total{kind="payload_invalid"})") == 1);
}

TEST_CASE("a reading from a clock years ahead is refused and does not poison its series") {
    GatewayUnderTest gateway;
    mqtt::client client("tcp://127.0.0.1:" + std::to_string(gateway.mqtt_port()), "clocks",
                        mqtt::create_options(MQTTVERSION_5));
    client.connect(mqtt::connect_options_builder().mqtt_version(MQTTVERSION_5).finalize());
    auto publish = [&](std::int64_t ts, double value) {
        client.publish(mqtt::message(
            "city/pudong/air/clock-1",
            R"({"pm25": )" + std::to_string(value) + R"(, "ts": )" + std::to_string(ts) + "}", 1,
            false));
    };
    std::int64_t now = now_ms();
    // Ten years ahead, then seconds instead of ms: both refused, MQTT 5 hears 0x83.
    CHECK_THROWS_WITH(publish(now + 10LL * 365 * 86'400'000, 1),
                      Catch::Contains("Implementation specific error"));
    CHECK_THROWS_WITH(publish(now / 1000, 2), Catch::Contains("Implementation specific error"));
    // The correct readings after them are stored, not rejected as late.
    publish(now - 2000, 3);
    publish(now - 1000, 4);
    client.disconnect();

    auto stored = query(gateway, "pm25");
    REQUIRE(stored.size() == 1);
    REQUIRE(stored[0].points.size() == 2);
    CHECK(stored[0].points[0] == std::pair<std::int64_t, double>(now - 2000, 3));
    CHECK(stored[0].points[1] == std::pair<std::int64_t, double>(now - 1000, 4));
    CHECK(gateway.metric(R"(citygate_errors_total{kind="timestamp_future"})") == 1);
    CHECK(gateway.metric(R"(citygate_errors_total{kind="timestamp_too_old"})") == 1);
    CHECK(gateway.process().log().find("stamped") != std::string::npos);
}
