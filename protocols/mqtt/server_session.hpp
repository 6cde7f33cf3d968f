// The server side of one MQTT connection as a socket-free state machine: bytes, timer events and
// close notices go in; "send", "deliver", "arm timer" and "close" come out through the handler.
// Serves MQTT 3.1.1 and 5.0. Not thread safe: one connection, one thread. Handler calls are made
// synchronously from the session's functions; a handler may call back into the session (e.g.
// complete() from deliver()) but must not destroy it during a handler call.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "protocols/mqtt/packet.hpp"
#include "protocols/mqtt/types.hpp"

namespace citygate::mqtt {

struct server_limits {
    std::uint32_t maximum_packet_size = 256 * 1024;  // inbound; larger packets are refused
    std::uint16_t maximum_topic_length = 1024;       // topic names and filters, bytes
    std::uint16_t receive_maximum = 256;             // QoS 1/2 PUBLISHes awaiting our ack
    std::uint16_t topic_alias_maximum = 64;          // v5 aliases the client may use
    std::uint16_t server_keep_alive = 0;  // v5: override the client's keep-alive when non-zero
    std::chrono::milliseconds connect_timeout = std::chrono::seconds(10);
    // Bytes of complete packets a client may send after CONNECT while its authentication is
    // pending; they are held and processed once it is accepted. Beyond: close (quota_exceeded).
    std::uint32_t maximum_held_while_authenticating = 64 * 1024;
    std::uint32_t maximum_session_expiry = 0;  // v5 seconds; sessions are not kept past close
    // What the server supports, advertised in the v5 CONNACK and enforced.
    std::uint8_t maximum_qos = 2;                // PUBLISH above it: DISCONNECT 0x9B (v5)
    bool wildcard_subscriptions = true;          // else SUBACK 0xA2 for filters with wildcards
    bool shared_subscriptions = true;            // else SUBACK 0x9E for $share/ filters
    bool subscription_identifiers = false;       // else SUBSCRIBE carrying one: DISCONNECT 0xA1
    std::uint16_t maximum_user_properties = 32;  // per packet
    std::uint16_t maximum_topic_filters = 64;    // per SUBSCRIBE / UNSUBSCRIBE
    // Server-assigned client ids are this prefix and a process-wide counter; make the prefix
    // unique per node and start (e.g. host name and boot time) for ids unique across the city.
    std::string assigned_client_id_prefix = "citygate-";
};

// connect_timeout ends with close(reason_code::maximum_connect_time) and nothing sent;
// keep_alive with DISCONNECT 0x8D (v5) and close(reason_code::keep_alive_timeout).
enum class timer_kind : std::uint8_t { connect_timeout, keep_alive };

// What the client presented in CONNECT, for the authentication hook. Views are valid only
// during the call.
struct connect_request {
    protocol_version version = protocol_version::v3_1_1;
    // The server-assigned id when the client sent an empty one (v5, or 3.1.1 with clean session;
    // only v5 clients are told it, in CONNACK).
    std::string_view client_id;
    bool client_id_assigned = false;
    std::optional<std::string_view> username;
    std::optional<std::span<const std::uint8_t>> password;
    bool clean_start = true;
    std::uint16_t keep_alive_s = 0;
    // The whole CONNECT (will, v5 properties such as session expiry), for policies that need it.
    const connect_packet* packet = nullptr;
};

// What session_handler::authenticate() answers to defer its decision (a password hash computed
// on another thread): the session waits for server_session::complete_authentication(). Not an
// MQTT reason code (0xFF is unassigned in both versions); never sent to a client.
inline constexpr reason_code authentication_pending = static_cast<reason_code>(0xFF);

// Identifies one QoS 1/2 PUBLISH waiting for the application to finish with it.
using delivery_token = std::uint64_t;

// A PUBLISH handed to the application. Views point into the bytes passed to on_bytes() and are
// valid only during the call. The topic is resolved (v5 topic aliases already applied).
struct inbound_publish {
    std::string_view topic;
    std::span<const std::uint8_t> payload;
    mqtt::qos qos = qos::at_most_once;
    bool retain = false;
    bool payload_is_utf8 = false;  // v5 payload format indicator
    delivery_token token = 0;      // 0 for QoS 0
    std::uint16_t packet_id = 0;   // 0 for QoS 0
    bool dup = false;
    const properties* props = nullptr;  // v5 properties (content type, user properties, ...)
};

struct subscribe_request {
    std::uint16_t packet_id = 0;
    struct entry {
        std::string_view filter;
        mqtt::qos max_qos = qos::at_most_once;
        bool no_local = false;  // v5 subscription options
        bool retain_as_published = false;
        std::uint8_t retain_handling = 0;
    };
    std::vector<entry> entries;
    std::optional<std::uint32_t> subscription_identifier;  // v5, if the server supports them
};

class session_handler {
  public:
    virtual ~session_handler() = default;

    // Bytes to write to the peer, in order. The span is valid only during the call: copy it.
    virtual void send(std::span<const std::uint8_t> bytes) = 0;

    // A validated PUBLISH. For QoS 1 and 2 the session acknowledges (PUBACK / PUBREC) only once
    // the application calls server_session::complete(token); acks go out in arrival order.
    virtual void deliver(const inbound_publish& message) = 0;

