// The memory budget through the real binary: storage.memory_budget sizes every part, /metrics
// shows each part's limit and use, and a quiet gateway drains its head by age.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <thread>

#include "tests/integration/gateway_fixture.hpp"

using namespace citygate::test;
using namespace std::chrono_literals;

namespace {

double used(const GatewayUnderTest& gateway, const std::string& part) {
    return gateway.metric("citygate_memory_used_bytes{part=\"" + part + "\"}").value_or(-1);
}

double limit(const GatewayUnderTest& gateway, const std::string& part) {
    return gateway.metric("citygate_memory_limit_bytes{part=\"" + part + "\"}").value_or(-1);
}

std::string recent_ts() {
    auto now = std::chrono::system_clock::now() - 1min;
    return std::to_string(
        std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count());
}

}  // namespace

TEST_CASE("storage.memory_budget gives each part its share, shown in /metrics") {
    constexpr double kBudget = 256.0 * (1 << 20);
    GatewayUnderTest gateway("[storage]\nmemory_budget = \"256MiB\"\n");
    CHECK(gateway.metric("citygate_memory_budget_bytes") == kBudget);
    const double percent = (256 << 20) / 100;  // what the gateway computes, in whole bytes
    CHECK(limit(gateway, "memtables") == percent * 25);
    CHECK(limit(gateway, "block_cache") == percent * 15);
    CHECK(limit(gateway, "series_index") == percent * 15);
    CHECK(limit(gateway, "queries") == percent * 15);  // below http.query_memory_budget's 1 GiB
    CHECK(limit(gateway, "head") > 0);
    CHECK(limit(gateway, "head") <= percent * 20);
    // What one query may hold follows the queries' share down.
    CHECK(gateway.metric("citygate_query_memory_bytes{state=\"budget\"}") == percent * 15);
    CHECK(used(gateway, "other") > 1e6);  // code, threads, connections
}

TEST_CASE("without a configured budget the gateway takes half of the machine's memory") {
    GatewayUnderTest gateway;
    const double budget = gateway.metric("citygate_memory_budget_bytes").value_or(0);
    std::ifstream meminfo("/proc/meminfo");
    std::string name;
    double kib = 0;
    meminfo >> name >> kib;
    REQUIRE(name == "MemTotal:");
    CHECK(budget > 0);
    CHECK(budget <= kib * 1024 / 2 + 1);
    // Each part: its share, or its own option where lower (on this 24 GiB machine: its own).
    const double percent = std::floor(budget / 100);
    CHECK(limit(gateway, "memtables") == std::min(1024.0 * (1 << 20), percent * 25));
    CHECK(limit(gateway, "block_cache") == std::min(256.0 * (1 << 20), percent * 15));
}

TEST_CASE("a quiet gateway turns its head into chunks by age, and /metrics shows it drain") {
    GatewayUnderTest gateway(
        "[storage]\nmemory_budget = \"256MiB\"\nhead_flush_interval = \"2s\"\n"
        "memtable_idle_flush = \"0s\"\n");
    REQUIRE(mosquitto_pub(gateway, "mqttv311", 1, "city/pudong/air/a-0001",
                          R"({"ts": )" + recent_ts() + R"(, "pm25": 35.2, "pm10": 60})") == 0);
    // Acknowledged, so in the head (unless two seconds already passed).
    CHECK(used(gateway, "series_index") > 0);
    auto deadline = std::chrono::steady_clock::now() + 20s;
    while (gateway.metric("citygate_storage_head_points") != 0.0 &&
           std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(200ms);
    }
    CHECK(gateway.metric("citygate_storage_head_points") == 0.0);
    CHECK(used(gateway, "head") == 0.0);
    CHECK(used(gateway, "series_index") > 0);  // series stay; their points went into chunks
}

TEST_CASE("the head stays in memory until storage.head_flush_interval when it is long") {
    GatewayUnderTest gateway("[storage]\nhead_flush_interval = \"1h\"\n");
    REQUIRE(mosquitto_pub(gateway, "mqttv311", 1, "city/pudong/air/a-0002",
                          R"({"ts": )" + recent_ts() + R"(, "pm25": 12})") == 0);
    std::this_thread::sleep_for(3s);
    CHECK(gateway.metric("citygate_storage_head_points") == 1.0);
    CHECK(used(gateway, "head") > 0);
}

TEST_CASE("storage.memory_trim_interval trims on its timer while the gateway keeps serving") {
    GatewayUnderTest gateway("[storage]\nmemory_trim_interval = \"1s\"\n");
    // Several rounds of the timer, each arming the next.
    std::this_thread::sleep_for(3500ms);
    REQUIRE(mosquitto_pub(gateway, "mqttv311", 1, "city/pudong/air/a-0003",
                          R"({"ts": )" + recent_ts() + R"(, "pm25": 7})") == 0);
    CHECK(gateway.metric("citygate_allocator_trims_total").has_value());
    CHECK(gateway.metric("citygate_storage_head_points") == 1.0);
}
