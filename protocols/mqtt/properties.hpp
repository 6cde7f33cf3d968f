// MQTT 5 property identifiers and where each may appear (section 2.2.2.2).
#pragma once

#include <cstdint>

#include "protocols/mqtt/packet.hpp"

namespace citygate::mqtt {

enum class property_id : std::uint8_t {
    payload_format_indicator = 0x01,
    message_expiry_interval = 0x02,
    content_type = 0x03,
    response_topic = 0x08,
    correlation_data = 0x09,
    subscription_identifier = 0x0B,
    session_expiry_interval = 0x11,
    assigned_client_identifier = 0x12,
    server_keep_alive = 0x13,
    authentication_method = 0x15,
    authentication_data = 0x16,
    request_problem_information = 0x17,
    will_delay_interval = 0x18,
    request_response_information = 0x19,
    response_information = 0x1A,
    server_reference = 0x1C,
    reason_string = 0x1F,
    receive_maximum = 0x21,
    topic_alias_maximum = 0x22,
    topic_alias = 0x23,
    maximum_qos = 0x24,
    retain_available = 0x25,
    user_property = 0x26,
    maximum_packet_size = 0x27,
    wildcard_subscription_available = 0x28,
    subscription_identifier_available = 0x29,
    shared_subscription_available = 0x2A,
};

// Where a property block sits: a packet type, or the will properties of a CONNECT.
enum class property_context : std::uint8_t {
    will = 0,
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
    disconnect = 14,
    auth = 15,
};

inline property_context context_of(packet_type t) noexcept {
    return static_cast<property_context>(t);
}

// Whether the identifier is a known property that may appear in this context.
[[nodiscard]] bool property_allowed(std::uint32_t id, property_context where) noexcept;

// True when no property is set.
[[nodiscard]] bool empty(const properties& props) noexcept;

}  // namespace citygate::mqtt
