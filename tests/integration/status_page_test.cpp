// Operations surface of the real binary: city aggregates on /metrics/city, the status JSON, the
// status page rendered in headless Chromium under load, JSON logs and the log level at run time.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include <mqtt/client.h>
#include <simdjson.h>

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

// Any method, with a body, through curl.
HttpReply send(const GatewayUnderTest& gateway, const std::string& method, const std::string& path,
               const std::string& body = {}) {
    std::string body_file = (gateway.dir() / "reply-body").string();
    std::string command =
        "curl -sS --max-time 10 -X " + method + " -o " + body_file +
        " -w '%{http_code}' 'http://127.0.0.1:" + std::to_string(gateway.http_port()) + path + "'";
    if (!body.empty()) command += " --data-binary " + GatewayUnderTest::shell_quote(body);
    std::string output;
    HttpReply reply;
    if (run_command(command, &output) != 0) return reply;
    reply.status = std::stoi(output);
    std::ifstream in(body_file);
    reply.body.assign(std::istreambuf_iterator<char>(in), {});
    return reply;
}

// The start of the last complete minute, waiting out the last seconds of a minute so a test has
// at least ten seconds before the minute it reports on changes.
std::int64_t last_complete_minute() {
    std::int64_t now = now_ms();
    if (now % 60'000 > 50'000) {
        std::this_thread::sleep_for(std::chrono::milliseconds(60'000 - now % 60'000 + 200));
        now = now_ms();
    }
    return now / 60'000 * 60'000 - 60'000;
}

void publish(const GatewayUnderTest& gateway,
             const std::vector<std::pair<std::string, std::string>>& messages) {
    mqtt::client client("tcp://127.0.0.1:" + std::to_string(gateway.mqtt_port()), "city-it",
                        mqtt::create_options(MQTTVERSION_3_1_1));
    client.connect(mqtt::connect_options_builder().clean_session(true).finalize());
    for (const auto& [topic, payload] : messages)
        client.publish(mqtt::message(topic, payload, 1, false));  // QoS 1: acknowledged
    client.disconnect();
}

std::string reading(std::int64_t ts, const std::string& fields) {
    return "{\"ts\":" + std::to_string(ts) + "," + fields + "}";
}

std::filesystem::path artifact_dir() {
#ifdef CITYGATE_ARTIFACT_DIR
    std::filesystem::path dir = CITYGATE_ARTIFACT_DIR;
#else
    std::filesystem::path dir = std::filesystem::temp_directory_path() / "citygate-artifacts";
#endif
    std::filesystem::create_directories(dir);
    return dir;
}

}  // namespace

