// One simulated sensor connection: connects, publishes a number of messages with a window of
// unacknowledged QoS 1/2 messages (or at a fixed interval), records CONNACK and ack latencies,
// then disconnects. Runs on one io_context thread; the stats it writes belong to that thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "loadgen/latency_histogram.hpp"
#include "protocols/mqtt/encoder.hpp"
#include "protocols/mqtt/parser.hpp"

namespace citygate::loadgen {

struct PublisherOptions {
    boost::asio::ip::tcp::endpoint server;
    std::optional<boost::asio::ip::address> source;  // bind to this local address (127.0.0.x)
    mqtt::protocol_version version = mqtt::protocol_version::v3_1_1;
    mqtt::qos qos = mqtt::qos::at_least_once;
    std::uint16_t inflight = 16;            // unacknowledged messages allowed (QoS 1/2)
    std::uint64_t messages = 100;           // to publish before disconnecting
    std::chrono::milliseconds interval{0};  // 0: as fast as the window allows
    std::uint16_t keep_alive_s = 60;
};

// Counters of one thread's clients; merged at the end.
struct PublisherStats {
    std::uint64_t connected = 0;
    std::uint64_t connect_failed = 0;
    std::uint64_t sent = 0;
    std::uint64_t acknowledged = 0;   // PUBACK/PUBCOMP received; for QoS 0: written
    std::uint64_t negative_acks = 0;  // v5 reason code >= 0x80
    std::uint64_t protocol_errors = 0;
    std::uint64_t disconnected_early = 0;  // lost before finishing
    LatencyHistogram connack_latency;
    LatencyHistogram ack_latency;

    void merge(const PublisherStats& other);
};

// Fills the topic and payload of message number `sequence` of a client.
using MessageSource =
    std::function<void(std::uint64_t sequence, std::string& topic, std::string& payload)>;

class Publisher : public std::enable_shared_from_this<Publisher> {
  public:
    Publisher(boost::asio::io_context& io, PublisherOptions options, std::string client_id,
              MessageSource source, PublisherStats& stats, std::function<void()> on_done);

    void start();

  private:
    struct Inflight {
        std::uint16_t packet_id;
        std::chrono::steady_clock::time_point sent;
    };

    void on_connected(const boost::system::error_code& ec);
    void read();
    void on_read(const boost::system::error_code& ec, std::size_t n);
    bool handle(const mqtt::packet& packet);
    void publish_more();  // max-throughput shape: fill the window
    void tick();          // rate shape: one message per interval
    bool window_open() const;
    void publish_one();
    void disconnect_when_done();
    void queue(const mqtt::encoded_packet& packet);
    void flush();
    void finish();
    std::uint16_t next_packet_id();

    boost::asio::io_context& io_;
    PublisherOptions options_;
    std::string client_id_;
    MessageSource source_;
    PublisherStats& stats_;
    std::function<void()> on_done_;
    boost::asio::ip::tcp::socket socket_;
    boost::asio::steady_timer timer_;

    std::vector<std::uint8_t> read_buffer_;
    std::size_t read_size_ = 0;
    std::vector<std::uint8_t> outbox_, writing_;
    bool write_in_flight_ = false;
    bool connected_ = false;
    bool finished_ = false;
    bool closing_ = false;
    std::chrono::steady_clock::time_point connect_started_;

    std::uint64_t next_sequence_ = 0;
    std::uint16_t last_packet_id_ = 0;
    std::vector<Inflight> inflight_;
    std::string topic_, payload_;
    mqtt::encoded_packet encoded_;
};

}  // namespace citygate::loadgen
