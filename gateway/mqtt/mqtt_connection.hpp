// One MQTT client connection: drives the socket-free protocol engine from an Asio socket and
// feeds decoded samples to storage. Lives on one I/O thread; no strand needed.
//
// While idle a plain TCP connection holds no read buffer: it waits for readability, reads into the
// worker's buffer and keeps only the bytes of an incomplete packet. A TLS connection reads through
// OpenSSL into a small buffer of its own.
#pragma once

#include <chrono>
#include <memory>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>

#include "gateway/mqtt/io_worker.hpp"
#include "protocols/mqtt/server_session.hpp"

namespace citygate::gateway {

class MqttConnection : public std::enable_shared_from_this<MqttConnection>,
                       private mqtt::session_handler {
  public:
    // `tls` set: the connection is TLS, handshaken before MQTT starts.
    MqttConnection(IoWorker& worker, boost::asio::ip::tcp::socket socket,
                   boost::asio::ssl::context* tls);
    ~MqttConnection() override;

    void start();

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

  private:
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
    // Feeds the first `have` bytes of the worker's read buffer to the session.
    void feed(std::size_t have);
    void peer_gone(const boost::system::error_code& ec);
    boost::asio::ip::tcp::socket& socket() { return tls_ ? tls_->stream.next_layer() : socket_; }
    void flush();
    void on_written(const boost::system::error_code& ec);
    void on_timer(mqtt::timer_kind kind, std::chrono::milliseconds after);
    bool submit(ingest::Write& write, mqtt::delivery_token token,
                std::chrono::steady_clock::time_point received);
    // A message the ingest unit refused: logs why, then completes its delivery with the reason
    // once the session returns (I/O thread), or disconnects (close_on_bad_payload).
    void refuse(const mqtt::inbound_publish& message, ingest::Verdict verdict);
    void finish_immediate_completions();
    void teardown();

    // TLS connections only: kept apart so a plain connection does not pay for it.
    struct TlsState {
        TlsState(boost::asio::ip::tcp::socket socket, boost::asio::ssl::context& context)
            : stream(std::move(socket), context) {}
        boost::asio::ssl::stream<boost::asio::ip::tcp::socket> stream;
        std::vector<std::uint8_t> buffer;
        std::optional<std::string> certificate_user;  // CN of a verified client certificate
    };

    // Members are kept few and small: an idle connection should cost well under 2 KiB in all.
    IoWorker& worker_;
    boost::asio::ip::tcp::socket socket_;  // moved into tls_ for a TLS connection
    std::unique_ptr<TlsState> tls_;
    mqtt::server_session session_;
    ingest::Identity identity_;
    // One timer serves both kinds: the connect timeout ends where keep-alive begins.
    boost::asio::steady_timer timer_;
    mqtt::timer_kind timer_kind_ = mqtt::timer_kind::connect_timeout;
    bool timer_armed_ = false;
    bool from_loopback_ = false;
    bool throttled_ = false;  // over the publish rate: not reading until the worker wakes us
    // Publish rate limit: a token bucket refilled by elapsed time, negative when over.
    float rate_tokens_ = 0;
    std::chrono::steady_clock::time_point rate_refilled_{};

    std::vector<std::uint8_t> partial_;  // start of an incomplete packet, empty while idle
    std::vector<std::uint8_t> outbox_;   // bytes queued while a write is in flight
    std::vector<std::uint8_t> writing_;  // bytes of the write in flight
    std::vector<StalledWrite> stalled_;  // refused by a full shard queue, in arrival order

    bool waiting_ = false;  // an async_wait for readability is pending
    bool reading_stopped_ = false;
    bool paused_ = false;  // backpressure: stalled_ is not empty
    bool writing_now_ = false;
    bool closing_ = false;  // the engine said close: flush, then close the socket
    bool torn_down_ = false;
    bool counted_session_ = false;  // counted in GatewayContext::sessions
};

}  // namespace citygate::gateway
