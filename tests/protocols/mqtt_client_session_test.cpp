// The client session against the server session over an in-memory pipe, both versions:
// the load generator's flows (connect, QoS 0/1/2 publish, subscribe, ping, disconnect).
#include <catch2/catch.hpp>

#include <map>

#include "protocols/mqtt/client_session.hpp"
#include "tests/protocols/mqtt_test_support.hpp"

using namespace citygate::mqtt;
using namespace citygate::mqtt::test;
using namespace std::chrono_literals;

namespace {

class recording_client : public client_handler {
  public:
    bytes sent;
    std::optional<connack_packet> connack;
    std::vector<std::pair<std::uint16_t, reason_code>> published;
    std::optional<std::pair<client_end, reason_code>> closed;
    int close_calls = 0;
    std::optional<std::chrono::milliseconds> armed;  // the keep-alive timer
    int cancels = 0;
    std::vector<std::vector<reason_code>> subacks;
    std::vector<std::pair<std::uint16_t, bytes>> messages;  // packet id, payload
    int unsubacks = 0;
    int pingresps = 0;
    std::map<std::pair<packet_direction, packet_type>, int> packets;
    client_session* disconnect_on_message = nullptr;

    void send(std::span<const std::uint8_t> b) override {
        sent.insert(sent.end(), b.begin(), b.end());
    }
    void on_connack(const connack_packet& a) override {
        connack = connack_packet{a.session_present, a.reason, {}};
        connack->props.receive_maximum = a.props.receive_maximum;
    }
    void on_published(std::uint16_t id, reason_code r) override { published.emplace_back(id, r); }
    void arm_timer(client_timer, std::chrono::milliseconds after) override { armed = after; }
    void cancel_timer(client_timer) override {
        armed.reset();
        ++cancels;
    }
    void close(client_end why, reason_code r) override {
        closed = std::pair(why, r);
        ++close_calls;
    }
    void on_message(const publish_packet& m) override {
        messages.emplace_back(m.packet_id, bytes(m.payload.begin(), m.payload.end()));
        if (disconnect_on_message) disconnect_on_message->disconnect();
    }
    void on_suback(const suback_packet& a) override { subacks.push_back(a.reasons); }
    void on_unsuback(const unsuback_packet&) override { ++unsubacks; }
    void on_pingresp() override { ++pingresps; }
    void on_packet(packet_direction d, packet_type t) override { ++packets[{d, t}]; }

    bytes take_sent() {
        bytes out;
        out.swap(sent);
        return out;
    }
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

const bytes connack_v311 = hex("20 02 00 00");   // CONNACK, accepted
const bytes connack_v5 = hex("20 03 00 00 00");  // CONNACK, success, no properties

// A client session fed by hand, connected by `connack`; what it sent so far is forgotten.
struct direct {
    recording_client h;
    client_session c;

    explicit direct(protocol_version v, const bytes& connack, std::uint16_t keep_alive_s = 0,
                    client_options options = {})
        : c(h, v, options) {
        connect_packet p;
        p.client_id = "c";
        p.keep_alive_s = keep_alive_s;
        c.connect(p);
        REQUIRE(c.on_bytes(connack) == connack.size());
        REQUIRE(c.connected());
        h.take_sent();
    }
};

using acks = std::vector<std::pair<std::uint16_t, reason_code>>;

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
    const std::size_t before = l.client_handler.sent.size();
    const auto refused = l.client->publish("city/a", reading, qos::at_least_once);
    CHECK(refused.error == errc::receive_maximum_exceeded);  // would exceed
    CHECK(l.client_handler.sent.size() == before);           // nothing sent
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
        CHECK(l.client->publish("city/pudong/air/1", reading, qos::at_most_once).packet_id == 0);
        const auto id1 = l.client->publish("city/pudong/air/1", reading, qos::at_least_once);
        const auto id2 = l.client->publish("city/pudong/air/1", reading, qos::exactly_once);
        REQUIRE(id1);
        REQUIRE(id2);
        CHECK(id1.packet_id != id2.packet_id);
        l.pump();
        REQUIRE(l.server_handler.deliveries.size() == 3);
        CHECK(l.server_handler.deliveries[1].payload == reading);
        CHECK(l.client->inflight() == 2);
        l.complete_all();
        CHECK(l.client_handler.published ==
              std::vector<std::pair<std::uint16_t, reason_code>>{
                  {id1.packet_id, reason_code::success}, {id2.packet_id, reason_code::success}});
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
          std::pair<std::uint16_t, reason_code>{id.packet_id, reason_code::unspecified_error});
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
    CHECK(l.client_handler.closed == std::pair(client_end::disconnected, reason_code::success));
    CHECK(!l.client->connected());
    CHECK(l.client->publish("t", reading, qos::at_least_once).error == errc::unexpected_packet);
}

