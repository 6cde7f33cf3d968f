// CONNECT and CONNACK codecs, both protocol versions (MQTT 3.1.1 section 3.1-3.2, MQTT 5 3.1-3.2).
#include <string_view>

#include "protocols/mqtt/detail/codec.hpp"

namespace citygate::mqtt {

connect_return_code connack_return_code(reason_code reason) noexcept {
    switch (reason) {
        case reason_code::success:
            return connect_return_code::accepted;
        case reason_code::unsupported_protocol_version:
            return connect_return_code::unacceptable_protocol_version;
        case reason_code::client_identifier_not_valid:
            return connect_return_code::identifier_rejected;
        case reason_code::bad_user_name_or_password:
        case reason_code::bad_authentication_method:
            return connect_return_code::bad_user_name_or_password;
        case reason_code::not_authorized:
        case reason_code::banned:
            return connect_return_code::not_authorized;
        default:
            return connect_return_code::server_unavailable;
    }
}

namespace {

constexpr std::string_view protocol_name = "MQTT";

reason_code from_return_code(std::uint8_t v) {
    switch (v) {
        case 1:
            return reason_code::unsupported_protocol_version;
        case 2:
            return reason_code::client_identifier_not_valid;
        case 3:
            return reason_code::server_unavailable;
        case 4:
            return reason_code::bad_user_name_or_password;
        case 5:
            return reason_code::not_authorized;
        default:
            return reason_code::success;
    }
}

}  // namespace

namespace detail {

bool decode_connect(reader& r, connect_packet& out, decode_state& st,
                    std::optional<protocol_version>& version_seen) {
    bytes_view name;
    if (!r.binary(name)) return false;
    // MQTT-3.1.2-1: anything but "MQTT" may be closed without a CONNACK.
    if (std::string_view(reinterpret_cast<const char*>(name.data()), name.size()) !=
        protocol_name) {
        return r.fail(errc::invalid_protocol_name);
    }
    std::uint8_t level;
    if (!r.u8(level)) return false;
    if (level != 4 && level != 5) return r.fail(errc::unsupported_protocol_version);
    out.version = static_cast<protocol_version>(level);
    version_seen = out.version;
    st.version = out.version;
    const bool v5 = out.version == protocol_version::v5;

    std::uint8_t flags;
    if (!r.u8(flags)) return false;
    if ((flags & 0x01) != 0) return r.fail(errc::reserved_bit_set);  // MQTT-3.1.2-3
    out.clean_start = (flags & 0x02) != 0;
    const bool will = (flags & 0x04) != 0;
    const auto will_qos = static_cast<std::uint8_t>((flags >> 3) & 0x03);
    const bool will_retain = (flags & 0x20) != 0;
    const bool has_password = (flags & 0x40) != 0;
    const bool has_username = (flags & 0x80) != 0;
    // MQTT-3.1.2-11/-13 (3.1.1) and MQTT-3.1.2-11/-13 (5): no will, no will QoS or retain.
    if (!will && (will_qos != 0 || will_retain)) return r.fail(errc::invalid_will_flags);
    if (will_qos == 3) return r.fail(errc::invalid_will_flags);  // MQTT-3.1.2-14 / -12
    // MQTT-3.1.2-22 (3.1.1 only; MQTT 5 allows a password without a user name).
    if (!v5 && has_password && !has_username) return r.fail(errc::password_without_username);
    if (!r.u16(out.keep_alive_s)) return false;
    if (v5 && !decode_properties(r, property_context::connect, out.props, st)) return false;

    if (!r.utf8(out.client_id)) return false;  // MQTT-3.1.3-4
    if (will) {
        auto& w = out.will.emplace();
        w.qos = static_cast<mqtt::qos>(will_qos);
        w.retain = will_retain;
        if (v5 && !decode_properties(r, property_context::will, w.props, st)) return false;
        if (!r.utf8(w.topic)) return false;
        if (w.topic.size() > st.limits.maximum_topic_length || !valid_topic_name(w.topic)) {
            return r.fail(errc::invalid_topic_name);
        }
        if (!r.binary(w.payload)) return false;
    } else {
        out.will.reset();
    }
    if (has_username) {
        std::string_view user;
        if (!r.utf8(user)) return false;
        out.username = user;
    } else {
        out.username.reset();
    }
    if (has_password) {
        bytes_view password;
        if (!r.binary(password)) return false;
        out.password = password;
    } else {
        out.password.reset();
    }
    if (!r.empty()) return r.fail(errc::trailing_bytes);
    return true;
}

bool decode_connack(reader& r, connack_packet& out, decode_state& st) {
    std::uint8_t flags, code;
    if (!r.u8(flags) || !r.u8(code)) return false;
    if ((flags & 0xFE) != 0) return r.fail(errc::reserved_bit_set);  // MQTT-3.2.2-1
    out.session_present = (flags & 0x01) != 0;
    if (st.version == protocol_version::v5) {
        if (!valid_reason(packet_type::connack, code)) return r.fail(errc::invalid_reason_code);
        out.reason = static_cast<reason_code>(code);
        if (!decode_properties(r, property_context::connack, out.props, st)) return false;
    } else {
        if (code > 5) return r.fail(errc::invalid_reason_code);
        out.reason = from_return_code(code);
    }
    if (!r.empty()) return r.fail(errc::trailing_bytes);
    return true;
}

}  // namespace detail

boost::system::error_code encode(const connect_packet& p, encoded_packet& out) {
    detail::packet_builder b(out);
    auto& w = b.body();
    const bool v5 = p.version == protocol_version::v5;
    if (!v5 && p.password && !p.username) return errc::password_without_username;
    w.utf8(protocol_name);
    w.u8(static_cast<std::uint8_t>(p.version));
    std::uint8_t flags = p.clean_start ? 0x02 : 0x00;
    if (p.will) {
        flags |= 0x04 | static_cast<std::uint8_t>(static_cast<unsigned>(p.will->qos) << 3);
        if (p.will->retain) flags |= 0x20;
    }
    if (p.password) flags |= 0x40;
    if (p.username) flags |= 0x80;
    w.u8(flags);
    w.u16(p.keep_alive_s);
    bool ok = true;
    if (v5) ok &= detail::encode_properties(w, p.props);
    ok &= detail::fits_u16(p.client_id.size());
    w.utf8(p.client_id);
    if (p.will) {
        if (v5) ok &= detail::encode_properties(w, p.will->props);
        ok &= detail::fits_u16(p.will->topic.size()) && detail::fits_u16(p.will->payload.size());
        w.utf8(p.will->topic);
        w.binary(p.will->payload);
    }
    if (p.username) {
        ok &= detail::fits_u16(p.username->size());
        w.utf8(*p.username);
    }
    if (p.password) {
        ok &= detail::fits_u16(p.password->size());
        w.binary(*p.password);
    }
    if (!ok) return errc::field_too_long;
    return b.finish(packet_type::connect, 0);
}

boost::system::error_code encode(const connack_packet& p, protocol_version v, encoded_packet& out) {
    detail::packet_builder b(out);
    auto& w = b.body();
    w.u8(p.session_present ? 1 : 0);
    if (v == protocol_version::v5) {
        if (!valid_reason(packet_type::connack, p.reason)) return errc::invalid_reason_code;
        w.u8(static_cast<std::uint8_t>(p.reason));
        if (!detail::encode_properties(w, p.props)) return errc::field_too_long;
    } else {
        w.u8(static_cast<std::uint8_t>(connack_return_code(p.reason)));
    }
    return b.finish(packet_type::connack, 0);
}

}  // namespace citygate::mqtt
