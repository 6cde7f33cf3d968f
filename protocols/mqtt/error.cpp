// The MQTT error category: messages and the reason code each error maps to.
#include "protocols/mqtt/error.hpp"

#include <string>

namespace citygate::mqtt {
namespace {

class category final : public boost::system::error_category {
  public:
    const char* name() const noexcept override { return "mqtt"; }

    std::string message(int value) const override {
        switch (static_cast<errc>(value)) {
            case errc::malformed_packet:
                return "malformed packet";
            case errc::malformed_variable_byte_integer:
                return "malformed variable byte integer";
            case errc::malformed_utf8:
                return "malformed UTF-8 string";
            case errc::truncated:
                return "field runs past the end of the packet";
            case errc::trailing_bytes:
                return "unexpected bytes after the last field";
            case errc::invalid_packet_type:
                return "invalid packet type";
            case errc::invalid_fixed_header_flags:
                return "invalid fixed header flags";
            case errc::invalid_qos:
                return "invalid QoS";
            case errc::invalid_packet_id:
                return "packet identifier 0";
            case errc::packet_too_large:
                return "packet too large";
            case errc::invalid_protocol_name:
                return "invalid protocol name";
            case errc::unsupported_protocol_version:
                return "unsupported protocol version";
            case errc::reserved_bit_set:
                return "reserved bit set";
            case errc::invalid_will_flags:
                return "invalid will flags";
            case errc::password_without_username:
                return "password flag without user name flag";
            case errc::invalid_topic_name:
                return "invalid topic name";
            case errc::invalid_topic_filter:
                return "invalid topic filter";
            case errc::duplicate_property:
                return "duplicate property";
            case errc::property_not_allowed:
                return "property not allowed in this packet";
            case errc::invalid_property_value:
                return "invalid property value";
            case errc::too_many_properties:
                return "too many user properties";
            case errc::too_many_topic_filters:
                return "too many topic filters";
            case errc::empty_topic_filter_list:
                return "no topic filter";
            case errc::invalid_reason_code:
                return "invalid reason code";
            case errc::invalid_retain_handling:
                return "invalid retain handling";
            case errc::shared_subscription_no_local:
                return "no local on a shared subscription";
            case errc::unexpected_packet:
                return "unexpected packet";
            case errc::topic_alias_invalid:
                return "invalid topic alias";
            case errc::receive_maximum_exceeded:
                return "receive maximum exceeded";
            case errc::qos_not_supported:
                return "QoS not supported";
            case errc::subscription_identifiers_not_supported:
                return "subscription identifiers not supported";
            case errc::field_too_long:
                return "field longer than 65535 bytes";
        }
        return "unknown mqtt error";
    }
};

}  // namespace

const boost::system::error_category& mqtt_category() noexcept {
    static const category instance;
    return instance;
}

reason_code to_reason_code(errc e) noexcept {
    switch (e) {
        case errc::packet_too_large:
            return reason_code::packet_too_large;
        case errc::unsupported_protocol_version:
            return reason_code::unsupported_protocol_version;
        case errc::invalid_topic_name:
            return reason_code::topic_name_invalid;
        case errc::invalid_topic_filter:
            return reason_code::topic_filter_invalid;
        case errc::duplicate_property:
        case errc::invalid_property_value:
        case errc::empty_topic_filter_list:
        case errc::invalid_reason_code:
        case errc::invalid_retain_handling:
        case errc::shared_subscription_no_local:
        case errc::unexpected_packet:
            return reason_code::protocol_error;
        case errc::too_many_properties:
        case errc::too_many_topic_filters:
        case errc::field_too_long:
            return reason_code::implementation_specific_error;
        case errc::topic_alias_invalid:
            return reason_code::topic_alias_invalid;
        case errc::receive_maximum_exceeded:
            return reason_code::receive_maximum_exceeded;
        case errc::qos_not_supported:
            return reason_code::qos_not_supported;
        case errc::subscription_identifiers_not_supported:
            return reason_code::subscription_identifiers_not_supported;
        default:
            return reason_code::malformed_packet;
    }
}

}  // namespace citygate::mqtt
