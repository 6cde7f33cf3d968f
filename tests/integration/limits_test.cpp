// Limits that hold: flags get the file's checks, --check-config checks what a start would, no
// silent positional arguments, no second process on the MQTT port, the connection limit within
// the descriptor limit, and the standard process_* metrics.
#include <catch2/catch.hpp>

#include <chrono>
#include <ctime>
#include <fstream>

#include "tests/integration/gateway_fixture.hpp"

using namespace citygate::test;

namespace {

int run_citygate(const std::string& arguments, std::string& output) {
    return run_command(std::string(CITYGATE_BINARY) + " " + arguments + " 2>&1", &output);
}

}  // namespace

TEST_CASE("a positional argument is an error, not ignored") {
    TempDir dir;
    std::ofstream(dir.path() / "citygate.toml") << "[mqtt]\nport = 1884\n";
    std::string output;
    CHECK(run_citygate((dir.path() / "citygate.toml").string() + " --check-config", output) == 2);
    CHECK(output.find("needs --config") != std::string::npos);
}

TEST_CASE("flags get the same range checks as the configuration file") {
    std::string output;
    CHECK(run_citygate("--shards 999 --check-config", output) == 2);
    CHECK(output.find("--shards") != std::string::npos);
    CHECK(output.find("between 0 and 256") != std::string::npos);
    CHECK(run_citygate("--mqtt-port 70000 --check-config", output) == 2);
    CHECK(output.find("--mqtt-port") != std::string::npos);
    CHECK(run_citygate("--mqtt-listen 1.2.3 --check-config", output) == 2);
    CHECK(output.find("not an IP address") != std::string::npos);
    CHECK(run_citygate("--fsync sometimes --check-config", output) == 2);
}

TEST_CASE("the configuration check refuses what a start would refuse") {
    TempDir dir;
    auto config = [&](const std::string& toml) {
        std::ofstream(dir.path() / "c.toml") << toml;
        return "--config " + (dir.path() / "c.toml").string() + " --data-dir " +
               (dir.path() / "var").string() + " --check-config";
    };
    std::string output;
    CHECK(run_citygate(config(""), output) == 0);

    CHECK(run_citygate(config("[auth]\ncredentials_file = \"/nonexistent/credentials\"\n"),
                       output) == 2);
    CHECK(output.find("cannot read /nonexistent/credentials") != std::string::npos);

    CHECK(run_citygate(config("[auth]\nacl_file = \"/nonexistent/acl.toml\"\n"), output) == 2);
    CHECK(output.find("/nonexistent/acl.toml") != std::string::npos);

    CHECK(run_citygate(config("[tls]\nenabled = true\ncert_file = \"/nonexistent/c.pem\"\n"
                              "key_file = \"/nonexistent/k.pem\"\n"),
                       output) == 2);

    // A regular file where the data directory's parent should be.
    std::ofstream(dir.path() / "plain-file") << "x";
    CHECK(run_citygate(
              "--data-dir " + (dir.path() / "plain-file" / "var").string() + " --check-config",
              output) == 2);
    CHECK(output.find("storage.data_dir") != std::string::npos);
}

TEST_CASE("a second gateway cannot share the MQTT port of a running one") {
    GatewayUnderTest first;
    TempDir other;
    std::string output;
    int status = run_citygate(
        "--mqtt-listen 127.0.0.1 --http-listen 127.0.0.1 --http-port 0 "
        "--mqtt-port " +
            std::to_string(first.mqtt_port()) + " --data-dir " + (other.path() / "var").string(),
        output);
    CHECK(status == 1);
    CHECK(output.find("another citygate") != std::string::npos);
    // The first one is unharmed.
    CHECK(first.get("/healthz").status == 200);
}

TEST_CASE("the connection limit is kept within the open-file limit") {
    TempDir dir;
    std::string command = "ulimit -n 2048 && exec " + std::string(CITYGATE_BINARY) +
                          " --mqtt-listen 127.0.0.1 --http-listen 127.0.0.1 --mqtt-port 0"
                          " --http-port 0 --data-dir " +
                          (dir.path() / "var").string();
    Process gateway({"/bin/sh", "-c", command}, dir.path() / "citygate.log");
    auto warning = gateway.wait_for_log("open-file limit", std::chrono::seconds(30));
    INFO(gateway.log());
    REQUIRE(warning);
    CHECK(warning->find("using 1536") != std::string::npos);
}

TEST_CASE("/metrics serves the standard process metrics") {
    GatewayUnderTest gateway;
    auto open = gateway.metric("process_open_fds");
    auto max = gateway.metric("process_max_fds");
    auto rss = gateway.metric("process_resident_memory_bytes");
    auto cpu = gateway.metric("process_cpu_seconds_total");
    auto start = gateway.metric("process_start_time_seconds");
    REQUIRE(open);
    REQUIRE(max);
    REQUIRE(rss);
    REQUIRE(cpu);
    REQUIRE(start);
    CHECK(*open > 5);  // listeners, RocksDB files, the scrape's own socket
    CHECK(*open < *max);
    CHECK(*rss > 1e6);
    CHECK(*cpu >= 0);
    double now = static_cast<double>(std::time(nullptr));
    CHECK(*start <= now + 2);
    CHECK(*start > now - 600);
}

TEST_CASE("/metrics serves the allocator's own figures") {
    GatewayUnderTest gateway;
    // One scrape: the heap moves between two (the periodic trim, the scrape's own buffers).
    const std::string text = gateway.get("/metrics").body;
    auto heap = GatewayUnderTest::metric_in(text, "citygate_allocator_heap_bytes");
    auto in_use = GatewayUnderTest::metric_in(text, "citygate_allocator_in_use_bytes");
    auto free = GatewayUnderTest::metric_in(text, "citygate_allocator_free_bytes");
    auto mmapped = GatewayUnderTest::metric_in(text, "citygate_allocator_mmapped_bytes");
    auto rss = GatewayUnderTest::metric_in(text, "process_resident_memory_bytes");
    REQUIRE(heap);
    REQUIRE(in_use);
    REQUIRE(free);
    REQUIRE(mmapped);
    REQUIRE(rss);
    CHECK(*in_use > 1e5);  // a running gateway has live allocations
    CHECK(*in_use + *free <= *heap + 1);
    CHECK(*in_use < *rss + *mmapped);
}
