// End to end through the real binary: sensors publish with mosquitto_pub and Eclipse Paho
// (MQTT 3.1.1 and 5, QoS 0 and 1), the points are read back over HTTP, /metrics moves, and a
// SIGTERM drains and exits cleanly with the data still there after a restart.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include <mqtt/client.h>
#include <simdjson.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>

#include "tests/integration/gateway_fixture.hpp"

using citygate::test::GatewayUnderTest;
using citygate::test::HttpReply;
using citygate::test::run_command;
using namespace std::chrono_literals;

namespace {

struct Point {
    std::int64_t ts;
    double value;
};

// Points of the one series the selector names, from /api/v1/query_range.
std::vector<Point> query_points(const GatewayUnderTest& gateway, const std::string& selector,
                                std::int64_t start, std::int64_t end) {
    HttpReply reply = gateway.get(
        "/api/v1/query_range",
        {{"series", selector}, {"start", std::to_string(start)}, {"end", std::to_string(end)}});
    INFO("query " << selector << " -> " << reply.status << " " << reply.body);
    REQUIRE(reply.status == 200);
    simdjson::dom::parser parser;
    simdjson::dom::element doc = parser.parse(reply.body);
    REQUIRE(std::string_view(doc["status"]) == "success");
    simdjson::dom::array result = doc["data"]["result"];
    std::vector<Point> points;
    for (simdjson::dom::element series : result) {
        for (simdjson::dom::array pair : series["values"].get_array()) {
            points.push_back({int64_t(pair.at(0)), double(pair.at(1))});
        }
    }
    return points;
}

// Polls until the series holds `count` points (QoS 0 has no ack to wait for).
std::vector<Point> wait_for_points(const GatewayUnderTest& gateway, const std::string& selector,
                                   std::int64_t start, std::int64_t end, std::size_t count) {
    auto deadline = std::chrono::steady_clock::now() + 10s;
    std::vector<Point> points;
    do {
        points = query_points(gateway, selector, start, end);
        if (points.size() >= count) break;
        std::this_thread::sleep_for(50ms);
    } while (std::chrono::steady_clock::now() < deadline);
    return points;
}

std::unique_ptr<mqtt::client> paho_client(const GatewayUnderTest& gateway, const std::string& id,
                                          int version) {
    auto client =
        std::make_unique<mqtt::client>("tcp://127.0.0.1:" + std::to_string(gateway.mqtt_port()), id,
                                       mqtt::create_options(version));
    auto options = mqtt::connect_options_builder()
                       .mqtt_version(version)
                       .clean_session(version != MQTTVERSION_5)
                       .clean_start(version == MQTTVERSION_5)
                       .keep_alive_interval(std::chrono::seconds(30))
                       .finalize();
    client->connect(options);
    return client;
}

// Recent, so inside retention and the out-of-order window; a whole minute, 10 minutes ago.
const std::int64_t base_ts =
    std::chrono::duration_cast<std::chrono::minutes>(
        (std::chrono::system_clock::now() - std::chrono::minutes(10)).time_since_epoch())
        .count() *
    60'000;
const std::string base_ts_text = std::to_string(base_ts);

}  // namespace

TEST_CASE("mosquitto_pub QoS 1 readings are stored before the PUBACK and read back over HTTP") {
    GatewayUnderTest gateway;
    REQUIRE(mosquitto_pub(gateway, "mqttv311", 1, "city/pudong/air/a-0001",
                          R"({"ts": )" + base_ts_text + R"(, "pm25": 35.2, "pm10": 60})") == 0);

    // The PUBACK came back, so the points are in the WAL: no polling needed.
    auto pm25 = query_points(gateway, R"(pm25{district="pudong",type="air",device="a-0001"})",
                             base_ts, base_ts);
    REQUIRE(pm25.size() == 1);
    CHECK(pm25[0].ts == base_ts);
    CHECK(pm25[0].value == 35.2);
    auto pm10 = query_points(gateway, R"(pm10{device="a-0001"})", base_ts - 1000, base_ts + 1000);
    REQUIRE(pm10.size() == 1);
    CHECK(pm10[0].value == 60);

    CHECK(gateway.metric(R"(citygate_messages_received_total{qos="1"})") == 1);
    CHECK(gateway.metric("citygate_samples_written_total") == 2);
}

