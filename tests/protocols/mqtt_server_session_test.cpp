// Specification of the server session engine: handshake, QoS flows, ordering, limits, timers.
#include <catch2/catch.hpp>

#include <map>

#include "protocols/mqtt/server_session.hpp"
#include "tests/protocols/mqtt_test_support.hpp"

using namespace citygate::mqtt;
using namespace citygate::mqtt::test;
using namespace std::chrono_literals;

namespace {

// CONNECT "dev1", keep alive 60 s, clean session.
const bytes connect_v311 =
    hex("10 10"              // CONNECT, remaining length 16
        "00 04 4d 51 54 54"  // protocol name "MQTT"
        "04"                 // level 4 (3.1.1)
        "02"                 // flags: clean session
        "00 3c"              // keep alive 60
        "00 04 64 65 76 31"  // client id "dev1"
    );
const bytes connack_v311_accepted = hex("20 02 00 00");

const bytes connect_v5 =
    hex("10 11"              // CONNECT, remaining length 17
        "00 04 4d 51 54 54"  // protocol name "MQTT"
        "05"                 // level 5
        "02"                 // flags: clean start
        "00 3c"              // keep alive 60
        "00"                 // no properties
        "00 04 64 65 76 31"  // client id "dev1"
    );
// The CONNACK for the default server_limits.
const bytes connack_v5_default =
    hex("20 10"           // CONNACK, remaining length 16
        "00"              // session present 0
        "00"              // reason success
        "0d"              // properties, 13 bytes
        "21 01 00"        // receive maximum 256
        "22 00 40"        // topic alias maximum 64
        "27 00 04 00 00"  // maximum packet size 262144
        "29 00"           // subscription identifiers not available
    );

// QoS 1 PUBLISH "a/b" id `id` payload "hi" (3.1.1 layout; v5 adds a property length).
bytes publish_qos(int level, std::uint16_t id, protocol_version v, bool dup = false) {
    publish_packet p;
    p.qos = static_cast<qos>(level);
    p.packet_id = id;
    p.topic = "a/b";
    p.dup = dup;
    static const bytes payload = str("hi");
    p.payload = payload;
    return encode_bytes(p, v);
}

struct fixture {
    recording_handler handler;
    server_limits limits;
    std::optional<server_session> session;

    explicit fixture(server_limits l = {}) : limits(std::move(l)) {
        session.emplace(handler, limits);
        session->start();
    }
    std::size_t feed(const bytes& b) { return session->on_bytes(b); }
    void connect(protocol_version v) {
        const bytes& c = v == protocol_version::v5 ? connect_v5 : connect_v311;
        REQUIRE(feed(c) == c.size());
        REQUIRE(session->connected());
        handler.take_sent();
    }
};

}  // namespace

TEST_CASE("start() arms the connect timeout, whose expiry closes without a packet",
          "[mqtt][session]") {
    fixture f;
    REQUIRE(f.handler.armed.at(timer_kind::connect_timeout) == 10s);
    f.session->on_timer(timer_kind::connect_timeout);
    CHECK(f.handler.closed == reason_code::maximum_connect_time);
    CHECK(f.handler.sent.empty());
    CHECK(f.feed(connect_v311) == 0);  // nothing is consumed after close
}

TEST_CASE("3.1.1 CONNECT is authenticated and answered with CONNACK 0", "[mqtt][session]") {
    fixture f;
    REQUIRE(f.feed(connect_v311) == connect_v311.size());
    CHECK(f.handler.sent == connack_v311_accepted);
    REQUIRE(f.handler.connects.size() == 1);
    CHECK(f.handler.connect_client_ids[0] == "dev1");
    CHECK(f.handler.connects[0].version == protocol_version::v3_1_1);
    CHECK(f.handler.connects[0].keep_alive_s == 60);
    CHECK(f.session->connected());
    CHECK(f.session->client_id() == "dev1");
    CHECK(f.session->version() == protocol_version::v3_1_1);
    CHECK(f.handler.armed.count(timer_kind::connect_timeout) == 0);  // cancelled
    CHECK(f.handler.armed.at(timer_kind::keep_alive) == 90s);        // 1.5 x 60 s
}

TEST_CASE("v5 CONNACK advertises the server's limits", "[mqtt][session]") {
    fixture f;
    REQUIRE(f.feed(connect_v5) == connect_v5.size());
    CHECK(to_hex(f.handler.sent) == to_hex(connack_v5_default));
    CHECK(f.session->version() == protocol_version::v5);
}

TEST_CASE("v5 empty client id gets a server-assigned id in CONNACK", "[mqtt][session]") {
    fixture f;
    connect_packet c;
    c.version = protocol_version::v5;
    REQUIRE(f.feed(encode_bytes(c, c.version)) > 0);
    REQUIRE(f.session->connected());
    REQUIRE(f.handler.connects.size() == 1);
    CHECK(f.handler.connects[0].client_id_assigned);
    const std::string id(f.session->client_id());
    CHECK(id.starts_with("citygate-"));
    const auto ack = std::get<connack_packet>(parse_one(f.handler.sent, protocol_version::v5));
    CHECK(ack.props.assigned_client_identifier == id);
}

TEST_CASE("MQTT-3.1.3-8: 3.1.1 empty client id without clean session gets return code 2",
          "[mqtt][session]") {
    fixture f;
    connect_packet c;
    c.clean_start = false;
    f.feed(encode_bytes(c, c.version));
    CHECK(to_hex(f.handler.sent) == "20 02 00 02");
    CHECK(f.handler.closed == reason_code::client_identifier_not_valid);
    CHECK(!f.session->connected());
}

TEST_CASE("3.1.1 empty client id with clean session is accepted with an internal id",
          "[mqtt][session]") {
    fixture f;
    connect_packet c;
    f.feed(encode_bytes(c, c.version));
    CHECK(f.handler.sent == connack_v311_accepted);
    CHECK(!f.session->client_id().empty());
}

