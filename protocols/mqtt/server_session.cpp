// The server-side MQTT session engine: CONNECT handshake, keep-alive, inbound QoS 0/1/2 flows
// with ordered acknowledgements, receive maximum, topic aliases, SUBSCRIBE/UNSUBSCRIBE hooks.
#include "protocols/mqtt/server_session.hpp"

#include <algorithm>
#include <atomic>
#include <limits>
#include <new>
#include <string>

#include "protocols/mqtt/encoder.hpp"
#include "protocols/mqtt/error.hpp"
#include "protocols/mqtt/parser.hpp"
#include "protocols/mqtt/validation.hpp"

namespace citygate::mqtt {
namespace {

// Process-wide so that assigned ids differ between the connections of one gateway.
std::atomic<std::uint64_t> assigned_id_counter{0};

}  // namespace

struct server_session::state {
    state(session_handler& h, const server_limits& l) : handler(h), limits(l) {}

    enum class phase : std::uint8_t { awaiting_connect, authenticating, connected, closed };

    // One QoS 1/2 PUBLISH whose acknowledgement has not gone out yet, in arrival order.
    struct pending_ack {
        delivery_token token;
        std::uint16_t packet_id;
        mqtt::qos qos;
        bool done;
        reason_code outcome;  // what the PUBACK or PUBREC says
    };

    // What few clients use, allocated at first use so that an idle connection does not carry it.
    struct rarely_used {
        std::vector<std::uint16_t> awaiting_pubrel;  // QoS 2: PUBREC sent, PUBREL not yet received
        std::vector<std::string> topic_aliases;      // v5 inbound aliases, index alias - 1
        std::vector<std::uint8_t> held;  // complete packets received while authenticating
    };

    // Ordered by size, the flags as bits: the state is allocated per connection, and 136 bytes
    // is what malloc serves from a 144-byte chunk.
    session_handler& handler;
    const server_limits& limits;  // the caller's, which outlive the session
    std::string client_id;

    // No parsed or encoded packet member: an idle connection would carry it (DESIGN.md).
    // on_bytes() parses into a local packet and queue() encodes into a local buffer.
    std::vector<std::uint8_t> outbox;  // released once sent

    std::vector<pending_ack> acks;      // acks[ack_head..] are pending
    std::unique_ptr<rarely_used> rare;  // null until needed
    delivery_token next_token = 1;
    std::uint32_t ack_head = 0;  // acks holds at most receive_maximum + 64 entries
    std::uint32_t undone = 0;    // delivered, complete() not yet called
    std::uint32_t peer_maximum_packet_size = std::numeric_limits<std::uint32_t>::max();
    // What the CONNACK needs from a CONNECT whose authentication is pending.
    std::uint32_t asked_session_expiry = 0;
    std::uint16_t keep_alive_s = 0;
    phase stage = phase::awaiting_connect;
    protocol_version version = protocol_version::v3_1_1;
    bool session_expiry_zero : 1 = true;  // CONNECT asked for 0: DISCONNECT may not raise it
    bool client_id_assigned : 1 = false;
    bool connect_timer_armed : 1 = false;
    bool keep_alive_armed : 1 = false;
    bool in_input : 1 = false;  // inside on_bytes(): sends are batched until it returns

    rarely_used& extras() {
        if (!rare) rare = std::make_unique<rarely_used>();
        return *rare;
    }
    std::size_t awaiting_pubrel_count() const { return rare ? rare->awaiting_pubrel.size() : 0; }
    std::size_t held_bytes() const { return rare ? rare->held.size() : 0; }

    parser_limits parsing() const {
        parser_limits p;
        p.maximum_packet_size = limits.maximum_packet_size;
        p.maximum_topic_length = limits.maximum_topic_length;
        p.maximum_user_properties = limits.maximum_user_properties;
        p.maximum_topic_filters = limits.maximum_topic_filters;
        return p;
    }

    bool v5() const { return version == protocol_version::v5; }

    // QoS 1/2 PUBLISHes not fully acknowledged: what receive maximum counts (section 4.9).
    std::size_t unacknowledged() const { return acks.size() - ack_head + awaiting_pubrel_count(); }