TEST_CASE("city aggregates: 1-minute averages per district and measurement on /metrics/city") {
    GatewayUnderTest gateway;
    std::int64_t minute = last_complete_minute();
    publish(gateway, {{"city/pudong/air/a-1", reading(minute + 1'000, "\"pm25\":10")},
                      {"city/pudong/air/a-2", reading(minute + 2'000, "\"pm25\":20")},
                      {"city/xuhui/air/b-1", reading(minute + 3'000, "\"pm25\":7,\"pm10\":9")},
                      // The current minute: on the status JSON, not yet a gauge.
                      {"city/jingan/air/c-1", reading(now_ms(), "\"pm25\":1")}});

    HttpReply city = gateway.get("/metrics/city");
    INFO(city.body);
    REQUIRE(city.status == 200);
    CHECK_THAT(
        city.body,
        Catch::Contains("citygate_city_avg_1m{district=\"pudong\",measurement=\"pm25\"} 15\n"));
    CHECK_THAT(
        city.body,
        Catch::Contains("citygate_city_samples_1m{district=\"pudong\",measurement=\"pm25\"} 2\n"));
    CHECK_THAT(city.body, Catch::Contains(
                              "citygate_city_avg_1m{district=\"xuhui\",measurement=\"pm10\"} 9\n"));
    CHECK_THAT(city.body, Catch::Contains("citygate_city_minute_start_seconds " +
                                          std::to_string(minute / 1000) + "\n"));
    CHECK_THAT(city.body, Catch::Contains("citygate_city_pairs 4\n"));
    CHECK_THAT(city.body, Catch::Contains("citygate_city_dropped_total 0\n"));
    CHECK(city.body.find("jingan") == std::string::npos);
    // Per-district figures stay off the main /metrics.
    CHECK(gateway.get("/metrics").body.find("citygate_city_avg_1m") == std::string::npos);

    HttpReply status = gateway.get("/api/v1/status");
    REQUIRE(status.status == 200);
    simdjson::dom::parser parser;
    simdjson::dom::element doc = parser.parse(status.body);
    simdjson::dom::array pairs = doc["city"]["pairs"];
    std::size_t found = 0;
    for (simdjson::dom::element pair : pairs) {
        std::string_view district = pair["district"];
        if (district == "jingan") {
            CHECK(pair["avg_1m"].is_null());
            CHECK(std::uint64_t(pair["current_samples"]) == 1);
            ++found;
        }
        if (district == "pudong") {
            CHECK(double(pair["avg_1m"]) == 15);
            ++found;
        }
    }
    CHECK(found == 2);
}

TEST_CASE("city aggregates: pairs beyond city.max_pairs are dropped and counted") {
    GatewayUnderTest gateway("[city]\nmax_pairs = 1\n");
    std::int64_t minute = last_complete_minute();
    publish(gateway, {{"city/pudong/air/a-1", reading(minute + 1'000, "\"pm25\":10")},
                      {"city/xuhui/air/b-1", reading(minute + 1'000, "\"pm25\":10,\"pm10\":3")}});
    HttpReply city = gateway.get("/metrics/city");
    INFO(city.body);
    CHECK_THAT(city.body, Catch::Contains("citygate_city_pairs 1\n"));
    CHECK_THAT(city.body, Catch::Contains("citygate_city_dropped_total 2\n"));
    CHECK(city.body.find("xuhui") == std::string::npos);
    // Storage is not affected by the cap.
    CHECK(gateway.metric("citygate_samples_written_total") == 3);
}

TEST_CASE("status JSON: connections, samples, rate history, shards, series, uptime, version") {
    GatewayUnderTest gateway;
    std::int64_t ts = now_ms();
    publish(gateway, {{"city/pudong/air/a-1", reading(ts, "\"pm25\":10,\"pm10\":3")}});
    std::this_thread::sleep_for(std::chrono::milliseconds(2'300));
    HttpReply status = gateway.get("/api/v1/status");
    INFO(status.body);
    REQUIRE(status.status == 200);
    simdjson::dom::parser parser;
    simdjson::dom::element doc = parser.parse(status.body);
    CHECK(std::string_view(doc["version"]) == CITYGATE_VERSION);
    CHECK(double(doc["uptime_seconds"]) > 2);
    CHECK(double(doc["samples_written"]) == 2);
    CHECK(double(doc["connections"]) == 0);
    CHECK(std::uint64_t(doc["series"]) == 2);
    CHECK(double(doc["ingest_rate"]) >= 0);
    CHECK(simdjson::dom::array(doc["history"]).size() >= 1);
    simdjson::dom::array shards = doc["shards"];
    CHECK(shards.size() == 2);
    for (simdjson::dom::element shard : shards)
        CHECK(std::string_view(shard["state"]) == "ok");

    HttpReply page = gateway.get("/");
    CHECK(page.status == 200);
    CHECK_THAT(page.body, Catch::StartsWith("<!DOCTYPE html>"));
    // Self-contained: nothing is loaded from elsewhere.
    CHECK(page.body.find("src=\"http") == std::string::npos);
    CHECK(page.body.find("href=\"http") == std::string::npos);
}

TEST_CASE("status page renders the ingest chart and district table in headless Chromium") {
    REQUIRE(run_command("command -v chromium") == 0);
    GatewayUnderTest gateway;
    std::string output;
    int loadgen =
        run_command(std::string(CITYGATE_LOADGEN_BINARY) + " --port " +
                        std::to_string(gateway.mqtt_port()) + " --clients 10 --messages 50 --qos 1",
                    &output);
    INFO(output);
    REQUIRE(loadgen == 0);
    // A few rate samples after the load, one a second.
    std::this_thread::sleep_for(std::chrono::milliseconds(3'200));

    std::filesystem::path profile = gateway.dir() / "chromium-profile";
    std::string url = "http://127.0.0.1:" + std::to_string(gateway.http_port()) + "/";
    std::string chromium =
        "timeout 90 chromium --headless --no-sandbox --disable-gpu "
        "--disable-background-networking --disable-component-update "
        "--disable-sync --no-first-run --user-data-dir=" +
        profile.string() + " --virtual-time-budget=5000 ";
    std::filesystem::path dom_file = gateway.dir() / "status-page.html";
    int dumped = run_command(chromium + "--dump-dom " + url + " > " + dom_file.string() + " 2> " +
                             (gateway.dir() / "chromium.log").string());
    std::ifstream in(dom_file);
    std::string dom((std::istreambuf_iterator<char>(in)), {});
    INFO("chromium exit " << dumped << ", DOM:\n" << dom);
    REQUIRE(dumped == 0);

    std::smatch match;
    REQUIRE(std::regex_search(dom, match, std::regex("id=\"rate-line\"[^>]*points=\"([^\"]*)\"")));
    std::istringstream points(match[1].str());
    std::string point;
    int count = 0, above_zero = 0;
    while (points >> point) {
        ++count;
        double y = std::stod(point.substr(point.find(',') + 1));
        if (y < 180) ++above_zero;  // the baseline is y = 180
    }
    CHECK(count > 1);
    CHECK(above_zero >= 1);
    REQUIRE(std::regex_search(dom, match, std::regex("id=\"conn-line\"[^>]*points=\"([^\"]*)\"")));
    CHECK(match[1].str().find(' ') != std::string::npos);

    std::size_t table = dom.find("<tbody id=\"districts\">");
    REQUIRE(table != std::string::npos);
    std::size_t end = dom.find("</tbody>", table);
    CHECK(dom.find("<tr>", table) < end);  // loadgen's districts, current minute at least
    std::size_t shards = dom.find("<tbody id=\"shards\">");
    CHECK(dom.find("<tr>", shards) < dom.find("</tbody>", shards));
    CHECK(dom.find("<span id=\"error\"></span>") != std::string::npos);  // every poll answered

    std::filesystem::path screenshot = artifact_dir() / "status-page.png";
    std::filesystem::remove(screenshot);
    int shot = run_command("cd " + gateway.dir().string() + " && " + chromium +
                           "--window-size=1280,900 --screenshot=" + screenshot.string() + " " +
                           url + " > /dev/null 2>&1");
    CHECK(shot == 0);
    CHECK(std::filesystem::exists(screenshot));
    CHECK(std::filesystem::file_size(screenshot) > 10'000);
}

TEST_CASE("log level: read and changed at run time over HTTP, other methods refused") {
    GatewayUnderTest gateway;
    HttpReply current = send(gateway, "GET", "/api/v1/log_level");
    CHECK(current.status == 200);
    CHECK_THAT(current.body, Catch::Contains("\"level\":\"info\""));

    HttpReply changed = send(gateway, "PUT", "/api/v1/log_level", "debug\n");
    CHECK(changed.status == 200);
    CHECK(changed.body ==
          "{\"status\":\"success\",\"data\":{\"level\":\"debug\",\"previous\":\"info\"}}");
    // Debug lines now appear: a topic no template matches is logged at debug.
    publish(gateway, {{"nowhere", "1"}});
    CHECK(gateway.process().wait_for_log("no topic template matches", std::chrono::seconds(10)));

    std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // one change a second
    HttpReply posted = send(gateway, "POST", "/api/v1/log_level", "\"warn\"");
    CHECK(posted.status == 200);
    CHECK_THAT(send(gateway, "GET", "/api/v1/log_level").body,
               Catch::Contains("\"level\":\"warn\""));

    HttpReply bad = send(gateway, "PUT", "/api/v1/log_level", "loud");  // 400 before the limit
    CHECK(bad.status == 400);
    CHECK_THAT(bad.body, Catch::Contains("debug, info, warn or error"));
    CHECK(send(gateway, "DELETE", "/api/v1/log_level").status == 405);
    CHECK(send(gateway, "PUT", "/metrics", "x").status == 405);
    CHECK(send(gateway, "POST", "/api/v1/status", "x").status == 405);
}

TEST_CASE("JSON logs: every line is one object with ts, level, msg and fields") {
    GatewayUnderTest gateway("", {"--log-format", "json"});
    REQUIRE(send(gateway, "PUT", "/api/v1/log_level", "info").status == 200);
    REQUIRE(gateway.process().wait_for_log("log level changed", std::chrono::seconds(10)));
    std::istringstream lines(gateway.process().log());
    std::string line;
    simdjson::dom::parser parser;
    int parsed = 0;
    bool port_field = false, level_field = false;
    while (std::getline(lines, line)) {
        INFO(line);
        simdjson::dom::element object;
        REQUIRE(parser.parse(line).get(object) == simdjson::SUCCESS);
        CHECK(std::string_view(object["ts"]).size() == 24);  // 2026-01-02T03:04:05.006Z
        CHECK(object["level"].is_string());
        std::string_view message = object["msg"];
        if (message.starts_with("mqtt listening on ")) {
            port_field = std::uint64_t(object["port"]) == gateway.mqtt_port();
        }
        if (message.starts_with("log level changed")) {
            level_field = std::string_view(object["level"]) == "warn" &&
                          std::string_view(object["previous"]) == "info";
        }
        ++parsed;
    }
    CHECK(parsed >= 4);
    CHECK(port_field);
    CHECK(level_field);
}

TEST_CASE("the log format option and flag refuse unknown formats") {
    std::string output;
    CHECK(run_command(std::string(CITYGATE_BINARY) + " --log-format xml --check-config", &output) ==
          2);
    CHECK_THAT(output, Catch::Contains("--log-format"));
}