TEST_CASE("authentication refusal is sent in CONNACK and closes", "[mqtt][session]") {
    SECTION("3.1.1 maps not_authorized to return code 5") {
        fixture f;
        f.handler.verdict = reason_code::not_authorized;
        f.feed(connect_v311);
        CHECK(to_hex(f.handler.sent) == "20 02 00 05");
        CHECK(f.handler.closed == reason_code::not_authorized);
    }
    SECTION("v5 sends the reason code") {
        fixture f;
        f.handler.verdict = reason_code::bad_user_name_or_password;
        f.feed(connect_v5);
        CHECK(to_hex(f.handler.sent) == "20 03 00 86 00");
        CHECK(f.handler.closed == reason_code::bad_user_name_or_password);
    }
}

TEST_CASE("username and password reach the authentication hook", "[mqtt][session]") {
    fixture f;
    connect_packet c;
    c.client_id = "x";
    c.username = "alice";
    static const bytes pw = str("secret");
    c.password = bytes_view(pw);
    f.feed(encode_bytes(c, c.version));
    REQUIRE(f.handler.username_seen.size() == 1);
    CHECK(f.handler.username_seen[0] == "alice");
}

TEST_CASE("MQTT-3.1.2-2: an unsupported protocol level gets return code 1", "[mqtt][session]") {
    fixture f;
    bytes c = connect_v311;
    c[8] = 3;  // level 3
    f.feed(c);
    CHECK(to_hex(f.handler.sent) == "20 02 00 01");
    CHECK(f.handler.closed == reason_code::unsupported_protocol_version);
}

TEST_CASE("MQTT-3.1.0-1: a first packet other than CONNECT closes silently", "[mqtt][session]") {
    fixture f;
    f.feed(hex("c0 00"));  // PINGREQ
    CHECK(f.handler.sent.empty());
    CHECK(f.handler.closed == reason_code::protocol_error);
}

TEST_CASE("MQTT-3.1.0-2: a second CONNECT is a protocol error", "[mqtt][session]") {
    fixture f;
    f.connect(protocol_version::v5);
    f.feed(connect_v5);
    CHECK(to_hex(f.handler.sent) == "e0 01 82");  // DISCONNECT protocol error
    CHECK(f.handler.closed == reason_code::protocol_error);
}

TEST_CASE("QoS 0 PUBLISH is delivered without token or ack", "[mqtt][session]") {
    for (auto v : {protocol_version::v3_1_1, protocol_version::v5}) {
        fixture f;
        f.connect(v);
        const bytes p = publish_qos(0, 0, v);
        CHECK(f.feed(p) == p.size());
        REQUIRE(f.handler.deliveries.size() == 1);
        CHECK(f.handler.deliveries[0].topic == "a/b");
        CHECK(f.handler.deliveries[0].payload == str("hi"));
        CHECK(f.handler.deliveries[0].token == 0);
        CHECK(f.handler.sent.empty());
        CHECK(f.session->inflight() == 0);
    }
}

TEST_CASE("QoS 1 PUBACK waits for complete()", "[mqtt][session]") {
    for (auto v : {protocol_version::v3_1_1, protocol_version::v5}) {
        fixture f;
        f.connect(v);
        f.feed(publish_qos(1, 7, v));
        REQUIRE(f.handler.deliveries.size() == 1);
        const auto token = f.handler.deliveries[0].token;
        CHECK(token != 0);
        CHECK(f.handler.sent.empty());
        CHECK(f.session->inflight() == 1);
        f.session->complete(token, true);
        CHECK(to_hex(f.handler.sent) == "40 02 00 07");  // PUBACK id 7
        CHECK(f.session->inflight() == 0);
        f.session->complete(token, true);  // a second completion is ignored
        CHECK(to_hex(f.handler.sent) == "40 02 00 07");
    }
}

TEST_CASE("MQTT-4.6.0-2: acks leave in arrival order even when completed out of order",
          "[mqtt][session]") {
    fixture f;
    f.connect(protocol_version::v3_1_1);
    bytes three = cat({publish_qos(1, 1, protocol_version::v3_1_1),
                       publish_qos(2, 2, protocol_version::v3_1_1),
                       publish_qos(1, 3, protocol_version::v3_1_1)});
    CHECK(f.feed(three) == three.size());
    REQUIRE(f.handler.deliveries.size() == 3);
    f.session->complete(f.handler.deliveries[2].token, true);
    f.session->complete(f.handler.deliveries[1].token, true);
    CHECK(f.handler.sent.empty());
    f.session->complete(f.handler.deliveries[0].token, true);
    CHECK(to_hex(f.handler.sent) == "40 02 00 01 50 02 00 02 40 02 00 03");
}

TEST_CASE("QoS 2 is delivered exactly once", "[mqtt][session]") {
    fixture f;
    f.connect(protocol_version::v3_1_1);
    const auto v = protocol_version::v3_1_1;
    f.feed(publish_qos(2, 9, v));
    REQUIRE(f.handler.deliveries.size() == 1);

    SECTION("a re-sent PUBLISH while the first is still pending is dropped") {
        f.feed(publish_qos(2, 9, v, true));
        CHECK(f.handler.deliveries.size() == 1);
        f.session->complete(f.handler.deliveries[0].token, true);
        CHECK(to_hex(f.handler.sent) == "50 02 00 09");  // one PUBREC
    }
    SECTION("a re-sent PUBLISH after PUBREC gets PUBREC again, not a delivery") {
        f.session->complete(f.handler.deliveries[0].token, true);
        CHECK(to_hex(f.handler.take_sent()) == "50 02 00 09");
        f.feed(publish_qos(2, 9, v, true));
        CHECK(f.handler.deliveries.size() == 1);
        CHECK(to_hex(f.handler.take_sent()) == "50 02 00 09");
        f.feed(hex("62 02 00 09"));  // PUBREL
        CHECK(to_hex(f.handler.take_sent()) == "70 02 00 09");
        // After PUBCOMP the id is free again: a new message.
        f.feed(publish_qos(2, 9, v));
        CHECK(f.handler.deliveries.size() == 2);
    }
}

