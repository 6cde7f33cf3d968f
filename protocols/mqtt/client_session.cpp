// The client half of the MQTT flows, used by the load generator.
#include "protocols/mqtt/client_session.hpp"

#include <algorithm>

#include "protocols/mqtt/error.hpp"

namespace citygate::mqtt {

client_session::client_session(client_handler& handler, protocol_version version,
                               parser_limits limits)
    : handler_(handler), version_(version), limits_(limits) {}

template <typename Packet>
void client_session::send_packet(const Packet& p) {
    boost::system::error_code ec;
    if constexpr (std::is_same_v<Packet, connect_packet>) {
        ec = encode(p, scratch_);
    } else {
        ec = encode(p, version_, scratch_);
    }
    if (ec) return fail(to_reason_code(static_cast<errc>(ec.value())));
    out_.clear();
    scratch_.append_to(out_);
    handler_.send(out_);
}

void client_session::connect(connect_packet packet) {
    packet.version = version_;
    send_packet(packet);
}

client_session::outgoing* client_session::find(std::uint16_t id) {
    auto it = std::find_if(inflight_.begin(), inflight_.end(),
                           [id](const outgoing& o) { return o.packet_id == id; });
    return it == inflight_.end() ? nullptr : &*it;
}

void client_session::release(std::uint16_t id) {
    std::erase_if(inflight_, [id](const outgoing& o) { return o.packet_id == id; });
}

std::optional<std::uint16_t> client_session::allocate_id() {
    // MQTT-2.2.1-3 (MQTT-2.3.1-2 in 3.1.1): a non-zero id not in use.
    for (int tries = 0; tries < 0x10000; ++tries) {
        const std::uint16_t id = next_id_;
        next_id_ = static_cast<std::uint16_t>(next_id_ == 0xFFFF ? 1 : next_id_ + 1);
        if (find(id) == nullptr &&
            std::find(other_ids_.begin(), other_ids_.end(), id) == other_ids_.end()) {
            return id;
        }
    }
    return std::nullopt;
}

std::optional<std::uint16_t> client_session::publish(std::string_view topic, bytes_view payload,
                                                     qos q, bool retain, const properties* props) {
    if (ended_) return std::nullopt;
    publish_packet p;
    p.topic = topic;
    p.payload = payload;
    p.qos = q;
    p.retain = retain;
    if (props != nullptr) p.props = *props;
    if (q != qos::at_most_once) {
        // MQTT-3.3.4-7: no more QoS 1/2 PUBLISHes in flight than the server's receive maximum.
        if (inflight_.size() >= receive_maximum_) return std::nullopt;
        const auto id = allocate_id();
        if (!id) return std::nullopt;
        p.packet_id = *id;
        inflight_.push_back(
            {*id, q == qos::at_least_once ? flight::awaiting_puback : flight::awaiting_pubrec});
    }
    send_packet(p);
    return p.packet_id;
}

std::optional<std::uint16_t> client_session::subscribe(std::span<const subscription> entries) {
    const auto id = allocate_id();
    if (!id || ended_) return std::nullopt;
    subscribe_packet s;
    s.packet_id = *id;
    s.entries.assign(entries.begin(), entries.end());
    other_ids_.push_back(*id);
    send_packet(s);
    return id;
}

std::optional<std::uint16_t> client_session::unsubscribe(
    std::span<const std::string_view> filters) {
    const auto id = allocate_id();
    if (!id || ended_) return std::nullopt;
    unsubscribe_packet u;
    u.packet_id = *id;
    u.filters.assign(filters.begin(), filters.end());
    other_ids_.push_back(*id);
    send_packet(u);
    return id;
}

void client_session::ping() {
    if (!ended_) send_packet(pingreq_packet{});
}

void client_session::disconnect(reason_code reason) {
    if (ended_) return;
    disconnect_packet d;
    d.reason = reason;
    send_packet(d);
    ended_ = true;
    connected_ = false;
}

void client_session::fail(reason_code reason) {
    if (ended_) return;
    ended_ = true;
    connected_ = false;
    if (version_ == protocol_version::v5) {
        disconnect_packet d;
        d.reason =
            valid_reason(packet_type::disconnect, reason) ? reason : reason_code::protocol_error;
        if (!encode(d, version_, scratch_)) {
            out_.clear();
            scratch_.append_to(out_);
            handler_.send(out_);
        }
    }
    handler_.on_disconnect(reason);
}

std::size_t client_session::on_bytes(bytes_view bytes) {
    std::size_t consumed = 0;
    while (!ended_ && consumed < bytes.size()) {
        const auto r = parse(bytes.subspan(consumed), version_, limits_, current_);
        if (r.status == parse_status::need_more) break;
        if (r.status == parse_status::error) {
            fail(to_reason_code(static_cast<errc>(r.error.value())));
            break;
        }
        consumed += r.consumed;
        handle(current_);
    }
    return consumed;
}

void client_session::handle(const packet& p) {
    if (const auto* ack = std::get_if<connack_packet>(&p)) {
        if (connected_) return fail(reason_code::protocol_error);
        connected_ = ack->reason == reason_code::success;
        receive_maximum_ = ack->props.receive_maximum.value_or(0xFFFF);
        handler_.on_connack(*ack);
        if (!connected_) {
            ended_ = true;
            handler_.on_disconnect(ack->reason);
        }
        return;
    }
    if (!connected_) return fail(reason_code::protocol_error);  // CONNACK comes first
    std::visit(
        [this](const auto& typed) {
            using P = std::decay_t<decltype(typed)>;
            if constexpr (std::is_same_v<P, puback_packet>) {
                outgoing* o = find(typed.packet_id);
                if (o == nullptr || o->state != flight::awaiting_puback) return;
                release(typed.packet_id);
                handler_.on_published(typed.packet_id, typed.reason);
            } else if constexpr (std::is_same_v<P, pubrec_packet>) {
                outgoing* o = find(typed.packet_id);
                if (o == nullptr || o->state == flight::awaiting_puback) {
                    // v5 4.3.3: answer an unknown id with PUBREL 0x92.
                    pubrel_packet rel;
                    rel.packet_id = typed.packet_id;
                    rel.reason = reason_code::packet_identifier_not_found;
                    if (version_ == protocol_version::v3_1_1) rel.reason = reason_code::success;
                    return send_packet(rel);
                }
                if (static_cast<std::uint8_t>(typed.reason) >= 0x80) {
                    release(typed.packet_id);  // the flow ends on a failure code
                    return handler_.on_published(typed.packet_id, typed.reason);
                }
                o->state = flight::awaiting_pubcomp;
                pubrel_packet rel;
                rel.packet_id = typed.packet_id;
                send_packet(rel);
            } else if constexpr (std::is_same_v<P, pubcomp_packet>) {
                outgoing* o = find(typed.packet_id);
                if (o == nullptr || o->state != flight::awaiting_pubcomp) return;
                release(typed.packet_id);
                handler_.on_published(typed.packet_id, typed.reason);
            } else if constexpr (std::is_same_v<P, publish_packet>) {
                handler_.on_message(typed);
                if (typed.qos == qos::at_least_once) {
                    puback_packet ack;
                    ack.packet_id = typed.packet_id;
                    send_packet(ack);
                } else if (typed.qos == qos::exactly_once) {
                    pubrec_packet rec;
                    rec.packet_id = typed.packet_id;
                    send_packet(rec);
                }
            } else if constexpr (std::is_same_v<P, pubrel_packet>) {
                pubcomp_packet comp;
                comp.packet_id = typed.packet_id;
                send_packet(comp);
            } else if constexpr (std::is_same_v<P, suback_packet> ||
                                 std::is_same_v<P, unsuback_packet>) {
                std::erase(other_ids_, typed.packet_id);
                if constexpr (std::is_same_v<P, suback_packet>) {
                    handler_.on_suback(typed);
                } else {
                    handler_.on_unsuback(typed);
                }
            } else if constexpr (std::is_same_v<P, pingresp_packet>) {
                handler_.on_pingresp();
            } else if constexpr (std::is_same_v<P, disconnect_packet>) {
                ended_ = true;
                connected_ = false;
                handler_.on_disconnect(typed.reason);
            } else {
                // CONNECT, SUBSCRIBE, UNSUBSCRIBE, PINGREQ, AUTH: not from a server to us.
                fail(reason_code::protocol_error);
            }
        },
        p);
}

}  // namespace citygate::mqtt
