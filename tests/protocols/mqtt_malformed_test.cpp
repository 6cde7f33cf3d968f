// The malformed-packet suite: each case is named after the normative statement it checks and
// asserts both the parser's verdict and the session's required reaction (v5: CONNACK or
// DISCONNECT with the reason code, then close; 3.1.1: close without a reply).
#include <catch2/catch.hpp>

#include "tests/protocols/mqtt_test_support.hpp"

using namespace citygate::mqtt;
using namespace citygate::mqtt::test;

namespace {

constexpr auto v3 = protocol_version::v3_1_1;
constexpr auto v5 = protocol_version::v5;

bytes with_length(std::uint8_t first, const bytes& body) {
    bytes out{first};
    std::uint32_t n = static_cast<std::uint32_t>(body.size());
    do {
        std::uint8_t b = n & 0x7F;
        n >>= 7;
        if (n) b |= 0x80;
        out.push_back(b);
    } while (n);
    out.insert(out.end(), body.begin(), body.end());
    return out;
}

// CONNECT with the given flags and client id bytes (v5: with the given property block).
bytes connect311(std::uint8_t flags, const bytes& client_id = str("dev1")) {
    return with_length(0x10, cat({hex("00 04 4d 51 54 54 04"),
                                  {flags},
                                  hex("00 3c"),
                                  {0, static_cast<std::uint8_t>(client_id.size())},
                                  client_id}));
}
bytes connect5(std::uint8_t flags, const bytes& props = hex("00"),
               const bytes& client_id = str("dev1")) {
    return with_length(0x10, cat({hex("00 04 4d 51 54 54 05"),
                                  {flags},
                                  hex("00 3c"),
                                  props,
                                  {0, static_cast<std::uint8_t>(client_id.size())},
                                  client_id}));
}

struct session_under_test {
    recording_handler handler;
    server_limits limits;
    server_session session{handler, limits};
};

// A CONNECT that must be refused: parser error `e`; v5 answers CONNACK `reason`, 3.1.1 closes.
void check_connect_refused(protocol_version v, const bytes& packet, errc e, reason_code reason) {
    CHECK(parse_error(packet, v) == e);
    CHECK(to_reason_code(e) == reason);
    session_under_test s;
    s.session.start();
    s.session.on_bytes(packet);
    if (v == v5) {
        CHECK(to_hex(s.handler.sent) ==
              to_hex(bytes{0x20, 0x03, 0x00, static_cast<std::uint8_t>(reason), 0x00}));
    } else {
        CHECK(s.handler.sent.empty());
    }
    CHECK(s.handler.closed == reason);
    CHECK(!s.session.connected());
}

// A packet after a good CONNECT that must end the connection. `e` is the parser's verdict, or
// errc{} where the packet is well-formed and the session itself must object.
void check_disconnect(protocol_version v, const bytes& packet, errc e, reason_code reason) {
    CHECK(parse_error(packet, v) == e);
    if (e != errc{}) CHECK(to_reason_code(e) == reason);
    session_under_test s;
    s.session.start();
    connect_packet c;
    c.version = v;
    c.client_id = "dev1";
    s.session.on_bytes(encode_bytes(c, v));
    REQUIRE(s.session.connected());
    s.handler.take_sent();
    s.session.on_bytes(packet);
    if (v == v5) {
        CHECK(to_hex(s.handler.sent) ==
              to_hex(bytes{0xe0, 0x01, static_cast<std::uint8_t>(reason)}));
    } else {
        CHECK(s.handler.sent.empty());
    }
    CHECK(s.handler.closed == reason);
    CHECK(s.handler.deliveries.empty());
}

}  // namespace

// --- Fixed header and encoding rules ---------------------------------------------------------

TEST_CASE("MQTT-2.2.2-2 (3.1.1): PUBACK with flag bits set is malformed", "[mqtt][malformed]") {
    check_disconnect(v3, hex("41 02 00 01"), errc::invalid_fixed_header_flags,
                     reason_code::malformed_packet);
}

TEST_CASE("MQTT-2.1.3-1 (5.0): PINGREQ with a reserved flag set is malformed",
          "[mqtt][malformed]") {
    check_disconnect(v5, hex("c1 00"), errc::invalid_fixed_header_flags,
                     reason_code::malformed_packet);
}

TEST_CASE("MQTT-1.5.5-1 (5.0): a remaining length not minimally encoded is malformed",
          "[mqtt][malformed]") {
    check_disconnect(v5, hex("c0 80 00"), errc::malformed_variable_byte_integer,
                     reason_code::malformed_packet);
}