TEST_CASE("PUBREL for an unknown id: PUBCOMP (v5 with 0x92)", "[mqtt][session]") {
    fixture f;
    f.connect(protocol_version::v5);
    f.feed(hex("62 02 00 05"));
    CHECK(to_hex(f.handler.sent) == "70 03 00 05 92");
}

TEST_CASE("PUBREL before our PUBREC is a protocol error", "[mqtt][session]") {
    fixture f;
    f.connect(protocol_version::v5);
    f.feed(publish_qos(2, 4, protocol_version::v5));
    f.feed(hex("62 02 00 04"));
    CHECK(f.handler.closed == reason_code::protocol_error);
}

TEST_CASE("complete with a named outcome", "[mqtt][session]") {
    SECTION("v5 QoS 1 carries the reason code in PUBACK") {
        fixture f;
        f.connect(protocol_version::v5);
        f.feed(publish_qos(1, 3, protocol_version::v5));
        f.session->complete(f.handler.deliveries[0].token, reason_code::not_authorized);
        CHECK(to_hex(f.handler.sent) == "40 03 00 03 87");
        CHECK(!f.handler.closed);
    }
    SECTION("v5 keeps arrival order whatever the outcomes") {
        fixture f;
        f.connect(protocol_version::v5);
        f.feed(publish_qos(1, 3, protocol_version::v5));
        f.feed(publish_qos(1, 4, protocol_version::v5));
        f.session->complete(f.handler.deliveries[1].token, reason_code::success);
        CHECK(f.handler.sent.empty());
        f.session->complete(f.handler.deliveries[0].token, reason_code::payload_format_invalid);
        CHECK(to_hex(f.handler.sent) == "40 03 00 03 99 40 02 00 04");
    }
    SECTION("3.1.1 acknowledges a success-class outcome") {
        fixture f;
        f.connect(protocol_version::v3_1_1);
        f.feed(publish_qos(1, 3, protocol_version::v3_1_1));
        f.session->complete(f.handler.deliveries[0].token, reason_code::success);
        CHECK(to_hex(f.handler.sent) == "40 02 00 03");
    }
    SECTION("3.1.1 closes on a failure outcome, having no negative ack") {
        fixture f;
        f.connect(protocol_version::v3_1_1);
        f.feed(publish_qos(1, 3, protocol_version::v3_1_1));
        f.session->complete(f.handler.deliveries[0].token, reason_code::not_authorized);
        CHECK(f.handler.sent.empty());
        CHECK(f.handler.closed);
    }
}

TEST_CASE("complete(stored = false)", "[mqtt][session]") {
    SECTION("v5 acknowledges with unspecified error") {
        fixture f;
        f.connect(protocol_version::v5);
        f.feed(publish_qos(1, 3, protocol_version::v5));
        f.session->complete(f.handler.deliveries[0].token, false);
        CHECK(to_hex(f.handler.sent) == "40 03 00 03 80");
        CHECK(!f.handler.closed);
    }
    SECTION("v5 QoS 2 failure ends the flow: a later PUBREL is unknown") {
        fixture f;
        f.connect(protocol_version::v5);
        f.feed(publish_qos(2, 3, protocol_version::v5));
        f.session->complete(f.handler.deliveries[0].token, false);
        CHECK(to_hex(f.handler.take_sent()) == "50 03 00 03 80");
        f.feed(hex("62 02 00 03"));
        CHECK(to_hex(f.handler.sent) == "70 03 00 03 92");
    }
    SECTION("3.1.1 closes, having no negative ack") {
        fixture f;
        f.connect(protocol_version::v3_1_1);
        f.feed(publish_qos(1, 3, protocol_version::v3_1_1));
        f.session->complete(f.handler.deliveries[0].token, false);
        CHECK(f.handler.sent.empty());
        CHECK(f.handler.closed == reason_code::unspecified_error);
    }
}

TEST_CASE("complete() may be called from inside deliver()", "[mqtt][session]") {
    fixture f;
    f.connect(protocol_version::v3_1_1);
    f.handler.complete_immediately = &*f.session;
    bytes two = cat(
        {publish_qos(1, 1, protocol_version::v3_1_1), publish_qos(1, 2, protocol_version::v3_1_1)});
    f.feed(two);
    CHECK(to_hex(f.handler.sent) == "40 02 00 01 40 02 00 02");
}

TEST_CASE("MQTT-3.3.4-7: v5 receive maximum exceeded disconnects with 0x93", "[mqtt][session]") {
    server_limits limits;
    limits.receive_maximum = 2;
    fixture f(limits);
    f.connect(protocol_version::v5);
    f.feed(publish_qos(1, 1, protocol_version::v5));
    f.feed(publish_qos(2, 2, protocol_version::v5));
    CHECK(f.handler.deliveries.size() == 2);
    f.feed(publish_qos(1, 3, protocol_version::v5));
    CHECK(f.handler.deliveries.size() == 2);
    CHECK(to_hex(f.handler.sent) == "e0 01 93");
    CHECK(f.handler.closed == reason_code::receive_maximum_exceeded);
}

TEST_CASE("receive maximum counts QoS 2 until PUBCOMP", "[mqtt][session]") {
    server_limits limits;
    limits.receive_maximum = 1;
    fixture f(limits);
    f.connect(protocol_version::v5);
    f.feed(publish_qos(2, 1, protocol_version::v5));
    f.session->complete(f.handler.deliveries[0].token, true);
    f.handler.take_sent();
    f.feed(hex("62 02 00 01"));  // PUBREL frees the slot
    f.feed(publish_qos(1, 2, protocol_version::v5));
    CHECK(f.handler.deliveries.size() == 2);
    CHECK(!f.handler.closed);
}

