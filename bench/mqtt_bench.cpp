// Google Benchmark of the MQTT codec on a typical sensor message: a 100-byte QoS 1 PUBLISH,
// parsed, encoded, and driven through the server session (deliver, complete, PUBACK).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <vector>

#include "protocols/mqtt/encoder.hpp"
#include "protocols/mqtt/parser.hpp"
#include "protocols/mqtt/server_session.hpp"

using namespace citygate::mqtt;

namespace {

const std::string topic = "city/pudong/air/a-000123";

// Pads the JSON payload so the whole packet is exactly 100 bytes.
std::vector<std::uint8_t> payload_for(protocol_version v) {
    const std::size_t header = 2 + 2 + topic.size() + 2 + (v == protocol_version::v5 ? 1 : 0);
    std::string json = R"({"pm25":12.5,"pm10":20.1,"ts":1700000000000,"t":21.4)";
    while (json.size() + 1 < 100 - header)
        json += ' ';
    json += '}';
    return {json.begin(), json.end()};
}

publish_packet typical(const std::vector<std::uint8_t>& payload) {
    publish_packet p;
    p.qos = qos::at_least_once;
    p.packet_id = 4711;
    p.topic = topic;
    p.payload = payload;
    return p;
}

std::vector<std::uint8_t> encoded(protocol_version v, const std::vector<std::uint8_t>& payload) {
    encoded_packet e;
    if (encode(typical(payload), v, e)) std::abort();
    return e.to_vector();
}

void parse_publish(benchmark::State& state, protocol_version v) {
    const auto payload = payload_for(v);
    const auto bytes = encoded(v, payload);
    if (bytes.size() != 100) std::abort();
    const parser_limits limits;
    packet p;
    for (auto _ : state) {
        auto r = parse(bytes, v, limits, p);
        benchmark::DoNotOptimize(r);
        benchmark::DoNotOptimize(p);
    }
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(bytes.size()));
}

void encode_publish(benchmark::State& state, protocol_version v) {
    const auto payload = payload_for(v);
    const publish_packet p = typical(payload);
    encoded_packet out;
    std::vector<std::uint8_t> wire;  // a write buffer, reused, as a connection would
    for (auto _ : state) {
        auto ec = encode(p, v, out);
        benchmark::DoNotOptimize(ec);
        wire.clear();
        out.append_to(wire);
        benchmark::DoNotOptimize(wire.data());
    }
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(out.size()));
}

// A handler that completes every QoS 1 delivery at once, so each packet costs a full round:
// parse, deliver, complete, PUBACK encode and send.
class completing_handler : public session_handler {
  public:
    server_session* session = nullptr;
    std::size_t bytes_sent = 0;
    void send(std::span<const std::uint8_t> b) override { bytes_sent += b.size(); }
    void deliver(const inbound_publish& m) override {
        if (m.token != 0) session->complete(m.token, true);
    }
    reason_code authenticate(const connect_request&) override { return reason_code::success; }
    std::vector<reason_code> subscribe(const subscribe_request&) override { return {}; }
    void unsubscribe(std::span<const std::string_view>) override {}
    void arm_timer(timer_kind, std::chrono::milliseconds) override {}
    void cancel_timer(timer_kind) override {}
    void close(reason_code) override { std::abort(); }
};

void session_publish(benchmark::State& state, protocol_version v) {
    const auto payload = payload_for(v);
    const auto one = encoded(v, payload);
    // 64 packets per on_bytes() call, as one socket read would bring them.
    std::vector<std::uint8_t> batch;
    for (int i = 0; i < 64; ++i)
        batch.insert(batch.end(), one.begin(), one.end());
    completing_handler handler;
    server_limits limits;
    server_session session(handler, limits);
    handler.session = &session;
    connect_packet c;
    c.version = v;
    c.client_id = "bench";
    encoded_packet ce;
    if (encode(c, ce)) std::abort();
    session.on_bytes(ce.to_vector());
    for (auto _ : state) {
        if (session.on_bytes(batch) != batch.size()) std::abort();
    }
    state.SetItemsProcessed(state.iterations() * 64);
}

}  // namespace

BENCHMARK_CAPTURE(parse_publish, v3_1_1_qos1_100B, protocol_version::v3_1_1);
BENCHMARK_CAPTURE(parse_publish, v5_qos1_100B, protocol_version::v5);
BENCHMARK_CAPTURE(encode_publish, v3_1_1_qos1_100B, protocol_version::v3_1_1);
BENCHMARK_CAPTURE(encode_publish, v5_qos1_100B, protocol_version::v5);
BENCHMARK_CAPTURE(session_publish, v3_1_1_qos1_100B, protocol_version::v3_1_1);
BENCHMARK_CAPTURE(session_publish, v5_qos1_100B, protocol_version::v5);

BENCHMARK_MAIN();
