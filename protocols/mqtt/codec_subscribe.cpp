// SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK codecs (sections 3.8-3.11).
#include "protocols/mqtt/detail/codec.hpp"

namespace citygate::mqtt {
namespace {

bool valid_suback_reason(protocol_version v, std::uint8_t code) {
    if (v != protocol_version::v5) return code <= 2 || code == 0x80;
    return valid_reason(packet_type::suback, code);
}

bool read_filter(detail::reader& r, const detail::decode_state& st, std::string_view& filter) {
    if (!r.utf8(filter)) return false;
    const bool shared = st.version == protocol_version::v5;
    if (filter.size() > st.limits.maximum_topic_length || !valid_topic_filter(filter, shared)) {
        return r.fail(errc::invalid_topic_filter);  // MQTT-4.7.1-1, MQTT-4.7.1-2, MQTT-4.7.3-1
    }
    return true;
}

bool read_packet_id(detail::reader& r, std::uint16_t& id) {
    if (!r.u16(id)) return false;
    if (id == 0) return r.fail(errc::invalid_packet_id);  // MQTT-2.2.1-3
    return true;
}

bool read_reasons(detail::reader& r, detail::decode_state& st, std::vector<reason_code>& out,
                  bool (*valid)(protocol_version, std::uint8_t)) {
    if (r.empty()) return r.fail(errc::truncated);  // at least one entry
    if (r.remaining() > st.limits.maximum_topic_filters) {
        return r.fail(errc::too_many_topic_filters);
    }
    for (const std::uint8_t* p = r.position(); p != r.position() + r.remaining(); ++p) {
        if (!valid(st.version, *p)) return r.fail(errc::invalid_reason_code);
    }
    st.has_lists = true;
    if (st.store_lists) {
        out.clear();
        std::uint8_t code;
        while (r.u8(code)) {
            out.push_back(static_cast<reason_code>(code));
            if (r.empty()) break;
        }
    } else {
        bytes_view rest;
        r.bytes(r.remaining(), rest);
    }
    return true;
}

}  // namespace

namespace detail {

bool decode_subscribe(reader& r, subscribe_packet& out, decode_state& st) {
    if (!read_packet_id(r, out.packet_id)) return false;
    const bool v5 = st.version == protocol_version::v5;
    if (v5 && !decode_properties(r, property_context::subscribe, out.props, st)) return false;
    if (st.store_lists) out.entries.clear();
    std::size_t count = 0;
    while (!r.empty()) {
        subscription s;
        std::uint8_t options;
        if (!read_filter(r, st, s.filter) || !r.u8(options)) return false;
        if (++count > st.limits.maximum_topic_filters) return r.fail(errc::too_many_topic_filters);
        // MQTT-3.8.3-4 (3.1.1: bits 2-7) and MQTT-3.8.3-5 (5: bits 6-7) are reserved.
        if ((options & (v5 ? 0xC0 : 0xFC)) != 0) return r.fail(errc::reserved_bit_set);
        if ((options & 0x03) == 3) return r.fail(errc::invalid_qos);
        s.max_qos = static_cast<mqtt::qos>(options & 0x03);
        s.no_local = (options & 0x04) != 0;
        s.retain_as_published = (options & 0x08) != 0;
        s.retain_handling = static_cast<std::uint8_t>((options >> 4) & 0x03);
        if (s.retain_handling == 3) return r.fail(errc::invalid_retain_handling);
        if (v5 && s.no_local && is_shared_filter(s.filter)) {
            return r.fail(errc::shared_subscription_no_local);  // MQTT-3.8.3-4 (5)
        }
        st.has_lists = true;
        if (st.store_lists) out.entries.push_back(s);
    }
    if (count == 0) return r.fail(errc::empty_topic_filter_list);  // MQTT-3.8.3-3 / -2
    return true;
}

bool decode_suback(reader& r, suback_packet& out, decode_state& st) {
    if (!read_packet_id(r, out.packet_id)) return false;
    if (st.version == protocol_version::v5 &&
        !decode_properties(r, property_context::suback, out.props, st)) {
        return false;
    }
    return read_reasons(r, st, out.reasons, valid_suback_reason);
}

bool decode_unsubscribe(reader& r, unsubscribe_packet& out, decode_state& st) {
    if (!read_packet_id(r, out.packet_id)) return false;
    if (st.version == protocol_version::v5 &&
        !decode_properties(r, property_context::unsubscribe, out.props, st)) {
        return false;
    }
    if (st.store_lists) out.filters.clear();
    std::size_t count = 0;
    while (!r.empty()) {
        std::string_view filter;
        if (!read_filter(r, st, filter)) return false;
        if (++count > st.limits.maximum_topic_filters) return r.fail(errc::too_many_topic_filters);
        st.has_lists = true;
        if (st.store_lists) out.filters.push_back(filter);
    }
    if (count == 0) return r.fail(errc::empty_topic_filter_list);  // MQTT-3.10.3-2
    return true;
}

bool decode_unsuback(reader& r, unsuback_packet& out, decode_state& st) {
    if (!read_packet_id(r, out.packet_id)) return false;
    if (st.version != protocol_version::v5) {
        if (!r.empty()) return r.fail(errc::trailing_bytes);
        return true;
    }
    if (!decode_properties(r, property_context::unsuback, out.props, st)) return false;
    return read_reasons(r, st, out.reasons, [](protocol_version, std::uint8_t c) {
        return valid_reason(packet_type::unsuback, c);
    });
}

}  // namespace detail

boost::system::error_code encode(const subscribe_packet& p, protocol_version v,
                                 encoded_packet& out) {
    if (p.packet_id == 0) return errc::invalid_packet_id;
    if (p.entries.empty()) return errc::empty_topic_filter_list;
    detail::packet_builder b(out);
    auto& w = b.body();
    const bool v5 = v == protocol_version::v5;
    w.u16(p.packet_id);
    if (v5 && !detail::encode_properties(w, p.props)) return errc::field_too_long;
    for (const auto& s : p.entries) {
        if (!detail::fits_u16(s.filter.size())) return errc::field_too_long;
        if (s.max_qos > qos::exactly_once) return errc::invalid_qos;
        w.utf8(s.filter);
        auto options = static_cast<std::uint8_t>(s.max_qos);
        if (v5) {
            options |= static_cast<std::uint8_t>((s.no_local ? 0x04 : 0) |
                                                 (s.retain_as_published ? 0x08 : 0) |
                                                 ((s.retain_handling & 0x03) << 4));
        }
        w.u8(options);
    }
    return b.finish(packet_type::subscribe, 0x02);
}

boost::system::error_code encode(const suback_packet& p, protocol_version v, encoded_packet& out) {
    detail::packet_builder b(out);
    auto& w = b.body();
    w.u16(p.packet_id);
    if (v == protocol_version::v5 && !detail::encode_properties(w, p.props)) {
        return errc::field_too_long;
    }
    for (reason_code rc : p.reasons) {
        auto code = static_cast<std::uint8_t>(rc);
        if (v != protocol_version::v5) {
            if (code > 2) code = 0x80;  // 3.1.1 knows only "failure"
        } else if (!valid_reason(packet_type::suback, code)) {
            return errc::invalid_reason_code;
        }
        w.u8(code);
    }
    return b.finish(packet_type::suback, 0);
}

boost::system::error_code encode(const unsubscribe_packet& p, protocol_version v,
                                 encoded_packet& out) {
    if (p.packet_id == 0) return errc::invalid_packet_id;
    if (p.filters.empty()) return errc::empty_topic_filter_list;
    detail::packet_builder b(out);
    auto& w = b.body();
    w.u16(p.packet_id);
    if (v == protocol_version::v5 && !detail::encode_properties(w, p.props)) {
        return errc::field_too_long;
    }
    for (std::string_view f : p.filters) {
        if (!detail::fits_u16(f.size())) return errc::field_too_long;
        w.utf8(f);
    }
    return b.finish(packet_type::unsubscribe, 0x02);
}

boost::system::error_code encode(const unsuback_packet& p, protocol_version v,
                                 encoded_packet& out) {
    detail::packet_builder b(out);
    auto& w = b.body();
    w.u16(p.packet_id);
    if (v == protocol_version::v5) {
        if (!detail::encode_properties(w, p.props)) return errc::field_too_long;
        for (reason_code rc : p.reasons)
            w.u8(static_cast<std::uint8_t>(rc));
    }
    return b.finish(packet_type::unsuback, 0);
}

}  // namespace citygate::mqtt