TEST_CASE("keep-alive is re-armed by packets and expiry disconnects", "[mqtt][session]") {
    SECTION("v5 sends DISCONNECT 0x8D") {
        fixture f;
        f.connect(protocol_version::v5);
        f.handler.armed.clear();
        f.feed(hex("c0 00"));  // PINGREQ
        CHECK(to_hex(f.handler.take_sent()) == "d0 00");
        CHECK(f.handler.armed.at(timer_kind::keep_alive) == 90s);
        f.session->on_timer(timer_kind::keep_alive);
        CHECK(to_hex(f.handler.sent) == "e0 01 8d");
        CHECK(f.handler.closed == reason_code::keep_alive_timeout);
    }
    SECTION("3.1.1 just closes") {
        fixture f;
        f.connect(protocol_version::v3_1_1);
        f.session->on_timer(timer_kind::keep_alive);
        CHECK(f.handler.sent.empty());
        CHECK(f.handler.closed == reason_code::keep_alive_timeout);
    }
    SECTION("keep alive 0 arms nothing") {
        fixture f;
        bytes c = connect_v311;
        c[10] = 0;
        c[11] = 0;
        f.feed(c);
        CHECK(f.handler.armed.count(timer_kind::keep_alive) == 0);
    }
    SECTION("v5 server keep alive overrides the client's") {
        server_limits limits;
        limits.server_keep_alive = 20;
        fixture f(limits);
        f.feed(connect_v5);
        CHECK(f.handler.armed.at(timer_kind::keep_alive) == 30s);
        const auto ack = std::get<connack_packet>(parse_one(f.handler.sent, protocol_version::v5));
        CHECK(ack.props.server_keep_alive == 20);
    }
}

TEST_CASE("client DISCONNECT closes with success", "[mqtt][session]") {
    fixture f;
    f.connect(protocol_version::v3_1_1);
    f.feed(hex("e0 00"));
    CHECK(f.handler.closed == reason_code::success);
    CHECK(f.handler.close_calls == 1);
    CHECK(!f.session->connected());
    CHECK(f.handler.sent.empty());
}

TEST_CASE("MQTT 5.0 section 3.14.2.2.2: DISCONNECT may not raise a session expiry of 0",
          "[mqtt][session]") {
    fixture f;
    f.connect(protocol_version::v5);
    f.feed(hex("e0 07 00 05 11 00 00 00 0a"));  // normal, session expiry 10
    CHECK(to_hex(f.handler.sent) == "e0 01 82");
    CHECK(f.handler.closed == reason_code::protocol_error);
}

TEST_CASE("server disconnect(): v5 DISCONNECT with reason, 3.1.1 plain close", "[mqtt][session]") {
    fixture v5;
    v5.connect(protocol_version::v5);
    v5.session->disconnect(reason_code::server_shutting_down);
    CHECK(to_hex(v5.handler.sent) == "e0 01 8b");
    CHECK(v5.handler.closed == reason_code::server_shutting_down);
    v5.session->disconnect(reason_code::server_busy);
    CHECK(v5.handler.close_calls == 1);

    fixture v3;
    v3.connect(protocol_version::v3_1_1);
    v3.session->disconnect(reason_code::server_shutting_down);
    CHECK(v3.handler.sent.empty());
    CHECK(v3.handler.closed == reason_code::server_shutting_down);
}

TEST_CASE("on_bytes keeps an incomplete packet unconsumed", "[mqtt][session]") {
    fixture f;
    const bytes all = cat({connect_v311, publish_qos(1, 1, protocol_version::v3_1_1)});
    bytes pending;
    std::size_t total_consumed = 0;
    for (std::uint8_t b : all) {
        pending.push_back(b);
        const std::size_t n = f.session->on_bytes(pending);
        total_consumed += n;
        pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(n));
    }
    CHECK(total_consumed == all.size());
    CHECK(pending.empty());
    CHECK(f.handler.deliveries.size() == 1);
}

TEST_CASE("a packet above maximum_packet_size is refused from its fixed header",
          "[mqtt][session]") {
    server_limits limits;
    limits.maximum_packet_size = 1024;
    fixture f(limits);
    f.connect(protocol_version::v5);
    f.feed(hex("30 ff ff 03"));  // PUBLISH announcing 65535 bytes, none of them here yet
    CHECK(to_hex(f.handler.sent) == "e0 01 95");
    CHECK(f.handler.closed == reason_code::packet_too_large);
}

TEST_CASE("malformed packet after connect: v5 DISCONNECT 0x81, 3.1.1 close", "[mqtt][session]") {
    fixture v5;
    v5.connect(protocol_version::v5);
    v5.feed(hex("32 04 00 01 61 00 00"));  // fine header, but body ends inside packet id
    CHECK(v5.handler.closed.has_value());
    fixture v3;
    v3.connect(protocol_version::v3_1_1);
    v3.feed(hex("c0 01 00"));  // PINGREQ with a body
    CHECK(v3.handler.sent.empty());
    CHECK(v3.handler.closed == reason_code::malformed_packet);
}

TEST_CASE("SUBSCRIBE and UNSUBSCRIBE go to the hooks and are acknowledged", "[mqtt][session]") {
    fixture f;
    f.connect(protocol_version::v3_1_1);
    // SUBSCRIBE id 10: "a/+" QoS 1, "b/#" QoS 2
    f.feed(hex("82 0e 00 0a 00 03 61 2f 2b 01 00 03 62 2f 23 02"));
    REQUIRE(f.handler.subscriptions.size() == 1);
    CHECK(f.handler.subscriptions[0] == std::vector<std::string>{"a/+", "b/#"});
    CHECK(to_hex(f.handler.take_sent()) == "90 04 00 0a 01 02");
    // UNSUBSCRIBE id 11: "a/+"
    f.feed(hex("a2 07 00 0b 00 03 61 2f 2b"));
    REQUIRE(f.handler.unsubscriptions.size() == 1);
    CHECK(f.handler.unsubscriptions[0] == std::vector<std::string>{"a/+"});
    CHECK(to_hex(f.handler.sent) == "b0 02 00 0b");
}

