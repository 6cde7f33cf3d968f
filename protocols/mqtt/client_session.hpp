// The client side of one MQTT connection as a socket-free, clock-free state machine, for the load
// generator and the upstream consumer: bytes read from the socket and timer expiries go in;
// "send these bytes", "arm the keep-alive timer", acknowledgements and "close" come out through
// the handler. Runs the client's half of the QoS 0/1/2 flows (packet ids, PUBREL, the server's
// receive maximum and maximum packet size) and keep-alive, for MQTT 3.1.1 and 5.0. Not thread
// safe: one connection, one thread. Handler calls are made synchronously from the session's
// functions; a handler may call back into the session (publish() from on_published(),
// disconnect() from anywhere) but must not destroy it during a handler call.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include <boost/system/error_code.hpp>

#include "protocols/mqtt/encoder.hpp"
#include "protocols/mqtt/packet.hpp"
#include "protocols/mqtt/parser.hpp"

namespace citygate::mqtt {

enum class client_timer : std::uint8_t { keep_alive };

// Why a client session ended; close() says it once.
enum class client_end : std::uint8_t {
    disconnected,        // our disconnect(): the DISCONNECT has gone to send()
    refused,             // CONNACK with a failure reason (the reason)
    server_disconnect,   // the server sent DISCONNECT (its reason; success for 3.1.1)
    protocol_error,      // the server broke the protocol (how; a v5 DISCONNECT with it was sent),
                         // or our CONNECT could not be encoded
    keep_alive_timeout,  // two PINGREQs in a row went unanswered; nothing sent
};

class client_handler {
  public:
    virtual ~client_handler() = default;

    // Bytes to write to the server, in order (a PUBLISH comes as its header, then its payload).
    // The span is valid only during the call: copy it.
    virtual void send(std::span<const std::uint8_t> bytes) = 0;

    // Every CONNACK. A refusing one is followed by close(client_end::refused, reason). Views are
    // valid only during the call.
    virtual void on_connack(const connack_packet& ack) = 0;

    // One of our QoS 1/2 PUBLISHes is finished: PUBACK, PUBCOMP, or a PUBREC with a failure
    // reason (v5). Its packet id is free again.
    virtual void on_published(std::uint16_t packet_id, reason_code reason) = 0;

    // (Re)arms the keep-alive timer: call client_session::on_timer(kind) once `after` elapses
    // unless it is re-armed or cancelled first.
    virtual void arm_timer(client_timer kind, std::chrono::milliseconds after) = 0;
    virtual void cancel_timer(client_timer kind) = 0;

    // The session is over: close the socket once the bytes already passed to send() are written
    // (or at once, for anything but client_end::disconnected). Called once per connect();
    // nothing follows it.
    virtual void close(client_end why, reason_code reason) = 0;

    // A PUBLISH from the server; views point into the bytes given to on_bytes() and are valid
    // only during the call (no topic aliases: the session allows the server none). With
    // client_options::acknowledge_on_return its PUBACK / PUBREC goes out when this returns;
    // otherwise call client_session::acknowledge(message.packet_id) when done with it.
    virtual void on_message(const publish_packet& message) { static_cast<void>(message); }
    virtual void on_suback(const suback_packet&) {}
    virtual void on_unsuback(const unsuback_packet&) {}
    virtual void on_pingresp() {}

    // Once per packet parsed from the server, before it is acted on, and once per packet
    // encoded and passed to send(). Not called for bytes the parser rejects. For metrics.
    virtual void on_packet(packet_direction direction, packet_type type) {
        static_cast<void>(direction);
        static_cast<void>(type);
    }

    // Where the session encodes a packet during one call; one buffer may serve every session of
    // a thread, so an idle session holds none, as long as send() does not make another session
    // encode. Null: a buffer of its own per packet (allocates).
    virtual encoded_packet* encode_buffer() { return nullptr; }
};

struct client_options {
    // On what the server sends. A v5 client tells the server its maximum packet size in the
    // CONNECT properties it passes to connect(); the session does not add it.
    parser_limits limits;
    // True: an inbound QoS 1/2 PUBLISH is acknowledged when on_message() returns. False: only
    // once acknowledge() is called; acknowledgements still leave in arrival order (MQTT-4.6.0-2).
    bool acknowledge_on_return = true;
};

class client_session {
  public:
    client_session(client_handler& handler, protocol_version version, client_options options = {});

    // Starts a connection: forgets everything of an earlier one (flows in flight, keep-alive,
    // the server's limits) and sends CONNECT with the session's version. Its keep-alive is used
    // unless the v5 CONNACK sets a server keep-alive.
    void connect(connect_packet packet);

