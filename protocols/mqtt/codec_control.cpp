// PINGREQ, PINGRESP, DISCONNECT and AUTH codecs (sections 3.12-3.15).
#include "protocols/mqtt/detail/codec.hpp"

namespace citygate::mqtt {
namespace {

bool valid_disconnect_reason(std::uint8_t v) {
    return valid_reason(packet_type::disconnect, v);
}
bool valid_auth_reason(std::uint8_t v) {
    return valid_reason(packet_type::auth, v);
}

// DISCONNECT and AUTH: empty means success; a reason alone is allowed; then properties.
template <typename Packet>
bool decode_reason_and_properties(detail::reader& r, Packet& out, detail::decode_state& st,
                                  property_context where, bool (*valid)(std::uint8_t)) {
    out.reason = reason_code::success;
    if (r.empty()) return true;
    std::uint8_t code;
    r.u8(code);
    if (!valid(code)) return r.fail(errc::invalid_reason_code);
    out.reason = static_cast<reason_code>(code);
    if (!r.empty() && !detail::decode_properties(r, where, out.props, st)) return false;
    if (!r.empty()) return r.fail(errc::trailing_bytes);
    return true;
}

template <typename Packet>
boost::system::error_code encode_reason_and_properties(const Packet& p, packet_type type,
                                                       encoded_packet& out) {
    if (!valid_reason(type, p.reason)) return errc::invalid_reason_code;
    detail::packet_builder b(out);
    auto& w = b.body();
    const bool no_props = empty(p.props);
    if (p.reason != reason_code::success || !no_props) {
        w.u8(static_cast<std::uint8_t>(p.reason));
        if (!no_props && !detail::encode_properties(w, p.props)) return errc::field_too_long;
    }
    return b.finish(type, 0);
}

}  // namespace

namespace detail {

bool decode_disconnect(reader& r, disconnect_packet& out, decode_state& st) {
    if (st.version != protocol_version::v5) {
        out.reason = reason_code::success;
        if (!r.empty()) return r.fail(errc::trailing_bytes);
        return true;
    }
    return decode_reason_and_properties(r, out, st, property_context::disconnect,
                                        valid_disconnect_reason);
}

bool decode_auth(reader& r, auth_packet& out, decode_state& st) {
    return decode_reason_and_properties(r, out, st, property_context::auth, valid_auth_reason);
}

}  // namespace detail

boost::system::error_code encode(const pingreq_packet&, protocol_version, encoded_packet& out) {
    detail::packet_builder b(out);
    return b.finish(packet_type::pingreq, 0);
}

boost::system::error_code encode(const pingresp_packet&, protocol_version, encoded_packet& out) {
    detail::packet_builder b(out);
    return b.finish(packet_type::pingresp, 0);
}

boost::system::error_code encode(const disconnect_packet& p, protocol_version v,
                                 encoded_packet& out) {
    if (v != protocol_version::v5) {
        detail::packet_builder b(out);
        return b.finish(packet_type::disconnect, 0);
    }
    return encode_reason_and_properties(p, packet_type::disconnect, out);
}

boost::system::error_code encode(const auth_packet& p, protocol_version v, encoded_packet& out) {
    if (v != protocol_version::v5) return errc::invalid_packet_type;  // AUTH is MQTT 5 only
    return encode_reason_and_properties(p, packet_type::auth, out);
}

}  // namespace citygate::mqtt
