// Errors of the MQTT codec and session engine as a boost::system error category, each mapped to
// the MQTT 5 reason code the specification asks the receiver to answer with.
#pragma once

#include <boost/system/error_code.hpp>
#include <type_traits>

#include "protocols/mqtt/types.hpp"

namespace citygate::mqtt {

// Value 0 is reserved for "no error" as boost::system requires.
enum class errc : int {
    malformed_packet = 1,             // a generic structural fault
    malformed_variable_byte_integer,  // more than 4 bytes or not minimally encoded
    malformed_utf8,                   // ill-formed UTF-8, a surrogate or U+0000
    truncated,                        // a field runs past the end of the packet
    trailing_bytes,                   // bytes left over after the last field
    invalid_packet_type,              // type 0, or AUTH in MQTT 3.1.1
    invalid_fixed_header_flags,       // reserved flag bits not as the specification fixes them
    invalid_qos,                      // QoS 3, or DUP set on a QoS 0 PUBLISH
    invalid_packet_id,                // packet identifier 0 where one is required
    packet_too_large,                 // larger than the receiver's maximum packet size
    invalid_protocol_name,            // CONNECT protocol name is not "MQTT"
    unsupported_protocol_version,
    reserved_bit_set,           // CONNECT flags bit 0, or subscription options bits 6-7
    invalid_will_flags,         // will QoS/retain without will flag, or will QoS 3
    password_without_username,  // MQTT 3.1.1 only
    invalid_topic_name,         // empty, wildcard, or too long
    invalid_topic_filter,       // empty or misplaced wildcard
    duplicate_property,
    property_not_allowed,     // an identifier not valid for this packet type
    invalid_property_value,   // e.g. receive maximum 0
    too_many_properties,      // more user properties than the receiver's limit
    too_many_topic_filters,   // more SUBSCRIBE/UNSUBSCRIBE entries than the limit
    empty_topic_filter_list,  // SUBSCRIBE or UNSUBSCRIBE without a single entry
    invalid_reason_code,      // a reason code not valid for the packet type
    invalid_retain_handling,  // retain handling 3
    shared_subscription_no_local,
    unexpected_packet,    // a packet the receiver must not get in this state or direction
    topic_alias_invalid,  // 0, above the maximum, or unknown
    receive_maximum_exceeded,
    qos_not_supported,
    subscription_identifiers_not_supported,
    field_too_long,  // encoder: a string or binary field above 65535 bytes
};

const boost::system::error_category& mqtt_category() noexcept;

inline boost::system::error_code make_error_code(errc e) noexcept {
    return {static_cast<int>(e), mqtt_category()};
}

// The reason code a receiver sends (v5 DISCONNECT/CONNACK) for this error.
reason_code to_reason_code(errc e) noexcept;

}  // namespace citygate::mqtt

template <>
struct boost::system::is_error_code_enum<citygate::mqtt::errc> : std::true_type {};