TEST_CASE("unsupported wildcard and shared subscriptions are refused per entry",
          "[mqtt][session]") {
    server_limits limits;
    limits.wildcard_subscriptions = false;
    limits.shared_subscriptions = false;
    fixture f(limits);
    f.connect(protocol_version::v5);
    subscribe_packet s;
    s.packet_id = 1;
    s.entries = {{"a/+"}, {"$share/g/x"}, {"plain"}};
    f.feed(encode_bytes(s, protocol_version::v5));
    REQUIRE(f.handler.subscriptions.size() == 1);
    CHECK(f.handler.subscriptions[0] == std::vector<std::string>{"plain"});
    const auto ack = std::get<suback_packet>(parse_one(f.handler.sent, protocol_version::v5));
    CHECK(ack.reasons == std::vector<reason_code>{reason_code::wildcard_subscriptions_not_supported,
                                                  reason_code::shared_subscriptions_not_supported,
                                                  reason_code::success});
}

TEST_CASE("v5 topic aliases are resolved and checked", "[mqtt][session]") {
    fixture f;
    f.connect(protocol_version::v5);
    publish_packet p;
    p.topic = "city/pudong/air/1";
    p.props.topic_alias = 3;
    f.feed(encode_bytes(p, protocol_version::v5));
    p.topic = "";
    f.feed(encode_bytes(p, protocol_version::v5));
    REQUIRE(f.handler.deliveries.size() == 2);
    CHECK(f.handler.deliveries[1].topic == "city/pudong/air/1");

    SECTION("MQTT-3.3.2-9: an alias above the maximum disconnects with 0x94") {
        p.props.topic_alias = 65;
        f.feed(encode_bytes(p, protocol_version::v5));
        CHECK(to_hex(f.handler.sent) == "e0 01 94");
    }
    SECTION("an alias never set disconnects with a protocol error") {
        p.props.topic_alias = 4;
        f.feed(encode_bytes(p, protocol_version::v5));
        CHECK(to_hex(f.handler.sent) == "e0 01 82");
    }
}

TEST_CASE("after on_peer_closed nothing happens", "[mqtt][session]") {
    fixture f;
    f.connect(protocol_version::v3_1_1);
    f.session->on_peer_closed();
    CHECK(f.feed(publish_qos(0, 0, protocol_version::v3_1_1)) == 0);
    f.session->disconnect(reason_code::server_busy);
    CHECK(f.handler.close_calls == 0);
    CHECK(f.handler.deliveries.empty());
}

// Fuzz finding (mqtt_session_fuzz, crash-a5551dfb): a second v5 CONNECT with an unknown level
// produced DISCONNECT 0x84, a code DISCONNECT may not carry.
TEST_CASE("a second CONNECT with a bad level is a protocol error, not DISCONNECT 0x84",
          "[mqtt][session][regression]") {
    fixture f;
    f.connect(protocol_version::v5);
    bytes again = connect_v5;
    again[8] = 0x25;
    f.feed(again);
    CHECK(to_hex(f.handler.sent) == "e0 01 82");
    CHECK(f.handler.closed == reason_code::protocol_error);
}

TEST_CASE("reason codes a packet cannot carry are replaced", "[mqtt][session]") {
    SECTION("authenticate() answering session_taken_over gives CONNACK 0x80") {
        fixture f;
        f.handler.verdict = reason_code::session_taken_over;
        f.feed(connect_v5);
        CHECK(to_hex(f.handler.sent) == "20 03 00 80 00");
    }
    SECTION("subscribe() answering keep_alive_timeout gives SUBACK 0x80") {
        fixture f;
        f.connect(protocol_version::v5);
        f.handler.suback_answer = {reason_code::keep_alive_timeout};
        f.feed(hex("82 09 00 01 00 00 03 61 2f 62 00"));
        CHECK(to_hex(f.handler.sent) == "90 04 00 01 00 80");
    }
    SECTION("disconnect(unsupported_protocol_version) sends 0x82") {
        fixture f;
        f.connect(protocol_version::v5);
        f.session->disconnect(reason_code::unsupported_protocol_version);
        CHECK(to_hex(f.handler.sent) == "e0 01 82");
    }
}

TEST_CASE("v5 enhanced authentication is refused with CONNACK 0x8C", "[mqtt][session]") {
    fixture f;
    connect_packet c;
    c.version = protocol_version::v5;
    c.client_id = "x";
    c.props.authentication_method = "SCRAM-SHA-1";
    f.feed(encode_bytes(c, c.version));
    CHECK(to_hex(f.handler.sent) == "20 03 00 8c 00");
    CHECK(f.handler.closed == reason_code::bad_authentication_method);
    CHECK(f.handler.connects.empty());  // the hook is not asked
}

TEST_CASE("v5 maximum QoS is advertised and enforced with 0x9B", "[mqtt][session]") {
    server_limits limits;
    limits.maximum_qos = 1;
    fixture f(limits);
    f.feed(connect_v5);
    const auto ack =
        std::get<connack_packet>(parse_one(f.handler.take_sent(), protocol_version::v5));
    CHECK(ack.props.maximum_qos == 1);
    f.feed(publish_qos(1, 1, protocol_version::v5));
    CHECK(f.handler.deliveries.size() == 1);
    f.feed(publish_qos(2, 2, protocol_version::v5));
    CHECK(f.handler.deliveries.size() == 1);
    CHECK(to_hex(f.handler.sent) == "e0 01 9b");
}

TEST_CASE("v5 session expiry above the server's maximum is lowered in CONNACK", "[mqtt][session]") {
    fixture f;
    connect_packet c;
    c.version = protocol_version::v5;
    c.client_id = "x";
    c.props.session_expiry_interval = 3600;
    f.feed(encode_bytes(c, c.version));
    const auto ack = std::get<connack_packet>(parse_one(f.handler.sent, protocol_version::v5));
    CHECK(ack.props.session_expiry_interval == 0u);
    CHECK(!ack.session_present);
    f.handler.take_sent();
    // The client asked for 3600 at CONNECT, so a DISCONNECT may change it.
    f.feed(hex("e0 07 00 05 11 00 00 00 0a"));
    CHECK(f.handler.closed == reason_code::success);
}

