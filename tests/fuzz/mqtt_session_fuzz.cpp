// libFuzzer target for the server session engine. The input drives a connection: chunks of bytes
// fed as a gateway would (keeping the unconsumed tail), completions in any order, timers and
// server disconnects. Checks: nothing after close, everything sent parses as a server packet,
// inflight stays within the receive maximum for v5, acks leave in delivery order, and a QoS 2
// packet id is never delivered twice before its PUBCOMP (exactly once).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <vector>

#include "protocols/mqtt/parser.hpp"
#include "protocols/mqtt/server_session.hpp"

using namespace citygate::mqtt;

namespace {

class checking_handler : public session_handler {
  public:
    server_session* session = nullptr;
    bool closed = false;
    std::vector<delivery_token> tokens;
    std::vector<std::uint8_t> sent;

    void send(std::span<const std::uint8_t> bytes) override {
        alive();
        sent.insert(sent.end(), bytes.begin(), bytes.end());
        follow_acks(bytes);
    }
    void deliver(const inbound_publish& m) override {
        alive();
        if (m.qos != qos::at_most_once) {
            tokens.push_back(m.token);
            awaiting_ack.push_back({m.packet_id, m.qos});
        }
        if (m.qos == qos::exactly_once) {
            if (contains(active_qos2, m.packet_id)) std::abort();  // delivered twice
            active_qos2.push_back(m.packet_id);
        }
        // Touch every byte so ASan sees a view into freed or foreign memory.
        volatile std::uint8_t sink = 0;
        for (char c : m.topic)
            sink = sink ^ static_cast<std::uint8_t>(c);
        for (std::uint8_t b : m.payload)
            sink = sink ^ b;
    }
    reason_code authenticate(const connect_request& r) override {
        alive();
        if (r.client_id == "deny") return reason_code::not_authorized;
        return reason_code::success;
    }
    std::vector<reason_code> subscribe(const subscribe_request& r) override {
        alive();
        if (r.entries.size() == 2) return {reason_code::granted_qos_1};  // wrong length on purpose
        return std::vector<reason_code>(r.entries.size(), reason_code::granted_qos_1);
    }
    void unsubscribe(std::span<const std::string_view>) override { alive(); }
    void arm_timer(timer_kind, std::chrono::milliseconds) override { alive(); }
    void cancel_timer(timer_kind) override { alive(); }
    void close(reason_code) override {
        alive();
        closed = true;
    }

  private:
    struct delivered {
        std::uint16_t id;
        qos q;
    };
    std::deque<delivered> awaiting_ack;      // in delivery order
    std::vector<std::uint16_t> active_qos2;  // delivered, no PUBCOMP (or failed PUBREC) yet
    std::vector<std::uint16_t> pubrec_sent;  // QoS 2 ids acknowledged, awaiting PUBREL

    static bool contains(const std::vector<std::uint16_t>& v, std::uint16_t id) {
        return std::find(v.begin(), v.end(), id) != v.end();
    }

    // Each send() carries whole packets: check the acknowledgements against the deliveries.
    void follow_acks(std::span<const std::uint8_t> bytes) {
        parser_limits limits;
        limits.maximum_packet_size = 0xFFFFFFFF;
        limits.maximum_topic_filters = 0xFFFF;
        bytes_view in(bytes);
        packet p;
        while (!in.empty()) {
            const auto r = parse(in, session->version(), limits, p);
            if (r.status != parse_status::complete) return;  // check_sent() reports it
            in = in.subspan(r.consumed);
            if (const auto* ack = std::get_if<puback_packet>(&p)) {
                // MQTT-4.6.0-2: in the order the PUBLISHes arrived.
                if (awaiting_ack.empty() || awaiting_ack.front().id != ack->packet_id ||
                    awaiting_ack.front().q != qos::at_least_once) {
                    std::abort();
                }
                awaiting_ack.pop_front();
            } else if (const auto* rec = std::get_if<pubrec_packet>(&p)) {
                if (!awaiting_ack.empty() && awaiting_ack.front().id == rec->packet_id &&
                    awaiting_ack.front().q == qos::exactly_once) {
                    awaiting_ack.pop_front();
                    if (static_cast<std::uint8_t>(rec->reason) < 0x80) {
                        pubrec_sent.push_back(rec->packet_id);
                    } else {
                        std::erase(active_qos2, rec->packet_id);
                    }
                } else if (!contains(pubrec_sent, rec->packet_id)) {
                    std::abort();  // neither the next in order nor a repeat
                }
            } else if (const auto* comp = std::get_if<pubcomp_packet>(&p)) {
                if (contains(pubrec_sent, comp->packet_id)) {
                    std::erase(pubrec_sent, comp->packet_id);
                    std::erase(active_qos2, comp->packet_id);
                }
            }
        }
    }