TEST_CASE("server DISCONNECT reaches the v5 client with its reason", "[mqtt][client]") {
    loop l(protocol_version::v5);
    l.connect();
    l.server->disconnect(reason_code::server_shutting_down);
    l.pump();
    CHECK(l.client_handler.closed ==
          std::pair(client_end::server_disconnect, reason_code::server_shutting_down));
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
    CHECK(l.client_handler.closed == std::pair(client_end::refused, reason_code::not_authorized));
    CHECK(!l.client->connected());
}

TEST_CASE("client answers a server QoS 2 PUBLISH with PUBREC, then PUBREL with PUBCOMP",
          "[mqtt][client]") {
    recording_client h;
    client_session c(h, protocol_version::v3_1_1);
    c.connect(connect_packet{});
    h.sent.clear();
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
    c.connect(connect_packet{});
    c.on_bytes(hex("20 03 00 00 00"));
    h.sent.clear();
    c.on_bytes(hex("d1 00"));  // PINGRESP with a flag set
    CHECK(to_hex(h.sent) == "e0 01 81");
    CHECK(h.closed == std::pair(client_end::protocol_error, reason_code::malformed_packet));
}

TEST_CASE("connect() sends CONNECT in the session's version", "[mqtt][client]") {
    recording_client h;
    client_session c(h, protocol_version::v3_1_1);
    connect_packet p;
    p.version = protocol_version::v5;  // the session's version wins
    p.client_id = "c";
    p.keep_alive_s = 30;
    c.connect(p);
    CHECK(to_hex(h.sent) == to_hex(hex("10 0d"              // CONNECT, remaining length 13
                                       "00 04 4d 51 54 54"  // "MQTT"
                                       "04"                 // level 4 (3.1.1)
                                       "02"                 // clean session
                                       "00 1e"              // keep alive 30
                                       "00 01 63"           // client id "c"
                                       )));
    CHECK(!c.connected());
}

TEST_CASE("QoS 1 PUBLISH goes out byte-exact and its PUBACK finishes it", "[mqtt][client]") {
    direct d(protocol_version::v3_1_1, connack_v311);
    const auto sent = d.c.publish("t", str("hi"), qos::at_least_once);
    REQUIRE(sent);
    CHECK(sent.packet_id == 1);
    CHECK(to_hex(d.h.take_sent()) == to_hex(hex("32 07"     // PUBLISH QoS 1, remaining 7
                                                "00 01 74"  // topic "t"
                                                "00 01"     // packet id 1
                                                "68 69"     // "hi"
                                                )));
    CHECK(d.c.inflight() == 1);
    d.c.on_bytes(hex("40 02 00 01"));  // PUBACK 1
    CHECK(d.h.published == acks{{1, reason_code::success}});
    CHECK(d.c.inflight() == 0);
    CHECK(d.h.sent.empty());
}

TEST_CASE("QoS 0 PUBLISH takes no packet id and leaves nothing in flight", "[mqtt][client]") {
    direct d(protocol_version::v5, connack_v5);
    const auto sent = d.c.publish("t", str("hi"), qos::at_most_once);
    REQUIRE(sent);
    CHECK(sent.packet_id == 0);
    CHECK(to_hex(d.h.take_sent()) == to_hex(hex("30 06"     // PUBLISH QoS 0, remaining 6
                                                "00 01 74"  // topic "t"
                                                "00"        // no properties
                                                "68 69"     // "hi"
                                                )));
    CHECK(d.c.inflight() == 0);
}

