// Byte-exact codec vectors for every MQTT packet type in 3.1.1 and 5.0, one comment per field:
// each vector is encoded from the model, parsed back to the same fields, and re-encoded.
#include <catch2/catch.hpp>
#include <list>

#include "tests/protocols/mqtt_test_support.hpp"

using namespace citygate::mqtt;
using namespace citygate::mqtt::test;

namespace {

constexpr auto v3 = protocol_version::v3_1_1;
constexpr auto v5 = protocol_version::v5;

const bytes payload_gone = str("gone");
const bytes payload_secret = str("secret");
const bytes payload_by = str("by");
const bytes payload_pwd = str("pwd");
const bytes payload_hello = str("hello");
const bytes payload_hi = str("hi");
const bytes payload_x = str("x");
const bytes payload_y = str("y");
const bytes payload_json = str("{}");
const bytes correlation = hex("01 02");
const bytes auth_data = hex("ff");

// Encodes `p`, compares with `expected`, parses `expected` and returns the parsed packet after
// checking that it re-encodes to the same bytes.
template <typename Packet>
Packet check_vector(const Packet& p, protocol_version v, const bytes& vector) {
    // The parsed packet views its input: keep the bytes for the whole test run.
    static std::list<bytes> keep;
    const bytes& expected = keep.emplace_back(vector);
    CHECK(to_hex(encode_bytes(p, v)) == to_hex(expected));
    packet parsed = parse_one(expected, v);
    REQUIRE(std::holds_alternative<Packet>(parsed));
    CHECK(to_hex(encode_bytes(std::get<Packet>(parsed), v)) == to_hex(expected));
    return std::get<Packet>(parsed);
}

template <typename Ack>
Ack ack(std::uint16_t id, reason_code reason = reason_code::success) {
    Ack a;
    a.packet_id = id;
    a.reason = reason;
    return a;
}

subscription sub(std::string_view filter, qos q, bool no_local = false, bool rap = false,
                 std::uint8_t retain_handling = 0) {
    subscription s;
    s.filter = filter;
    s.max_qos = q;
    s.no_local = no_local;
    s.retain_as_published = rap;
    s.retain_handling = retain_handling;
    return s;
}

std::string text(bytes_view b) {
    return std::string(b.begin(), b.end());
}

}  // namespace

TEST_CASE("3.1.1 CONNECT with will, user name and password", "[mqtt][codec][vectors]") {
    connect_packet c;
    c.version = v3;
    c.clean_start = true;
    c.keep_alive_s = 60;
    c.client_id = "id";
    c.will = will_message{"w/top", payload_gone, qos::at_least_once, true, {}};
    c.username = "alice";
    c.password = bytes_view(payload_secret);
    const bytes expected =
        hex("10 2a"                 // CONNECT, remaining length 42
            "00 04 4d 51 54 54"     // protocol name "MQTT"
            "04"                    // protocol level 4
            "ee"                    // flags: user, password, will retain, will QoS 1, will, clean
            "00 3c"                 // keep alive 60 s
            "00 02 69 64"           // client id "id"
            "00 05 77 2f 74 6f 70"  // will topic "w/top"
            "00 04 67 6f 6e 65"     // will payload "gone"
            "00 05 61 6c 69 63 65"  // user name "alice"
            "00 06 73 65 63 72 65 74"  // password "secret"
        );
    const auto parsed = check_vector(c, v3, expected);
    CHECK(parsed.version == v3);
    CHECK(parsed.clean_start);
    CHECK(parsed.keep_alive_s == 60);
    CHECK(parsed.client_id == "id");
    REQUIRE(parsed.will);
    CHECK(parsed.will->topic == "w/top");
    CHECK(text(parsed.will->payload) == "gone");
    CHECK(parsed.will->qos == qos::at_least_once);
    CHECK(parsed.will->retain);
    CHECK(parsed.username == "alice");
    REQUIRE(parsed.password);
    CHECK(text(*parsed.password) == "secret");
}

