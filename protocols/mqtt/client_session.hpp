// The client side of one MQTT connection, for the load generator and tests: encodes what a client
// sends, parses what a server sends, and runs the client's half of the QoS 1/2 flows (packet ids,
// PUBREL, the server's receive maximum). Socket-free and clock-free like server_session.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "protocols/mqtt/encoder.hpp"
#include "protocols/mqtt/packet.hpp"
#include "protocols/mqtt/parser.hpp"

namespace citygate::mqtt {

// Receives what the server said. Views are valid only during the call. Not thread safe.
class client_handler {
  public:
    virtual ~client_handler() = default;

    // Bytes to write to the server, in order. The span is valid only during the call.
    virtual void send(std::span<const std::uint8_t> bytes) = 0;

    virtual void on_connack(const connack_packet& ack) = 0;

    // One of our QoS 1/2 PUBLISHes is finished: PUBACK, PUBCOMP, or a PUBREC with a failure
    // reason (v5). Its packet id is free again.
    virtual void on_published(std::uint16_t packet_id, reason_code reason) = 0;

    // The server ended the session (v5 DISCONNECT) or broke the protocol (then a v5 DISCONNECT
    // with the reason was sent to it). Close the socket; nothing follows.
    virtual void on_disconnect(reason_code reason) = 0;

    virtual void on_message(const publish_packet&) {}  // acknowledged by the session
    virtual void on_suback(const suback_packet&) {}
    virtual void on_unsuback(const unsuback_packet&) {}
    virtual void on_pingresp() {}
};

class client_session {
  public:
    client_session(client_handler& handler, protocol_version version, parser_limits limits = {});

    // Sends CONNECT (its version is set to the session's).
    void connect(connect_packet packet);

    // Sends a PUBLISH. QoS 0 returns 0; QoS 1/2 return the packet id now in flight, or nullopt
    // when the server's receive maximum is reached (wait for on_published). The payload is
    // copied into the send() call, not kept.
    std::optional<std::uint16_t> publish(std::string_view topic, bytes_view payload, qos q,
                                         bool retain = false, const properties* props = nullptr);

    std::optional<std::uint16_t> subscribe(std::span<const subscription> entries);
    std::optional<std::uint16_t> unsubscribe(std::span<const std::string_view> filters);
    void ping();
    void disconnect(reason_code reason = reason_code::success);

    // Feeds bytes from the server; returns how many were consumed (the rest is the start of an
    // incomplete packet to pass again with more bytes).
    std::size_t on_bytes(bytes_view bytes);

    [[nodiscard]] bool connected() const noexcept { return connected_; }
    [[nodiscard]] std::size_t inflight() const noexcept { return inflight_.size(); }
    // The server's receive maximum (65535 until CONNACK says otherwise, and for 3.1.1).
    [[nodiscard]] std::uint16_t server_receive_maximum() const noexcept { return receive_maximum_; }

  private:
    enum class flight : std::uint8_t { awaiting_puback, awaiting_pubrec, awaiting_pubcomp };
    struct outgoing {
        std::uint16_t packet_id;
        flight state;
    };

    template <typename Packet>
    void send_packet(const Packet& p);
    std::optional<std::uint16_t> allocate_id();
    outgoing* find(std::uint16_t id);
    void release(std::uint16_t id);
    void fail(reason_code reason);
    void handle(const packet& p);

    client_handler& handler_;
    protocol_version version_;
    parser_limits limits_;
    bool connected_ = false;
    bool ended_ = false;
    std::uint16_t receive_maximum_ = 0xFFFF;
    std::uint16_t next_id_ = 1;
    std::vector<outgoing> inflight_;
    std::vector<std::uint16_t> other_ids_;  // SUBSCRIBE / UNSUBSCRIBE ids awaiting their ack
    packet current_;
    encoded_packet scratch_;
    std::vector<std::uint8_t> out_;
};

}  // namespace citygate::mqtt