TEST_CASE("3.1.1 section 2.2.3: a remaining length of five bytes is malformed",
          "[mqtt][malformed]") {
    check_disconnect(v3, hex("30 ff ff ff ff 7f"), errc::malformed_variable_byte_integer,
                     reason_code::malformed_packet);
}

TEST_CASE("3.1.1 section 2.2.1: packet type 0 is reserved", "[mqtt][malformed]") {
    check_disconnect(v3, hex("00 00"), errc::invalid_packet_type, reason_code::malformed_packet);
}

TEST_CASE("3.1.1 section 2.2.1: packet type 15 (AUTH) is reserved in 3.1.1", "[mqtt][malformed]") {
    check_disconnect(v3, hex("f0 00"), errc::invalid_packet_type, reason_code::malformed_packet);
}

TEST_CASE("3.1.1 section 3.12.1: a PINGREQ with a body is malformed", "[mqtt][malformed]") {
    check_disconnect(v3, hex("c0 01 00"), errc::trailing_bytes, reason_code::malformed_packet);
}

TEST_CASE("MQTT-4.13.1-1 (5.0): a field running past the packet is malformed, DISCONNECT 0x81",
          "[mqtt][malformed]") {
    check_disconnect(v5, hex("30 03 00 05 61"), errc::truncated, reason_code::malformed_packet);
}

TEST_CASE("MQTT-3.2.2-15 (5.0): a packet above the server's maximum packet size gets 0x95",
          "[mqtt][malformed]") {
    check_disconnect(v5, hex("30 ff ff 7f"), errc::packet_too_large, reason_code::packet_too_large);
}

// --- CONNECT ---------------------------------------------------------------------------------

TEST_CASE("MQTT-3.1.2-1 (3.1.1): a protocol name other than MQTT is closed", "[mqtt][malformed]") {
    bytes c = connect311(0x02);
    c[7] = 's';  // "MQTs"
    check_connect_refused(v3, c, errc::invalid_protocol_name, reason_code::malformed_packet);
}

TEST_CASE("MQTT-3.1.2-2 (3.1.1): level 3 gets CONNACK return code 1 and a close",
          "[mqtt][malformed]") {
    bytes c = connect311(0x02);
    c[8] = 3;
    CHECK(parse_error(c, v3) == errc::unsupported_protocol_version);
    session_under_test s;
    s.session.on_bytes(c);
    CHECK(to_hex(s.handler.sent) == "20 02 00 01");
    CHECK(s.handler.closed == reason_code::unsupported_protocol_version);
}

TEST_CASE("MQTT-3.1.2-3 (3.1.1): CONNECT reserved flag set", "[mqtt][malformed]") {
    check_connect_refused(v3, connect311(0x03), errc::reserved_bit_set,
                          reason_code::malformed_packet);
}

TEST_CASE("MQTT-3.1.2-3 (5.0): CONNECT reserved flag set gets CONNACK 0x81", "[mqtt][malformed]") {
    check_connect_refused(v5, connect5(0x03), errc::reserved_bit_set,
                          reason_code::malformed_packet);
}

TEST_CASE("MQTT-3.1.2-13 (3.1.1): will QoS without the will flag", "[mqtt][malformed]") {
    check_connect_refused(v3, connect311(0x0a), errc::invalid_will_flags,
                          reason_code::malformed_packet);
}

TEST_CASE("MQTT-3.1.2-14 (3.1.1): will QoS 3", "[mqtt][malformed]") {
    check_connect_refused(v3, connect311(0x1e), errc::invalid_will_flags,
                          reason_code::malformed_packet);
}

TEST_CASE("MQTT-3.1.2-15 (3.1.1): will retain without the will flag", "[mqtt][malformed]") {
    check_connect_refused(v3, connect311(0x22), errc::invalid_will_flags,
                          reason_code::malformed_packet);
}

TEST_CASE("MQTT-3.1.2-22 (3.1.1): password flag without user name flag", "[mqtt][malformed]") {
    check_connect_refused(v3, connect311(0x42), errc::password_without_username,
                          reason_code::malformed_packet);
}

TEST_CASE("MQTT-3.1.2-11 (5.0): will QoS without the will flag gets CONNACK 0x81",
          "[mqtt][malformed]") {
    check_connect_refused(v5, connect5(0x0a), errc::invalid_will_flags,
                          reason_code::malformed_packet);
}