TEST_CASE("3.1.1 CONNACK", "[mqtt][codec][vectors]") {
    connack_packet a;
    a.session_present = true;
    auto parsed = check_vector(a, v3,
                               hex("20 02"  // CONNACK, remaining length 2
                                   "01"     // session present
                                   "00"     // return code 0: accepted
                                   ));
    CHECK(parsed.session_present);
    CHECK(parsed.reason == reason_code::success);
    a.session_present = false;
    a.reason = reason_code::bad_user_name_or_password;
    parsed = check_vector(a, v3,
                          hex("20 02"  // CONNACK, remaining length 2
                              "00"     // no session
                              "04"     // return code 4: bad user name or password
                              ));
    CHECK(parsed.reason == reason_code::bad_user_name_or_password);
}

TEST_CASE("3.1.1 PUBLISH at each QoS", "[mqtt][codec][vectors]") {
    publish_packet p;
    p.topic = "a/b";
    p.payload = payload_hello;
    auto parsed = check_vector(p, v3,
                               hex("30 0a"           // PUBLISH QoS 0, remaining length 10
                                   "00 03 61 2f 62"  // topic "a/b"
                                   "68 65 6c 6c 6f"  // payload "hello"
                                   ));
    CHECK(parsed.topic == "a/b");
    CHECK(text(parsed.payload) == "hello");
    CHECK(parsed.packet_id == 0);

    p.qos = qos::at_least_once;
    p.dup = true;
    p.retain = true;
    p.packet_id = 1;
    p.payload = payload_hi;
    parsed = check_vector(p, v3,
                          hex("3b 09"           // PUBLISH DUP, QoS 1, RETAIN; length 9
                              "00 03 61 2f 62"  // topic "a/b"
                              "00 01"           // packet id 1
                              "68 69"           // payload "hi"
                              ));
    CHECK(parsed.dup);
    CHECK(parsed.retain);
    CHECK(parsed.qos == qos::at_least_once);
    CHECK(parsed.packet_id == 1);

    p.qos = qos::exactly_once;
    p.dup = false;
    p.retain = false;
    p.packet_id = 0xBEEF;
    parsed = check_vector(p, v3,
                          hex("34 09"           // PUBLISH QoS 2, remaining length 9
                              "00 03 61 2f 62"  // topic "a/b"
                              "be ef"           // packet id 48879
                              "68 69"           // payload "hi"
                              ));
    CHECK(parsed.qos == qos::exactly_once);
    CHECK(parsed.packet_id == 0xBEEF);
}

TEST_CASE("3.1.1 PUBACK, PUBREC, PUBREL, PUBCOMP", "[mqtt][codec][vectors]") {
    CHECK(check_vector(ack<puback_packet>(1), v3,
                       hex("40 02"    // PUBACK, remaining length 2
                           "00 01"))  // packet id 1
              .packet_id == 1);
    CHECK(check_vector(ack<pubrec_packet>(2), v3,
                       hex("50 02"    // PUBREC, remaining length 2
                           "00 02"))  // packet id 2
              .packet_id == 2);
    CHECK(check_vector(ack<pubrel_packet>(3), v3,
                       hex("62 02"    // PUBREL (flags 0010), length 2
                           "00 03"))  // packet id 3
              .packet_id == 3);
    CHECK(check_vector(ack<pubcomp_packet>(4), v3,
                       hex("70 02"    // PUBCOMP, remaining length 2
                           "00 04"))  // packet id 4
              .packet_id == 4);
}

TEST_CASE("3.1.1 SUBSCRIBE and SUBACK", "[mqtt][codec][vectors]") {
    subscribe_packet s;
    s.packet_id = 10;
    s.entries = {sub("a/+", qos::at_least_once), sub("b/#", qos::exactly_once)};
    const auto parsed = check_vector(s, v3,
                                     hex("82 0e"           // SUBSCRIBE (flags 0010), 14
                                         "00 0a"           // packet id 10
                                         "00 03 61 2f 2b"  // filter "a/+"
                                         "01"              // requested QoS 1
                                         "00 03 62 2f 23"  // filter "b/#"
                                         "02"              // requested QoS 2
                                         ));
    REQUIRE(parsed.entries.size() == 2);
    CHECK(parsed.entries[0].filter == "a/+");
    CHECK(parsed.entries[0].max_qos == qos::at_least_once);
    CHECK(parsed.entries[1].filter == "b/#");
    CHECK(parsed.entries[1].max_qos == qos::exactly_once);

    suback_packet a;
    a.packet_id = 10;
    a.reasons = {reason_code::success, reason_code::granted_qos_1, reason_code::unspecified_error};
    const auto ack = check_vector(a, v3,
                                  hex("90 05"  // SUBACK, remaining length 5
                                      "00 0a"  // packet id 10
                                      "00"     // granted QoS 0
                                      "01"     // granted QoS 1
                                      "80"     // failure
                                      ));
    CHECK(ack.reasons == a.reasons);
}

