// The HTTP API over real stored data: aggregation with step, function and group by, label
// values, series listing, and CSV / JSON-lines export of raw points and rollups.
#include <catch2/catch.hpp>

#include <mqtt/client.h>
#include <simdjson.h>

#include "tests/integration/gateway_fixture.hpp"

using citygate::test::GatewayUnderTest;
using citygate::test::HttpReply;

namespace {

// Two districts, two air sensors each, one pm25 reading a minute for 10 minutes:
// value = district base + sensor + minute.
struct Dataset {
    std::int64_t start;  // a whole hour, an hour ago
    static constexpr int minutes = 10;
    static double value(int district, int sensor, int minute) {
        return district * 100 + sensor * 10 + minute;
    }
};

Dataset publish_dataset(const GatewayUnderTest& gateway) {
    auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
    Dataset data{(now - 3'600'000) / 3'600'000 * 3'600'000};
    mqtt::client client("tcp://127.0.0.1:" + std::to_string(gateway.mqtt_port()), "http-api-it",
                        mqtt::create_options(MQTTVERSION_3_1_1));
    client.connect(mqtt::connect_options_builder().clean_session(true).finalize());
    const char* districts[] = {"pudong", "xuhui"};
    for (int d = 0; d < 2; ++d) {
        for (int s = 0; s < 2; ++s) {
            for (int m = 0; m < Dataset::minutes; ++m) {
                std::string topic = std::string("city/") + districts[d] + "/air/s" +
                                    std::to_string(d) + std::to_string(s);
                std::string payload = "{\"ts\":" + std::to_string(data.start + m * 60'000) +
                                      ",\"pm25\":" + std::to_string(Dataset::value(d, s, m)) + "}";
                client.publish(mqtt::message(topic, payload, 1, false));
            }
        }
    }
    client.disconnect();
    return data;
}

simdjson::dom::element parse(simdjson::dom::parser& parser, const HttpReply& reply) {
    INFO(reply.status << " " << reply.body);
    REQUIRE(reply.status == 200);
    return parser.parse(reply.body);
}

}  // namespace

TEST_CASE("aggregated queries: avg per district every 5 minutes, and functions per series") {
    GatewayUnderTest gateway;
    Dataset data = publish_dataset(gateway);
    std::string start = std::to_string(data.start);
    std::string end = std::to_string(data.start + Dataset::minutes * 60'000 - 1);
    simdjson::dom::parser parser;

    auto by_district =
        parse(parser, gateway.get("/api/v1/query_range", {{"series", "pm25{type=\"air\"}"},
                                                          {"start", start},
                                                          {"end", end},
                                                          {"step", "5m"},
                                                          {"function", "avg"},
                                                          {"group_by", "district"}}));
    simdjson::dom::array groups = by_district["data"]["result"];
    REQUIRE(groups.size() == 2);
    for (simdjson::dom::element group : groups) {
        std::string_view district = group["metric"]["district"];
        int d = district == "pudong" ? 0 : 1;
        simdjson::dom::array values = group["values"];
        REQUIRE(values.size() == 2);
        for (int step = 0; step < 2; ++step) {
            double expected = 0;
            for (int s = 0; s < 2; ++s) {
                for (int m = step * 5; m < step * 5 + 5; ++m)
                    expected += Dataset::value(d, s, m);
            }
            expected /= 10;
            CHECK(int64_t(values.at(step).at(0)) == data.start + step * 300'000);
            CHECK(double(values.at(step).at(1)) == Approx(expected));
        }
    }

    auto maxima =
        parse(parser, gateway.get("/api/v1/query_range", {{"series", "pm25{district=\"xuhui\"}"},
                                                          {"start", start},
                                                          {"end", end},
                                                          {"step", "600000"},
                                                          {"function", "max"}}));
    simdjson::dom::array per_series = maxima["data"]["result"];
    REQUIRE(per_series.size() == 2);
    CHECK(double(per_series.at(0)["values"].at(0).at(1)) == Dataset::value(1, 0, 9));
    CHECK(double(per_series.at(1)["values"].at(0).at(1)) == Dataset::value(1, 1, 9));

    HttpReply bad =
        gateway.get("/api/v1/query_range",
                    {{"series", "pm25"}, {"start", start}, {"end", end}, {"function", "median"}});
    CHECK(bad.status == 400);
    CHECK_THAT(bad.body, Catch::Contains("function must be"));
}

TEST_CASE("label values and series listing by matcher") {
    GatewayUnderTest gateway;
    publish_dataset(gateway);
    simdjson::dom::parser parser;
    auto districts = parse(parser, gateway.get("/api/v1/labels/district/values"));
    simdjson::dom::array names = districts["data"];
    REQUIRE(names.size() == 2);
    CHECK(std::string_view(names.at(0)) == "pudong");
    CHECK(std::string_view(names.at(1)) == "xuhui");

    auto devices = parse(parser, gateway.get("/api/v1/labels/device/values",
                                             {{"match", "pm25{district=\"pudong\"}"}}));
    CHECK(devices["data"].get_array().size() == 2);

    auto series = parse(parser, gateway.get("/api/v1/series", {{"match", "{device=~\"s1.\"}"}}));
    simdjson::dom::array keys = series["data"];
    REQUIRE(keys.size() == 2);
    CHECK(std::string_view(keys.at(0)) == "pm25{device=\"s10\",district=\"xuhui\",type=\"air\"}");
}

TEST_CASE("export of raw points and 1-minute rollups as CSV and JSON lines") {
    GatewayUnderTest gateway;
    Dataset data = publish_dataset(gateway);
    std::string start = std::to_string(data.start);
    std::string end = std::to_string(data.start + Dataset::minutes * 60'000 - 1);

    HttpReply csv = gateway.get(
        "/api/v1/export",
        {{"series", "pm25{device=\"s01\"}"}, {"start", start}, {"end", end}, {"format", "csv"}});
    REQUIRE(csv.status == 200);
    std::istringstream lines(csv.body);
    std::string line;
    std::getline(lines, line);
    CHECK(line == "series,timestamp_ms,value");
    int rows = 0;
    while (std::getline(lines, line)) {
        CHECK_THAT(
            line, Catch::StartsWith(R"("pm25{device=""s01"",district=""pudong"",type=""air""}",)"));
        CHECK_THAT(line, Catch::EndsWith("," + std::to_string(int(Dataset::value(0, 1, rows)))));
        ++rows;
    }
    CHECK(rows == Dataset::minutes);

    HttpReply jsonl = gateway.get("/api/v1/export", {{"series", "pm25{device=\"s11\"}"},
                                                     {"start", start},
                                                     {"end", end},
                                                     {"format", "jsonl"},
                                                     {"rollup", "1m"}});
    REQUIRE(jsonl.status == 200);
    std::istringstream records(jsonl.body);
    simdjson::dom::parser parser;
    int buckets = 0;
    while (std::getline(records, line)) {
        simdjson::dom::element bucket = parser.parse(line);
        CHECK(int64_t(bucket["bucket_start_ms"]) == data.start + buckets * 60'000);
        CHECK(double(bucket["count"]) == 1);
        CHECK(double(bucket["sum"]) == Dataset::value(1, 1, buckets));
        CHECK(double(bucket["min"]) == Dataset::value(1, 1, buckets));
        CHECK(double(bucket["last"]) == Dataset::value(1, 1, buckets));
        ++buckets;
    }
    CHECK(buckets == Dataset::minutes);

    CHECK(gateway
              .get("/api/v1/export",
                   {{"series", "pm25"}, {"start", start}, {"end", end}, {"format", "xml"}})
              .status == 400);
}
