// MQTT 5 property blocks: where each property may appear, decoding with duplicate and value
// checks, and encoding in identifier order.
#include "protocols/mqtt/properties.hpp"

#include <cstring>

#include "protocols/mqtt/detail/codec.hpp"

namespace citygate::mqtt {
namespace {

constexpr std::uint32_t bit(property_context c) {
    return 1u << static_cast<unsigned>(c);
}

constexpr std::uint32_t publish_like = bit(property_context::publish) | bit(property_context::will);
constexpr std::uint32_t reason_string_allowed =
    bit(property_context::connack) | bit(property_context::puback) | bit(property_context::pubrec) |
    bit(property_context::pubrel) | bit(property_context::pubcomp) | bit(property_context::suback) |
    bit(property_context::unsuback) | bit(property_context::disconnect) |
    bit(property_context::auth);
constexpr std::uint32_t everywhere = 0xFFFFu;

// Contexts per identifier (0 = unknown identifier).
constexpr std::uint32_t allowed_mask(std::uint32_t id) {
    using c = property_context;
    switch (id) {
        case 0x01:
        case 0x02:
        case 0x03:
        case 0x08:
        case 0x09:
            return publish_like;
        case 0x0B:
            return bit(c::publish) | bit(c::subscribe);
        case 0x11:
            return bit(c::connect) | bit(c::connack) | bit(c::disconnect);
        case 0x12:
            return bit(c::connack);
        case 0x13:
            return bit(c::connack);
        case 0x15:
        case 0x16:
            return bit(c::connect) | bit(c::connack) | bit(c::auth);
        case 0x17:
            return bit(c::connect);
        case 0x18:
            return bit(c::will);
        case 0x19:
            return bit(c::connect);
        case 0x1A:
            return bit(c::connack);
        case 0x1C:
            return bit(c::connack) | bit(c::disconnect);
        case 0x1F:
            return reason_string_allowed;
        case 0x21:
        case 0x22:
        case 0x27:
            return bit(c::connect) | bit(c::connack);
        case 0x23:
            return bit(c::publish);
        case 0x24:
        case 0x25:
        case 0x28:
        case 0x29:
        case 0x2A:
            return bit(c::connack);
        case 0x26:
            return everywhere;
        default:
            return 0;
    }
}

bool zero_or_one(std::uint8_t v) {
    return v <= 1;
}

}  // namespace

bool property_allowed(std::uint32_t id, property_context where) noexcept {
    return (allowed_mask(id) & bit(where)) != 0;
}

bool empty(const properties& p) noexcept {
    return !p.payload_format_indicator && !p.message_expiry_interval && !p.content_type &&
           !p.response_topic && !p.correlation_data && p.subscription_identifiers.empty() &&
           !p.session_expiry_interval && !p.assigned_client_identifier && !p.server_keep_alive &&
           !p.authentication_method && !p.authentication_data && !p.request_problem_information &&
           !p.will_delay_interval && !p.request_response_information && !p.response_information &&
           !p.server_reference && !p.reason_string && !p.receive_maximum &&
           !p.topic_alias_maximum && !p.topic_alias && !p.maximum_qos && !p.retain_available &&
           p.user_properties.empty() && !p.maximum_packet_size &&
           !p.wildcard_subscription_available && !p.subscription_identifier_available &&
           !p.shared_subscription_available;
}

namespace detail {

bool decode_properties(reader& outer, property_context where, properties& out, decode_state& st) {
    std::uint32_t length;
    if (!outer.vbi(length)) return false;
    reader r(nullptr, nullptr);
    if (!outer.sub(length, r)) return false;
    std::uint64_t seen = 0;
    while (!r.empty()) {
        std::uint32_t id;
        if (!r.vbi(id)) return outer.fail(r.error());
        if (!property_allowed(id, where)) return outer.fail(errc::property_not_allowed);
        const std::uint64_t id_bit = std::uint64_t{1} << id;
        const bool repeatable = id == 0x26 || (id == 0x0B && where == property_context::publish);
        if ((seen & id_bit) != 0 && !repeatable) return outer.fail(errc::duplicate_property);
        seen |= id_bit;
        std::uint8_t b = 0;
        std::uint16_t h = 0;
        std::uint32_t w = 0;
        std::string_view s;
        bytes_view bin;
        bool value_ok = true;
        switch (static_cast<property_id>(id)) {
            case property_id::payload_format_indicator:
                if (r.u8(b)) value_ok = zero_or_one(b), out.payload_format_indicator = b;
                break;
            case property_id::message_expiry_interval:
                if (r.u32(w)) out.message_expiry_interval = w;
                break;
            case property_id::content_type:
                if (r.utf8(s)) out.content_type = s;
                break;
            case property_id::response_topic:
                // MQTT-3.1.2-28 / MQTT-3.3.2-14: a topic name, so no wildcards.
                if (r.utf8(s)) value_ok = valid_topic_name(s), out.response_topic = s;
                break;
            case property_id::correlation_data:
                if (r.binary(bin)) out.correlation_data = bin;
                break;
            case property_id::subscription_identifier:
                if (r.vbi(w)) {
                    value_ok = w != 0;  // MQTT 5 section 3.8.2.1.2: 0 is a protocol error
                    st.has_lists = true;
                    if (st.store_lists) out.subscription_identifiers.push_back(w);
                }
                break;
            case property_id::session_expiry_interval:
                if (r.u32(w)) out.session_expiry_interval = w;
                break;
            case property_id::assigned_client_identifier:
                if (r.utf8(s)) out.assigned_client_identifier = s;
                break;
            case property_id::server_keep_alive:
                if (r.u16(h)) out.server_keep_alive = h;
                break;
            case property_id::authentication_method:
                if (r.utf8(s)) out.authentication_method = s;
                break;
            case property_id::authentication_data:
                if (r.binary(bin)) out.authentication_data = bin;
                break;
            case property_id::request_problem_information:
                if (r.u8(b)) value_ok = zero_or_one(b), out.request_problem_information = b;
                break;
            case property_id::will_delay_interval:
                if (r.u32(w)) out.will_delay_interval = w;
                break;
            case property_id::request_response_information:
                if (r.u8(b)) value_ok = zero_or_one(b), out.request_response_information = b;
                break;
            case property_id::response_information:
                if (r.utf8(s)) out.response_information = s;
                break;
            case property_id::server_reference:
                if (r.utf8(s)) out.server_reference = s;
                break;
            case property_id::reason_string:
                if (r.utf8(s)) out.reason_string = s;
                break;
            case property_id::receive_maximum:
                if (r.u16(h)) value_ok = h != 0, out.receive_maximum = h;
                break;
            case property_id::topic_alias_maximum:
                if (r.u16(h)) out.topic_alias_maximum = h;
                break;
            case property_id::topic_alias:
                if (r.u16(h)) out.topic_alias = h;  // 0 and range are the session's check
                break;
            case property_id::maximum_qos:
                if (r.u8(b)) value_ok = zero_or_one(b), out.maximum_qos = b;
                break;
            case property_id::retain_available:
                if (r.u8(b)) value_ok = zero_or_one(b), out.retain_available = b;
                break;
            case property_id::user_property: {
                std::string_view value;
                if (r.utf8(s) && r.utf8(value)) {
                    if (++st.user_properties > st.limits.maximum_user_properties) {
                        return outer.fail(errc::too_many_properties);
                    }
                    st.has_lists = true;
                    if (st.store_lists) out.user_properties.push_back({s, value});
                }
                break;
            }
            case property_id::maximum_packet_size:
                if (r.u32(w)) value_ok = w != 0, out.maximum_packet_size = w;
                break;
            case property_id::wildcard_subscription_available:
                if (r.u8(b)) value_ok = zero_or_one(b), out.wildcard_subscription_available = b;
                break;
            case property_id::subscription_identifier_available:
                if (r.u8(b)) value_ok = zero_or_one(b), out.subscription_identifier_available = b;
                break;
            case property_id::shared_subscription_available:
                if (r.u8(b)) value_ok = zero_or_one(b), out.shared_subscription_available = b;
                break;
        }
        if (!r.ok()) return outer.fail(r.error());
        if (!value_ok) return outer.fail(errc::invalid_property_value);
    }
    return true;
}

namespace {

class property_writer {
  public:
    explicit property_writer(writer& w) : w_(w) {}
    bool ok = true;

