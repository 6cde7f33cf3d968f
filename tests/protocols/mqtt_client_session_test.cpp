// The client session against the server session over an in-memory pipe, both versions:
// the load generator's flows (connect, QoS 0/1/2 publish, subscribe, ping, disconnect).
#include <catch2/catch.hpp>

#include "protocols/mqtt/client_session.hpp"
#include "tests/protocols/mqtt_test_support.hpp"

using namespace citygate::mqtt;
using namespace citygate::mqtt::test;

namespace {

class recording_client : public client_handler {
  public:
    bytes sent;
    std::optional<connack_packet> connack;
    std::vector<std::pair<std::uint16_t, reason_code>> published;
    std::optional<reason_code> disconnected;
    std::vector<std::vector<reason_code>> subacks;
    int unsubacks = 0;
    int pingresps = 0;

    void send(std::span<const std::uint8_t> b) override {
        sent.insert(sent.end(), b.begin(), b.end());
    }
    void on_connack(const connack_packet& a) override {
        connack = connack_packet{a.session_present, a.reason, {}};
        connack->props.receive_maximum = a.props.receive_maximum;
    }
    void on_published(std::uint16_t id, reason_code r) override { published.emplace_back(id, r); }
    void on_disconnect(reason_code r) override { disconnected = r; }
    void on_suback(const suback_packet& a) override { subacks.push_back(a.reasons); }
    void on_unsuback(const unsuback_packet&) override { ++unsubacks; }
    void on_pingresp() override { ++pingresps; }
};

// Client and server wired back to back; pump() moves bytes until both are quiet.
struct loop {
    recording_client client_handler;
    recording_handler server_handler;
    server_limits limits;
    std::optional<client_session> client;
    std::optional<server_session> server;

    loop(protocol_version v, server_limits l = {}) : limits(std::move(l)) {
        client.emplace(client_handler, v);
        server.emplace(server_handler, limits);
        server->start();
    }
    void pump() {
        for (int i = 0; i < 16; ++i) {
            bytes to_server;
            to_server.swap(client_handler.sent);
            bytes to_client = server_handler.take_sent();
            if (to_server.empty() && to_client.empty()) return;
            if (!to_server.empty()) CHECK(server->on_bytes(to_server) == to_server.size());
            if (!to_client.empty()) CHECK(client->on_bytes(to_client) == to_client.size());
        }
        FAIL("the sessions kept talking");
    }
    void connect() {
        connect_packet c;
        c.client_id = "loadgen-1";
        c.keep_alive_s = 30;
        client->connect(c);
        pump();
        REQUIRE(client->connected());
        REQUIRE(server->connected());
    }
    void complete_all() {
        for (const auto& d : server_handler.deliveries) {
            if (d.token != 0) server->complete(d.token, true);
        }
        pump();
    }
};

const bytes reading = str(R"({"pm25":12.5})");

}  // namespace

TEST_CASE("client connects to the server in both versions", "[mqtt][client]") {
    for (auto v : {protocol_version::v3_1_1, protocol_version::v5}) {
        loop l(v);
        l.connect();
        REQUIRE(l.client_handler.connack);
        CHECK(l.client_handler.connack->reason == reason_code::success);
        CHECK(l.server->client_id() == "loadgen-1");
        CHECK(l.server->version() == v);
    }
}

TEST_CASE("v5 client learns the server's receive maximum and respects it", "[mqtt][client]") {
    server_limits limits;
    limits.receive_maximum = 2;
    loop l(protocol_version::v5, limits);
    l.connect();
    CHECK(l.client->server_receive_maximum() == 2);
    CHECK(l.client->publish("city/a", reading, qos::at_least_once));
    CHECK(l.client->publish("city/a", reading, qos::exactly_once));
    CHECK(!l.client->publish("city/a", reading, qos::at_least_once));  // would exceed
    l.pump();
    CHECK(!l.server_handler.closed);
    l.complete_all();
    CHECK(l.client->inflight() == 0);
    CHECK(l.client->publish("city/a", reading, qos::at_least_once));
}

