// One MQTT client connection: drives the socket-free protocol engine from an Asio socket and
// feeds decoded samples to storage. Lives on one I/O thread; no strand needed.
//
// While idle a plain TCP connection holds no read buffer: it waits for readability, reads into the
// worker's buffer and keeps only the bytes of an incomplete packet, in a buffer of the packet's
// size that later reads fill directly (each byte is copied once however it is dribbled). A TLS
// connection reads through OpenSSL into a small buffer of its own.
//
// Bounds: past GatewayContext::max_send_queue queued bytes the connection is not read (TCP pushes
// back on a client that does not read us) and is closed if that lasts write_timeout or its
// keep-alive; an incomplete packet must complete within partial_packet_timeout, and all of them
// together hold at most max_partial_bytes_total.
#pragma once

#include <chrono>
#include <memory>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>

#include "gateway/mqtt/io_worker.hpp"
#include "gateway/mqtt/packet_buffer.hpp"
#include "protocols/mqtt/server_session.hpp"

namespace citygate::gateway {

class MqttConnection : public TimerWheel::Hook, private mqtt::session_handler {
  public:
    // Bound to its I/O thread's io_context: that executor is 16 bytes where any_io_executor is
    // 48, in the socket and in every operation pending on it (an idle connection has one).
    using Socket = boost::asio::basic_stream_socket<boost::asio::ip::tcp,
                                                    boost::asio::io_context::executor_type>;

    // Makes a connection and starts it (I/O thread). It holds itself from then until its
    // teardown, after which the async operations still under way hold it until they end; the
    // worker's lists and timer wheel refer to it by plain pointers meanwhile.
    // `tls` set: the connection is TLS, handshaken before MQTT starts.
    static void open(IoWorker& worker, Socket socket, boost::asio::ssl::context* tls);

    // For open() (std::make_shared).
    MqttConnection(IoWorker& worker, Socket socket, boost::asio::ssl::context* tls);
    ~MqttConnection() override;

    // Its place in IoWorker::live(), from start() to teardown().
    LiveLink& live_link() { return live_link_; }

    // Its connect or keep-alive timeout passed (I/O thread, from IoWorker::timers()).
    void on_timer_expired();

    // The worker is going away without having torn the connection down: drops its hold on
    // itself, leaving it to whatever async operations still refer to it.
    void abandon();

    // A storage write of this connection finished (I/O thread).
    void complete(const Completion& completion);

    // Retries writes refused by a full shard queue; returns true once none are left and reading
    // has resumed (I/O thread).
    bool retry_stalled();

    // Stop reading new packets; in-flight writes still complete and are acknowledged.
    void stop_reading();

    // The publish rate allows reading again (I/O thread).
    void end_throttle();

    // Server-initiated end (v5 DISCONNECT with the reason, 3.1.1 close).
    void disconnect(mqtt::reason_code reason);

    // A deadline asked for through IoWorker::watch passed (I/O thread): closes the connection if
    // its incomplete packet or its blocked writes are overdue, else watches the next one.
    void on_deadline(std::chrono::steady_clock::time_point now);

  private:
    void start();
    // A reference for an async operation or a worker queue; only before teardown().
    std::shared_ptr<MqttConnection> share();

    struct StalledWrite {
        ingest::Write write;
        mqtt::delivery_token token = 0;
        std::chrono::steady_clock::time_point received;
    };

    // mqtt::session_handler
    void send(std::span<const std::uint8_t> bytes) override;
    void on_packet(mqtt::packet_direction direction, mqtt::packet_type type) override;
    void deliver(const mqtt::inbound_publish& message) override;
    mqtt::reason_code authenticate(const mqtt::connect_request& request) override;
    // The verification pool's answer, back on this connection's thread.
    void on_authenticated(ingest::AuthResult result);
    // Counts and logs an authentication answer and, for success, takes the session slot.
    mqtt::reason_code admit(ingest::AuthResult result);
    std::vector<mqtt::reason_code> subscribe(const mqtt::subscribe_request& request) override;
    void unsubscribe(std::span<const std::string_view> filters) override;
    void arm_timer(mqtt::timer_kind kind, std::chrono::milliseconds after) override;
    void cancel_timer(mqtt::timer_kind kind) override;
    void close(mqtt::reason_code reason) override;

    void wait_readable();
    void refill_rate_tokens(std::chrono::steady_clock::time_point now);
    void resume_reading();
    bool inflight_full() const;
    void on_handshake(const boost::system::error_code& ec);
    void on_readable(const boost::system::error_code& ec);
    void on_tls_read(const boost::system::error_code& ec, std::size_t n);
    // Feeds the decrypted bytes of the last TLS read, unless reading is stopped.
    void drain_tls();
    // One read (socket, or decrypted TLS bytes) and the packets it completes. True when it added
    // only a few bytes to an incomplete packet (the client dribbles).
    bool read_once(boost::system::error_code& ec);
    // Copies up to `room` bytes to `to`: read_some on the socket, or from the TLS buffer.
    std::size_t pull(std::uint8_t* to, std::size_t room, boost::system::error_code& ec);
    // Feeds bytes to the session and keeps an incomplete tail; `since` is when the tail's packet
    // began if it is the one that was already partial.
    void feed(std::span<const std::uint8_t> bytes, std::chrono::steady_clock::time_point since);
    // Keeps the start of an incomplete packet; false (connection closing) over the total bound.
    bool keep_partial(std::span<const std::uint8_t> tail,
                      std::chrono::steady_clock::time_point since);
    // Hands over the incomplete packet's buffer and returns its bytes to the total bound.
    PacketBuffer take_partial();
    bool sends_overdue() const { return send_blocked_ || (closing_ && writing_now_); }
    // Asks the worker for on_deadline() at the earliest deadline, if any and not yet asked.
    void watch_deadline();
    void peer_gone(const boost::system::error_code& ec);
    Socket& socket() { return tls_ ? tls_->stream.next_layer() : socket_; }
    void flush();
    void on_written(const boost::system::error_code& ec);
    bool submit(ingest::Write& write, mqtt::delivery_token token,
                std::chrono::steady_clock::time_point received);
    // A message the ingest unit refused: logs why, then completes its delivery with the reason
    // once the session returns (I/O thread), or disconnects (close_on_bad_payload).
    void refuse(const mqtt::inbound_publish& message, ingest::Verdict verdict);
    void finish_immediate_completions();
    void teardown();

