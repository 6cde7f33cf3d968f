// Durability under pressure through the real binary: a deliberately slowed storage pushes back
// on clients without growing memory or losing acknowledged data, and kill -9 under QoS 1 load
// loses nothing that was acknowledged.
#include <catch2/catch.hpp>

#include <signal.h>

#include <atomic>
#include <fstream>
#include <thread>

#include <mqtt/async_client.h>
#include <mqtt/client.h>
#include <simdjson.h>

#include "tests/integration/gateway_fixture.hpp"

using citygate::test::GatewayUnderTest;
using citygate::test::run_command;
using namespace std::chrono_literals;

namespace {

std::string last_line(const std::string& text) {
    std::size_t end = text.find_last_not_of('\n');
    std::size_t start = text.rfind('\n', end);
    return text.substr(start == std::string::npos ? 0 : start + 1, end - start);
}

}  // namespace

TEST_CASE("slowed storage pushes back: memory stays bounded and every acked reading is stored") {
    GatewayUnderTest gateway("[storage]\nqueue_capacity = 64\ntest_write_delay = \"15ms\"\n");
    std::atomic<bool> running{true};
    std::atomic<long> peak_rss{0};
    std::thread sampler([&] {
        while (running) {
            peak_rss =
                std::max(peak_rss.load(), citygate::test::resident_kib(gateway.process().pid()));
            std::this_thread::sleep_for(50ms);
        }
    });
    std::string output;
    int status = run_command(std::string(CITYGATE_LOADGEN_BINARY) + " --port " +
                                 std::to_string(gateway.mqtt_port()) + " --http-port " +
                                 std::to_string(gateway.http_port()) +
                                 " --clients 40 --messages 100 --qos 1 --inflight 32 --threads 2"
                                 " --duration 60 --drain 30 --verify",
                             &output);
    running = false;
    sampler.join();
    INFO(output);
    REQUIRE(status == 0);
    simdjson::dom::parser parser;
    simdjson::dom::element report = parser.parse(last_line(output));
    CHECK(uint64_t(report["acknowledged"]) == 4000);

    CHECK(gateway.metric("citygate_backpressure_pauses_total").value() > 0);
    // Bounded queues: the gateway's footprint stays small however much the clients push.
    CHECK(peak_rss.load() < 200 * 1024);
}

TEST_CASE("kill -9 under QoS 1 load loses no acknowledged reading") {
    GatewayUnderTest gateway;
    constexpr int publishers = 4;
    std::int64_t base = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count() -
                        600'000;
    std::atomic<int> acknowledged[publishers];
    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    for (int p = 0; p < publishers; ++p) {
        acknowledged[p] = -1;
        threads.emplace_back([&, p] {
            try {
                // The async client: a token of a publish cut off by the kill must time out, and
                // the synchronous client's wait has no timeout.
                mqtt::async_client client("tcp://127.0.0.1:" + std::to_string(gateway.mqtt_port()),
                                          "killer-" + std::to_string(p),
                                          mqtt::create_options(MQTTVERSION_3_1_1));
                auto options = mqtt::connect_options_builder().clean_session(true).finalize();
                if (!client.connect(options)->wait_for(5s)) return;
                for (int i = 0; !stop && i < 1'000'000; ++i) {
                    std::string payload = "{\"ts\":" + std::to_string(base + i) +
                                          ",\"seq\":" + std::to_string(i) + "}";
                    auto token = client.publish(mqtt::make_message(
                        "city/jingan/power/k-" + std::to_string(p), payload, 1, false));
                    // Done once the PUBACK arrived: from then on the reading must survive.
                    if (!token->wait_for(5s)) break;
                    acknowledged[p] = i;
                }
            } catch (const mqtt::exception&) {
                // The kill drops the connection mid-publish: that reading was never acked.
            }
        });
    }
    std::this_thread::sleep_for(1500ms);
    REQUIRE(gateway.process().signal(SIGKILL));
    REQUIRE(gateway.process().wait_for(10s) == 128 + SIGKILL);
    stop = true;
    for (auto& thread : threads)
        thread.join();

    gateway.start();
    for (int p = 0; p < publishers; ++p) {
        int last = acknowledged[p];
        INFO("publisher " << p << " had " << last + 1 << " readings acknowledged");
        REQUIRE(last > 10);
        auto reply = gateway.get("/api/v1/query_range",
                                 {{"series", "seq{device=\"k-" + std::to_string(p) + "\"}"},
                                  {"start", std::to_string(base)},
                                  {"end", std::to_string(base + last)}});
        REQUIRE(reply.status == 200);
        simdjson::dom::parser parser;
        simdjson::dom::element doc = parser.parse(reply.body);
        simdjson::dom::array values = doc["data"]["result"].at(0)["values"];
        REQUIRE(values.size() == static_cast<std::size_t>(last + 1));
        for (int i = 0; i <= last; ++i) {
            simdjson::dom::array pair = values.at(static_cast<std::size_t>(i));
            CHECK(int64_t(pair.at(0)) == base + i);
            CHECK(double(pair.at(1)) == i);
        }
    }
}