    template <typename Packet>
    void queue(const Packet& p) {
        // Our own packets always encode: reason codes are checked against each packet's table
        // before they get here, and no field comes near 65535 bytes. Nothing to report.
        // Per thread, not per packet: it keeps its buffer's capacity (a PUBACK encoded into a
        // fresh one allocated twice). Used only between here and append_to below.
        thread_local encoded_packet scratch;
        if (encode(p, version, scratch)) return;
        // MQTT-3.1.2-24: never send a packet above the client's maximum packet size.
        if (scratch.size() > peer_maximum_packet_size) return;
        handler.on_packet(packet_direction::outbound, packet_type_of<Packet>);
        scratch.append_to(outbox);
    }

    void flush() {
        if (outbox.empty()) return;
        handler.send(outbox);
        // Released: an idle connection keeps no buffer (`outbox = {}` would keep the capacity).
        outbox = std::vector<std::uint8_t>();
    }

    void end(reason_code reason) {
        if (stage == phase::closed) return;
        flush();
        stage = phase::closed;
        if (connect_timer_armed) handler.cancel_timer(timer_kind::connect_timeout);
        if (keep_alive_armed) handler.cancel_timer(timer_kind::keep_alive);
        connect_timer_armed = keep_alive_armed = false;
        handler.close(reason);
    }

    // Server-initiated end: DISCONNECT with the reason in v5 once connected, else just close.
    void disconnect(reason_code reason) {
        if (stage == phase::closed) return;
        // e.g. 0x84 from a second CONNECT with a bad level: DISCONNECT cannot carry it.
        if (!valid_reason(packet_type::disconnect, reason)) reason = reason_code::protocol_error;
        if (stage == phase::connected && v5()) {
            disconnect_packet d;
            d.reason = reason;
            queue(d);
        }
        end(reason);
    }

    void refuse_connect(reason_code reason) {
        connack_packet c;
        // The hook may answer with any code; CONNACK carries only its own table's.
        c.reason =
            valid_reason(packet_type::connack, reason) ? reason : reason_code::unspecified_error;
        queue(c);
        end(reason);
    }

    void on_parse_error(const parse_result& result) {
        const auto e = static_cast<errc>(result.error.value());
        const reason_code reason = to_reason_code(e);
        if (stage == phase::awaiting_connect) {
            if (e == errc::unsupported_protocol_version) {
                // MQTT-3.1.2-2: an unknown level (say 3, from MQTT 3.1 clients) gets the
                // 3.1.1-form CONNACK with return code 1, which 3.1 clients understand too.
                version = protocol_version::v3_1_1;
                return refuse_connect(reason);
            }
            // A v5 CONNECT that fails later may get a CONNACK with the reason (section 3.1.4);
            // 3.1.1 offers no code for it, only the close (MQTT-3.1.4-1).
            if (result.connect_version == protocol_version::v5) {
                version = protocol_version::v5;
                return refuse_connect(reason);
            }
            return end(reason);
        }
        disconnect(reason);
    }

    void arm_keep_alive() {
        if (keep_alive_s == 0 || stage != phase::connected) return;
        // MQTT-3.1.2-24 (3.1.1) / MQTT-3.1.2-22 (5): one and a half times the keep-alive.
        handler.arm_timer(timer_kind::keep_alive, std::chrono::milliseconds(keep_alive_s) * 1500);
        keep_alive_armed = true;
    }

    void handle(packet& p) {
        if (stage == phase::awaiting_connect) {
            // MQTT-3.1.0-1: the first packet from the client must be CONNECT.
            if (auto* c = std::get_if<connect_packet>(&p)) return on_connect(*c);
            return end(reason_code::protocol_error);
        }
        std::visit([this](auto& typed) { on_packet(typed); }, p);
    }