    // TLS connections only: kept apart so a plain connection does not pay for it.
    struct TlsState {
        TlsState(Socket socket, boost::asio::ssl::context& context)
            : stream(std::move(socket), context) {}
        boost::asio::ssl::stream<Socket> stream;
        std::vector<std::uint8_t> buffer;
        std::size_t unread_begin = 0;  // buffer[unread_begin, unread_end): not fed yet
        std::size_t unread_end = 0;
        std::optional<std::string> certificate_user;  // CN of a verified client certificate
    };

    // What a connection holds only while bytes move: made by active() when a packet arrives
    // incomplete, an answer is queued or a write stalls, and dropped by settle() once none of
    // them is left, so that an idle connection does not carry its 112 bytes.
    struct ActiveState {
        // An incomplete packet: sized to its total once the fixed header is known
        // (partial_total), else to the longest fixed header; partial_have bytes are filled.
        PacketBuffer partial;
        std::uint32_t partial_have = 0;
        std::uint32_t partial_total = 0;
        std::chrono::steady_clock::time_point partial_since{};  // its first byte arrived
        std::chrono::steady_clock::time_point blocked_since{};  // send_blocked_ or last progress
        std::vector<std::uint8_t> outbox;   // bytes queued while a write is in flight
        std::vector<std::uint8_t> writing;  // bytes of the write in flight
        std::vector<StalledWrite> stalled;  // refused by a full shard queue, in arrival order
    };
    ActiveState& active();
    // Active states that connections of this I/O thread gave back, with their buffers: a
    // connection that answers a message and goes quiet again took one (and an outbox, and a
    // write buffer) from the heap per message. Bounded in number and in the buffers each keeps.
    static constexpr std::size_t kSpareActiveStates = 64, kSpareBufferBytes = 2048;
    static thread_local std::vector<std::unique_ptr<ActiveState>> spare_active_states_;
    // Gives active_ back to the spares if nothing is in it and no write is in flight or blocked.
    void settle();

    // Every idle connection carries these, its session's state among them (and besides them
    // its socket's reactor entry and one pending readability wait): kept few, small and
    // ordered by size so that the object and its shared_ptr control block fit a 368-byte
    // malloc chunk.
    IoWorker& worker_;
    Socket socket_;  // moved into tls_ for a TLS connection
    std::unique_ptr<TlsState> tls_;
    mqtt::server_session session_;
    ingest::Identity identity_;
    // Its series limits (per identity, per connection minute), asked by storage; may be null.
    // Made at the first write (series_asked_).
    std::shared_ptr<storage::SeriesAdmission> series_;
    std::shared_ptr<MqttConnection> self_;  // from open() to teardown()
    LiveLink live_link_;
    std::unique_ptr<ActiveState> active_;
    // Publish rate limit: a token bucket refilled by elapsed time, negative when over.
    std::chrono::steady_clock::time_point rate_refilled_{};
    float rate_tokens_ = 0;
    // The wheel hook (the base class) serves both kinds: the connect timeout ends where
    // keep-alive begins.
    mqtt::timer_kind timer_kind_ = mqtt::timer_kind::connect_timeout;
    // The flags as bits: 13 bools would cost the connection its place in a smaller chunk.
    bool from_loopback_ : 1 = false;
    bool throttled_ : 1 = false;  // over the publish rate: not reading until the worker wakes us
    // throttled_ only to let a dribbled packet's bytes gather in the socket: our choice, but
    // not one that extends the client's deadlines.
    bool coalescing_ : 1 = false;
    bool waiting_ : 1 = false;  // an async_wait for readability is pending
    // Over max_send_queue: not reading because the client does not read us (unlike paused_,
    // this does not extend its keep-alive).
    bool send_blocked_ : 1 = false;
    bool deadline_watched_ : 1 = false;  // an IoWorker::watch entry is pending
    bool reading_stopped_ : 1 = false;
    bool paused_ : 1 = false;  // backpressure: active_->stalled is not empty
    bool writing_now_ : 1 = false;
    bool closing_ : 1 = false;  // the engine said close: flush, then close the socket
    bool torn_down_ : 1 = false;
    bool counted_session_ : 1 = false;  // counted in GatewayContext::sessions
    bool series_asked_ : 1 = false;     // series_ was made
};

}  // namespace citygate::gateway