TEST_CASE("MQTT-3.1.2-12 (5.0): will QoS 3 gets CONNACK 0x81", "[mqtt][malformed]") {
    check_connect_refused(v5, connect5(0x1e), errc::invalid_will_flags,
                          reason_code::malformed_packet);
}

TEST_CASE("MQTT-3.1.2-13 (5.0): will retain without the will flag gets CONNACK 0x81",
          "[mqtt][malformed]") {
    check_connect_refused(v5, connect5(0x22), errc::invalid_will_flags,
                          reason_code::malformed_packet);
}

TEST_CASE("MQTT-3.1.3-4 (3.1.1): a client id that is not UTF-8", "[mqtt][malformed]") {
    check_connect_refused(v3, connect311(0x02, hex("64 65 ff 31")), errc::malformed_utf8,
                          reason_code::malformed_packet);
}

TEST_CASE("MQTT-1.5.3-2 (3.1.1): U+0000 in the client id", "[mqtt][malformed]") {
    check_connect_refused(v3, connect311(0x02, hex("64 65 00 31")), errc::malformed_utf8,
                          reason_code::malformed_packet);
}

TEST_CASE("MQTT-1.5.4-1 (5.0): a surrogate (U+D800) in the client id gets CONNACK 0x81",
          "[mqtt][malformed]") {
    check_connect_refused(v5, connect5(0x02, hex("00"), hex("64 ed a0 80")), errc::malformed_utf8,
                          reason_code::malformed_packet);
}

TEST_CASE("MQTT-3.1.3-11 (5.0): a will topic that is not UTF-8 gets CONNACK 0x81",
          "[mqtt][malformed]") {
    // will flag; will properties empty; will topic c0 af (overlong '/'); will payload empty
    bytes c = with_length(0x10, hex("00 04 4d 51 54 54 05 06 00 3c 00 00 01 61"
                                    "00 00 02 c0 af 00 00"));
    check_connect_refused(v5, c, errc::malformed_utf8, reason_code::malformed_packet);
}

TEST_CASE("MQTT 5.0 section 3.1.2.11.2: session expiry interval twice gets CONNACK 0x82",
          "[mqtt][malformed]") {
    check_connect_refused(v5, connect5(0x02, hex("0a 11 00 00 00 01 11 00 00 00 02")),
                          errc::duplicate_property, reason_code::protocol_error);
}

TEST_CASE("MQTT 5.0 section 3.1.2.11.3: receive maximum 0 gets CONNACK 0x82", "[mqtt][malformed]") {
    check_connect_refused(v5, connect5(0x02, hex("03 21 00 00")), errc::invalid_property_value,
                          reason_code::protocol_error);
}

TEST_CASE("MQTT 5.0 section 2.2.2.2: a property not valid for CONNECT gets CONNACK 0x81",
          "[mqtt][malformed]") {
    check_connect_refused(v5, connect5(0x02, hex("03 23 00 01")), errc::property_not_allowed,
                          reason_code::malformed_packet);
}

TEST_CASE("MQTT 5.0 section 2.2.2.2: an unknown property identifier gets CONNACK 0x81",
          "[mqtt][malformed]") {
    check_connect_refused(v5, connect5(0x02, hex("02 7f 00")), errc::property_not_allowed,
                          reason_code::malformed_packet);
}

// --- PUBLISH ---------------------------------------------------------------------------------

TEST_CASE("MQTT-3.3.1-4 (3.1.1): PUBLISH with QoS 3", "[mqtt][malformed]") {
    check_disconnect(v3, hex("36 07 00 03 61 2f 62 00 01"), errc::invalid_qos,
                     reason_code::malformed_packet);
}

TEST_CASE("MQTT-3.3.1-4 (5.0): PUBLISH with QoS 3 gets DISCONNECT 0x81", "[mqtt][malformed]") {
    check_disconnect(v5, hex("36 08 00 03 61 2f 62 00 01 00"), errc::invalid_qos,
                     reason_code::malformed_packet);
}

TEST_CASE("MQTT-3.3.1-2 (3.1.1): DUP set on a QoS 0 PUBLISH", "[mqtt][malformed]") {
    check_disconnect(v3, hex("38 05 00 03 61 2f 62"), errc::invalid_fixed_header_flags,
                     reason_code::malformed_packet);
}

TEST_CASE("MQTT-3.3.2-2 (3.1.1): '+' in a topic name", "[mqtt][malformed]") {
    check_disconnect(v3, hex("30 05 00 03 61 2f 2b"), errc::invalid_topic_name,
                     reason_code::topic_name_invalid);
}