    void alive() const {
        if (closed) std::abort();  // the contract: close() is the last call
    }
};

// Everything the server sent must be well-formed server-to-client packets.
void check_sent(const std::vector<std::uint8_t>& sent, protocol_version v) {
    parser_limits limits;
    limits.maximum_packet_size = 0xFFFFFFFF;
    limits.maximum_topic_filters = 0xFFFF;
    bytes_view in(sent);
    packet p;
    while (!in.empty()) {
        const auto r = parse(in, v, limits, p);
        if (r.status != parse_status::complete) {
            std::fprintf(stderr, "unparsable output (%s):", r.error.message().c_str());
            for (std::uint8_t b : sent)
                std::fprintf(stderr, " %02x", b);
            std::fprintf(stderr, "\n");
            std::abort();
        }
        switch (type_of(p)) {
            case packet_type::connack:
            case packet_type::puback:
            case packet_type::pubrec:
            case packet_type::pubcomp:
            case packet_type::suback:
            case packet_type::unsuback:
            case packet_type::pingresp:
            case packet_type::disconnect:
                break;
            default:
                std::abort();
        }
        in = in.subspan(r.consumed);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const std::uint8_t config = data[0];
    server_limits limits;
    limits.receive_maximum = static_cast<std::uint16_t>(1 + (config & 0x07));
    limits.topic_alias_maximum = (config & 0x08) != 0 ? 2 : 0;
    limits.maximum_packet_size = (config & 0x10) != 0 ? 96 : 4096;
    limits.wildcard_subscriptions = (config & 0x20) == 0;
    limits.shared_subscriptions = (config & 0x40) == 0;
    limits.subscription_identifiers = (config & 0x80) != 0;
    limits.maximum_topic_length = 64;

    checking_handler handler;
    server_session session(handler, limits);
    handler.session = &session;
    session.start();

    std::vector<std::uint8_t> pending;  // the gateway's partial packet buffer
    std::size_t i = 1;
    while (i < size && !handler.closed) {
        const std::uint8_t op = data[i++];
        if (op < 0xF0) {
            // Feed the next 1..64 bytes.
            const std::size_t n = std::min<std::size_t>(size - i, (op & 0x3F) + 1);
            pending.insert(pending.end(), data + i, data + i + n);
            i += n;
            const std::size_t used = session.on_bytes(pending);
            if (used > pending.size()) std::abort();
            pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(used));
            if (pending.size() > limits.maximum_packet_size && !handler.closed) std::abort();
        } else if (op < 0xF8) {
            // Complete a pending delivery: which one and how from the low bits.
            if (handler.tokens.empty()) continue;
            const std::size_t which = (op & 0x03) % handler.tokens.size();
            const delivery_token t = handler.tokens[which];
            handler.tokens.erase(handler.tokens.begin() + static_cast<std::ptrdiff_t>(which));
            session.complete(t, (op & 0x04) == 0);
            if ((op & 0x04) != 0 && !handler.tokens.empty()) session.complete(t, true);  // again
        } else if (op == 0xF8) {
            session.on_timer(timer_kind::keep_alive);
        } else if (op == 0xF9) {
            session.on_timer(timer_kind::connect_timeout);
        } else if (op == 0xFA) {
            session.disconnect(reason_code::server_shutting_down);
        } else if (op == 0xFB) {
            session.complete(0xFFFFFFFFu, true);  // unknown token: ignored
        } else if (op == 0xFC) {
            session.on_peer_closed();
            break;
        }
        if (session.version() == protocol_version::v5 && session.connected() &&
            session.inflight() > limits.receive_maximum) {
            std::abort();
        }
    }
    check_sent(handler.sent, session.version());
    return 0;
}