TEST_CASE("QoS 2 PUBLISH: PUBREC is answered with PUBREL and PUBCOMP finishes it",
          "[mqtt][client]") {
    direct d(protocol_version::v3_1_1, connack_v311);
    REQUIRE(d.c.publish("t", str("hi"), qos::exactly_once).packet_id == 1);
    CHECK(to_hex(d.h.take_sent()) == "34 07 00 01 74 00 01 68 69");  // QoS 2 flag 0x04
    d.c.on_bytes(hex("50 02 00 01"));                                // PUBREC 1
    CHECK(to_hex(d.h.take_sent()) == "62 02 00 01");                 // PUBREL 1 (flags 0010)
    CHECK(d.h.published.empty());
    CHECK(d.c.inflight() == 1);        // receive maximum counts it until PUBCOMP
    d.c.on_bytes(hex("70 02 00 01"));  // PUBCOMP 1
    CHECK(d.h.published == acks{{1, reason_code::success}});
    CHECK(d.c.inflight() == 0);
}

TEST_CASE("v5 PUBREC with a failure reason ends the QoS 2 flow without PUBREL", "[mqtt][client]") {
    direct d(protocol_version::v5, connack_v5);
    REQUIRE(d.c.publish("t", str("hi"), qos::exactly_once));
    d.h.take_sent();
    d.c.on_bytes(hex("50 03 00 01 87"));  // PUBREC 1, not authorized
    CHECK(d.h.sent.empty());
    CHECK(d.h.published == acks{{1, reason_code::not_authorized}});
    CHECK(d.c.inflight() == 0);
}

TEST_CASE("v5 PUBREC for an unknown id is answered with PUBREL 0x92", "[mqtt][client]") {
    direct d(protocol_version::v5, connack_v5);
    d.c.on_bytes(hex("50 02 00 09"));
    CHECK(to_hex(d.h.sent) == "62 03 00 09 92");
    CHECK(d.c.connected());
}

TEST_CASE("packet ids wrap from 65535 to 1 and skip an id still in flight", "[mqtt][client]") {
    direct d(protocol_version::v3_1_1, connack_v311);
    REQUIRE(d.c.publish("t", str("x"), qos::at_least_once).packet_id == 1);
    REQUIRE(d.c.publish("t", str("x"), qos::at_least_once).packet_id == 2);  // stays in flight
    d.c.on_bytes(hex("40 02 00 01"));
    // Ids 3 .. 65535, each acknowledged at once.
    for (std::uint32_t id = 3; id <= 0xFFFF; ++id) {
        const auto sent = d.c.publish("t", str("x"), qos::at_least_once);
        REQUIRE(sent.packet_id == id);
        const bytes ack = {0x40, 0x02, static_cast<std::uint8_t>(id >> 8),
                           static_cast<std::uint8_t>(id & 0xFF)};
        REQUIRE(d.c.on_bytes(ack) == 4);
    }
    CHECK(d.c.publish("t", str("x"), qos::at_least_once).packet_id == 1);
    CHECK(d.c.publish("t", str("x"), qos::at_least_once).packet_id == 3);  // 2 is still in use
    CHECK(d.c.inflight() == 3);
}

TEST_CASE("a PUBACK for no PUBLISH of ours is a protocol error", "[mqtt][client]") {
    SECTION("v5: DISCONNECT 0x82") {
        direct d(protocol_version::v5, connack_v5);
        d.c.on_bytes(hex("40 02 00 07"));
        CHECK(to_hex(d.h.sent) == "e0 01 82");
        CHECK(d.h.closed == std::pair(client_end::protocol_error, reason_code::protocol_error));
    }
    SECTION("3.1.1: nothing sent") {
        direct d(protocol_version::v3_1_1, connack_v311);
        d.c.on_bytes(hex("70 02 00 07"));  // PUBCOMP 7
        CHECK(d.h.sent.empty());
        CHECK(d.h.closed == std::pair(client_end::protocol_error, reason_code::protocol_error));
    }
}

TEST_CASE("MQTT-3.2.0-1: a packet before CONNACK is a protocol error", "[mqtt][client]") {
    recording_client h;
    client_session c(h, protocol_version::v3_1_1);
    c.connect(connect_packet{});
    h.take_sent();
    CHECK(c.on_bytes(hex("d0 00 20 02 00 00")) == 2);  // PINGRESP, then a CONNACK not read
    CHECK(h.closed == std::pair(client_end::protocol_error, reason_code::protocol_error));
    CHECK(!h.connack);
    CHECK(h.sent.empty());
}

