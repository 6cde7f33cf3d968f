// Backup and restore through the real binary: a checkpoint taken over the HTTP API while the
// gateway runs, restored with `citygate --restore` into a fresh data directory, serves the same
// data.
#include <catch2/catch.hpp>

#include <simdjson.h>

#include "tests/integration/gateway_fixture.hpp"

using citygate::test::GatewayUnderTest;
using citygate::test::run_command;
using citygate::test::TempDir;

namespace {

std::string post(const GatewayUnderTest& gateway, const std::string& path) {
    std::string output;
    run_command("curl -sS -X POST --max-time 30 http://127.0.0.1:" +
                    std::to_string(gateway.http_port()) + path,
                &output);
    return output;
}

std::size_t stored(const GatewayUnderTest& gateway) {
    auto reply = gateway.get(
        "/api/v1/query_range",
        {{"series", "level{device=\"b-1\"}"}, {"start", "0"}, {"end", "9000000000000"}});
    REQUIRE(reply.status == 200);
    simdjson::dom::parser parser;
    simdjson::dom::element doc = parser.parse(reply.body);
    simdjson::dom::array result = doc["data"]["result"];
    return result.size() == 0 ? 0 : result.at(0)["values"].get_array().size();
}

}  // namespace

TEST_CASE("a checkpoint taken over HTTP restores into a new data directory with its data") {
    TempDir backups("citygate-backups");
    GatewayUnderTest gateway("[storage]\nbackup_dir = \"" + backups.path().string() + "\"\n");
    std::int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
    std::string lines;
    for (int i = 0; i < 50; ++i) {
        lines += "{\"ts\":" + std::to_string(now - 50'000 + i * 1000) +
                 ",\"level\":" + std::to_string(i) + "}\n";
    }
    std::string output;
    REQUIRE(run_command("printf '%s' " + GatewayUnderTest::shell_quote(lines) +
                            " | mosquitto_pub -h 127.0.0.1 -p " +
                            std::to_string(gateway.mqtt_port()) + " -q 1 -t city/d/water/b-1 -l",
                        &output) == 0);
    REQUIRE(stored(gateway) == 50);

    std::string answer = post(gateway, "/api/v1/admin/checkpoint");
    INFO(answer);
    simdjson::dom::parser parser;
    simdjson::dom::element doc = parser.parse(answer);
    REQUIRE(std::string_view(doc["status"]) == "success");
    std::string checkpoint{std::string_view(doc["data"]["path"])};
    CHECK(checkpoint.starts_with(backups.path().string()));

    // Written after the checkpoint: not in it.
    REQUIRE(run_command("mosquitto_pub -h 127.0.0.1 -p " + std::to_string(gateway.mqtt_port()) +
                            " -q 1 -t city/d/water/b-1 -m '{\"level\": 99}'",
                        &output) == 0);
    CHECK(stored(gateway) == 51);
    CHECK(gateway.get("/api/v1/admin/checkpoint").status == 405);

    TempDir restored("citygate-restored");
    std::string data = (restored.path() / "var").string();
    REQUIRE(run_command(
                std::string(CITYGATE_BINARY) + " --restore " + checkpoint + " --data-dir " + data,
                &output) == 0);
    // Restoring over existing data is refused.
    CHECK(run_command(
              std::string(CITYGATE_BINARY) + " --restore " + checkpoint + " --data-dir " + data,
              &output) == 2);
    CHECK_THAT(output, Catch::Contains("not empty"));

    citygate::test::Process copy(
        {CITYGATE_BINARY, "--mqtt-listen", "127.0.0.1", "--http-listen", "127.0.0.1", "--mqtt-port",
         "0", "--http-port", "0", "--data-dir", data},
        restored.path() / "citygate.log");
    auto line = copy.wait_for_log("http listening on ", std::chrono::seconds(30));
    REQUIRE(line);
    std::size_t at = line->find(':', line->find("http listening on "));
    std::string port = std::to_string(std::stoi(line->substr(at + 1)));
    std::string body;
    REQUIRE(run_command("curl -sS -G --max-time 10 http://127.0.0.1:" + port +
                            "/api/v1/query_range --data-urlencode 'series=level{device=\"b-1\"}'"
                            " --data-urlencode start=0 --data-urlencode end=9000000000000",
                        &body) == 0);
    simdjson::dom::element result = parser.parse(body);
    CHECK(result["data"]["result"].at(0)["values"].get_array().size() == 50);
}