    void on_connect(const connect_packet& c) {
        version = c.version;
        if (v5()) {
            peer_maximum_packet_size =
                c.props.maximum_packet_size.value_or(std::numeric_limits<std::uint32_t>::max());
            // Enhanced authentication (section 4.12) is not offered.
            if (c.props.authentication_method) {
                return refuse_connect(reason_code::bad_authentication_method);
            }
            // MQTT-3.2.2-12: a will above our maximum QoS is refused with 0x9B.
            if (c.will && static_cast<std::uint8_t>(c.will->qos) > limits.maximum_qos) {
                return refuse_connect(reason_code::qos_not_supported);
            }
        }
        bool assigned = false;
        if (c.client_id.empty()) {
            // MQTT-3.1.3-8: 3.1.1 needs clean session for an empty id; v5 always assigns one.
            if (!v5() && !c.clean_start) {
                return refuse_connect(reason_code::client_identifier_not_valid);
            }
            client_id = limits.assigned_client_id_prefix +
                        std::to_string(assigned_id_counter.fetch_add(1, std::memory_order_relaxed));
            assigned = true;
        } else {
            client_id.assign(c.client_id);
        }

        connect_request request;
        request.version = version;
        request.client_id = client_id;
        request.client_id_assigned = assigned;
        request.username = c.username;
        request.password = c.password;
        request.clean_start = c.clean_start;
        request.keep_alive_s = c.keep_alive_s;
        request.packet = &c;
        keep_alive_s = c.keep_alive_s;
        asked_session_expiry = v5() ? c.props.session_expiry_interval.value_or(0) : 0;
        client_id_assigned = assigned;
        const reason_code verdict = handler.authenticate(request);
        if (stage == phase::closed) return;  // the hook disconnected us
        // The connect timeout keeps running while the answer is pending.
        if (verdict == authentication_pending) {
            stage = phase::authenticating;
            return;
        }
        answer_connect(verdict);
    }

    void answer_connect(reason_code verdict) {
        if (connect_timer_armed) handler.cancel_timer(timer_kind::connect_timeout);
        connect_timer_armed = false;
        if (verdict == authentication_pending) verdict = reason_code::implementation_specific_error;
        if (verdict != reason_code::success) return refuse_connect(verdict);

        connack_packet ack;
        if (v5()) {
            auto& props = ack.props;
            if (limits.server_keep_alive != 0) {
                keep_alive_s = limits.server_keep_alive;
                props.server_keep_alive = keep_alive_s;
            }
            const std::uint32_t asked = asked_session_expiry;
            session_expiry_zero = asked == 0;
            if (asked > limits.maximum_session_expiry) {
                props.session_expiry_interval = limits.maximum_session_expiry;
            }
            if (limits.receive_maximum != 0xFFFF) props.receive_maximum = limits.receive_maximum;
            props.maximum_packet_size = limits.maximum_packet_size;
            if (limits.topic_alias_maximum != 0) {
                props.topic_alias_maximum = limits.topic_alias_maximum;
            }
            if (limits.maximum_qos < 2) props.maximum_qos = limits.maximum_qos;
            if (client_id_assigned) props.assigned_client_identifier = client_id;
            if (!limits.wildcard_subscriptions) props.wildcard_subscription_available = 0;
            if (!limits.subscription_identifiers) props.subscription_identifier_available = 0;
            if (!limits.shared_subscriptions) props.shared_subscription_available = 0;
        }
        queue(ack);
        stage = phase::connected;
        arm_keep_alive();
    }

    // Parses and acts on every complete packet of `bytes`; returns the bytes consumed. While
    // authentication is pending complete packets are only held, to be processed on acceptance.
    std::size_t process(std::span<const std::uint8_t> bytes, bool& any) {
        std::size_t consumed = 0;
        packet current;  // reused for every packet of this call
        const parser_limits parser = parsing();
        while (stage != phase::closed && consumed < bytes.size()) {
            const parse_result result = parse(bytes.subspan(consumed), version, parser, current);
            if (result.status == parse_status::need_more) break;
            if (result.status == parse_status::error) {
                on_parse_error(result);
                break;
            }
            if (stage == phase::authenticating) {
                if (held_bytes() + result.consumed > limits.maximum_held_while_authenticating) {
                    end(reason_code::quota_exceeded);
                    break;
                }
                std::vector<std::uint8_t>& held = extras().held;
                held.insert(
                    held.end(), bytes.begin() + static_cast<std::ptrdiff_t>(consumed),
                    bytes.begin() + static_cast<std::ptrdiff_t>(consumed + result.consumed));
                consumed += result.consumed;
                continue;
            }
            consumed += result.consumed;
            any = true;
            handler.on_packet(packet_direction::inbound, type_of(current));
            handle(current);
        }
        return consumed;
    }

