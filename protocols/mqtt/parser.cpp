// Fixed header checks and dispatch to the per-family decoders.
#include "protocols/mqtt/parser.hpp"

#include "protocols/mqtt/detail/codec.hpp"

namespace citygate::mqtt {

parse_status parse_fixed_header(bytes_view in, protocol_version version,
                                const parser_limits& limits, fixed_header& out,
                                boost::system::error_code& error) noexcept {
    if (in.empty()) return parse_status::need_more;
    const std::uint8_t first = in[0];
    const std::uint8_t type = first >> 4;
    const std::uint8_t flags = first & 0x0F;
    // Type 0 is reserved; AUTH (15) does not exist in 3.1.1 (MQTT-2.2.1 table 2.1).
    if (type == 0 || (type == 15 && version != protocol_version::v5)) {
        error = errc::invalid_packet_type;
        return parse_status::error;
    }
    const auto t = static_cast<packet_type>(type);
    if (t == packet_type::publish) {
        const unsigned q = (flags >> 1) & 0x03;
        if (q == 3) {  // MQTT-3.3.1-4
            error = errc::invalid_qos;
            return parse_status::error;
        }
        if (q == 0 && (flags & 0x08) != 0) {  // MQTT-3.3.1-2: DUP must be 0 for QoS 0
            error = errc::invalid_fixed_header_flags;
            return parse_status::error;
        }
    } else {
        // MQTT-2.2.2-1 / MQTT-2.2.2-2 (3.1.1: MQTT-2.2.2-1, MQTT-3.6.1-1, -3.8.1-1, -3.10.1-1).
        const bool two = t == packet_type::pubrel || t == packet_type::subscribe ||
                         t == packet_type::unsubscribe;
        if (flags != (two ? 0x02 : 0x00)) {
            error = errc::invalid_fixed_header_flags;
            return parse_status::error;
        }
    }
    std::uint32_t remaining = 0;
    std::size_t i = 1;
    for (;; ++i) {
        if (i > 4) {  // a fifth length byte: MQTT-1.5.5-1 allows at most four
            error = errc::malformed_variable_byte_integer;
            return parse_status::error;
        }
        if (i >= in.size()) return parse_status::need_more;
        const std::uint8_t b = in[i];
        remaining |= std::uint32_t{b & 0x7Fu} << (7 * (i - 1));
        if ((b & 0x80) == 0) {
            if (b == 0 && i > 1) {  // not minimally encoded
                error = errc::malformed_variable_byte_integer;
                return parse_status::error;
            }
            break;
        }
    }
    out.type = t;
    out.flags = flags;
    out.remaining_length = remaining;
    out.length = static_cast<std::uint8_t>(i + 1);
    if (out.total() > limits.maximum_packet_size) {
        error = errc::packet_too_large;
        return parse_status::error;
    }
    return parse_status::complete;
}

namespace {

bool decode_body(const fixed_header& h, detail::reader& r, packet& out, detail::decode_state& st,
                 std::optional<protocol_version>& version_seen) {
    // Reuse the alternative already in `out` so its vectors keep their capacity.
    auto as = [&out]<typename P>(std::in_place_type_t<P>) -> P& {
        if (auto* p = std::get_if<P>(&out)) return *p;
        return out.emplace<P>();
    };
    switch (h.type) {
        case packet_type::connect:
            return detail::decode_connect(r, as(std::in_place_type<connect_packet>), st,
                                          version_seen);
        case packet_type::connack:
            return detail::decode_connack(r, as(std::in_place_type<connack_packet>), st);
        case packet_type::publish:
            return detail::decode_publish(r, h.flags, as(std::in_place_type<publish_packet>), st);
        case packet_type::puback:
            return detail::decode_ack(r, as(std::in_place_type<puback_packet>), st);
        case packet_type::pubrec:
            return detail::decode_ack(r, as(std::in_place_type<pubrec_packet>), st);
        case packet_type::pubrel:
            return detail::decode_ack(r, as(std::in_place_type<pubrel_packet>), st);
        case packet_type::pubcomp:
            return detail::decode_ack(r, as(std::in_place_type<pubcomp_packet>), st);
        case packet_type::subscribe:
            return detail::decode_subscribe(r, as(std::in_place_type<subscribe_packet>), st);
        case packet_type::suback:
            return detail::decode_suback(r, as(std::in_place_type<suback_packet>), st);
        case packet_type::unsubscribe:
            return detail::decode_unsubscribe(r, as(std::in_place_type<unsubscribe_packet>), st);
        case packet_type::unsuback:
            return detail::decode_unsuback(r, as(std::in_place_type<unsuback_packet>), st);
        case packet_type::pingreq:
            as(std::in_place_type<pingreq_packet>);
            return r.empty() || r.fail(errc::trailing_bytes);
        case packet_type::pingresp:
            as(std::in_place_type<pingresp_packet>);
            return r.empty() || r.fail(errc::trailing_bytes);
        case packet_type::disconnect:
            return detail::decode_disconnect(r, as(std::in_place_type<disconnect_packet>), st);
        case packet_type::auth:
            return detail::decode_auth(r, as(std::in_place_type<auth_packet>), st);
    }
    return r.fail(errc::invalid_packet_type);
}

// Resets the properties a previous packet may have left in a reused object. Field by field:
// assigning a fresh properties{} costs a 400-byte construction per packet on the hot path.
void clear(properties& p) {
    p.payload_format_indicator.reset();
    p.message_expiry_interval.reset();
    p.content_type.reset();
    p.response_topic.reset();
    p.correlation_data.reset();
    p.subscription_identifiers.clear();
    p.session_expiry_interval.reset();
    p.assigned_client_identifier.reset();
    p.server_keep_alive.reset();
    p.authentication_method.reset();
    p.authentication_data.reset();
    p.request_problem_information.reset();
    p.will_delay_interval.reset();
    p.request_response_information.reset();
    p.response_information.reset();
    p.server_reference.reset();
    p.reason_string.reset();
    p.receive_maximum.reset();
    p.topic_alias_maximum.reset();
    p.topic_alias.reset();
    p.maximum_qos.reset();
    p.retain_available.reset();
    p.user_properties.clear();
    p.maximum_packet_size.reset();
    p.wildcard_subscription_available.reset();
    p.subscription_identifier_available.reset();
    p.shared_subscription_available.reset();
}

void reset_scalars(packet& out) {
    std::visit(
        [](auto& p) {
            using P = std::decay_t<decltype(p)>;
            if constexpr (!std::is_same_v<P, pingreq_packet> &&
                          !std::is_same_v<P, pingresp_packet>) {
                clear(p.props);
            }
            // Lists are cleared here, not filled-or-not by the decoders, so a reused object
            // never shows a previous packet's entries (clear() keeps the capacity).
            if constexpr (std::is_same_v<P, subscribe_packet>) p.entries.clear();
            if constexpr (std::is_same_v<P, suback_packet> || std::is_same_v<P, unsuback_packet>) {
                p.reasons.clear();
            }
            if constexpr (std::is_same_v<P, unsubscribe_packet>) p.filters.clear();
        },
        out);
}

}  // namespace

parse_result parse(bytes_view in, protocol_version version, const parser_limits& limits,
                   packet& out) {
    parse_result result;
    fixed_header h;
    result.status = parse_fixed_header(in, version, limits, h, result.error);
    if (result.status != parse_status::complete) return result;
    result.needed = h.total();
    if (in.size() < h.total()) {
        result.status = parse_status::need_more;
        return result;
    }
    const std::uint8_t* body = in.data() + h.length;
    detail::decode_state st{limits, version};
    detail::reader r(body, body + h.remaining_length);
    reset_scalars(out);
    bool ok = decode_body(h, r, out, st, result.connect_version);
    if (ok && st.has_lists) {
        // Second pass, now known to succeed, fills the lists.
        detail::decode_state fill{limits, version};
        fill.store_lists = true;
        detail::reader again(body, body + h.remaining_length);
        reset_scalars(out);
        std::optional<protocol_version> ignored;
        ok = decode_body(h, again, out, fill, ignored);
    }
    if (!ok) {
        result.status = parse_status::error;
        result.error = r.error() == errc{} ? errc::malformed_packet : r.error();
        return result;
    }
    result.status = parse_status::complete;
    result.consumed = h.total();
    return result;
}

}  // namespace citygate::mqtt