TEST_CASE("3.1.1 UNSUBSCRIBE and UNSUBACK", "[mqtt][codec][vectors]") {
    unsubscribe_packet u;
    u.packet_id = 11;
    u.filters = {"a/+", "b/#"};
    const auto parsed = check_vector(u, v3,
                                     hex("a2 0c"           // UNSUBSCRIBE (flags 0010), 12
                                         "00 0b"           // packet id 11
                                         "00 03 61 2f 2b"  // filter "a/+"
                                         "00 03 62 2f 23"  // filter "b/#"
                                         ));
    CHECK(parsed.filters == std::vector<std::string_view>{"a/+", "b/#"});
    CHECK(check_vector(unsuback_packet{11, {}, {}}, v3,
                       hex("b0 02"    // UNSUBACK, remaining length 2
                           "00 0b"))  // packet id 11
              .packet_id == 11);
}

TEST_CASE("3.1.1 PINGREQ, PINGRESP, DISCONNECT", "[mqtt][codec][vectors]") {
    check_vector(pingreq_packet{}, v3, hex("c0 00"));     // PINGREQ, remaining length 0
    check_vector(pingresp_packet{}, v3, hex("d0 00"));    // PINGRESP, remaining length 0
    check_vector(disconnect_packet{}, v3, hex("e0 00"));  // DISCONNECT, remaining length 0
}

TEST_CASE("5.0 CONNECT with properties, will properties and empty client id",
          "[mqtt][codec][vectors]") {
    connect_packet c;
    c.version = v5;
    c.keep_alive_s = 30;
    c.props.session_expiry_interval = 10;
    c.props.receive_maximum = 16;
    c.props.maximum_packet_size = 4096;
    will_message w;
    w.topic = "w/t";
    w.payload = payload_by;
    w.props.payload_format_indicator = 1;
    w.props.will_delay_interval = 5;
    c.will = w;
    c.username = "bob";
    c.password = bytes_view(payload_pwd);
    const bytes expected =
        hex("10 35"              // CONNECT, remaining length 53
            "00 04 4d 51 54 54"  // protocol name "MQTT"
            "05"                 // protocol version 5
            "c6"                 // flags: user name, password, will (QoS 0), clean start
            "00 1e"              // keep alive 30 s
            "0d"                 // properties, 13 bytes
            "11 00 00 00 0a"     //   session expiry interval 10 s
            "21 00 10"           //   receive maximum 16
            "27 00 00 10 00"     //   maximum packet size 4096
            "00 00"              // client id "" (server assigns one)
            "07"                 // will properties, 7 bytes
            "01 01"              //   payload format indicator: UTF-8
            "18 00 00 00 05"     //   will delay interval 5 s
            "00 03 77 2f 74"     // will topic "w/t"
            "00 02 62 79"        // will payload "by"
            "00 03 62 6f 62"     // user name "bob"
            "00 03 70 77 64"     // password "pwd"
        );
    const auto parsed = check_vector(c, v5, expected);
    CHECK(parsed.version == v5);
    CHECK(parsed.client_id.empty());
    CHECK(parsed.props.session_expiry_interval == 10u);
    CHECK(parsed.props.receive_maximum == 16);
    CHECK(parsed.props.maximum_packet_size == 4096u);
    REQUIRE(parsed.will);
    CHECK(parsed.will->props.payload_format_indicator == 1);
    CHECK(parsed.will->props.will_delay_interval == 5u);
    CHECK(parsed.username == "bob");
}

