// The client half of the MQTT flows: CONNECT/CONNACK, outbound QoS 0/1/2 with packet ids and the
// server's limits, keep-alive, inbound PUBLISH acknowledged in arrival order, SUBSCRIBE.
#include "protocols/mqtt/client_session.hpp"

#include <algorithm>
#include <limits>

#include "protocols/mqtt/error.hpp"

namespace citygate::mqtt {
namespace {

bool is_failure(reason_code reason) {
    return static_cast<std::uint8_t>(reason) >= 0x80;
}

}  // namespace

client_session::client_session(client_handler& handler, protocol_version version,
                               client_options options)
    : handler_(handler), options_(options), version_(version) {
    // The load generator holds ~19k of these per process, next to its socket and timers.
    static_assert(sizeof(client_session) <= 72, "client_session grew: check loadgen memory");
}

template <typename Packet>
boost::system::error_code client_session::send_packet(const Packet& p) {
    encoded_packet local;
    encoded_packet* out = handler_.encode_buffer();
    if (out == nullptr) out = &local;
    boost::system::error_code ec;
    if constexpr (std::is_same_v<Packet, connect_packet>) {
        ec = encode(p, *out);
    } else {
        ec = encode(p, version_, *out);
    }
    if (ec) return ec;
    // MQTT-3.2.2-15 (v5): nothing above the server's maximum packet size.
    if (out->size() > server_maximum_packet_size_) return errc::packet_too_large;
    sent_since_check_ = true;
    handler_.on_packet(packet_direction::outbound, packet_type_of<Packet>);
    handler_.send(out->header());
    if (!out->payload().empty()) handler_.send(out->payload());
    return {};
}

void client_session::connect(connect_packet packet) {
    flows_.clear();
    publishes_in_flight_ = 0;
    server_maximum_packet_size_ = std::numeric_limits<std::uint32_t>::max();
    receive_maximum_ = 0xFFFF;
    pings_unanswered_ = 0;
    sent_since_check_ = false;
    timer_armed_ = false;
    packet.version = version_;
    keep_alive_s_ = packet.keep_alive_s;
    stage_ = stage::connecting;
    if (auto ec = send_packet(packet)) {
        end(client_end::protocol_error, to_reason_code(static_cast<errc>(ec.value())));
    }
}

client_session::flow* client_session::find(std::uint16_t id, bool inbound) {
    auto it = std::find_if(flows_.begin(), flows_.end(), [&](const flow& f) {
        return f.packet_id == id && (f.state >= flow_state::inbound_qos1) == inbound;
    });
    return it == flows_.end() ? nullptr : &*it;
}

void client_session::release(const flow* f) {
    const bool publish = f->state == flow_state::awaiting_puback ||
                         f->state == flow_state::awaiting_pubrec ||
                         f->state == flow_state::awaiting_pubcomp;
    if (publish) --publishes_in_flight_;
    flows_.erase(flows_.begin() + (f - flows_.data()));
    if (flows_.empty()) flows_.shrink_to_fit();  // an idle connection keeps no flow table
}

std::uint16_t client_session::allocate_id() {
    // MQTT-2.2.1-3 (MQTT-2.3.1-2 in 3.1.1): a non-zero id not in use by one of our flows.
    for (int tries = 0; tries < 0xFFFF; ++tries) {
        const std::uint16_t id = next_id_;
        next_id_ = static_cast<std::uint16_t>(next_id_ == 0xFFFF ? 1 : next_id_ + 1);
        if (find(id, false) == nullptr) return id;
    }
    return 0;
}

client_session::publish_result client_session::publish(std::string_view topic, bytes_view payload,
                                                       qos q, bool retain,
                                                       const properties* props) {
    if (stage_ != stage::connected) return {0, errc::unexpected_packet};
    publish_packet p;
    p.topic = topic;
    p.payload = payload;
    p.qos = q;
    p.retain = retain;
    if (props != nullptr) p.props = *props;
    if (q != qos::at_most_once) {
        // MQTT-3.3.4-7: no more QoS 1/2 PUBLISHes in flight than the server's receive maximum.
        if (publishes_in_flight_ >= receive_maximum_) return {0, errc::receive_maximum_exceeded};
        p.packet_id = allocate_id();
        if (p.packet_id == 0) return {0, errc::receive_maximum_exceeded};
    }
    if (auto ec = send_packet(p)) return {0, ec};
    if (q != qos::at_most_once) {
        flows_.push_back(
            {p.packet_id,
             q == qos::at_least_once ? flow_state::awaiting_puback : flow_state::awaiting_pubrec,
             reason_code::success});
        ++publishes_in_flight_;
    }
    return {p.packet_id, {}};
}

std::uint16_t client_session::subscribe(std::span<const subscription> entries) {
    if (stage_ != stage::connected) return 0;
    subscribe_packet s;
    s.packet_id = allocate_id();
    if (s.packet_id == 0) return 0;
    s.entries.assign(entries.begin(), entries.end());
    if (send_packet(s)) return 0;
    flows_.push_back({s.packet_id, flow_state::awaiting_suback, reason_code::success});
    return s.packet_id;
}

std::uint16_t client_session::unsubscribe(std::span<const std::string_view> filters) {
    if (stage_ != stage::connected) return 0;
    unsubscribe_packet u;
    u.packet_id = allocate_id();
    if (u.packet_id == 0) return 0;
    u.filters.assign(filters.begin(), filters.end());
    if (send_packet(u)) return 0;
    flows_.push_back({u.packet_id, flow_state::awaiting_unsuback, reason_code::success});
    return u.packet_id;
}

void client_session::ping() {
    if (stage_ != stage::connected) return;
    if (!send_packet(pingreq_packet{})) ++pings_unanswered_;
}

void client_session::disconnect(reason_code reason) {
    if (stage_ != stage::connecting && stage_ != stage::connected) return;
    disconnect_packet d;
    d.reason =
        valid_reason(packet_type::disconnect, reason) ? reason : reason_code::unspecified_error;
    static_cast<void>(send_packet(d));  // a bare DISCONNECT always encodes
    end(client_end::disconnected, reason);
}

void client_session::acknowledge(std::uint16_t packet_id, reason_code reason) {
    if (stage_ != stage::connected) return;
    flow* f = find(packet_id, true);
    if (f == nullptr) return;
    if (f->state == flow_state::inbound_qos1) {
        f->state = flow_state::acknowledged_qos1;
    } else if (f->state == flow_state::inbound_qos2) {
        f->state = flow_state::acknowledged_qos2;
    } else {
        return;  // already acknowledged
    }
    f->reason = version_ == protocol_version::v5 ? reason : reason_code::success;
    send_inbound_acks();
}

void client_session::send_inbound_acks() {
    // MQTT-4.6.0-2: PUBACKs and PUBRECs leave in the order their PUBLISHes arrived.
    std::size_t i = 0;
    while (i < flows_.size()) {
        flow& f = flows_[i];
        if (f.state == flow_state::inbound_qos1 || f.state == flow_state::inbound_qos2) return;
        if (f.state == flow_state::acknowledged_qos1) {
            puback_packet ack;
            ack.packet_id = f.packet_id;
            ack.reason = valid_reason(packet_type::puback, f.reason)
                             ? f.reason
                             : reason_code::unspecified_error;
            static_cast<void>(send_packet(ack));
            release(&f);
            continue;
        }
        if (f.state == flow_state::acknowledged_qos2) {
            pubrec_packet rec;
            rec.packet_id = f.packet_id;
            rec.reason = valid_reason(packet_type::pubrec, f.reason)
                             ? f.reason
                             : reason_code::unspecified_error;
            static_cast<void>(send_packet(rec));
            if (is_failure(rec.reason)) {  // a failure code ends the flow
                release(&f);
                continue;
            }
            f.state = flow_state::awaiting_pubrel;
        }
        ++i;
    }
}

void client_session::end(client_end why, reason_code reason) {
    if (stage_ == stage::closed) return;
    stage_ = stage::closed;
    if (timer_armed_) handler_.cancel_timer(client_timer::keep_alive);
    timer_armed_ = false;
    flows_ = {};
    publishes_in_flight_ = 0;
    handler_.close(why, reason);
}

void client_session::fail(reason_code reason) {
    if (stage_ != stage::connecting && stage_ != stage::connected) return;
    if (version_ == protocol_version::v5) {
        disconnect_packet d;
        d.reason =
            valid_reason(packet_type::disconnect, reason) ? reason : reason_code::protocol_error;
        static_cast<void>(send_packet(d));
    }
    end(client_end::protocol_error, reason);
}

void client_session::arm_keep_alive() {
    if (keep_alive_s_ == 0 || stage_ != stage::connected) return;
    // Checked every half period: a client silent for a whole half period pings, so the server
    // never sees more than one keep-alive period without a packet (MQTT-3.1.2-23 / -20).
    handler_.arm_timer(client_timer::keep_alive, std::chrono::milliseconds(keep_alive_s_) * 500);
    timer_armed_ = true;
}

void client_session::on_timer(client_timer kind) {
    if (kind != client_timer::keep_alive) return;
    timer_armed_ = false;
    if (stage_ != stage::connected || keep_alive_s_ == 0) return;  // a stray expiry
    if (pings_unanswered_ >= 2) {
        return end(client_end::keep_alive_timeout, reason_code::keep_alive_timeout);
    }
    if (!sent_since_check_ && !send_packet(pingreq_packet{})) ++pings_unanswered_;
    sent_since_check_ = false;
    arm_keep_alive();
}

void client_session::on_peer_closed() {
    stage_ = stage::closed;
    timer_armed_ = false;
    flows_ = {};
    publishes_in_flight_ = 0;
}

std::size_t client_session::inflight() const noexcept {
    return publishes_in_flight_;
}

std::size_t client_session::on_bytes(bytes_view bytes) {
    std::size_t consumed = 0;
    packet current;  // not a member: an idle session keeps no parsed packet
    while ((stage_ == stage::connecting || stage_ == stage::connected) && consumed < bytes.size()) {
        const auto r = parse(bytes.subspan(consumed), version_, options_.limits, current);
        if (r.status == parse_status::need_more) break;
        if (r.status == parse_status::error) {
            fail(to_reason_code(static_cast<errc>(r.error.value())));
            break;
        }
        consumed += r.consumed;
        handler_.on_packet(packet_direction::inbound, type_of(current));
        handle(current);
    }
    return consumed;
}

void client_session::handle(const packet& p) {
    if (const auto* ack = std::get_if<connack_packet>(&p)) {
        if (stage_ != stage::connecting) return fail(reason_code::protocol_error);
        const bool accepted = ack->reason == reason_code::success;
        if (accepted) {
            stage_ = stage::connected;
            receive_maximum_ = ack->props.receive_maximum.value_or(0xFFFF);
            server_maximum_packet_size_ =
                ack->props.maximum_packet_size.value_or(std::numeric_limits<std::uint32_t>::max());
            keep_alive_s_ = ack->props.server_keep_alive.value_or(keep_alive_s_);  // MQTT-3.2.2-21
        }
        handler_.on_connack(*ack);
        if (!accepted) return end(client_end::refused, ack->reason);
        return arm_keep_alive();  // unless on_connack() already disconnected
    }
    // MQTT-3.2.0-1: the server's first packet is CONNACK.
    if (stage_ != stage::connected) return fail(reason_code::protocol_error);
    std::visit([this](const auto& typed) { receive(typed); }, p);
}

void client_session::receive(const puback_packet& p) {
    const flow* f = find(p.packet_id, false);
    // An acknowledgement of nothing we sent: the server lost track of our session.
    if (f == nullptr || f->state != flow_state::awaiting_puback) {
        return fail(reason_code::protocol_error);
    }
    release(f);
    handler_.on_published(p.packet_id, p.reason);
}

void client_session::receive(const pubrec_packet& p) {
    flow* f = find(p.packet_id, false);
    pubrel_packet rel;
    rel.packet_id = p.packet_id;
    if (f == nullptr ||
        (f->state != flow_state::awaiting_pubrec && f->state != flow_state::awaiting_pubcomp)) {
        // Section 4.3.3 (v5): an unknown id is answered with PUBREL 0x92.
        if (version_ == protocol_version::v5) rel.reason = reason_code::packet_identifier_not_found;
        static_cast<void>(send_packet(rel));
        return;
    }
    if (is_failure(p.reason)) {  // the flow ends on a failure code
        release(f);
        return handler_.on_published(p.packet_id, p.reason);
    }
    f->state = flow_state::awaiting_pubcomp;  // a repeated PUBREC gets the PUBREL again
    static_cast<void>(send_packet(rel));
}

void client_session::receive(const pubcomp_packet& p) {
    const flow* f = find(p.packet_id, false);
    if (f == nullptr || f->state != flow_state::awaiting_pubcomp) {
        return fail(reason_code::protocol_error);
    }
    release(f);
    handler_.on_published(p.packet_id, p.reason);
}

void client_session::receive(const publish_packet& p) {
    if (p.qos == qos::at_most_once) return handler_.on_message(p);
    if (flow* f = find(p.packet_id, true)) {
        // A resent QoS 2 PUBLISH is not delivered twice (section 4.3.3): once PUBREC is out it
        // is repeated, before that it follows in order.
        if (f->state == flow_state::awaiting_pubrel) {
            pubrec_packet rec;
            rec.packet_id = p.packet_id;
            static_cast<void>(send_packet(rec));
        }
        return;
    }
    flows_.push_back(
        {p.packet_id,
         p.qos == qos::at_least_once ? flow_state::inbound_qos1 : flow_state::inbound_qos2,
         reason_code::success});
    handler_.on_message(p);
    if (options_.acknowledge_on_return) acknowledge(p.packet_id);
}

void client_session::receive(const pubrel_packet& p) {
    pubcomp_packet comp;
    comp.packet_id = p.packet_id;
    const flow* f = find(p.packet_id, true);
    if (f != nullptr && f->state == flow_state::awaiting_pubrel) {
        release(f);
    } else if (version_ == protocol_version::v5) {
        comp.reason = reason_code::packet_identifier_not_found;
    }
    static_cast<void>(send_packet(comp));
}

void client_session::receive(const suback_packet& p) {
    const flow* f = find(p.packet_id, false);
    if (f == nullptr || f->state != flow_state::awaiting_suback) {
        return fail(reason_code::protocol_error);
    }
    release(f);
    handler_.on_suback(p);
}

void client_session::receive(const unsuback_packet& p) {
    const flow* f = find(p.packet_id, false);
    if (f == nullptr || f->state != flow_state::awaiting_unsuback) {
        return fail(reason_code::protocol_error);
    }
    release(f);
    handler_.on_unsuback(p);
}

void client_session::receive(const pingresp_packet&) {
    pings_unanswered_ = 0;
    handler_.on_pingresp();
}

void client_session::receive(const disconnect_packet& p) {
    end(client_end::server_disconnect, p.reason);
}

}  // namespace citygate::mqtt