TEST_CASE("a second CONNACK is a protocol error", "[mqtt][client]") {
    direct d(protocol_version::v5, connack_v5);
    d.c.on_bytes(connack_v5);
    CHECK(to_hex(d.h.sent) == "e0 01 82");
    CHECK(!d.c.connected());
}

TEST_CASE("keep-alive: after CONNACK the timer checks every half period", "[mqtt][client]") {
    direct d(protocol_version::v3_1_1, connack_v311, 30);
    CHECK(d.h.armed == 15s);
    CHECK(d.c.keep_alive() == 30);
}

TEST_CASE("keep-alive: a client silent for a half period sends PINGREQ", "[mqtt][client]") {
    direct d(protocol_version::v3_1_1, connack_v311, 30);
    d.h.armed.reset();
    d.c.on_timer(client_timer::keep_alive);  // the CONNECT counts as sent since the last check
    CHECK(d.h.sent.empty());
    CHECK(d.h.armed == 15s);
    d.c.on_timer(client_timer::keep_alive);
    CHECK(to_hex(d.h.take_sent()) == "c0 00");
    d.c.on_bytes(hex("d0 00"));  // PINGRESP
    CHECK(d.h.pingresps == 1);
    REQUIRE(d.c.publish("t", str("x"), qos::at_most_once));
    d.h.take_sent();
    d.c.on_timer(client_timer::keep_alive);  // the PUBLISH kept the connection alive
    CHECK(d.h.sent.empty());
}

TEST_CASE("keep-alive: two unanswered PINGREQs end the session", "[mqtt][client]") {
    direct d(protocol_version::v5, connack_v5, 10);
    d.c.on_timer(client_timer::keep_alive);  // CONNECT was sent: no ping
    d.c.on_timer(client_timer::keep_alive);  // ping 1
    d.c.on_timer(client_timer::keep_alive);  // ping 2
    CHECK(to_hex(d.h.take_sent()) == "c0 00 c0 00");
    CHECK(!d.h.closed);
    d.c.on_timer(client_timer::keep_alive);
    CHECK(d.h.sent.empty());
    CHECK(d.h.closed == std::pair(client_end::keep_alive_timeout, reason_code::keep_alive_timeout));
    CHECK(!d.c.connected());
}

TEST_CASE("keep-alive: a PINGRESP clears the unanswered count", "[mqtt][client]") {
    direct d(protocol_version::v3_1_1, connack_v311, 10);
    d.c.on_timer(client_timer::keep_alive);
    d.c.on_timer(client_timer::keep_alive);  // ping 1
    d.c.on_timer(client_timer::keep_alive);  // ping 2
    d.c.on_bytes(hex("d0 00"));
    d.c.on_timer(client_timer::keep_alive);  // ping 3, not the end
    CHECK(to_hex(d.h.sent) == "c0 00 c0 00 c0 00");
    CHECK(!d.h.closed);
}

TEST_CASE("keep-alive 0 arms no timer", "[mqtt][client]") {
    direct d(protocol_version::v3_1_1, connack_v311, 0);
    CHECK(!d.h.armed);
    d.c.on_timer(client_timer::keep_alive);  // a stray expiry sends nothing
    d.c.on_timer(client_timer::keep_alive);
    CHECK(d.h.sent.empty());
    CHECK(!d.h.armed);
}

TEST_CASE("MQTT-3.2.2-21: the v5 server keep-alive from CONNACK replaces ours", "[mqtt][client]") {
    const bytes connack =
        hex("20 06 00 00"  // CONNACK, success
            "03 13 00 0a"  // properties: server keep alive 10 s
        );
    direct d(protocol_version::v5, connack, 60);
    CHECK(d.c.keep_alive() == 10);
    CHECK(d.h.armed == 5s);
}

TEST_CASE("v5 maximum packet size from CONNACK: a larger PUBLISH is refused unsent",
          "[mqtt][client]") {
    const bytes connack =
        hex("20 08 00 00"        // CONNACK, success
            "05 27 00 00 00 10"  // properties: maximum packet size 16
        );
    direct d(protocol_version::v5, connack);
    const auto refused = d.c.publish("t", str("012345678"), qos::at_least_once);  // 17 bytes
    CHECK(refused.error == errc::packet_too_large);
    CHECK(d.h.sent.empty());
    CHECK(d.c.inflight() == 0);
    CHECK(d.c.publish("t", str("01234567"), qos::at_least_once));  // 16 bytes
    CHECK(d.h.sent.size() == 16);
}