TEST_CASE("MQTT-3.3.2-2 (5.0): '#' in a topic name gets DISCONNECT 0x90", "[mqtt][malformed]") {
    check_disconnect(v5, hex("30 06 00 03 61 2f 23 00"), errc::invalid_topic_name,
                     reason_code::topic_name_invalid);
}

TEST_CASE("MQTT-2.3.1-1 (3.1.1): QoS 1 PUBLISH with packet id 0", "[mqtt][malformed]") {
    check_disconnect(v3, hex("32 07 00 03 61 2f 62 00 00"), errc::invalid_packet_id,
                     reason_code::malformed_packet);
}

TEST_CASE("MQTT-2.2.1-3 (5.0): QoS 2 PUBLISH with packet id 0 gets DISCONNECT 0x81",
          "[mqtt][malformed]") {
    check_disconnect(v5, hex("34 08 00 03 61 2f 62 00 00 00"), errc::invalid_packet_id,
                     reason_code::malformed_packet);
}

TEST_CASE("MQTT-4.7.3-1 (3.1.1): an empty topic name", "[mqtt][malformed]") {
    check_disconnect(v3, hex("30 02 00 00"), errc::invalid_topic_name,
                     reason_code::topic_name_invalid);
}

TEST_CASE("MQTT-1.5.3-1 (3.1.1): an overlong UTF-8 form in a topic", "[mqtt][malformed]") {
    check_disconnect(v3, hex("30 04 00 02 c0 af"), errc::malformed_utf8,
                     reason_code::malformed_packet);
}

TEST_CASE("MQTT-1.5.4-1 (5.0): a surrogate in a topic gets DISCONNECT 0x81", "[mqtt][malformed]") {
    check_disconnect(v5, hex("30 06 00 03 ed a0 80 00"), errc::malformed_utf8,
                     reason_code::malformed_packet);
}

TEST_CASE("MQTT-1.5.4-2 (5.0): U+0000 in a topic gets DISCONNECT 0x81", "[mqtt][malformed]") {
    check_disconnect(v5, hex("30 06 00 03 61 00 62 00"), errc::malformed_utf8,
                     reason_code::malformed_packet);
}

TEST_CASE("MQTT-3.3.2-8 (5.0): topic alias 0 gets DISCONNECT 0x94", "[mqtt][malformed]") {
    check_disconnect(v5, hex("30 09 00 03 61 2f 62 03 23 00 00"), errc{},
                     reason_code::topic_alias_invalid);
}

TEST_CASE("MQTT-3.3.2-9 (5.0): topic alias above the maximum gets DISCONNECT 0x94",
          "[mqtt][malformed]") {
    check_disconnect(v5, hex("30 09 00 03 61 2f 62 03 23 00 41"), errc{},
                     reason_code::topic_alias_invalid);
}

TEST_CASE("MQTT-3.3.4-6 (5.0): a client PUBLISH with a subscription identifier gets 0x82",
          "[mqtt][malformed]") {
    check_disconnect(v5, hex("30 08 00 03 61 2f 62 02 0b 01"), errc{}, reason_code::protocol_error);
}

TEST_CASE("MQTT-3.3.2-14 (5.0): a response topic with a wildcard gets DISCONNECT 0x82",
          "[mqtt][malformed]") {
    check_disconnect(v5, hex("30 0c 00 03 61 2f 62 06 08 00 03 72 2f 23"),
                     errc::invalid_property_value, reason_code::protocol_error);
}

TEST_CASE("MQTT 5.0 section 3.3.2.3.2: payload format indicator 2 gets DISCONNECT 0x82",
          "[mqtt][malformed]") {
    check_disconnect(v5, hex("30 08 00 03 61 2f 62 02 01 02"), errc::invalid_property_value,
                     reason_code::protocol_error);
}

TEST_CASE("MQTT 5.0 section 3.3.2.3.3: message expiry interval twice gets DISCONNECT 0x82",
          "[mqtt][malformed]") {
    check_disconnect(v5, hex("30 10 00 03 61 2f 62 0a 02 00 00 00 01 02 00 00 00 02"),
                     errc::duplicate_property, reason_code::protocol_error);
}

