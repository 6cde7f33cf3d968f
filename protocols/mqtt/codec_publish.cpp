// PUBLISH and its acknowledgements PUBACK, PUBREC, PUBREL, PUBCOMP (sections 3.3-3.7).
#include "protocols/mqtt/detail/codec.hpp"

namespace citygate::mqtt {
namespace {

template <packet_type T>
boost::system::error_code encode_ack(const basic_ack_packet<T>& p, protocol_version v,
                                     encoded_packet& out) {
    detail::packet_builder b(out);
    auto& w = b.body();
    w.u16(p.packet_id);
    if (v == protocol_version::v5) {
        // Section 3.4.2.1: reason and property length may be left out when they add nothing.
        if (!valid_reason(T, p.reason)) return errc::invalid_reason_code;
        const bool no_props = empty(p.props);
        if (p.reason != reason_code::success || !no_props) {
            w.u8(static_cast<std::uint8_t>(p.reason));
            if (!no_props && !detail::encode_properties(w, p.props)) return errc::field_too_long;
        }
    }
    return b.finish(T, T == packet_type::pubrel ? 0x02 : 0x00);
}

}  // namespace

namespace detail {

bool decode_publish(reader& r, std::uint8_t flags, publish_packet& out, decode_state& st) {
    out.dup = (flags & 0x08) != 0;
    out.qos = static_cast<mqtt::qos>((flags >> 1) & 0x03);  // 3 was refused with the header
    out.retain = (flags & 0x01) != 0;
    if (!r.utf8(out.topic)) return false;
    if (out.topic.size() > st.limits.maximum_topic_length) return r.fail(errc::invalid_topic_name);
    // MQTT-3.3.2-2: no wildcards in a topic name. Empty is allowed only with a v5 topic alias.
    if (has_wildcard(out.topic)) {
        return r.fail(errc::invalid_topic_name);
    }
    if (out.qos != qos::at_most_once) {
        if (!r.u16(out.packet_id)) return false;
        if (out.packet_id == 0) return r.fail(errc::invalid_packet_id);  // MQTT-2.2.1-3
    } else {
        out.packet_id = 0;
    }
    if (st.version == protocol_version::v5) {
        if (!decode_properties(r, property_context::publish, out.props, st)) return false;
    }
    if (out.topic.empty() && !out.props.topic_alias) return r.fail(errc::invalid_topic_name);
    bytes_view payload;
    r.bytes(r.remaining(), payload);
    out.payload = payload;
    return true;
}

template <packet_type T>
bool decode_ack(reader& r, basic_ack_packet<T>& out, decode_state& st) {
    if (!r.u16(out.packet_id)) return false;
    if (out.packet_id == 0) return r.fail(errc::invalid_packet_id);
    out.reason = reason_code::success;
    if (st.version == protocol_version::v5 && !r.empty()) {
        std::uint8_t code;
        r.u8(code);
        if (!valid_reason(T, code)) return r.fail(errc::invalid_reason_code);
        out.reason = static_cast<reason_code>(code);
        if (!r.empty() && !decode_properties(r, context_of(T), out.props, st)) return false;
    }
    if (!r.empty()) return r.fail(errc::trailing_bytes);
    return true;
}

template bool decode_ack(reader&, puback_packet&, decode_state&);
template bool decode_ack(reader&, pubrec_packet&, decode_state&);
template bool decode_ack(reader&, pubrel_packet&, decode_state&);
template bool decode_ack(reader&, pubcomp_packet&, decode_state&);

}  // namespace detail

boost::system::error_code encode(const publish_packet& p, protocol_version v, encoded_packet& out) {
    if (p.qos > qos::exactly_once) return errc::invalid_qos;
    if (p.qos != qos::at_most_once && p.packet_id == 0) return errc::invalid_packet_id;
    if (!detail::fits_u16(p.topic.size())) return errc::field_too_long;
    detail::packet_builder b(out);
    auto& w = b.body();
    w.utf8(p.topic);
    if (p.qos != qos::at_most_once) w.u16(p.packet_id);
    if (v == protocol_version::v5 && !detail::encode_properties(w, p.props)) {
        return errc::field_too_long;
    }
    const auto flags = static_cast<std::uint8_t>(
        (p.dup ? 0x08 : 0) | (static_cast<unsigned>(p.qos) << 1) | (p.retain ? 0x01 : 0));
    return b.finish(packet_type::publish, flags, p.payload);
}

boost::system::error_code encode(const puback_packet& p, protocol_version v, encoded_packet& out) {
    return encode_ack(p, v, out);
}
boost::system::error_code encode(const pubrec_packet& p, protocol_version v, encoded_packet& out) {
    return encode_ack(p, v, out);
}
boost::system::error_code encode(const pubrel_packet& p, protocol_version v, encoded_packet& out) {
    return encode_ack(p, v, out);
}
boost::system::error_code encode(const pubcomp_packet& p, protocol_version v, encoded_packet& out) {
    return encode_ack(p, v, out);
}

}  // namespace citygate::mqtt