    void u8(property_id id, const std::optional<std::uint8_t>& v) {
        if (v) w_.u8(static_cast<std::uint8_t>(id)), w_.u8(*v);
    }
    void u16(property_id id, const std::optional<std::uint16_t>& v) {
        if (v) w_.u8(static_cast<std::uint8_t>(id)), w_.u16(*v);
    }
    void u32(property_id id, const std::optional<std::uint32_t>& v) {
        if (v) w_.u8(static_cast<std::uint8_t>(id)), w_.u32(*v);
    }
    void str(property_id id, const std::optional<std::string_view>& v) {
        if (!v) return;
        if (!fits_u16(v->size())) ok = false;
        w_.u8(static_cast<std::uint8_t>(id));
        w_.utf8(*v);
    }
    void bin(property_id id, const std::optional<bytes_view>& v) {
        if (!v) return;
        if (!fits_u16(v->size())) ok = false;
        w_.u8(static_cast<std::uint8_t>(id));
        w_.binary(*v);
    }

  private:
    writer& w_;
};

}  // namespace

bool encode_properties(writer& w, const properties& p) {
    auto& buf = w.buffer();
    const std::size_t length_at = buf.size();
    buf.resize(length_at + 4);  // room for the longest length; closed up below
    const std::size_t body_at = buf.size();
    property_writer pw(w);
    using id = property_id;
    pw.u8(id::payload_format_indicator, p.payload_format_indicator);
    pw.u32(id::message_expiry_interval, p.message_expiry_interval);
    pw.str(id::content_type, p.content_type);
    pw.str(id::response_topic, p.response_topic);
    pw.bin(id::correlation_data, p.correlation_data);
    for (std::uint32_t sid : p.subscription_identifiers) {
        w.u8(static_cast<std::uint8_t>(id::subscription_identifier));
        w.vbi(sid);
    }
    pw.u32(id::session_expiry_interval, p.session_expiry_interval);
    pw.str(id::assigned_client_identifier, p.assigned_client_identifier);
    pw.u16(id::server_keep_alive, p.server_keep_alive);
    pw.str(id::authentication_method, p.authentication_method);
    pw.bin(id::authentication_data, p.authentication_data);
    pw.u8(id::request_problem_information, p.request_problem_information);
    pw.u32(id::will_delay_interval, p.will_delay_interval);
    pw.u8(id::request_response_information, p.request_response_information);
    pw.str(id::response_information, p.response_information);
    pw.str(id::server_reference, p.server_reference);
    pw.str(id::reason_string, p.reason_string);
    pw.u16(id::receive_maximum, p.receive_maximum);
    pw.u16(id::topic_alias_maximum, p.topic_alias_maximum);
    pw.u16(id::topic_alias, p.topic_alias);
    pw.u8(id::maximum_qos, p.maximum_qos);
    pw.u8(id::retain_available, p.retain_available);
    for (const auto& up : p.user_properties) {
        if (!fits_u16(up.name.size()) || !fits_u16(up.value.size())) pw.ok = false;
        w.u8(static_cast<std::uint8_t>(id::user_property));
        w.utf8(up.name);
        w.utf8(up.value);
    }
    pw.u32(id::maximum_packet_size, p.maximum_packet_size);
    pw.u8(id::wildcard_subscription_available, p.wildcard_subscription_available);
    pw.u8(id::subscription_identifier_available, p.subscription_identifier_available);
    pw.u8(id::shared_subscription_available, p.shared_subscription_available);
    const std::size_t length = buf.size() - body_at;
    if (length > max_vbi) return false;
    std::uint8_t prefix[4];
    const std::size_t n = encode_vbi(static_cast<std::uint32_t>(length), prefix);
    std::memcpy(buf.data() + body_at - n, prefix, n);
    buf.erase(buf.begin() + static_cast<std::ptrdiff_t>(length_at),
              buf.begin() + static_cast<std::ptrdiff_t>(body_at - n));
    return pw.ok;
}

}  // namespace detail
}  // namespace citygate::mqtt