TEST_CASE("server DISCONNECT ends the session with its reason", "[mqtt][client]") {
    direct d(protocol_version::v5, connack_v5, 30);
    d.c.on_bytes(hex("e0 01 8b"));  // DISCONNECT, server shutting down
    CHECK(d.h.closed ==
          std::pair(client_end::server_disconnect, reason_code::server_shutting_down));
    CHECK(d.h.close_calls == 1);
    CHECK(!d.h.armed);  // the keep-alive timer is cancelled
    CHECK(d.h.sent.empty());
    CHECK(d.c.on_bytes(hex("d0 00")) == 0);  // nothing is read after the end
}

TEST_CASE("disconnect() sends DISCONNECT with the reason, then close(disconnected)",
          "[mqtt][client]") {
    direct d(protocol_version::v5, connack_v5);
    d.c.disconnect(reason_code::disconnect_with_will);
    CHECK(to_hex(d.h.sent) == "e0 01 04");
    CHECK(d.h.closed == std::pair(client_end::disconnected, reason_code::disconnect_with_will));
    d.c.disconnect();  // once only
    CHECK(d.h.close_calls == 1);
}

TEST_CASE("on_peer_closed() ends the session without a handler call", "[mqtt][client]") {
    direct d(protocol_version::v3_1_1, connack_v311, 30);
    REQUIRE(d.c.publish("t", str("x"), qos::at_least_once));
    d.h.take_sent();
    d.c.on_peer_closed();
    CHECK(!d.c.connected());
    CHECK(d.c.inflight() == 0);
    CHECK(!d.h.closed);
    CHECK(d.c.on_bytes(hex("40 02 00 01")) == 0);
    CHECK(d.h.published.empty());
}

TEST_CASE("connect() after an ended connection starts afresh", "[mqtt][client]") {
    direct d(protocol_version::v5, hex("20 06 00 00 03 21 00 01"));  // receive maximum 1
    REQUIRE(d.c.publish("t", str("x"), qos::at_least_once));
    CHECK(d.c.server_receive_maximum() == 1);
    d.c.on_bytes(hex("e0 01 8b"));
    d.c.connect(connect_packet{});
    CHECK(d.c.inflight() == 0);
    d.c.on_bytes(connack_v5);
    REQUIRE(d.c.connected());
    CHECK(d.c.server_receive_maximum() == 0xFFFF);
    d.h.take_sent();
    CHECK(d.c.publish("t", str("x"), qos::at_least_once));
    CHECK(d.c.publish("t", str("x"), qos::at_least_once));
}

TEST_CASE("inbound QoS 1 acknowledged later, by packet id, in arrival order", "[mqtt][client]") {
    client_options options;
    options.acknowledge_on_return = false;
    direct d(protocol_version::v3_1_1, connack_v311, 0, options);
    d.c.on_bytes(cat({hex("32 07 00 01 74 00 05 68 69"),     // PUBLISH QoS 1 "t" id 5 "hi"
                      hex("32 07 00 01 74 00 06 68 69")}));  // id 6
    REQUIRE(d.h.messages.size() == 2);
    CHECK(d.h.messages[0].first == 5);
    CHECK(d.h.sent.empty());
    d.c.acknowledge(6);
    CHECK(d.h.sent.empty());  // MQTT-4.6.0-2: not before id 5's
    d.c.acknowledge(5);
    CHECK(to_hex(d.h.sent) == "40 02 00 05 40 02 00 06");
    d.c.acknowledge(5);  // twice: ignored
    CHECK(d.h.sent.size() == 8);
}

TEST_CASE("v5 inbound QoS 1 acknowledged later carries the reason", "[mqtt][client]") {
    client_options options;
    options.acknowledge_on_return = false;
    direct d(protocol_version::v5, connack_v5, 0, options);
    d.c.on_bytes(hex("32 08 00 01 74 00 05 00 68 69"));  // PUBLISH QoS 1 id 5, no properties
    d.c.acknowledge(5, reason_code::quota_exceeded);
    CHECK(to_hex(d.h.sent) == "40 03 00 05 97");
}