TEST_CASE("MQTT-3.1.2-24 (5.0): packets above the client's maximum packet size are not sent",
          "[mqtt][session]") {
    fixture f;
    connect_packet c;
    c.version = protocol_version::v5;
    c.client_id = "x";
    c.props.maximum_packet_size = 20;
    f.feed(encode_bytes(c, c.version));
    CHECK(f.handler.take_sent().size() == 18);  // CONNACK fits
    subscribe_packet s;
    s.packet_id = 1;
    for (int i = 0; i < 20; ++i)
        s.entries.push_back({"a", qos::at_most_once, false, false, 0});
    f.feed(encode_bytes(s, protocol_version::v5));
    CHECK(f.handler.subscriptions.size() == 1);
    CHECK(f.handler.sent.empty());  // the 24-byte SUBACK is discarded
    f.feed(hex("c0 00"));
    CHECK(to_hex(f.handler.sent) == "d0 00");
}

TEST_CASE("topic alias maximum 0: no aliases advertised, any alias is invalid", "[mqtt][session]") {
    server_limits limits;
    limits.topic_alias_maximum = 0;
    fixture f(limits);
    f.feed(connect_v5);
    const auto ack =
        std::get<connack_packet>(parse_one(f.handler.take_sent(), protocol_version::v5));
    CHECK(!ack.props.topic_alias_maximum);
    f.feed(hex("30 09 00 03 61 2f 62 03 23 00 01"));
    CHECK(to_hex(f.handler.sent) == "e0 01 94");
}

TEST_CASE("v5 UNSUBACK carries one reason per filter", "[mqtt][session]") {
    fixture f;
    f.connect(protocol_version::v5);
    f.feed(hex("a2 0d 00 07 00 00 03 61 2f 62 00 03 63 2f 64"));
    CHECK(to_hex(f.handler.sent) == "b0 05 00 07 00 00 00");
    REQUIRE(f.handler.unsubscriptions.size() == 1);
    CHECK(f.handler.unsubscriptions[0] == std::vector<std::string>{"a/b", "c/d"});
}

TEST_CASE("AUTH after CONNECT is a protocol error", "[mqtt][session]") {
    fixture f;
    f.connect(protocol_version::v5);
    f.feed(hex("f0 00"));
    CHECK(to_hex(f.handler.sent) == "e0 01 82");
}

TEST_CASE("keep-alive is re-armed only once a whole packet arrived", "[mqtt][session]") {
    fixture f;
    f.connect(protocol_version::v3_1_1);
    f.handler.armed.clear();
    CHECK(f.feed(hex("32 09 00")) == 0);
    CHECK(f.handler.armed.count(timer_kind::keep_alive) == 0);
    CHECK(f.feed(publish_qos(0, 0, protocol_version::v3_1_1)) > 0);
    CHECK(f.handler.armed.count(timer_kind::keep_alive) == 1);
}

TEST_CASE("inflight() counts deliveries not yet completed", "[mqtt][session]") {
    fixture f;
    f.connect(protocol_version::v3_1_1);
    f.feed(cat({publish_qos(1, 1, protocol_version::v3_1_1),
                publish_qos(2, 2, protocol_version::v3_1_1),
                publish_qos(0, 0, protocol_version::v3_1_1)}));
    CHECK(f.session->inflight() == 2);
    f.session->complete(f.handler.deliveries[1].token, true);
    CHECK(f.session->inflight() == 1);
    CHECK(f.handler.sent.empty());  // PUBREC waits behind the PUBACK of id 1
}

TEST_CASE("a QoS 1 resend while in flight is delivered again: at least once", "[mqtt][session]") {
    fixture f;
    f.connect(protocol_version::v3_1_1);
    f.feed(publish_qos(1, 5, protocol_version::v3_1_1));
    f.feed(publish_qos(1, 5, protocol_version::v3_1_1, true));
    REQUIRE(f.handler.deliveries.size() == 2);
    f.session->complete(f.handler.deliveries[0].token, true);
    f.session->complete(f.handler.deliveries[1].token, true);
    CHECK(to_hex(f.handler.sent) == "40 02 00 05 40 02 00 05");
}

TEST_CASE("3.1.1 has no receive maximum: the session keeps accepting", "[mqtt][session]") {
    server_limits limits;
    limits.receive_maximum = 1;
    fixture f(limits);
    f.connect(protocol_version::v3_1_1);
    f.feed(publish_qos(1, 1, protocol_version::v3_1_1));
    f.feed(publish_qos(1, 2, protocol_version::v3_1_1));
    CHECK(f.handler.deliveries.size() == 2);
    CHECK(!f.handler.closed);
    CHECK(f.session->inflight() == 2);  // the caller's signal to stop reading
}

TEST_CASE("MQTT-3.2.2-12: a v5 will above the maximum QoS is refused with CONNACK 0x9B",
          "[mqtt][session]") {
    server_limits limits;
    limits.maximum_qos = 1;
    fixture f(limits);
    connect_packet c;
    c.version = protocol_version::v5;
    c.client_id = "x";
    c.will = will_message{"w", {}, qos::exactly_once, false, {}};
    f.feed(encode_bytes(c, c.version));
    CHECK(to_hex(f.handler.sent) == "20 03 00 9b 00");
    CHECK(f.handler.closed == reason_code::qos_not_supported);
}

namespace {
using packet_counts = std::map<std::pair<packet_direction, packet_type>, int>;
constexpr auto in = packet_direction::inbound;
constexpr auto out = packet_direction::outbound;
}  // namespace

