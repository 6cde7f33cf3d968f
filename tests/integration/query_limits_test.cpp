// Hostile queries against the real binary (issue 12): a series x steps query answers in bounded
// memory, or 422 naming http.max_query_bytes; a stuck query leaves /healthz, /metrics, SIGHUP and
// a SIGTERM drain unaffected; the shared query memory, the query queue and http.query_timeout
// answer 503 naming themselves.
#include <catch2/catch.hpp>

#include <csignal>
#include <fstream>
#include <future>
#include <thread>

#include <mqtt/client.h>

#include "tests/integration/gateway_fixture.hpp"

using citygate::test::GatewayUnderTest;
using citygate::test::run_command;

namespace {

using Params = std::vector<std::pair<std::string, std::string>>;

struct Timed {
    int status = 0;
    std::string body;
    double seconds = 0;
};

// GET on its own output file, so several can run at once (the fixture's get() shares one).
Timed fetch(const GatewayUnderTest& gateway, const std::string& path, const Params& params = {},
            int max_time = 30) {
    static std::atomic<int> calls{0};
    std::string out = (gateway.dir() / ("fetch-" + std::to_string(++calls))).string();
    std::string command = "curl -sS -G --max-time " + std::to_string(max_time) + " -o " + out +
                          " -w '%{http_code} %{time_total}' 'http://127.0.0.1:" +
                          std::to_string(gateway.http_port()) + path + "'";
    for (const auto& [name, value] : params)
        command += " --data-urlencode " + GatewayUnderTest::shell_quote(name + "=" + value);
    std::string output;
    Timed reply;
    if (run_command(command, &output) != 0) return reply;
    std::size_t space = output.find(' ');
    reply.status = std::stoi(output.substr(0, space));
    reply.seconds = std::stod(output.substr(space + 1));
    std::ifstream in(out);
    reply.body.assign(std::istreambuf_iterator<char>(in), {});
    return reply;
}

std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// 20 series (pm25 of devices d00..d19), `points` each one a minute apart, ending now; one SenML
// pack per device.
void publish_city(const GatewayUnderTest& gateway, int points) {
    mqtt::client client("tcp://127.0.0.1:" + std::to_string(gateway.mqtt_port()), "query-limits",
                        mqtt::create_options(MQTTVERSION_3_1_1));
    client.connect(mqtt::connect_options_builder().clean_session(true).finalize());
    std::int64_t first = now_ms() - points * 60'000LL;
    for (int d = 0; d < 20; ++d) {
        std::string pack = "[";
        for (int i = 0; i < points; ++i) {
            if (i) pack += ',';
            pack += "{\"n\":\"pm25\",\"t\":" + std::to_string((first + i * 60'000LL) / 1000) +
                    ",\"v\":" + std::to_string(d + i) + "}";
        }
        pack += "]";
        char device[8];
        std::snprintf(device, sizeof device, "d%02d", d);
        client.publish(mqtt::message(std::string("city/pudong/air/") + device, pack, 1, false));
    }
    client.disconnect();
}

// The gateway's resident memory, from /proc/PID/status.
std::size_t rss_bytes(GatewayUnderTest& gateway) {
    long kib = citygate::test::resident_kib(gateway.process().pid());
    return kib < 0 ? 0 : static_cast<std::size_t>(kib) * 1024;
}

// query_range with step=60000 over ~4 M minutes: 80 M series x steps for 20 series, which the
// old engine allocated densely (11.9 GB).
Params steps_attack() {
    std::int64_t end = now_ms();
    std::int64_t start = (end - 4'000'000LL * 60'000) / 60'000 * 60'000;
    return {{"series", "pm25"},
            {"start", std::to_string(start)},
            {"end", std::to_string(end)},
            {"step", "60000"}};
}

Params raw_query() {
    return {{"series", "pm25"}, {"start", "0"}, {"end", std::to_string(now_ms() + 60'000)}};
}

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("a series x steps query answers at once in bounded memory") {
    GatewayUnderTest gateway;
    publish_city(gateway, 5);
    Timed reply = fetch(gateway, "/api/v1/query_range", steps_attack());
    INFO(reply.body.substr(0, 300));
    CHECK(reply.status == 200);
    CHECK(reply.seconds < 2);
    CHECK(contains(reply.body,
                   R"("series":"pm25{device=\"d19\",district=\"pudong\",type=\"air\"}")"));
    CHECK(rss_bytes(gateway) < std::size_t{256} << 20);
}

TEST_CASE("a query over http.max_query_bytes is refused with 422 naming it, in bounded memory") {
    GatewayUnderTest gateway("[http]\nmax_query_bytes = 65536\n");
    publish_city(gateway, 200);  // 4000 steps with data: more than 64 KiB of partial aggregates
    for (const Params& params : {steps_attack(), raw_query()}) {
        Timed reply = fetch(gateway, "/api/v1/query_range", params);
        INFO(reply.body);
        CHECK(reply.status == 422);
        CHECK(contains(reply.body, "65536 bytes, the memory limit of one query"));
        CHECK(contains(reply.body, "(http.max_query_bytes)"));
        CHECK(reply.seconds < 2);
    }
    CHECK(rss_bytes(gateway) < std::size_t{256} << 20);
    CHECK(gateway.metric(R"(citygate_http_queries_refused_total{limit="http.max_query_bytes"})") ==
          2);
}

TEST_CASE("a stuck query leaves /healthz, /metrics, SIGHUP and a SIGTERM drain unaffected") {
    // 20 series over 2 shards, 400 ms before each: the query takes 4 s.
    GatewayUnderTest gateway("[storage]\ntest_read_delay = \"400ms\"\n");
    publish_city(gateway, 5);
    auto stuck = std::async(std::launch::async,
                            [&] { return fetch(gateway, "/api/v1/query_range", raw_query()); });
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    for (const char* path : {"/healthz", "/readyz", "/metrics", "/healthz"}) {
        Timed probe = fetch(gateway, path, {}, 5);
        INFO(path);
        CHECK(probe.status == 200);
        CHECK(probe.seconds < 1);
    }
    REQUIRE(stuck.wait_for(std::chrono::seconds(0)) == std::future_status::timeout);
    REQUIRE(gateway.process().signal(SIGHUP));
    CHECK(gateway.process().wait_for_log("reloaded credentials and ACL", std::chrono::seconds(2)));
    REQUIRE(stuck.wait_for(std::chrono::seconds(0)) == std::future_status::timeout);
    auto sent = std::chrono::steady_clock::now();
    REQUIRE(gateway.process().signal(SIGTERM));
    auto status = gateway.process().wait_for(std::chrono::seconds(10));
    INFO(gateway.process().log());
    REQUIRE(status);
    CHECK(*status == 0);
    // The drain waited for no query: the stuck one was cancelled within one 400 ms series read.
    CHECK(std::chrono::steady_clock::now() - sent < std::chrono::seconds(3));
    Timed cancelled = stuck.get();
    CHECK(cancelled.status != 200);
}

TEST_CASE("a query past http.query_timeout is stopped with 503 naming it") {
    GatewayUnderTest gateway(
        "[http]\nquery_timeout = \"300ms\"\n"
        "[storage]\ntest_read_delay = \"100ms\"\n");
    publish_city(gateway, 5);
    Timed reply = fetch(gateway, "/api/v1/query_range", raw_query());
    INFO(reply.body);
    CHECK(reply.status == 503);
    CHECK(contains(reply.body, "time limit of 300 ms"));
    CHECK(contains(reply.body, "(http.query_timeout)"));
    CHECK(reply.seconds < 1);
}

TEST_CASE("a query finding every query thread busy and the queue full gets 503 at once") {
    GatewayUnderTest gateway(
        "[http]\nquery_threads = 1\nquery_queue = 0\n"
        "[storage]\ntest_read_delay = \"200ms\"\n");
    publish_city(gateway, 5);
    auto running = std::async(std::launch::async,
                              [&] { return fetch(gateway, "/api/v1/query_range", raw_query()); });
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    Timed refused = fetch(gateway, "/api/v1/series", {{"match", "pm25"}});
    INFO(refused.body);
    CHECK(refused.status == 503);
    CHECK(contains(refused.body, "query queue is full"));
    CHECK(refused.seconds < 0.5);
    CHECK(running.get().status == 200);
    CHECK(fetch(gateway, "/api/v1/series", {{"match", "pm25"}}).status == 200);
}

TEST_CASE("queries together beyond http.query_memory_budget get 503, and memory comes back") {
    // One raw query over the 4000 points holds ~230 KB at its peak (points as read, as
    // answered, and the JSON; measured): it fits its own limit alone, two at once do not fit.
    GatewayUnderTest gateway(
        "[http]\nquery_threads = 4\nmax_query_bytes = 358400\n"
        "query_memory_budget = 358400\n"
        "[storage]\ntest_read_delay = \"50ms\"\n");
    publish_city(gateway, 200);
    Timed alone = fetch(gateway, "/api/v1/query_range", raw_query());
    REQUIRE(alone.status == 200);
    std::vector<std::future<Timed>> replies;
    for (int i = 0; i < 4; ++i) {
        replies.push_back(std::async(std::launch::async, [&] {
            return fetch(gateway, "/api/v1/query_range", raw_query());
        }));
    }
    int busy = 0;
    for (auto& reply : replies) {
        Timed r = reply.get();
        INFO(r.status << " " << r.body.substr(0, 200));
        CHECK((r.status == 200 || r.status == 503));
        if (r.status == 503) {
            ++busy;
            CHECK(contains(r.body, "server busy: query memory budget of 358400 bytes"));
            CHECK(contains(r.body, "(http.query_memory_budget)"));
        }
    }
    CHECK(busy >= 1);
    // Every query gave its memory back, and the gauge says so.
    CHECK(fetch(gateway, "/api/v1/query_range", raw_query()).status == 200);
    CHECK(gateway.metric(R"(citygate_query_memory_bytes{state="in_use"})") == 0);
    CHECK(gateway.metric(R"(citygate_query_memory_bytes{state="budget"})") == 358400);
}