TEST_CASE("MQTT 5.0 section 2.2.2.2: session expiry in a PUBLISH gets DISCONNECT 0x81",
          "[mqtt][malformed]") {
    check_disconnect(v5, hex("30 0b 00 03 61 2f 62 05 11 00 00 00 01"), errc::property_not_allowed,
                     reason_code::malformed_packet);
}

TEST_CASE("MQTT-3.3.2-2 (5.0): empty topic without a topic alias gets DISCONNECT 0x90",
          "[mqtt][malformed]") {
    check_disconnect(v5, hex("30 03 00 00 00"), errc::invalid_topic_name,
                     reason_code::topic_name_invalid);
}

// --- Acknowledgements, DISCONNECT ------------------------------------------------------------

TEST_CASE("MQTT-3.6.1-1 (3.1.1): PUBREL with flags 0000", "[mqtt][malformed]") {
    check_disconnect(v3, hex("60 02 00 01"), errc::invalid_fixed_header_flags,
                     reason_code::malformed_packet);
}

TEST_CASE("MQTT-3.6.1-1 (5.0): PUBREL with flags 0000 gets DISCONNECT 0x81", "[mqtt][malformed]") {
    check_disconnect(v5, hex("60 02 00 01"), errc::invalid_fixed_header_flags,
                     reason_code::malformed_packet);
}

TEST_CASE("MQTT-3.4.2-1 (5.0): PUBACK with a reason code not in its table gets 0x82",
          "[mqtt][malformed]") {
    check_disconnect(v5, hex("40 03 00 01 05"), errc::invalid_reason_code,
                     reason_code::protocol_error);
}

TEST_CASE("MQTT-3.14.2-1 (5.0): DISCONNECT with a reason code not in its table gets 0x82",
          "[mqtt][malformed]") {
    check_disconnect(v5, hex("e0 01 05"), errc::invalid_reason_code, reason_code::protocol_error);
}

TEST_CASE("MQTT-3.1.0-2 (3.1.1): a second CONNECT is a protocol violation", "[mqtt][malformed]") {
    check_disconnect(v3, connect311(0x02), errc{}, reason_code::protocol_error);
}

// --- SUBSCRIBE, UNSUBSCRIBE ------------------------------------------------------------------

TEST_CASE("MQTT-3.8.1-1 (3.1.1): SUBSCRIBE with flags 0000", "[mqtt][malformed]") {
    check_disconnect(v3, hex("80 08 00 01 00 03 61 2f 62 00"), errc::invalid_fixed_header_flags,
                     reason_code::malformed_packet);
}

TEST_CASE("MQTT-3.8.3-3 (3.1.1): SUBSCRIBE without a topic filter", "[mqtt][malformed]") {
    check_disconnect(v3, hex("82 02 00 01"), errc::empty_topic_filter_list,
                     reason_code::protocol_error);
}

TEST_CASE("MQTT-3.8.3-2 (5.0): SUBSCRIBE without a topic filter gets DISCONNECT 0x82",
          "[mqtt][malformed]") {
    check_disconnect(v5, hex("82 03 00 01 00"), errc::empty_topic_filter_list,
                     reason_code::protocol_error);
}

TEST_CASE("MQTT-3-8.3-4 (3.1.1): SUBSCRIBE with reserved option bits set", "[mqtt][malformed]") {
    check_disconnect(v3, hex("82 08 00 01 00 03 61 2f 62 04"), errc::reserved_bit_set,
                     reason_code::malformed_packet);
}

TEST_CASE("MQTT-3-8.3-4 (3.1.1): SUBSCRIBE requesting QoS 3", "[mqtt][malformed]") {
    check_disconnect(v3, hex("82 08 00 01 00 03 61 2f 62 03"), errc::invalid_qos,
                     reason_code::malformed_packet);
}

TEST_CASE("MQTT-3.8.3-5 (5.0): SUBSCRIBE option bits 6-7 set gets DISCONNECT 0x81",
          "[mqtt][malformed]") {
    check_disconnect(v5, hex("82 09 00 01 00 00 03 61 2f 62 40"), errc::reserved_bit_set,
                     reason_code::malformed_packet);
}

TEST_CASE("MQTT-3.8.3-4 (5.0): no local on a shared subscription gets DISCONNECT 0x82",
          "[mqtt][malformed]") {
    check_disconnect(v5, hex("82 10 00 01 00 00 0a 24 73 68 61 72 65 2f 67 2f 61 04"),
                     errc::shared_subscription_no_local, reason_code::protocol_error);
}