TEST_CASE("on_packet() counts each packet parsed and each packet queued, once", "[mqtt][session]") {
    fixture f;
    f.feed(connect_v5);
    f.feed(cat({publish_qos(1, 1, protocol_version::v5), publish_qos(2, 2, protocol_version::v5),
                hex("c0 00")}));  // PUBLISH QoS 1, PUBLISH QoS 2, PINGREQ
    for (const auto& d : f.handler.deliveries)
        f.session->complete(d.token, true);
    f.feed(hex("62 02 00 02"));  // PUBREL 2
    f.feed(hex("e0 00"));        // DISCONNECT
    CHECK(f.handler.packets == packet_counts{{{in, packet_type::connect}, 1},
                                             {{out, packet_type::connack}, 1},
                                             {{in, packet_type::publish}, 2},
                                             {{out, packet_type::puback}, 1},
                                             {{out, packet_type::pubrec}, 1},
                                             {{in, packet_type::pingreq}, 1},
                                             {{out, packet_type::pingresp}, 1},
                                             {{in, packet_type::pubrel}, 1},
                                             {{out, packet_type::pubcomp}, 1},
                                             {{in, packet_type::disconnect}, 1}});
}

TEST_CASE("on_packet() counts a refused CONNECT and the CONNACK that refuses it",
          "[mqtt][session]") {
    fixture f;
    f.handler.verdict = reason_code::not_authorized;
    f.feed(connect_v311);
    CHECK(f.handler.packets ==
          packet_counts{{{in, packet_type::connect}, 1}, {{out, packet_type::connack}, 1}});
}

TEST_CASE("on_packet() skips a CONNECT the parser rejects but counts its CONNACK",
          "[mqtt][session]") {
    fixture f;
    bytes c = connect_v311;
    c[8] = 3;  // level 3
    f.feed(c);
    CHECK(f.handler.packets == packet_counts{{{out, packet_type::connack}, 1}});
}

TEST_CASE("on_packet() skips a malformed packet and counts the DISCONNECT it causes",
          "[mqtt][session]") {
    fixture f;
    f.connect(protocol_version::v5);
    f.handler.packets.clear();
    f.feed(hex("32 04 00 01 61 00 00"));  // body ends inside the packet id
    CHECK(f.handler.packets == packet_counts{{{out, packet_type::disconnect}, 1}});
}

TEST_CASE("on_packet() counts a packet the session then refuses", "[mqtt][session]") {
    fixture f;
    f.connect(protocol_version::v3_1_1);
    f.handler.packets.clear();
    f.feed(connect_v311);  // MQTT-3.1.0-2: a second CONNECT closes (3.1.1: nothing sent)
    CHECK(f.handler.closed == reason_code::protocol_error);
    CHECK(f.handler.packets == packet_counts{{{in, packet_type::connect}, 1}});
}

TEST_CASE("on_packet() skips a packet withheld above the client's maximum packet size",
          "[mqtt][session]") {
    fixture f;
    connect_packet c;
    c.version = protocol_version::v5;
    c.client_id = "dev1";
    c.props.maximum_packet_size = 16;  // the CONNACK (18 bytes) cannot be sent
    f.feed(encode_bytes(c, c.version));
    CHECK(f.handler.sent.empty());
    CHECK(f.handler.packets == packet_counts{{{in, packet_type::connect}, 1}});
}

// Asynchronous authentication: the hook answers authentication_pending (a password hash runs on
// another thread) and the caller answers later with complete_authentication().

TEST_CASE("pending authentication then success sends CONNACK on the answer", "[mqtt][session]") {
    SECTION("3.1.1") {
        fixture f;
        f.handler.verdict = authentication_pending;
        REQUIRE(f.feed(connect_v311) == connect_v311.size());
        CHECK(f.handler.sent.empty());
        CHECK(f.session->awaiting_authentication());
        CHECK(!f.session->connected());
        CHECK(f.handler.armed.count(timer_kind::connect_timeout) == 1);  // still running
        f.session->complete_authentication(reason_code::success);
        CHECK(f.handler.sent == connack_v311_accepted);
        CHECK(f.session->connected());
        CHECK(!f.session->awaiting_authentication());
        CHECK(f.handler.armed.count(timer_kind::connect_timeout) == 0);
        CHECK(f.handler.armed.at(timer_kind::keep_alive) == 90s);
        CHECK(!f.handler.closed);
    }
    SECTION("v5, with the CONNACK built from the CONNECT that was kept") {
        fixture f;
        f.handler.verdict = authentication_pending;
        REQUIRE(f.feed(connect_v5) == connect_v5.size());
        CHECK(f.handler.sent.empty());
        f.session->complete_authentication(reason_code::success);
        CHECK(to_hex(f.handler.sent) == to_hex(connack_v5_default));
    }
    SECTION("v5 empty client id: the assigned id is in the late CONNACK") {
        fixture f;
        f.handler.verdict = authentication_pending;
        connect_packet c;
        c.version = protocol_version::v5;
        REQUIRE(f.feed(encode_bytes(c, c.version)) > 0);
        f.session->complete_authentication(reason_code::success);
        const auto ack = std::get<connack_packet>(parse_one(f.handler.sent, protocol_version::v5));
        CHECK(ack.props.assigned_client_identifier == std::string(f.session->client_id()));
    }
    SECTION("a second answer is ignored") {
        fixture f;
        f.handler.verdict = authentication_pending;
        f.feed(connect_v311);
        f.session->complete_authentication(reason_code::success);
        f.handler.take_sent();
        f.session->complete_authentication(reason_code::not_authorized);
        CHECK(f.handler.sent.empty());
        CHECK(f.session->connected());
    }
}