    // Decides a CONNECT: reason_code::success accepts, anything else is sent back in CONNACK
    // (mapped to the nearest 3.1.1 return code for 3.1.1 clients) and the connection closes.
    // authentication_pending defers the decision to server_session::complete_authentication(),
    // which must not be called from inside this hook; copy what the decision needs, the views
    // die with the call.
    virtual reason_code authenticate(const connect_request& request) = 0;

    // A validated SUBSCRIBE; returns one reason code per entry (a granted QoS or a failure).
    // Entries the server does not support (wildcards, shared) are refused before the hook sees
    // them: their code is already decided and the hook's answer for them is ignored. A reply of
    // the wrong length is padded with unspecified_error.
    virtual std::vector<reason_code> subscribe(const subscribe_request& request) = 0;

    // A validated UNSUBSCRIBE.
    virtual void unsubscribe(std::span<const std::string_view> filters) = 0;

    // (Re)arms the timer of this kind. The keep-alive timer is re-armed after every call to
    // on_bytes() that completed at least one packet: call server_session::on_timer(kind) once
    // `after` elapses unless it is re-armed or cancelled first.
    virtual void arm_timer(timer_kind kind, std::chrono::milliseconds after) = 0;
    virtual void cancel_timer(timer_kind kind) = 0;

    // The session is over: close the socket once the bytes already passed to send() are written.
    // `reason` says why (success for a normal DISCONNECT). Called once; nothing follows it.
    virtual void close(reason_code reason) = 0;

    // Once per packet parsed from the client, before the session acts on it (so also for one it
    // then refuses, such as a second CONNECT or a PUBLISH over the receive maximum), and once per
    // packet queued for send() (the CONNACK of a refused CONNECT and the DISCONNECT of a
    // server-initiated end included). Not called for bytes the parser rejects, nor for a packet
    // withheld because it exceeds the client's maximum packet size. For metrics: keep it cheap.
    virtual void on_packet(packet_direction direction, packet_type type) {
        static_cast<void>(direction);
        static_cast<void>(type);
    }
};

class server_session {
  public:
    // Keeps references to both: they must outlive the session (one server_limits serves every
    // session of a server, so a session does not carry a copy).
    server_session(session_handler& handler, const server_limits& limits);
    ~server_session();
    server_session(const server_session&) = delete;
    server_session& operator=(const server_session&) = delete;

    // Call once the socket is open: arms the connect timeout.
    void start();

    // Feeds bytes read from the socket. Processes every complete packet and returns how many
    // bytes were consumed; the unconsumed tail is the start of an incomplete packet that the
    // caller keeps and passes again, followed by more bytes. After close() nothing is consumed.
    // A packet larger than maximum_packet_size is refused from its fixed header alone, so the
    // caller never buffers more than maximum_packet_size bytes. MQTT 3.1.1 has no receive
    // maximum: there the caller should stop reading while inflight() >= receive_maximum.
    std::size_t on_bytes(std::span<const std::uint8_t> bytes);

    void on_timer(timer_kind kind);

    // The peer closed the socket or it failed. No handler call follows except nothing.
    void on_peer_closed();

    // The application is done with a QoS 1/2 PUBLISH. `stored` false acknowledges with
    // unspecified_error (v5) or closes the connection (3.1.1, which has no negative ack).
    void complete(delivery_token token, bool stored);

    // The same with the outcome named. MQTT 5 clients get it in the PUBACK / PUBREC (e.g.
    // not_authorized, topic_name_invalid, payload_format_invalid: accepted but not used). For
    // MQTT 3.1.1 a code below 0x80 acknowledges and one from 0x80 closes the connection.
    void complete(delivery_token token, reason_code outcome);

    // Server-initiated end: DISCONNECT with the reason (v5) or a plain close (3.1.1).
    void disconnect(reason_code reason);

    // Answers a CONNECT whose authenticate() said authentication_pending: success sends the
    // CONNACK and processes the packets held since (handler calls as from on_bytes()); anything
    // else is refused as authenticate() would, dropping them. Ignored unless
    // awaiting_authentication() (e.g. the session closed or timed out meanwhile). While pending,
    // on_bytes() consumes and holds complete packets, up to maximum_held_while_authenticating
    // bytes, and the connect timeout keeps running.
    void complete_authentication(reason_code verdict);

    // QoS 1/2 PUBLISHes delivered but not yet completed.
    [[nodiscard]] std::size_t inflight() const;
    [[nodiscard]] bool connected() const;                // CONNECT accepted and not closed
    [[nodiscard]] bool awaiting_authentication() const;  // awaiting complete_authentication()
    [[nodiscard]] protocol_version version() const;
    [[nodiscard]] std::string_view client_id() const;

  private:
    struct state;
    // Inside the session, not an allocation of its own: every connection has one, and a
    // separate chunk costs malloc's header and rounding (issue 15). Defined with the engine,
    // which checks that it fits.
    static constexpr std::size_t state_size = 136;
    state& st();
    const state& st() const;
    alignas(8) std::byte state_[state_size];
};

}  // namespace citygate::mqtt
