// The admin delete API through the real binary: a series poisoned by a reading stamped ten years
// ahead is repaired by deleting that reading (current readings are stored again), a whole series
// goes, bad parameters get 400 with the reason, and only admin peers may call it.
#include <catch2/catch.hpp>

#include <simdjson.h>

#include <chrono>
#include <fstream>

#include "tests/integration/gateway_fixture.hpp"

using citygate::test::GatewayUnderTest;
using citygate::test::HttpReply;
using citygate::test::run_command;

namespace {

std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

void publish(const GatewayUnderTest& gateway, const std::string& device, std::int64_t ts,
             double value) {
    std::string output;
    REQUIRE(run_command("mosquitto_pub -h 127.0.0.1 -p " + std::to_string(gateway.mqtt_port()) +
                            " -q 1 -t city/d/air/" + device + " -m '{\"ts\":" + std::to_string(ts) +
                            ",\"pm25\":" + std::to_string(value) + "}'",
                        &output) == 0);
}

// POST (or `method`) with form fields, through curl --data-urlencode.
HttpReply delete_series(const GatewayUnderTest& gateway,
                        const std::vector<std::pair<std::string, std::string>>& fields,
                        const std::string& extra = "-X POST") {
    std::string body_file = (gateway.dir() / "delete-body").string();
    std::string command =
        "curl -sS --max-time 30 " + extra + " -o " + body_file +
        " -w '%{http_code}' http://127.0.0.1:" + std::to_string(gateway.http_port()) +
        "/api/v1/admin/tsdb/delete_series";
    for (const auto& [name, value] : fields)
        command += " --data-urlencode " + GatewayUnderTest::shell_quote(name + "=" + value);
    std::string output;
    HttpReply reply;
    if (run_command(command, &output) != 0) return reply;
    reply.status = std::stoi(output);
    std::ifstream in(body_file);
    reply.body.assign(std::istreambuf_iterator<char>(in), {});
    return reply;
}

std::vector<std::int64_t> stored_times(const GatewayUnderTest& gateway, const std::string& device) {
    auto reply = gateway.get("/api/v1/query_range", {{"series", "pm25{device=\"" + device + "\"}"},
                                                     {"start", "0"},
                                                     {"end", "9000000000000000"}});
    REQUIRE(reply.status == 200);
    simdjson::dom::parser parser;
    simdjson::dom::element doc = parser.parse(reply.body);
    std::vector<std::int64_t> times;
    for (simdjson::dom::element series : doc["data"]["result"].get_array()) {
        for (simdjson::dom::element point : series["values"].get_array())
            times.push_back(std::int64_t(point.at(0)));
    }
    return times;
}

}  // namespace

TEST_CASE("deleting a reading stamped ten years ahead repairs its series through the HTTP API") {
    // max_future 0 turns the gateway's own check off: the state a series is in after a bad clock
    // reached a gateway without it (or one running with it off).
    GatewayUnderTest gateway("[ingest]\nmax_future = \"0s\"\n");
    const std::int64_t now = now_ms();
    const std::int64_t future = now + 3650LL * 24 * 3600 * 1000;
    publish(gateway, "s-1", now - 60'000, 1);
    publish(gateway, "s-1", future, 2);
    publish(gateway, "s-1", now, 3);  // correct, and refused as late behind the future one
    CHECK(stored_times(gateway, "s-1") == std::vector<std::int64_t>{now - 60'000, future});
    CHECK(gateway.metric("citygate_storage_points_rejected_total{reason=\"late\"}") == 1);

    // The future reading only: start one second before it (Unix seconds, as Prometheus).
    auto reply = delete_series(gateway, {{"match[]", "pm25{device=\"s-1\"}"},
                                         {"start", std::to_string(future / 1000 - 1)}});
    INFO(reply.body);
    REQUIRE(reply.status == 204);
    CHECK(reply.body.empty());
    CHECK(stored_times(gateway, "s-1") == std::vector<std::int64_t>{now - 60'000});
    CHECK(gateway.process().wait_for_log("delete_series: 1 points of 1 series deleted",
                                         std::chrono::seconds(10)));

    publish(gateway, "s-1", now + 1000, 4);
    CHECK(stored_times(gateway, "s-1") == std::vector<std::int64_t>{now - 60'000, now + 1000});
    CHECK(gateway.metric("citygate_storage_points_rejected_total{reason=\"late\"}") == 1);
}

TEST_CASE("delete_series removes a whole series and refuses bad parameters with the reason") {
    GatewayUnderTest gateway("[http]\nadmin_from = [\"127.0.0.1/32\"]\n");
    const std::int64_t now = now_ms();
    publish(gateway, "w-1", now - 1000, 1);
    publish(gateway, "w-2", now - 1000, 2);
    REQUIRE(stored_times(gateway, "w-1").size() == 1);

    auto refused = [&](const std::vector<std::pair<std::string, std::string>>& fields) {
        auto reply = delete_series(gateway, fields);
        CHECK(reply.status == 400);
        return reply.body;
    };
    CHECK_THAT(refused({}), Catch::Contains("missing parameter: match[]"));
    CHECK_THAT(refused({{"match[]", "pm25{device="}}), Catch::Contains("match[]: "));
    CHECK_THAT(refused({{"match[]", "pm25"}, {"start", "yesterday"}}),
               Catch::Contains("start must be Unix seconds or RFC 3339"));
    CHECK_THAT(refused({{"match[]", "pm25"},
                        {"start", "2030-01-01T00:00:00Z"},
                        {"end", "2020-01-01T00:00:00Z"}}),
               Catch::Contains("end is before start"));
    CHECK(stored_times(gateway, "w-1").size() == 1);  // nothing deleted by a refused call
    CHECK(gateway.get("/api/v1/admin/tsdb/delete_series").status == 405);
    // Admin only: refused from outside http.admin_from.
    auto outside = delete_series(gateway, {{"match[]", "pm25"}}, "-X POST --interface 127.0.0.2");
    CHECK(outside.status == 403);
    CHECK(stored_times(gateway, "w-1").size() == 1);

    // Whole series by RFC 3339 bounds around every time, via PUT and the query string.
    std::string output;
    REQUIRE(run_command("curl -sS --max-time 30 -X PUT -o /dev/null -w '%{http_code}' -G "
                        "http://127.0.0.1:" +
                            std::to_string(gateway.http_port()) +
                            "/api/v1/admin/tsdb/delete_series --data-urlencode "
                            "'match[]=pm25{device=\"w-1\"}' --data-urlencode "
                            "start=2000-01-01T00:00:00Z --data-urlencode end=2100-01-01T00:00:00Z",
                        &output) == 0);
    CHECK(output == "204");
    CHECK(stored_times(gateway, "w-1").empty());
    CHECK(stored_times(gateway, "w-2").size() == 1);
    auto series = gateway.get("/api/v1/series", {{"match", "pm25"}});
    CHECK_THAT(series.body, !Catch::Contains("w-1"));
    CHECK_THAT(series.body, Catch::Contains("w-2"));
}