TEST_CASE("5.0 CONNECT with authentication, problem and response information",
          "[mqtt][codec][vectors]") {
    connect_packet c;
    c.version = v5;
    c.clean_start = false;
    c.client_id = "c";
    c.props.authentication_method = "SCRM";
    c.props.authentication_data = bytes_view(auth_data);
    c.props.request_problem_information = 0;
    c.props.request_response_information = 1;
    c.props.topic_alias_maximum = 8;
    c.props.user_properties = {{"k", "v"}};
    const auto parsed = check_vector(c, v5,
                                     hex("10 27"                 // CONNECT, remaining length 39
                                         "00 04 4d 51 54 54"     // protocol name "MQTT"
                                         "05"                    // protocol version 5
                                         "00"                    // flags: none (no clean start)
                                         "00 00"                 // keep alive 0
                                         "19"                    // properties, 25 bytes
                                         "15 00 04 53 43 52 4d"  //   authentication method "SCRM"
                                         "16 00 01 ff"           //   authentication data ff
                                         "17 00"                 //   request problem information 0
                                         "19 01"                 //   request response information 1
                                         "22 00 08"              //   topic alias maximum 8
                                         "26 00 01 6b 00 01 76"  //   user property k=v
                                         "00 01 63"              // client id "c"
                                         ));
    CHECK(!parsed.clean_start);
    CHECK(parsed.props.authentication_method == "SCRM");
    CHECK(parsed.props.request_response_information == 1);
    REQUIRE(parsed.props.user_properties.size() == 1);
    CHECK(parsed.props.user_properties[0].name == "k");
    CHECK(parsed.props.user_properties[0].value == "v");
}

TEST_CASE("5.0 CONNACK", "[mqtt][codec][vectors]") {
    connack_packet a;
    a.props.receive_maximum = 256;
    a.props.topic_alias_maximum = 64;
    a.props.maximum_packet_size = 262144;
    a.props.subscription_identifier_available = 0;
    check_vector(a, v5,
                 hex("20 10"           // CONNACK, remaining length 16
                     "00"              // session present 0
                     "00"              // reason: success
                     "0d"              // properties, 13 bytes
                     "21 01 00"        //   receive maximum 256
                     "22 00 40"        //   topic alias maximum 64
                     "27 00 04 00 00"  //   maximum packet size 262144
                     "29 00"           //   subscription identifiers not available
                     ));

    connack_packet all;
    all.props.session_expiry_interval = 0;
    all.props.assigned_client_identifier = "x1";
    all.props.server_keep_alive = 20;
    all.props.response_information = "r";
    all.props.server_reference = "s";
    all.props.reason_string = "ok";
    all.props.maximum_qos = 1;
    all.props.retain_available = 0;
    all.props.wildcard_subscription_available = 1;
    all.props.shared_subscription_available = 0;
    const auto parsed = check_vector(all, v5,
                                     hex("20 25"           // CONNACK, remaining length 37
                                         "00 00"           // session present 0, reason success
                                         "22"              // properties, 34 bytes
                                         "11 00 00 00 00"  //   session expiry interval 0
                                         "12 00 02 78 31"  //   assigned client identifier "x1"
                                         "13 00 14"        //   server keep alive 20 s
                                         "1a 00 01 72"     //   response information "r"
                                         "1c 00 01 73"     //   server reference "s"
                                         "1f 00 02 6f 6b"  //   reason string "ok"
                                         "24 01"           //   maximum QoS 1
                                         "25 00"           //   retain not available
                                         "28 01"           //   wildcard subscriptions available
                                         "2a 00"           //   shared subscriptions not available
                                         ));
    CHECK(parsed.props.assigned_client_identifier == "x1");
    CHECK(parsed.props.server_keep_alive == 20);
    CHECK(parsed.props.maximum_qos == 1);

    connack_packet refused;
    refused.reason = reason_code::not_authorized;
    refused.props.reason_string = "nope";
    CHECK(check_vector(refused, v5,
                       hex("20 0a"                 // CONNACK, remaining length 10
                           "00"                    // session present 0
                           "87"                    // reason: not authorized
                           "07"                    // properties, 7 bytes
                           "1f 00 04 6e 6f 70 65"  //   reason string "nope"
                           ))
              .reason == reason_code::not_authorized);
}

