// Shared helpers of the MQTT codec and session tests: hex byte vectors and a recording handler.
#pragma once

#include <cctype>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "protocols/mqtt/encoder.hpp"
#include "protocols/mqtt/error.hpp"
#include "protocols/mqtt/parser.hpp"
#include "protocols/mqtt/server_session.hpp"

namespace citygate::mqtt::test {

using bytes = std::vector<std::uint8_t>;

// "10 0c 00" -> {0x10, 0x0c, 0x00}; whitespace is ignored, so vectors can carry a comment per
// field.
inline bytes hex(std::string_view text) {
    bytes out;
    int high = -1;
    for (char c : text) {
        if (std::isspace(static_cast<unsigned char>(c))) continue;
        const int v = std::isdigit(static_cast<unsigned char>(c))
                          ? c - '0'
                          : std::tolower(static_cast<unsigned char>(c)) - 'a' + 10;
        if (v < 0 || v > 15) throw std::invalid_argument("bad hex digit");
        if (high < 0) {
            high = v;
        } else {
            out.push_back(static_cast<std::uint8_t>(high * 16 + v));
            high = -1;
        }
    }
    if (high >= 0) throw std::invalid_argument("odd number of hex digits");
    return out;
}

inline bytes str(std::string_view s) {
    return bytes(s.begin(), s.end());
}

inline bytes cat(std::initializer_list<bytes> parts) {
    bytes out;
    for (const auto& p : parts)
        out.insert(out.end(), p.begin(), p.end());
    return out;
}

template <typename Packet>
bytes encode_bytes(const Packet& p, protocol_version v) {
    encoded_packet e;
    boost::system::error_code ec;
    if constexpr (std::is_same_v<Packet, connect_packet>) {
        ec = encode(p, e);
    } else {
        ec = encode(p, v, e);
    }
    if (ec) throw std::runtime_error("encode failed: " + ec.message());
    return e.to_vector();
}

inline std::string to_hex(const bytes& b) {
    static const char* digits = "0123456789abcdef";
    std::string s;
    for (auto x : b) {
        if (!s.empty()) s += ' ';
        s += digits[x >> 4];
        s += digits[x & 15];
    }
    return s;
}

// Parses `in` as exactly one complete packet; throws otherwise.
inline packet parse_one(const bytes& in, protocol_version v, const parser_limits& limits = {}) {
    packet p;
    const auto r = parse(in, v, limits, p);
    if (r.status != parse_status::complete) {
        throw std::runtime_error("parse failed: " + r.error.message());
    }
    if (r.consumed != in.size()) throw std::runtime_error("packet shorter than input");
    return p;
}

inline errc parse_error(const bytes& in, protocol_version v, const parser_limits& limits = {}) {
    packet p;
    const auto r = parse(in, v, limits, p);
    if (r.status != parse_status::error) return errc{};
    return static_cast<errc>(r.error.value());
}

// Records every handler call; answers from configurable fields.
class recording_handler : public session_handler {
  public:
    struct delivered {
        std::string topic;
        bytes payload;
        qos q;
        bool retain;
        delivery_token token;
        std::uint16_t packet_id;
    };

    bytes sent;  // everything sent, concatenated
    std::vector<delivered> deliveries;
    std::vector<connect_request> connects;
    std::vector<std::string> connect_client_ids;
    std::vector<std::vector<std::string>> subscriptions;
    std::vector<std::vector<std::string>> unsubscriptions;
    std::map<timer_kind, std::chrono::milliseconds> armed;
    std::vector<timer_kind> cancelled;
    std::optional<reason_code> closed;
    int close_calls = 0;
    std::vector<std::string> username_seen;
    std::map<std::pair<packet_direction, packet_type>, int> packets;  // on_packet() calls

    reason_code verdict = reason_code::success;
    std::vector<reason_code> suback_answer;          // empty: grant each requested QoS
    server_session* complete_immediately = nullptr;  // complete() from inside deliver()

    void send(std::span<const std::uint8_t> b) override {
        sent.insert(sent.end(), b.begin(), b.end());
    }
    void deliver(const inbound_publish& m) override {
        deliveries.push_back({std::string(m.topic), bytes(m.payload.begin(), m.payload.end()),
                              m.qos, m.retain, m.token, m.packet_id});
        if (complete_immediately && m.token != 0) complete_immediately->complete(m.token, true);
    }
    reason_code authenticate(const connect_request& r) override {
        connects.push_back(r);
        connect_client_ids.emplace_back(r.client_id);
        username_seen.emplace_back(r.username.value_or("<none>"));
        return verdict;
    }
    std::vector<reason_code> subscribe(const subscribe_request& r) override {
        std::vector<std::string> filters;
        std::vector<reason_code> codes;
        for (const auto& e : r.entries) {
            filters.emplace_back(e.filter);
            codes.push_back(static_cast<reason_code>(e.max_qos));
        }
        subscriptions.push_back(filters);
        return suback_answer.empty() ? codes : suback_answer;
    }
    void unsubscribe(std::span<const std::string_view> filters) override {
        unsubscriptions.emplace_back(filters.begin(), filters.end());
    }
    void arm_timer(timer_kind kind, std::chrono::milliseconds after) override {
        armed[kind] = after;
    }
    void cancel_timer(timer_kind kind) override {
        cancelled.push_back(kind);
        armed.erase(kind);
    }
    void close(reason_code reason) override {
        closed = reason;
        ++close_calls;
    }
    void on_packet(packet_direction d, packet_type t) override { ++packets[{d, t}]; }

    // Returns and forgets what was sent so far.
    bytes take_sent() {
        bytes out;
        out.swap(sent);
        return out;
    }
};

}  // namespace citygate::mqtt::test
