// The MQTT aggregate export: topics, JSON payloads, url and client id, and the bounded offline
// buffer (no broker needed: Paho buffers while it has never connected).
#include <catch2/catch.hpp>

#include <prometheus/text_serializer.h>

#include "gateway/export/aggregate_exporter.hpp"
#include "gateway/export/aggregate_message.hpp"

using namespace citygate::gateway;

TEST_CASE("the topic is prefix, district, measurement, one level each") {
    CHECK(aggregate_topic("citygate/agg", "d01", "pm25") == "citygate/agg/d01/pm25");
    CHECK(aggregate_topic("citygate/agg/", "d01", "pm25") == "citygate/agg/d01/pm25");
    CHECK(aggregate_topic("", "d01", "pm25") == "d01/pm25");
    SECTION("names that would add a level or a wildcard are flattened") {
        CHECK(aggregate_topic("p", "a/b", "x+y#") == "p/a_b/x_y_");
        CHECK(aggregate_topic("p", "", "m") == "p/_/m");
        CHECK(aggregate_topic("p", std::string_view("d\0e", 3), "m") == "p/d_e/m");
    }
}

TEST_CASE("the payload is the window's JSON object, times in RFC 3339 UTC") {
    AggregateWindow window{"pudong", "pm25", 1'764'740'640'000, 1'764'740'700'000, 3, 2.5,
                           -1,       7.25};
    CHECK(aggregate_json(window) ==
          R"({"district":"pudong","measurement":"pm25","window_start":"2025-12-03T05:44:00Z",)"
          R"("window_end":"2025-12-03T05:45:00Z","count":3,"avg":2.5,"min":-1,"max":7.25})");
    SECTION("names are escaped, values not finite are null") {
        AggregateWindow odd{"a\"b", "m\\", 0, 1000, 1, 1.0 / 0.0, 0, 0};
        CHECK(aggregate_json(odd) ==
              R"({"district":"a\"b","measurement":"m\\","window_start":"1970-01-01T00:00:00Z",)"
              R"("window_end":"1970-01-01T00:00:01Z","count":1,"avg":null,"min":0,"max":0})");
    }
    CHECK(rfc3339_utc(1'764'740'640'250) == "2025-12-03T05:44:00.250Z");
    CHECK(rfc3339_utc(-1) == "1969-12-31T23:59:59.999Z");
}

TEST_CASE("mqtt and mqtts urls become Paho's tcp and ssl, with default ports") {
    CHECK(paho_server_uri("mqtt://127.0.0.1:1884") == "tcp://127.0.0.1:1884");
    CHECK(paho_server_uri("mqtt://broker") == "tcp://broker:1883");
    CHECK(paho_server_uri("mqtts://broker") == "ssl://broker:8883");
    CHECK(paho_server_uri("mqtts://[::1]") == "ssl://[::1]:8883");
    CHECK(paho_server_uri("mqtts://[::1]:9000") == "ssl://[::1]:9000");
}

TEST_CASE("{host} in the client id is the host name") {
    CHECK(expand_client_id("citygate-agg-{host}", "node7") == "citygate-agg-node7");
    CHECK(expand_client_id("{host}/{host}", "h") == "h/h");
    CHECK(expand_client_id("fixed", "h") == "fixed");
}

namespace {

double value_of(prometheus::Registry& registry, const std::string& name) {
    for (const auto& family : registry.Collect()) {
        if (family.name != name) continue;
        const auto& metric = family.metric.at(0);
        return family.type == prometheus::MetricType::Counter ? metric.counter.value
                                                              : metric.gauge.value;
    }
    FAIL("no metric " << name);
    return -1;
}

}  // namespace

TEST_CASE("while disconnected, messages beyond max_buffered are dropped and counted") {
    constexpr std::int64_t window = 2'000;
    constexpr std::int64_t now = 1'764'740'640'000 + 500;  // 0.5 s into a window
    citygate::ingest::CityAggregates city(16, window);
    auto& accumulator = city.add_accumulator();
    for (const char* district : {"d1", "d2", "d3"})
        accumulator.add(district, "pm25", now - window, 4, now);
    accumulator.add("d4", "pm25", now, 4, now);  // the current window: not published yet

    Config::ExportMqtt options;
    options.url = "mqtt://127.0.0.1:9";  // never connected: start() is not called
    options.interval = std::chrono::milliseconds(window);
    options.max_buffered = 2;
    prometheus::Registry registry;
    AggregateExporter exporter(options, city, registry);
    CHECK(value_of(registry, "citygate_export_mqtt_connected") == 0);

    CHECK(exporter.publish_closed_window(now) == 2);
    CHECK(value_of(registry, "citygate_export_mqtt_dropped_total") == 1);
    CHECK(value_of(registry, "citygate_export_mqtt_buffered") == 2);
    CHECK(exporter.publish_closed_window(now) == 0);
    CHECK(value_of(registry, "citygate_export_mqtt_dropped_total") == 4);
    CHECK(value_of(registry, "citygate_export_mqtt_failed_total") == 0);
    CHECK(value_of(registry, "citygate_export_mqtt_published_total") == 0);
}