TEST_CASE("5.0 PUBLISH with properties", "[mqtt][codec][vectors]") {
    publish_packet p;
    p.qos = qos::at_least_once;
    p.packet_id = 1;
    p.topic = "a/b";
    p.props.topic_alias = 1;
    p.props.user_properties = {{"k", "v"}};
    p.payload = payload_x;
    auto parsed = check_vector(p, v5,
                               hex("32 13"                 // PUBLISH QoS 1, length 19
                                   "00 03 61 2f 62"        // topic "a/b"
                                   "00 01"                 // packet id 1
                                   "0a"                    // properties, 10 bytes
                                   "23 00 01"              //   topic alias 1
                                   "26 00 01 6b 00 01 76"  //   user property k=v
                                   "78"                    // payload "x"
                                   ));
    CHECK(parsed.props.topic_alias == 1);
    CHECK(text(parsed.payload) == "x");

    publish_packet q;
    q.qos = qos::exactly_once;
    q.packet_id = 3;
    q.topic = "a/b";
    q.props.payload_format_indicator = 1;
    q.props.message_expiry_interval = 60;
    q.props.content_type = "json";
    q.props.response_topic = "r/t";
    q.props.correlation_data = bytes_view(correlation);
    q.props.subscription_identifiers = {5, 300};  // server to client only
    q.payload = payload_json;
    parsed = check_vector(q, v5,
                          hex("34 28"                 // PUBLISH QoS 2, length 40
                              "00 03 61 2f 62"        // topic "a/b"
                              "00 03"                 // packet id 3
                              "1e"                    // properties, 30 bytes
                              "01 01"                 //   payload format: UTF-8
                              "02 00 00 00 3c"        //   message expiry 60 s
                              "03 00 04 6a 73 6f 6e"  //   content type "json"
                              "08 00 03 72 2f 74"     //   response topic "r/t"
                              "09 00 02 01 02"        //   correlation data 01 02
                              "0b 05"                 //   subscription identifier 5
                              "0b ac 02"              //   subscription identifier 300
                              "7b 7d"                 // payload "{}"
                              ));
    CHECK(parsed.props.content_type == "json");
    CHECK(parsed.props.subscription_identifiers == std::vector<std::uint32_t>{5, 300});

    publish_packet aliased;
    aliased.props.topic_alias = 1;
    aliased.payload = payload_y;
    parsed = check_vector(aliased, v5,
                          hex("30 07"     // PUBLISH QoS 0, remaining length 7
                              "00 00"     // topic "" (alias in use)
                              "03"        // properties, 3 bytes
                              "23 00 01"  //   topic alias 1
                              "79"        // payload "y"
                              ));
    CHECK(parsed.topic.empty());
}

TEST_CASE("5.0 PUBACK, PUBREC, PUBREL, PUBCOMP forms", "[mqtt][codec][vectors]") {
    check_vector(ack<puback_packet>(1), v5,
                 hex("40 02"  // PUBACK, remaining length 2
                     "00 01"  // packet id 1 (reason success implied)
                     ));
    auto no_subscribers = ack<puback_packet>(1, reason_code::no_matching_subscribers);
    CHECK(check_vector(no_subscribers, v5,
                       hex("40 03"  // PUBACK, remaining length 3
                           "00 01"  // packet id 1
                           "10"     // reason: no matching subscribers
                           ))
              .reason == reason_code::no_matching_subscribers);
    auto full = ack<pubrec_packet>(2, reason_code::unspecified_error);
    full.props.reason_string = "full";
    CHECK(check_vector(full, v5,
                       hex("50 0b"                 // PUBREC, remaining length 11
                           "00 02"                 // packet id 2
                           "80"                    // reason: unspecified error
                           "07"                    // properties, 7 bytes
                           "1f 00 04 66 75 6c 6c"  //   reason string "full"
                           ))
              .props.reason_string == "full");
    check_vector(ack<pubrel_packet>(2), v5,
                 hex("62 02"     // PUBREL (flags 0010), length 2
                     "00 02"));  // packet id 2
    CHECK(check_vector(ack<pubcomp_packet>(2, reason_code::packet_identifier_not_found), v5,
                       hex("70 03"  // PUBCOMP, remaining length 3
                           "00 02"  // packet id 2
                           "92"     // reason: packet identifier not found
                           ))
              .reason == reason_code::packet_identifier_not_found);
}

