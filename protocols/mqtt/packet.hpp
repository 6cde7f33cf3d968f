// The MQTT 3.1.1 / 5.0 packet model. Decoded packets are views: strings and binary fields point
// into the bytes they were parsed from, which must outlive the packet.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

#include "protocols/mqtt/types.hpp"

namespace citygate::mqtt {

using bytes_view = std::span<const std::uint8_t>;

enum class packet_type : std::uint8_t {
    connect = 1,
    connack = 2,
    publish = 3,
    puback = 4,
    pubrec = 5,
    pubrel = 6,
    pubcomp = 7,
    subscribe = 8,
    suback = 9,
    unsubscribe = 10,
    unsuback = 11,
    pingreq = 12,
    pingresp = 13,
    disconnect = 14,
    auth = 15,  // MQTT 5 only
};

struct user_property {
    std::string_view name;
    std::string_view value;
};

// Every MQTT 5 property (section 2.2.2.2); absent ones are empty. MQTT 3.1.1 packets have none:
// the encoder ignores them for 3.1.1 and the parser leaves them empty.
struct properties {
    std::optional<std::uint8_t> payload_format_indicator;           // 0x01
    std::optional<std::uint32_t> message_expiry_interval;           // 0x02
    std::optional<std::string_view> content_type;                   // 0x03
    std::optional<std::string_view> response_topic;                 // 0x08
    std::optional<bytes_view> correlation_data;                     // 0x09
    std::vector<std::uint32_t> subscription_identifiers;            // 0x0B, repeatable in PUBLISH
    std::optional<std::uint32_t> session_expiry_interval;           // 0x11
    std::optional<std::string_view> assigned_client_identifier;     // 0x12
    std::optional<std::uint16_t> server_keep_alive;                 // 0x13
    std::optional<std::string_view> authentication_method;          // 0x15
    std::optional<bytes_view> authentication_data;                  // 0x16
    std::optional<std::uint8_t> request_problem_information;        // 0x17
    std::optional<std::uint32_t> will_delay_interval;               // 0x18
    std::optional<std::uint8_t> request_response_information;       // 0x19
    std::optional<std::string_view> response_information;           // 0x1A
    std::optional<std::string_view> server_reference;               // 0x1C
    std::optional<std::string_view> reason_string;                  // 0x1F
    std::optional<std::uint16_t> receive_maximum;                   // 0x21
    std::optional<std::uint16_t> topic_alias_maximum;               // 0x22
    std::optional<std::uint16_t> topic_alias;                       // 0x23
    std::optional<std::uint8_t> maximum_qos;                        // 0x24
    std::optional<std::uint8_t> retain_available;                   // 0x25
    std::vector<user_property> user_properties;                     // 0x26, repeatable
    std::optional<std::uint32_t> maximum_packet_size;               // 0x27
    std::optional<std::uint8_t> wildcard_subscription_available;    // 0x28
    std::optional<std::uint8_t> subscription_identifier_available;  // 0x29
    std::optional<std::uint8_t> shared_subscription_available;      // 0x2A
};

struct will_message {
    std::string_view topic;
    bytes_view payload;
    mqtt::qos qos = qos::at_most_once;
    bool retain = false;
    properties props;  // v5 will properties
};

struct connect_packet {
    protocol_version version = protocol_version::v3_1_1;
    bool clean_start = true;  // "clean session" in 3.1.1
    std::uint16_t keep_alive_s = 0;
    std::string_view client_id;
    std::optional<will_message> will;
    std::optional<std::string_view> username;
    std::optional<bytes_view> password;
    properties props;
};

// MQTT 3.1.1 CONNACK return codes; the model carries the equivalent v5 reason code and the codec
// maps between the two (see connack_return_code()).
enum class connect_return_code : std::uint8_t {
    accepted = 0,
    unacceptable_protocol_version = 1,
    identifier_rejected = 2,
    server_unavailable = 3,
    bad_user_name_or_password = 4,
    not_authorized = 5,
};

// The 3.1.1 return code nearest to a v5 reason code (anything unknown: server unavailable).
connect_return_code connack_return_code(reason_code reason) noexcept;

struct connack_packet {
    bool session_present = false;
    reason_code reason = reason_code::success;
    properties props;
};

struct publish_packet {
    bool dup = false;
    mqtt::qos qos = qos::at_most_once;
    bool retain = false;
    std::string_view topic;       // may be empty in v5 when a topic alias is set
    std::uint16_t packet_id = 0;  // 0 for QoS 0
    properties props;
    bytes_view payload;
};

// PUBACK, PUBREC, PUBREL and PUBCOMP share one shape.
template <packet_type Type>
struct basic_ack_packet {
    static constexpr packet_type type = Type;
    std::uint16_t packet_id = 0;
    reason_code reason = reason_code::success;  // v5 only
    properties props;
};
using puback_packet = basic_ack_packet<packet_type::puback>;
using pubrec_packet = basic_ack_packet<packet_type::pubrec>;
using pubrel_packet = basic_ack_packet<packet_type::pubrel>;
using pubcomp_packet = basic_ack_packet<packet_type::pubcomp>;

struct subscription {
    std::string_view filter;
    mqtt::qos max_qos = qos::at_most_once;
    bool no_local = false;             // v5
    bool retain_as_published = false;  // v5
    std::uint8_t retain_handling = 0;  // v5: 0, 1 or 2
};

struct subscribe_packet {
    std::uint16_t packet_id = 0;
    properties props;
    std::vector<subscription> entries;
};

// 3.1.1 return codes are granted_qos_0..2 and 0x80, the same values as the v5 reason codes.
struct suback_packet {
    std::uint16_t packet_id = 0;
    properties props;
    std::vector<reason_code> reasons;
};

struct unsubscribe_packet {
    std::uint16_t packet_id = 0;
    properties props;
    std::vector<std::string_view> filters;
};

struct unsuback_packet {
    std::uint16_t packet_id = 0;
    properties props;
    std::vector<reason_code> reasons;  // v5 only: 3.1.1 UNSUBACK has no payload
};

struct pingreq_packet {};
struct pingresp_packet {};

// In 3.1.1 a DISCONNECT has no reason; the codec ignores reason and props there.
struct disconnect_packet {
    reason_code reason = reason_code::success;
    properties props;
};

struct auth_packet {
    reason_code reason = reason_code::success;
    properties props;
};

// Alternative index + 1 == packet type value.
using packet =
    std::variant<connect_packet, connack_packet, publish_packet, puback_packet, pubrec_packet,
                 pubrel_packet, pubcomp_packet, subscribe_packet, suback_packet, unsubscribe_packet,
                 unsuback_packet, pingreq_packet, pingresp_packet, disconnect_packet, auth_packet>;

// Whether a v5 packet of this type may carry the reason code (its table in the specification).
[[nodiscard]] bool valid_reason(packet_type type, std::uint8_t code) noexcept;
[[nodiscard]] inline bool valid_reason(packet_type type, reason_code code) noexcept {
    return valid_reason(type, static_cast<std::uint8_t>(code));
}

inline packet_type type_of(const packet& p) noexcept {
    return static_cast<packet_type>(p.index() + 1);
}

namespace detail {
template <typename Packet, std::size_t I = 0>
constexpr packet_type type_of_alternative() noexcept {
    if constexpr (std::is_same_v<Packet, std::variant_alternative_t<I, packet>>) {
        return static_cast<packet_type>(I + 1);
    } else {
        return type_of_alternative<Packet, I + 1>();
    }
}
}  // namespace detail

// The type of a packet struct: packet_type_of<puback_packet> == packet_type::puback.
template <typename Packet>
inline constexpr packet_type packet_type_of = detail::type_of_alternative<Packet>();

// Which way a packet went, for the session engines' packet hooks (metrics).
enum class packet_direction : std::uint8_t { inbound, outbound };

}  // namespace citygate::mqtt
