// A damaged write-ahead log through the real binary: after kill -9 under load and 64 bytes
// overwritten in the middle of the biggest shard log, citygate refuses to start, naming the shard
// and --recover=point-in-time; started with it, it serves what is left and reports the loss in
// /metrics, /readyz and the status page.
#include <catch2/catch.hpp>

#include <signal.h>

#include <simdjson.h>

#include <filesystem>
#include <fstream>

#include "tests/integration/gateway_fixture.hpp"

using citygate::test::GatewayUnderTest;
using citygate::test::Process;
using citygate::test::run_command;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

std::vector<std::string> args_for(const GatewayUnderTest& gateway,
                                  std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {CITYGATE_BINARY,
                                     "--mqtt-listen",
                                     "127.0.0.1",
                                     "--http-listen",
                                     "127.0.0.1",
                                     "--mqtt-port",
                                     "0",
                                     "--http-port",
                                     "0",
                                     "--data-dir",
                                     gateway.data_dir()};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return argv;
}

std::string http_get(std::uint16_t port, const std::string& path) {
    std::string body;
    run_command("curl -sS --max-time 10 http://127.0.0.1:" + std::to_string(port) + path, &body);
    return body;
}

}  // namespace

TEST_CASE(
    "a damaged WAL stops the start until --recover=point-in-time, then the loss is reported") {
    GatewayUnderTest gateway;
    std::string lines;
    for (int i = 0; i < 4000; ++i)
        lines += "{\"level\":" + std::to_string(i) + "}\n";
    std::string output;
    for (int device = 0; device < 4; ++device) {
        REQUIRE(run_command("printf '%s' " + GatewayUnderTest::shell_quote(lines) +
                                " | mosquitto_pub -h 127.0.0.1 -p " +
                                std::to_string(gateway.mqtt_port()) + " -q 1 -t city/d/water/w-" +
                                std::to_string(device) + " -l",
                            &output) == 0);
    }
    REQUIRE(gateway.process().signal(SIGKILL));
    REQUIRE(gateway.process().wait_for(10s) == 128 + SIGKILL);

    // The biggest log of any shard: 64 bytes in its middle overwritten.
    fs::path log;
    std::string shard;
    for (const auto& dir : fs::directory_iterator(gateway.data_dir())) {
        if (!dir.path().filename().string().starts_with("shard-")) continue;
        for (const auto& entry : fs::directory_iterator(dir.path())) {
            if (entry.path().extension() != ".log") continue;
            if (log.empty() || fs::file_size(entry.path()) > fs::file_size(log)) {
                log = entry.path();
                shard = dir.path().filename().string().substr(6);
            }
        }
    }
    REQUIRE(!log.empty());
    const auto size = fs::file_size(log);
    INFO(log << " of " << size << " bytes");
    REQUIRE(size > 10'000);
    {
        std::fstream f(log, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(static_cast<std::streamoff>(size / 2));
        f.write(std::string(64, '\x5a').data(), 64);
    }

    {
        Process refused(args_for(gateway), gateway.dir() / "refused.log");
        auto status = refused.wait_for(60s);
        INFO(refused.log());
        REQUIRE(status);
        CHECK(*status != 0);
        CHECK_THAT(refused.log(),
                   Catch::Contains("shard " + shard + ": the write-ahead log is damaged"));
        CHECK_THAT(refused.log(), Catch::Contains("checksum mismatch"));
        CHECK_THAT(refused.log(), Catch::Contains("--recover=point-in-time"));
    }
    CHECK(fs::file_size(log) == size);  // refusing changed nothing

    Process accepted(args_for(gateway, {"--recover=point-in-time"}),
                     gateway.dir() / "accepted.log");
    auto line = accepted.wait_for_log("http listening on ", 60s);
    INFO(accepted.log());
    REQUIRE(line);
    std::size_t at = line->find(':', line->find("http listening on "));
    auto port = static_cast<std::uint16_t>(std::stoi(line->substr(at + 1)));
    CHECK_THAT(accepted.log(), Catch::Contains("started with --recover=point-in-time"));

    std::string metrics = http_get(port, "/metrics");
    CHECK_THAT(metrics, Catch::Contains("citygate_storage_wal_damaged{shard=\"" + shard + "\"} 1"));
    CHECK_THAT(metrics,
               !Catch::Contains("citygate_storage_wal_dropped_bytes{shard=\"" + shard + "\"} 0\n"));
    std::string ready = http_get(port, "/readyz");
    CHECK_THAT(ready, Catch::Contains("\"status\":\"ready\""));
    CHECK_THAT(ready, Catch::Contains("shard " + shard + ": started on a damaged write-ahead log"));
    simdjson::dom::parser parser;
    simdjson::dom::element status = parser.parse(http_get(port, "/api/v1/status"));
    CHECK(status["problems"].get_array().size() == 1);
    bool flagged = false;
    for (simdjson::dom::element s : status["shards"].get_array()) {
        if (std::to_string(std::int64_t(s["shard"])) == shard) flagged = bool(s["wal_damaged"]);
    }
    CHECK(flagged);
}