TEST_CASE("a resent inbound QoS 2 PUBLISH is not delivered twice", "[mqtt][client]") {
    direct d(protocol_version::v3_1_1, connack_v311);
    d.c.on_bytes(hex("34 07 00 01 74 00 05 68 69"));  // PUBLISH QoS 2 id 5
    CHECK(to_hex(d.h.take_sent()) == "50 02 00 05");  // PUBREC
    d.c.on_bytes(hex("3c 07 00 01 74 00 05 68 69"));  // the same, DUP set
    CHECK(to_hex(d.h.take_sent()) == "50 02 00 05");  // PUBREC again
    CHECK(d.h.messages.size() == 1);
    d.c.on_bytes(hex("62 02 00 05"));                 // PUBREL
    CHECK(to_hex(d.h.take_sent()) == "70 02 00 05");  // PUBCOMP
    d.c.on_bytes(hex("34 07 00 01 74 00 05 68 69"));  // a new message with the id
    CHECK(d.h.messages.size() == 2);
}

TEST_CASE("disconnect() from inside on_message sends no acknowledgement after it",
          "[mqtt][client]") {
    direct d(protocol_version::v3_1_1, connack_v311);
    d.h.disconnect_on_message = &d.c;
    d.c.on_bytes(hex("32 07 00 01 74 00 05 68 69"));
    CHECK(to_hex(d.h.sent) == "e0 00");  // DISCONNECT, no PUBACK
}

TEST_CASE("on_packet() counts each packet parsed and each packet sent", "[mqtt][client]") {
    direct d(protocol_version::v3_1_1, connack_v311, 30);
    REQUIRE(d.c.publish("t", str("hi"), qos::exactly_once));
    d.c.on_bytes(cat({hex("50 02 00 01"), hex("70 02 00 01")}));  // PUBREC, PUBCOMP
    d.c.on_timer(client_timer::keep_alive);
    d.c.on_timer(client_timer::keep_alive);  // PINGREQ
    d.c.on_bytes(hex("d0 00"));
    using key = std::pair<packet_direction, packet_type>;
    const auto in = packet_direction::inbound, out = packet_direction::outbound;
    CHECK(d.h.packets == std::map<key, int>{{{out, packet_type::connect}, 1},
                                            {{in, packet_type::connack}, 1},
                                            {{out, packet_type::publish}, 1},
                                            {{in, packet_type::pubrec}, 1},
                                            {{out, packet_type::pubrel}, 1},
                                            {{in, packet_type::pubcomp}, 1},
                                            {{out, packet_type::pingreq}, 1},
                                            {{in, packet_type::pingresp}, 1}});
}

TEST_CASE("on_packet() skips what the parser rejects and counts the DISCONNECT it causes",
          "[mqtt][client]") {
    direct d(protocol_version::v5, connack_v5);
    d.h.packets.clear();
    d.c.on_bytes(hex("d1 00"));  // PINGRESP with a flag set: malformed
    using key = std::pair<packet_direction, packet_type>;
    CHECK(d.h.packets ==
          std::map<key, int>{{{packet_direction::outbound, packet_type::disconnect}, 1}});
}

TEST_CASE("a refused PUBLISH is not counted as sent", "[mqtt][client]") {
    direct d(protocol_version::v5, hex("20 06 00 00 03 21 00 01"));  // receive maximum 1
    REQUIRE(d.c.publish("t", str("x"), qos::at_least_once));
    CHECK(!d.c.publish("t", str("x"), qos::at_least_once));
    CHECK(d.h.packets[{packet_direction::outbound, packet_type::publish}] == 1);
}

TEST_CASE("sessions can share one encode buffer", "[mqtt][client]") {
    struct sharing_client : recording_client {
        encoded_packet* shared = nullptr;
        encoded_packet* encode_buffer() override { return shared; }
    };
    encoded_packet buffer;
    sharing_client a, b;
    a.shared = b.shared = &buffer;
    client_session ca(a, protocol_version::v3_1_1), cb(b, protocol_version::v3_1_1);
    ca.connect(connect_packet{});
    cb.connect(connect_packet{});
    ca.on_bytes(connack_v311);
    cb.on_bytes(connack_v311);
    a.take_sent();
    b.take_sent();
    REQUIRE(ca.publish("t", str("a"), qos::at_most_once));
    REQUIRE(cb.publish("u", str("b"), qos::at_most_once));
    CHECK(to_hex(a.sent) == "30 04 00 01 74 61");
    CHECK(to_hex(b.sent) == "30 04 00 01 75 62");
}