TEST_CASE("mosquitto_pub QoS 0 and MQTT 5 readings arrive, stamped on arrival without ts") {
    GatewayUnderTest gateway;
    auto before = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
    REQUIRE(mosquitto_pub(gateway, "mqttv311", 0, "city/xuhui/weather/w-7",
                          R"({"temperature": 21.5})") == 0);
    REQUIRE(mosquitto_pub(gateway, "mqttv5", 1, "city/xuhui/weather/w-7", R"({"humidity": 40})") ==
            0);
    auto after = before + 60'000;
    auto temperature = wait_for_points(gateway, R"(temperature{device="w-7"})", before, after, 1);
    REQUIRE(temperature.size() == 1);
    CHECK(temperature[0].value == 21.5);
    CHECK(temperature[0].ts >= before);
    auto humidity = query_points(gateway, R"(humidity{device="w-7"})", before, after);
    REQUIRE(humidity.size() == 1);
    CHECK(humidity[0].value == 40);
    CHECK(gateway.metric(R"(citygate_messages_received_total{qos="0"})") == 1);
}

TEST_CASE("Paho clients publish at QoS 0 and 1 over MQTT 3.1.1 and 5") {
    GatewayUnderTest gateway;
    for (int version : {MQTTVERSION_3_1_1, MQTTVERSION_5}) {
        std::string device = version == MQTTVERSION_5 ? "n-5" : "n-3";
        auto client = paho_client(gateway, "paho-" + device, version);
        for (int i = 0; i < 20; ++i) {
            std::string payload = R"({"ts": )" + std::to_string(base_ts + i * 10'000) +
                                  R"(, "noise": )" + std::to_string(50 + i) + "}";
            client->publish(mqtt::message("city/yangpu/noise/" + device, payload, i % 2, false));
        }
        client->disconnect();

        auto points = wait_for_points(gateway, "noise{device=\"" + device + "\"}", base_ts,
                                      base_ts + 200'000, 20);
        REQUIRE(points.size() == 20);
        for (int i = 0; i < 20; ++i) {
            CHECK(points[i].ts == base_ts + i * 10'000);
            CHECK(points[i].value == 50 + i);
        }
    }
    CHECK(gateway.metric(R"(citygate_messages_received_total{qos="0"})") == 20);
    CHECK(gateway.metric(R"(citygate_messages_received_total{qos="1"})") == 20);
    CHECK(gateway.metric(R"(citygate_connects_total{result="accepted"})") == 2);
    CHECK(gateway.metric("citygate_samples_written_total") == 40);
}

TEST_CASE("bad payloads and unknown topics are counted and the connection stays usable") {
    GatewayUnderTest gateway;
    auto client = paho_client(gateway, "paho-bad", MQTTVERSION_3_1_1);
    client->publish(mqtt::message("city/jiading/air/b-1", "{not json", 1, false));
    client->publish(mqtt::message("somewhere/else", R"({"pm25": 1})", 1, false));
    client->publish(
        mqtt::message("city/jiading/air/b-1", R"({"pm25": 12.5, "note": "x"})", 1, false));
    REQUIRE(client->is_connected());
    client->disconnect();

    auto points = query_points(gateway, R"(pm25{device="b-1"})", 0, INT64_MAX - 1);
    REQUIRE(points.size() == 1);
    CHECK(points[0].value == 12.5);
    CHECK(gateway.metric(R"(citygate_errors_total{kind="payload_invalid"})") == 1);
    CHECK(gateway.metric(R"(citygate_errors_total{kind="topic_unmatched"})") == 1);
    CHECK(gateway.metric(R"(citygate_errors_total{kind="field_skipped"})") == 1);
}

TEST_CASE("readings behind retention are refused and counted, the rest stored and acknowledged") {
    GatewayUnderTest gateway("[storage]\nretention = \"1d\"\n");
    auto client = paho_client(gateway, "paho-old", MQTTVERSION_3_1_1);
    // 2024-11-22: far behind a one-day retention.
    client->publish(
        mqtt::message("city/songjiang/air/o-1", R"({"ts": 1732262400000, "no2": 9})", 1, false));
    client->publish(mqtt::message("city/songjiang/air/o-1",
                                  R"({"ts": )" + base_ts_text + R"(, "no2": 10})", 1, false));
    REQUIRE(client->is_connected());
    client->disconnect();
    auto points = query_points(gateway, R"(no2{device="o-1"})", 0, INT64_MAX - 1);
    REQUIRE(points.size() == 1);
    CHECK(points[0].value == 10);
    CHECK(gateway.metric(R"(citygate_errors_total{kind="storage_rejected"})") == 1);
}

TEST_CASE("HTTP errors are JSON with a status and a message") {
    GatewayUnderTest gateway;
    CHECK(gateway.get("/healthz").status == 200);
    CHECK(gateway.get("/readyz").status == 200);
    HttpReply missing = gateway.get("/api/v1/query_range", {{"start", "0"}, {"end", "1"}});
    CHECK(missing.status == 400);
    CHECK_THAT(missing.body, Catch::Contains("missing parameter: series"));
    HttpReply bad_selector = gateway.get(
        "/api/v1/query_range", {{"series", "pm25{district=}"}, {"start", "0"}, {"end", "1"}});
    CHECK(bad_selector.status == 400);
    CHECK_THAT(bad_selector.body, Catch::Contains("\"status\":\"error\""));
    HttpReply bad_time = gateway.get("/api/v1/query_range",
                                     {{"series", "pm25"}, {"start", "yesterday"}, {"end", "1"}});
    CHECK(bad_time.status == 400);
    CHECK(gateway.get("/nope").status == 404);
    CHECK(gateway.metric(R"(citygate_errors_total{kind="http_bad_request"})") >= 3);
}

TEST_CASE("a socket that never sends CONNECT is closed after the connect timeout") {
    GatewayUnderTest gateway("[mqtt]\nconnect_timeout = \"300ms\"\n");
    boost::asio::io_context io;
    boost::asio::ip::tcp::socket socket(io);
    socket.connect({boost::asio::ip::make_address("127.0.0.1"), gateway.mqtt_port()});
    auto opened = std::chrono::steady_clock::now();
    char byte;
    boost::system::error_code ec;
    boost::asio::read(socket, boost::asio::buffer(&byte, 1), ec);  // blocks until the close
    auto waited = std::chrono::steady_clock::now() - opened;
    CHECK(ec == boost::asio::error::eof);
    CHECK(waited >= 250ms);
    CHECK(waited < 5s);

    // Others are unaffected.
    REQUIRE(mosquitto_pub(gateway, "mqttv311", 1, "city/minhang/power/p-1",
                          R"({"ts": )" + base_ts_text + R"(, "kw": 3})") == 0);
    CHECK(query_points(gateway, "kw", base_ts, base_ts).size() == 1);
}

TEST_CASE("SIGTERM drains, exits 0, and a restart serves the acknowledged data") {
    GatewayUnderTest gateway;
    auto client = paho_client(gateway, "paho-drain", MQTTVERSION_3_1_1);
    for (int i = 0; i < 200; ++i) {
        client->publish(mqtt::message(
            "city/baoshan/water/l-1",
            R"({"ts": )" + std::to_string(base_ts + i) + R"(, "level": )" + std::to_string(i) + "}",
            1, false));
    }
    REQUIRE(gateway.process().signal(SIGTERM));
    auto status = gateway.process().wait_for(20s);
    INFO(gateway.process().log());
    REQUIRE(status);
    CHECK(*status == 0);
    CHECK_THAT(gateway.process().log(), Catch::Contains("stopped"));

    gateway.start();
    auto points = query_points(gateway, R"(level{device="l-1"})", base_ts, base_ts + 1000);
    REQUIRE(points.size() == 200);
    CHECK(points.back().value == 199);
}