    struct publish_result {
        std::uint16_t packet_id = 0;      // 0 for QoS 0
        boost::system::error_code error;  // set: nothing was sent
        explicit operator bool() const noexcept { return !error; }
    };
    // Sends a PUBLISH once connected. Errors: receive_maximum_exceeded when the server's receive
    // maximum (or every packet id) is in use, so wait for on_published(); packet_too_large above
    // the server's maximum packet size; field_too_long; unexpected_packet when not connected.
    // The payload is passed to send() during the call, not kept.
    publish_result publish(std::string_view topic, bytes_view payload, qos q, bool retain = false,
                           const properties* props = nullptr);

    // The packet id now awaiting SUBACK / UNSUBACK, or 0 when not connected or out of ids.
    std::uint16_t subscribe(std::span<const subscription> entries);
    std::uint16_t unsubscribe(std::span<const std::string_view> filters);
    void ping();
    // Sends DISCONNECT, then close(client_end::disconnected, reason).
    void disconnect(reason_code reason = reason_code::success);

    // Finishes an inbound QoS 1/2 PUBLISH (without acknowledge_on_return): PUBACK or PUBREC
    // carrying `reason` (v5; 3.1.1 acks plainly whatever it is). Unknown ids are ignored.
    void acknowledge(std::uint16_t packet_id, reason_code reason = reason_code::success);

    // Feeds bytes from the server; returns how many were consumed (the rest is the start of an
    // incomplete packet to pass again with more bytes). After close() nothing is consumed.
    std::size_t on_bytes(bytes_view bytes);

    void on_timer(client_timer kind);

    // The socket closed or failed: the session ends without a handler call.
    void on_peer_closed();

    [[nodiscard]] bool connected() const noexcept { return stage_ == stage::connected; }
    // Our QoS 1/2 PUBLISHes not yet finished.
    [[nodiscard]] std::size_t inflight() const noexcept;
    // The server's receive maximum (65535 until CONNACK says otherwise, and for 3.1.1).
    [[nodiscard]] std::uint16_t server_receive_maximum() const noexcept { return receive_maximum_; }
    // The keep-alive in force after CONNACK, in seconds (0: none).
    [[nodiscard]] std::uint16_t keep_alive() const noexcept { return keep_alive_s_; }

  private:
    enum class stage : std::uint8_t { idle, connecting, connected, closed };
    // One flow awaiting the other side, in the order it started. From inbound_qos1 on: the
    // server's PUBLISHes, whose packet ids are the server's and apart from ours.
    enum class flow_state : std::uint8_t {
        awaiting_puback,
        awaiting_pubrec,
        awaiting_pubcomp,
        awaiting_suback,
        awaiting_unsuback,
        inbound_qos1,       // our PUBACK not yet sent: acknowledge() not called
        inbound_qos2,       // our PUBREC not yet sent
        acknowledged_qos1,  // acknowledge() called; an earlier PUBLISH is still unacknowledged
        acknowledged_qos2,
        awaiting_pubrel,  // PUBREC sent
    };
    struct flow {
        std::uint16_t packet_id;
        flow_state state;
        reason_code reason;  // of an acknowledged inbound PUBLISH
    };

    template <typename Packet>
    boost::system::error_code send_packet(const Packet& p);
    std::uint16_t allocate_id();
    flow* find(std::uint16_t id, bool inbound);
    void release(const flow* f);  // ends a flow; `f` is then invalid
    void send_inbound_acks();
    void end(client_end why, reason_code reason);
    void fail(reason_code reason);  // the server broke the protocol
    void arm_keep_alive();
    void handle(const packet& p);
    void receive(const puback_packet& p);
    void receive(const pubrec_packet& p);
    void receive(const pubcomp_packet& p);
    void receive(const publish_packet& p);
    void receive(const pubrel_packet& p);
    void receive(const suback_packet& p);
    void receive(const unsuback_packet& p);
    void receive(const pingresp_packet& p);
    void receive(const disconnect_packet& p);
    // CONNECT, a second CONNACK, SUBSCRIBE, UNSUBSCRIBE, PINGREQ, AUTH: not for a client.
    template <typename Other>
    void receive(const Other&) {
        fail(reason_code::protocol_error);
    }

    client_handler& handler_;
    client_options options_;
    std::vector<flow> flows_;
    std::uint32_t server_maximum_packet_size_ = 0xFFFFFFFF;
    std::uint16_t receive_maximum_ = 0xFFFF;
    std::uint16_t keep_alive_s_ = 0;
    std::uint16_t next_id_ = 1;
    std::uint16_t publishes_in_flight_ = 0;  // flows awaiting PUBACK, PUBREC or PUBCOMP
    protocol_version version_;
    stage stage_ = stage::idle;
    std::uint8_t pings_unanswered_ = 0;
    bool sent_since_check_ = false;  // any packet sent since the last keep-alive check
    bool timer_armed_ = false;
};

}  // namespace citygate::mqtt