TEST_CASE("5.0 SUBSCRIBE with options and subscription identifier, SUBACK",
          "[mqtt][codec][vectors]") {
    subscribe_packet s;
    s.packet_id = 10;
    s.props.subscription_identifiers = {5};
    s.entries = {sub("a/+", qos::at_least_once, true, true, 2),
                 sub("$share/g/x/#", qos::at_least_once)};
    const auto parsed =
        check_vector(s, v5,
                     hex("82 1a"           // SUBSCRIBE (flags 0010), length 26
                         "00 0a"           // packet id 10
                         "02"              // properties, 2 bytes
                         "0b 05"           //   subscription identifier 5
                         "00 03 61 2f 2b"  // filter "a/+"
                         "2d"              // retain handling 2, RAP, no local, QoS 1
                         "00 0c 24 73 68 61 72 65 2f 67 2f 78 2f 23"  // filter "$share/g/x/#"
                         "01"                                         // QoS 1
                         ));
    REQUIRE(parsed.entries.size() == 2);
    CHECK(parsed.entries[0].no_local);
    CHECK(parsed.entries[0].retain_as_published);
    CHECK(parsed.entries[0].retain_handling == 2);
    CHECK(parsed.entries[1].filter == "$share/g/x/#");
    CHECK(parsed.props.subscription_identifiers == std::vector<std::uint32_t>{5});

    suback_packet a;
    a.packet_id = 10;
    a.reasons = {reason_code::success, reason_code::granted_qos_1,
                 reason_code::wildcard_subscriptions_not_supported};
    check_vector(a, v5,
                 hex("90 06"  // SUBACK, remaining length 6
                     "00 0a"  // packet id 10
                     "00"     // properties, none
                     "00"     // granted QoS 0
                     "01"     // granted QoS 1
                     "a2"     // wildcard subscriptions not supported
                     ));
}

TEST_CASE("5.0 UNSUBSCRIBE and UNSUBACK", "[mqtt][codec][vectors]") {
    unsubscribe_packet u;
    u.packet_id = 11;
    u.filters = {"a/+"};
    check_vector(u, v5,
                 hex("a2 08"           // UNSUBSCRIBE (flags 0010), length 8
                     "00 0b"           // packet id 11
                     "00"              // properties, none
                     "00 03 61 2f 2b"  // filter "a/+"
                     ));
    unsuback_packet a;
    a.packet_id = 11;
    a.reasons = {reason_code::success, reason_code::no_subscription_existed};
    CHECK(check_vector(a, v5,
                       hex("b0 05"  // UNSUBACK, remaining length 5
                           "00 0b"  // packet id 11
                           "00"     // properties, none
                           "00"     // success
                           "11"     // no subscription existed
                           ))
              .reasons == a.reasons);
}

TEST_CASE("5.0 PINGREQ, PINGRESP, DISCONNECT, AUTH", "[mqtt][codec][vectors]") {
    check_vector(pingreq_packet{}, v5, hex("c0 00"));     // PINGREQ, remaining length 0
    check_vector(pingresp_packet{}, v5, hex("d0 00"));    // PINGRESP, remaining length 0
    check_vector(disconnect_packet{}, v5, hex("e0 00"));  // DISCONNECT, success implied
    CHECK(check_vector(disconnect_packet{reason_code::disconnect_with_will, properties{}}, v5,
                       hex("e0 01"  // DISCONNECT, remaining length 1
                           "04"))   // reason: disconnect with will message
              .reason == reason_code::disconnect_with_will);
    disconnect_packet d;
    d.reason = reason_code::unspecified_error;
    d.props.reason_string = "bye";
    d.props.session_expiry_interval = 0;
    check_vector(d, v5,
                 hex("e0 0d"              // DISCONNECT, remaining length 13
                     "80"                 // reason: unspecified error
                     "0b"                 // properties, 11 bytes
                     "11 00 00 00 00"     //   session expiry interval 0
                     "1f 00 03 62 79 65"  //   reason string "bye"
                     ));
    auth_packet a;
    a.reason = reason_code::continue_authentication;
    a.props.authentication_method = "SCRM";
    a.props.authentication_data = bytes_view(auth_data);
    const auto parsed = check_vector(a, v5,
                                     hex("f0 0d"                 // AUTH, remaining 13
                                         "18"                    // continue authentication
                                         "0b"                    // properties, 11 bytes
                                         "15 00 04 53 43 52 4d"  //   method "SCRM"
                                         "16 00 01 ff"           //   data ff
                                         ));
    CHECK(parsed.props.authentication_method == "SCRM");
    check_vector(auth_packet{}, v5, hex("f0 00"));  // AUTH, success implied
}
