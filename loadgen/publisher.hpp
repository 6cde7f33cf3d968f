// One simulated sensor's MQTT client: connects (TCP or TLS, from a chosen source address),
// publishes its readings with a window of unacknowledged QoS 1/2 messages or at a fixed interval,
// reconnects with back-off when it is dropped, and disconnects when done or told to stop. The MQTT
// flows (CONNACK, acks, packet ids, keep-alive PINGREQs) are mqtt::client_session's; this class
// keeps the socket, the Asio timers, back-off and the measurements. Lives on one io_context
// thread: every member function, and the stats it writes, belong to that thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "loadgen/client_stats.hpp"
#include "loadgen/transport.hpp"
#include "protocols/mqtt/client_session.hpp"

namespace citygate::loadgen {

struct ReconnectPolicy {
    bool enabled = false;
    std::chrono::milliseconds min_delay{250};  // first back-off; doubles per failed attempt
    std::chrono::milliseconds max_delay{10'000};
    std::uint32_t max_attempts = 10;  // consecutive failed attempts before giving up; 0: no limit
};

// Shared by every client of a run; must outlive them.
struct PublisherOptions {
    boost::asio::ip::tcp::endpoint server;
    boost::asio::ssl::context* tls = nullptr;  // null: plain TCP
    mqtt::protocol_version version = mqtt::protocol_version::v3_1_1;
    mqtt::qos qos = mqtt::qos::at_least_once;
    std::uint16_t inflight = 16;            // unacknowledged messages allowed (QoS 1/2)
    std::uint64_t messages = 100;           // to publish before disconnecting
    std::chrono::milliseconds interval{0};  // 0: as fast as the window allows
    std::uint16_t keep_alive_s = 60;        // 0: no PINGREQs
    bool hold = false;                      // after the last message, stay connected until stop()
    std::chrono::milliseconds connect_timeout{10'000};
    ReconnectPolicy reconnect;
};

// Who a client is to the broker; username and password already expanded for its device.
struct ClientIdentity {
    std::string client_id;
    std::optional<std::string> username;
    std::optional<std::string> password;
};

// Fills the topic and payload of a sensor's message number `sequence`. Called on the client's
// thread; must be safe to call from several threads at once.
class MessageSource {
  public:
    virtual ~MessageSource() = default;
    virtual void message(std::size_t sensor, std::uint64_t sequence, std::string& topic,
                         std::string& payload) const = 0;
};

class Publisher : public std::enable_shared_from_this<Publisher>, private mqtt::client_handler {
  public:
    // `source_address` null: the kernel's choice. `acked` (nullable) receives the sequence of
    // every positively acknowledged message (for --verify). `on_done` runs once, when the client
    // has finished for good. Everything referenced must outlive the client.
    Publisher(boost::asio::io_context& io, const PublisherOptions& options,
              const boost::asio::ip::address* source_address, ClientIdentity identity,
              std::size_t sensor, const MessageSource& source, PublisherStats& stats,
              std::vector<std::uint64_t>* acked, std::function<void()> on_done);

    void start();
    // Stop publishing; wait for the messages in flight, then DISCONNECT. A client that is not
    // connected (connecting, backing off) finishes at once.
    void stop();
    // Finish now: messages still in flight count as unacknowledged.
    void abort();
    bool finished() const { return phase_ == Phase::finished; }

  private:
    enum class Phase : std::uint8_t { connecting, online, backing_off, finished };
    struct Inflight {
        std::uint16_t packet_id;
        std::uint64_t sequence;
        std::chrono::steady_clock::time_point sent;
    };

    void connect();
    void on_connected(const boost::system::error_code& ec);
    void on_handshake(const boost::system::error_code& ec);
    void read();
    void on_read(const boost::system::error_code& ec, std::size_t n);
    void publish_more();  // max-throughput shape: fill the window
    void tick();          // rate shape: one message per interval
    bool window_open() const;
    void publish_one();
    void disconnect_when_done();
    void flush();
    void drop(DropReason reason);  // connection lost: reconnect or finish
    void reconnect_when_quiet();   // reopens once the old socket's operations have completed
    void finish();

    // mqtt::client_handler
    void send(std::span<const std::uint8_t> bytes) override;
    void on_connack(const mqtt::connack_packet& ack) override;
    void on_published(std::uint16_t packet_id, mqtt::reason_code reason) override;
    void arm_timer(mqtt::client_timer kind, std::chrono::milliseconds after) override;
    void cancel_timer(mqtt::client_timer kind) override;
    void close(mqtt::client_end why, mqtt::reason_code reason) override;
    void on_packet(mqtt::packet_direction direction, mqtt::packet_type type) override;
    mqtt::encoded_packet* encode_buffer() override;

    boost::asio::io_context& io_;
    const PublisherOptions& options_;
    const boost::asio::ip::address* source_address_;
    ClientIdentity identity_;
    std::size_t sensor_;
    const MessageSource& source_;
    PublisherStats& stats_;
    std::vector<std::uint64_t>* acked_;
    std::function<void()> on_done_;
    Transport transport_;
    boost::asio::steady_timer timer_;       // rate ticks, reconnect back-off
    boost::asio::steady_timer keep_alive_;  // connect timeout, then the session's keep-alive
    mqtt::client_session session_;

    // Completions of a previous connection carry an older generation and are ignored.
    std::uint32_t generation_ = 0;
    std::uint8_t pending_ops_ = 0;  // reads and writes of the current socket not yet completed
    Phase phase_ = Phase::connecting;
    bool ever_connected_ = false;
    bool closing_ = false;   // DISCONNECT queued
    bool stopping_ = false;  // stop() called
    bool write_in_flight_ = false;
    std::uint32_t failed_attempts_ = 0;
    DropReason lost_reason_ = DropReason::closed_by_server;  // of the last online connection
    std::chrono::steady_clock::time_point connect_started_;

    std::vector<std::uint8_t> read_buffer_;
    std::size_t read_size_ = 0;
    std::vector<std::uint8_t> outbox_, writing_;
    std::uint64_t next_sequence_ = 0;
    std::vector<Inflight> inflight_;  // what the session's packet ids stand for
};

}  // namespace citygate::loadgen