TEST_CASE("MQTT 5.0 section 3.8.3.1: retain handling 3 gets DISCONNECT 0x82", "[mqtt][malformed]") {
    check_disconnect(v5, hex("82 09 00 01 00 00 03 61 2f 62 30"), errc::invalid_retain_handling,
                     reason_code::protocol_error);
}

TEST_CASE("MQTT 5.0 section 3.8.2.1.2: two subscription identifiers get DISCONNECT 0x82",
          "[mqtt][malformed]") {
    check_disconnect(v5, hex("82 0d 00 01 04 0b 01 0b 02 00 03 61 2f 62 00"),
                     errc::duplicate_property, reason_code::protocol_error);
}

TEST_CASE("MQTT-4.7.1-2 (3.1.1): '#' that is not the last level", "[mqtt][malformed]") {
    check_disconnect(v3, hex("82 0a 00 01 00 05 61 2f 23 2f 62 00"), errc::invalid_topic_filter,
                     reason_code::topic_filter_invalid);
}

TEST_CASE("MQTT-4.7.1-3 (3.1.1): '+' not occupying a whole level", "[mqtt][malformed]") {
    check_disconnect(v3, hex("82 07 00 01 00 02 61 2b 00"), errc::invalid_topic_filter,
                     reason_code::topic_filter_invalid);
}

TEST_CASE("MQTT-4.7.1-1 (5.0): '#' not after a separator gets DISCONNECT 0x8F",
          "[mqtt][malformed]") {
    check_disconnect(v5, hex("82 0a 00 01 00 00 04 61 2f 62 23 00"), errc::invalid_topic_filter,
                     reason_code::topic_filter_invalid);
}

TEST_CASE("MQTT-4.8.2-1 (5.0): a shared subscription with an empty share name gets 0x8F",
          "[mqtt][malformed]") {
    check_disconnect(v5, hex("82 0f 00 01 00 00 09 24 73 68 61 72 65 2f 2f 61 00"),
                     errc::invalid_topic_filter, reason_code::topic_filter_invalid);
}

TEST_CASE("MQTT-4.8.2-2 (5.0): a share name with a wildcard gets DISCONNECT 0x8F",
          "[mqtt][malformed]") {
    check_disconnect(v5, hex("82 11 00 01 00 00 0b 24 73 68 61 72 65 2f 67 2b 2f 61 00"),
                     errc::invalid_topic_filter, reason_code::topic_filter_invalid);
}

TEST_CASE("MQTT-3.8.3-1 (3.1.1): a topic filter that is not UTF-8", "[mqtt][malformed]") {
    check_disconnect(v3, hex("82 07 00 01 00 02 61 ff 00"), errc::malformed_utf8,
                     reason_code::malformed_packet);
}

TEST_CASE("MQTT-2.3.1-1 (3.1.1): SUBSCRIBE with packet id 0", "[mqtt][malformed]") {
    check_disconnect(v3, hex("82 08 00 00 00 03 61 2f 62 00"), errc::invalid_packet_id,
                     reason_code::malformed_packet);
}

TEST_CASE("MQTT-3.10.1-1 (3.1.1): UNSUBSCRIBE with flags 0000", "[mqtt][malformed]") {
    check_disconnect(v3, hex("a0 07 00 01 00 03 61 2f 62"), errc::invalid_fixed_header_flags,
                     reason_code::malformed_packet);
}

TEST_CASE("MQTT-3.10.3-2 (3.1.1): UNSUBSCRIBE without a topic filter", "[mqtt][malformed]") {
    check_disconnect(v3, hex("a2 02 00 01"), errc::empty_topic_filter_list,
                     reason_code::protocol_error);
}

TEST_CASE("MQTT-3.10.3-1 (5.0): UNSUBSCRIBE filter with U+0000 gets DISCONNECT 0x81",
          "[mqtt][malformed]") {
    check_disconnect(v5, hex("a2 08 00 01 00 00 03 61 00 62"), errc::malformed_utf8,
                     reason_code::malformed_packet);
}

// --- Client side -----------------------------------------------------------------------------

TEST_CASE("MQTT-3.2.2-1 (5.0): CONNACK reserved acknowledge flags are malformed",
          "[mqtt][malformed]") {
    CHECK(parse_error(hex("20 03 02 00 00"), v5) == errc::reserved_bit_set);
}

TEST_CASE("3.1.1 section 3.2.2.3: CONNACK return code 6 is malformed", "[mqtt][malformed]") {
    CHECK(parse_error(hex("20 02 00 06"), v3) == errc::invalid_reason_code);
}