TEST_CASE("pending authentication then refusal sends the refusing CONNACK and closes",
          "[mqtt][session]") {
    SECTION("3.1.1: bad user name or password is return code 4") {
        fixture f;
        f.handler.verdict = authentication_pending;
        f.feed(connect_v311);
        f.session->complete_authentication(reason_code::bad_user_name_or_password);
        CHECK(to_hex(f.handler.sent) == "20 02 00 04");
        CHECK(f.handler.closed == reason_code::bad_user_name_or_password);
        CHECK(f.handler.close_calls == 1);
    }
    SECTION("3.1.1: server busy (the verification queue is full) is return code 3") {
        fixture f;
        f.handler.verdict = authentication_pending;
        f.feed(connect_v311);
        f.session->complete_authentication(reason_code::server_busy);
        CHECK(to_hex(f.handler.sent) == "20 02 00 03");
    }
    SECTION("v5 sends the reason code: 0x8A banned (throttled)") {
        fixture f;
        f.handler.verdict = authentication_pending;
        f.feed(connect_v5);
        f.session->complete_authentication(reason_code::banned);
        CHECK(to_hex(f.handler.sent) == "20 03 00 8a 00");
        CHECK(f.handler.closed == reason_code::banned);
        CHECK(!f.session->connected());
        CHECK(f.feed(publish_qos(1, 1, protocol_version::v5)) == 0);
    }
}

TEST_CASE("packets sent right after a pending CONNECT are held until the answer",
          "[mqtt][session]") {
    for (auto v : {protocol_version::v3_1_1, protocol_version::v5}) {
        fixture f;
        f.handler.verdict = authentication_pending;
        const bytes& c = v == protocol_version::v5 ? connect_v5 : connect_v311;
        const bytes pub = publish_qos(1, 7, v);
        const bytes ping = hex("c0 00");  // PINGREQ
        bytes all = c;
        all.insert(all.end(), pub.begin(), pub.end());
        all.insert(all.end(), ping.begin(), ping.end());
        all.push_back(0x30);  // the first byte of the next PUBLISH: stays with the caller
        CHECK(f.feed(all) == all.size() - 1);
        CHECK(f.handler.deliveries.empty());
        CHECK(f.handler.sent.empty());
        CHECK(f.handler.packets[{packet_direction::inbound, packet_type::publish}] == 0);
        f.session->complete_authentication(reason_code::success);
        // CONNACK, then what the held packets caused, in order.
        REQUIRE(f.handler.deliveries.size() == 1);
        CHECK(f.handler.deliveries[0].packet_id == 7);
        const bytes& connack =
            v == protocol_version::v5 ? connack_v5_default : connack_v311_accepted;
        bytes expected = connack;
        expected.push_back(0xd0);  // PINGRESP
        expected.push_back(0x00);
        CHECK(to_hex(f.handler.sent) == to_hex(expected));
        f.handler.take_sent();
        f.session->complete(f.handler.deliveries[0].token, true);
        CHECK(to_hex(f.handler.sent) ==
              (v == protocol_version::v5 ? "40 02 00 07" : "40 02 00 07"));  // PUBACK id 7
    }
}

TEST_CASE("a refusal drops the packets held while authentication was pending", "[mqtt][session]") {
    fixture f;
    f.handler.verdict = authentication_pending;
    f.feed(connect_v5);
    const bytes pub = publish_qos(1, 7, protocol_version::v5);
    CHECK(f.feed(pub) == pub.size());
    f.session->complete_authentication(reason_code::not_authorized);
    CHECK(to_hex(f.handler.sent) == "20 03 00 87 00");
    CHECK(f.handler.deliveries.empty());
}

TEST_CASE("bytes held while authentication is pending are bounded", "[mqtt][session]") {
    server_limits limits;
    limits.maximum_held_while_authenticating = 64;
    fixture f(limits);
    f.handler.verdict = authentication_pending;
    f.feed(connect_v311);
    const bytes pub = publish_qos(1, 1, protocol_version::v3_1_1);  // 11 bytes
    for (int i = 0; i < 5; ++i)
        REQUIRE(f.feed(pub) == pub.size());  // 55 of 64
    CHECK(!f.handler.closed);
    CHECK(f.feed(pub) == 0);  // 66 > 64
    CHECK(f.handler.closed == reason_code::quota_exceeded);
    CHECK(f.handler.sent.empty());  // nothing before a CONNACK
    f.session->complete_authentication(reason_code::success);
    CHECK(f.handler.sent.empty());
    CHECK(f.handler.deliveries.empty());
}

TEST_CASE("a malformed packet while authentication is pending closes silently", "[mqtt][session]") {
    fixture f;
    f.handler.verdict = authentication_pending;
    f.feed(connect_v311);
    f.feed(hex("c0 01 00"));  // PINGREQ with a remaining length
    CHECK(f.handler.closed == reason_code::malformed_packet);
    CHECK(f.handler.sent.empty());
}

TEST_CASE("a session closed while authentication is pending ignores the answer",
          "[mqtt][session]") {
    SECTION("the peer closed") {
        fixture f;
        f.handler.verdict = authentication_pending;
        f.feed(connect_v5);
        f.session->on_peer_closed();
        f.session->complete_authentication(reason_code::success);
        CHECK(f.handler.sent.empty());
        CHECK(!f.handler.closed);  // nothing follows on_peer_closed
        CHECK(!f.session->connected());
    }
    SECTION("the server disconnects (shutdown): nothing is sent before a CONNACK") {
        fixture f;
        f.handler.verdict = authentication_pending;
        f.feed(connect_v5);
        f.session->disconnect(reason_code::server_shutting_down);
        CHECK(f.handler.sent.empty());
        CHECK(f.handler.closed == reason_code::server_shutting_down);
        f.session->complete_authentication(reason_code::success);
        CHECK(f.handler.sent.empty());
        CHECK(f.handler.close_calls == 1);
    }
}

TEST_CASE("the connect timeout keeps running while authentication is pending", "[mqtt][session]") {
    fixture f;
    f.handler.verdict = authentication_pending;
    f.feed(connect_v311);
    REQUIRE(f.handler.armed.at(timer_kind::connect_timeout) == 10s);
    f.session->on_timer(timer_kind::connect_timeout);
    CHECK(f.handler.closed == reason_code::maximum_connect_time);
    CHECK(f.handler.sent.empty());
    f.session->complete_authentication(reason_code::success);
    CHECK(f.handler.sent.empty());
    CHECK(f.handler.close_calls == 1);
    CHECK(!f.session->connected());
}