    void on_packet(connect_packet&) { disconnect(reason_code::protocol_error); }  // MQTT-3.1.0-2

    void on_packet(publish_packet& p) {
        if (v5()) {
            if (static_cast<std::uint8_t>(p.qos) > limits.maximum_qos) {
                return disconnect(reason_code::qos_not_supported);  // MQTT-3.2.2-11
            }
            // MQTT-3.3.4-6: a client's PUBLISH carries no subscription identifier.
            if (!p.props.subscription_identifiers.empty()) {
                return disconnect(reason_code::protocol_error);
            }
        }
        std::string_view topic = p.topic;
        if (p.props.topic_alias) {
            const std::uint16_t alias = *p.props.topic_alias;
            // MQTT-3.3.2-8 / MQTT-3.3.2-9: 0 and values above our maximum are invalid.
            if (alias == 0 || alias > limits.topic_alias_maximum) {
                return disconnect(reason_code::topic_alias_invalid);
            }
            std::vector<std::string>& topic_aliases = extras().topic_aliases;
            if (topic_aliases.size() < alias) topic_aliases.resize(alias);
            std::string& slot = topic_aliases[alias - 1];
            if (!topic.empty()) {
                slot.assign(topic);
            } else if (slot.empty()) {
                return disconnect(reason_code::protocol_error);  // an alias never set
            } else {
                topic = slot;
            }
        }

        inbound_publish message;
        message.topic = topic;
        message.payload = p.payload;
        message.qos = p.qos;
        message.retain = p.retain;
        message.payload_is_utf8 = p.props.payload_format_indicator.value_or(0) == 1;
        message.packet_id = p.packet_id;
        message.dup = p.dup;
        message.props = v5() ? &p.props : nullptr;
        if (p.qos == qos::at_most_once) return handler.deliver(message);

        if (p.qos == qos::exactly_once) {
            // Exactly once (section 4.3.3): a re-sent id is not delivered again. While it is
            // still pending the PUBREC follows in order; after PUBREC it is simply repeated.
            if (rare && std::find(rare->awaiting_pubrel.begin(), rare->awaiting_pubrel.end(),
                                  p.packet_id) != rare->awaiting_pubrel.end()) {
                pubrec_packet rec;
                rec.packet_id = p.packet_id;
                return queue(rec);
            }
            for (std::size_t i = ack_head; i < acks.size(); ++i) {
                if (acks[i].packet_id == p.packet_id && acks[i].qos == qos::exactly_once) return;
            }
        }
        if (unacknowledged() >= limits.receive_maximum && v5()) {
            return disconnect(reason_code::receive_maximum_exceeded);  // MQTT-3.3.4-7, 4.9
        }
        message.token = next_token++;
        acks.push_back({message.token, p.packet_id, p.qos, false, reason_code::success});
        ++undone;
        handler.deliver(message);
    }

    template <packet_type T>
    void on_packet(basic_ack_packet<T>& p) {
        if constexpr (T == packet_type::pubrel) {
            std::vector<std::uint16_t>& awaiting_pubrel = extras().awaiting_pubrel;
            const auto it = std::find(awaiting_pubrel.begin(), awaiting_pubrel.end(), p.packet_id);
            pubcomp_packet comp;
            comp.packet_id = p.packet_id;
            if (it != awaiting_pubrel.end()) {
                awaiting_pubrel.erase(it);
            } else {
                for (std::size_t i = ack_head; i < acks.size(); ++i) {
                    // PUBREL before our PUBREC: the client skipped a step.
                    if (acks[i].packet_id == p.packet_id && acks[i].qos == qos::exactly_once) {
                        return disconnect(reason_code::protocol_error);
                    }
                }
                comp.reason = reason_code::packet_identifier_not_found;
            }
            queue(comp);
        }
        // PUBACK, PUBREC and PUBCOMP answer server PUBLISHes, which this ingestion server never
        // sends with QoS above 0: nothing to release, and the specification asks no reaction.
    }