TEST_CASE("QoS 0, 1 and 2 publishes complete end to end", "[mqtt][client]") {
    for (auto v : {protocol_version::v3_1_1, protocol_version::v5}) {
        loop l(v);
        l.connect();
        CHECK(l.client->publish("city/pudong/air/1", reading, qos::at_most_once) == 0);
        const auto id1 = l.client->publish("city/pudong/air/1", reading, qos::at_least_once);
        const auto id2 = l.client->publish("city/pudong/air/1", reading, qos::exactly_once);
        REQUIRE(id1);
        REQUIRE(id2);
        CHECK(*id1 != *id2);
        l.pump();
        REQUIRE(l.server_handler.deliveries.size() == 3);
        CHECK(l.server_handler.deliveries[1].payload == reading);
        CHECK(l.client->inflight() == 2);
        l.complete_all();
        CHECK(l.client_handler.published ==
              std::vector<std::pair<std::uint16_t, reason_code>>{{*id1, reason_code::success},
                                                                 {*id2, reason_code::success}});
        CHECK(l.client->inflight() == 0);
        CHECK(l.server->inflight() == 0);
    }
}

TEST_CASE("v5 failed store reaches the client as a failure reason", "[mqtt][client]") {
    loop l(protocol_version::v5);
    l.connect();
    const auto id = l.client->publish("t", reading, qos::exactly_once);
    l.pump();
    l.server->complete(l.server_handler.deliveries[0].token, false);
    l.pump();
    REQUIRE(l.client_handler.published.size() == 1);
    CHECK(l.client_handler.published[0] ==
          std::pair<std::uint16_t, reason_code>{*id, reason_code::unspecified_error});
    CHECK(l.client->inflight() == 0);
}

TEST_CASE("subscribe, unsubscribe and ping through the client", "[mqtt][client]") {
    loop l(protocol_version::v5);
    l.connect();
    subscription s;
    s.filter = "city/+/air/#";
    s.max_qos = qos::at_least_once;
    REQUIRE(l.client->subscribe(std::span(&s, 1)));
    const std::string_view filter = "city/+/air/#";
    REQUIRE(l.client->unsubscribe(std::span(&filter, 1)));
    l.client->ping();
    l.pump();
    REQUIRE(l.client_handler.subacks.size() == 1);
    CHECK(l.client_handler.subacks[0] == std::vector<reason_code>{reason_code::granted_qos_1});
    CHECK(l.client_handler.unsubacks == 1);
    CHECK(l.client_handler.pingresps == 1);
}

TEST_CASE("client DISCONNECT ends both sides", "[mqtt][client]") {
    loop l(protocol_version::v3_1_1);
    l.connect();
    l.client->disconnect();
    l.pump();
    CHECK(l.server_handler.closed == reason_code::success);
    CHECK(!l.client->connected());
    CHECK(!l.client->publish("t", reading, qos::at_least_once));
}

TEST_CASE("server DISCONNECT reaches the v5 client with its reason", "[mqtt][client]") {
    loop l(protocol_version::v5);
    l.connect();
    l.server->disconnect(reason_code::server_shutting_down);
    l.pump();
    CHECK(l.client_handler.disconnected == reason_code::server_shutting_down);
}

TEST_CASE("a refused CONNECT ends the client", "[mqtt][client]") {
    loop l(protocol_version::v3_1_1);
    l.server_handler.verdict = reason_code::not_authorized;
    connect_packet c;
    c.client_id = "x";
    l.client->connect(c);
    l.pump();
    REQUIRE(l.client_handler.connack);
    CHECK(l.client_handler.connack->reason == reason_code::not_authorized);
    CHECK(l.client_handler.disconnected == reason_code::not_authorized);
    CHECK(!l.client->connected());
}

TEST_CASE("client answers a server QoS 2 PUBLISH with PUBREC, then PUBREL with PUBCOMP",
          "[mqtt][client]") {
    recording_client h;
    client_session c(h, protocol_version::v3_1_1);
    c.on_bytes(hex("20 02 00 00"));  // CONNACK accepted
    REQUIRE(c.connected());
    c.on_bytes(hex("34 07 00 01 74 00 05 68 69"));  // PUBLISH QoS 2 "t" id 5 "hi"
    CHECK(to_hex(h.sent) == "50 02 00 05");
    h.sent.clear();
    c.on_bytes(hex("62 02 00 05"));
    CHECK(to_hex(h.sent) == "70 02 00 05");
}

TEST_CASE("a malformed server packet makes the v5 client send DISCONNECT 0x81", "[mqtt][client]") {
    recording_client h;
    client_session c(h, protocol_version::v5);
    c.on_bytes(hex("20 03 00 00 00"));
    h.sent.clear();
    c.on_bytes(hex("d1 00"));  // PINGRESP with a flag set
    CHECK(to_hex(h.sent) == "e0 01 81");
    CHECK(h.disconnected == reason_code::malformed_packet);
}