    void on_packet(subscribe_packet& p) {
        if (p.props.subscription_identifiers.size() > 0 && !limits.subscription_identifiers) {
            return disconnect(reason_code::subscription_identifiers_not_supported);
        }
        subscribe_request request;
        request.packet_id = p.packet_id;
        if (!p.props.subscription_identifiers.empty()) {
            request.subscription_identifier = p.props.subscription_identifiers.front();
        }
        std::vector<std::optional<reason_code>> decided(p.entries.size());
        for (std::size_t i = 0; i < p.entries.size(); ++i) {
            const auto& e = p.entries[i];
            if (v5() && !limits.shared_subscriptions && is_shared_filter(e.filter)) {
                decided[i] = reason_code::shared_subscriptions_not_supported;
            } else if (!limits.wildcard_subscriptions && has_wildcard(e.filter)) {
                decided[i] = reason_code::wildcard_subscriptions_not_supported;
            } else {
                request.entries.push_back(
                    {e.filter, e.max_qos, e.no_local, e.retain_as_published, e.retain_handling});
            }
        }
        std::vector<reason_code> answers;
        if (!request.entries.empty()) answers = handler.subscribe(request);
        if (stage == phase::closed) return;
        suback_packet ack;
        ack.packet_id = p.packet_id;
        std::size_t next = 0;
        for (const auto& d : decided) {
            if (d) {
                ack.reasons.push_back(*d);
            } else {
                reason_code answer =
                    next < answers.size() ? answers[next] : reason_code::unspecified_error;
                if (v5() && !valid_reason(packet_type::suback, answer)) {
                    answer = reason_code::unspecified_error;
                }
                ack.reasons.push_back(answer);
                ++next;
            }
        }
        queue(ack);  // MQTT-3.8.4-1, one code per filter (MQTT-3.8.4-6)
    }

    void on_packet(unsubscribe_packet& p) {
        handler.unsubscribe(p.filters);
        if (stage == phase::closed) return;
        unsuback_packet ack;
        ack.packet_id = p.packet_id;
        if (v5()) ack.reasons.assign(p.filters.size(), reason_code::success);
        queue(ack);  // MQTT-3.10.4-4
    }

    void on_packet(pingreq_packet&) { queue(pingresp_packet{}); }  // MQTT-3.12.4-1

    void on_packet(disconnect_packet& p) {
        // Section 3.14.2.2.2: a session expiry of 0 at CONNECT may not be raised at DISCONNECT.
        if (v5() && session_expiry_zero && p.props.session_expiry_interval.value_or(0) != 0) {
            return disconnect(reason_code::protocol_error);
        }
        end(p.reason);
    }

    // Enhanced authentication is refused at CONNECT, so an AUTH is out of place (section 4.12).
    void on_packet(auth_packet&) { disconnect(reason_code::protocol_error); }

    // Server-to-client packets.
    void on_packet(connack_packet&) { disconnect(reason_code::protocol_error); }
    void on_packet(suback_packet&) { disconnect(reason_code::protocol_error); }
    void on_packet(unsuback_packet&) { disconnect(reason_code::protocol_error); }
    void on_packet(pingresp_packet&) { disconnect(reason_code::protocol_error); }

    void complete(delivery_token token, reason_code outcome) {
        if (stage != phase::connected || ack_head == acks.size()) return;
        const delivery_token first = acks[ack_head].token;
        if (token < first || token - first >= acks.size() - ack_head) return;  // unknown
        pending_ack& entry = acks[ack_head + (token - first)];
        if (entry.done) return;
        entry.done = true;
        entry.outcome = outcome;
        --undone;
        const bool stored = static_cast<std::uint8_t>(outcome) < 0x80;
        if (!stored && !v5()) {
            // 3.1.1 has no negative acknowledgement: closing makes the client resend.
            return end(reason_code::unspecified_error);
        }
        // MQTT-4.6.0-2: acknowledgements leave in the order the PUBLISHes arrived.
        while (ack_head < acks.size() && acks[ack_head].done) {
            const pending_ack& a = acks[ack_head++];
            const reason_code reason = a.outcome;
            const bool accepted = static_cast<std::uint8_t>(reason) < 0x80;
            if (a.qos == qos::at_least_once) {
                puback_packet ack;
                ack.packet_id = a.packet_id;
                ack.reason = reason;
                queue(ack);
            } else {
                pubrec_packet rec;
                rec.packet_id = a.packet_id;
                rec.reason = reason;
                queue(rec);
                if (accepted)
                    extras().awaiting_pubrel.push_back(a.packet_id);  // >= 0x80 ends the flow
            }
        }
        if (ack_head == acks.size()) {
            acks.clear();
            ack_head = 0;
        } else if (ack_head >= 64 && ack_head * 2 >= acks.size()) {
            acks.erase(acks.begin(), acks.begin() + static_cast<std::ptrdiff_t>(ack_head));
            ack_head = 0;
        }
        if (!in_input) flush();
    }
};

server_session::server_session(session_handler& handler, const server_limits& limits) {
    // An idle connection must cost at most 700 bytes in all (issue 15); this is a fifth of it.
    static_assert(sizeof(state) <= state_size && alignof(state) <= 8,
                  "server_session::state grew: check the idle budget");
    new (state_) state(handler, limits);
}

server_session::~server_session() {
    st().~state();
}

server_session::state& server_session::st() {
    return *std::launder(reinterpret_cast<state*>(state_));
}

const server_session::state& server_session::st() const {
    return *std::launder(reinterpret_cast<const state*>(state_));
}

void server_session::start() {
    auto& s = st();
    if (s.stage != state::phase::awaiting_connect) return;
    s.handler.arm_timer(timer_kind::connect_timeout, s.limits.connect_timeout);
    s.connect_timer_armed = true;
}

std::size_t server_session::on_bytes(std::span<const std::uint8_t> bytes) {
    auto& s = st();
    bool any = false;
    s.in_input = true;
    const std::size_t consumed = s.process(bytes, any);
    s.in_input = false;
    if (s.stage == state::phase::closed) return consumed;
    s.flush();
    if (any && s.stage == state::phase::connected) s.arm_keep_alive();
    return consumed;
}

void server_session::on_timer(timer_kind kind) {
    auto& s = st();
    if (kind == timer_kind::connect_timeout) {
        s.connect_timer_armed = false;
        if (s.stage == state::phase::awaiting_connect || s.stage == state::phase::authenticating) {
            s.end(reason_code::maximum_connect_time);
        }
    } else {
        s.keep_alive_armed = false;
        // MQTT-3.1.2-22 (5) / MQTT-3.1.2-24 (3.1.1): no packet within 1.5 x keep-alive.
        if (s.stage == state::phase::connected) s.disconnect(reason_code::keep_alive_timeout);
    }
}

void server_session::on_peer_closed() {
    st().stage = state::phase::closed;
}

void server_session::complete(delivery_token token, bool stored) {
    st().complete(token, stored ? reason_code::success : reason_code::unspecified_error);
}

void server_session::complete(delivery_token token, reason_code outcome) {
    st().complete(token, outcome);
}

void server_session::disconnect(reason_code reason) {
    st().disconnect(reason);
}

void server_session::complete_authentication(reason_code verdict) {
    auto& s = st();
    if (s.stage != state::phase::authenticating) return;
    s.stage = state::phase::awaiting_connect;
    std::vector<std::uint8_t> held;
    if (s.rare) held.swap(s.rare->held);
    s.in_input = true;  // the CONNACK and the acks of the held packets leave in one send()
    s.answer_connect(verdict);
    bool any = false;
    if (s.stage == state::phase::connected && !held.empty()) s.process(held, any);
    s.in_input = false;
    if (s.stage != state::phase::connected) return;  // a refusal was flushed by end()
    s.flush();
    s.arm_keep_alive();
}

bool server_session::awaiting_authentication() const {
    return st().stage == state::phase::authenticating;
}

std::size_t server_session::inflight() const {
    return st().undone;
}

bool server_session::connected() const {
    return st().stage == state::phase::connected;
}

protocol_version server_session::version() const {
    return st().version;
}

std::string_view server_session::client_id() const {
    return st().client_id;
}

}  // namespace citygate::mqtt
