// A publishing MQTT client on the project's own codec.
#include "loadgen/publisher.hpp"

#include <algorithm>

#include <boost/asio/write.hpp>

namespace citygate::loadgen {

void PublisherStats::merge(const PublisherStats& other) {
    connected += other.connected;
    connect_failed += other.connect_failed;
    sent += other.sent;
    acknowledged += other.acknowledged;
    negative_acks += other.negative_acks;
    protocol_errors += other.protocol_errors;
    disconnected_early += other.disconnected_early;
    connack_latency.merge(other.connack_latency);
    ack_latency.merge(other.ack_latency);
}

Publisher::Publisher(boost::asio::io_context& io, PublisherOptions options, std::string client_id,
                     MessageSource source, PublisherStats& stats, std::function<void()> on_done)
    : io_(io),
      options_(std::move(options)),
      client_id_(std::move(client_id)),
      source_(std::move(source)),
      stats_(stats),
      on_done_(std::move(on_done)),
      socket_(io),
      timer_(io),
      read_buffer_(4096) {}

void Publisher::start() {
    connect_started_ = std::chrono::steady_clock::now();
    boost::system::error_code ec;
    socket_.open(options_.server.protocol(), ec);
    if (!ec && options_.source) socket_.bind({*options_.source, 0}, ec);
    if (ec) return on_connected(ec);
    socket_.async_connect(options_.server,
                          [self = shared_from_this()](auto ec) { self->on_connected(ec); });
}

void Publisher::on_connected(const boost::system::error_code& ec) {
    if (ec) {
        ++stats_.connect_failed;
        return finish();
    }
    socket_.set_option(boost::asio::ip::tcp::no_delay(true));
    mqtt::connect_packet connect;
    connect.version = options_.version;
    connect.clean_start = true;
    connect.keep_alive_s = options_.keep_alive_s;
    connect.client_id = client_id_;
    if (mqtt::encode(connect, encoded_)) {
        ++stats_.protocol_errors;
        return finish();
    }
    queue(encoded_);
    read();
}

void Publisher::read() {
    if (read_size_ == read_buffer_.size()) read_buffer_.resize(read_buffer_.size() * 2);
    socket_.async_read_some(
        boost::asio::buffer(read_buffer_.data() + read_size_, read_buffer_.size() - read_size_),
        [self = shared_from_this()](auto ec, std::size_t n) { self->on_read(ec, n); });
}

void Publisher::on_read(const boost::system::error_code& ec, std::size_t n) {
    if (finished_) return;
    if (ec) {
        if (!closing_) ++stats_.disconnected_early;
        return finish();
    }
    read_size_ += n;
    mqtt::parser_limits limits;
    std::size_t offset = 0;
    while (offset < read_size_) {
        mqtt::packet packet;
        auto result =
            mqtt::parse(mqtt::bytes_view(read_buffer_.data() + offset, read_size_ - offset),
                        options_.version, limits, packet);
        if (result.status == mqtt::parse_status::need_more) break;
        if (result.status == mqtt::parse_status::error) {
            ++stats_.protocol_errors;
            return finish();
        }
        offset += result.consumed;
        if (!handle(packet)) return finish();
    }
    std::copy(read_buffer_.begin() + static_cast<std::ptrdiff_t>(offset),
              read_buffer_.begin() + static_cast<std::ptrdiff_t>(read_size_), read_buffer_.begin());
    read_size_ -= offset;
    if (!finished_) read();
}

bool Publisher::handle(const mqtt::packet& packet) {
    auto now = std::chrono::steady_clock::now();
    auto acknowledge = [&](std::uint16_t packet_id, mqtt::reason_code reason) {
        auto found = std::find_if(inflight_.begin(), inflight_.end(),
                                  [&](const Inflight& i) { return i.packet_id == packet_id; });
        if (found == inflight_.end()) {
            ++stats_.protocol_errors;
            return false;
        }
        stats_.ack_latency.record(now - found->sent);
        ++stats_.acknowledged;
        if (static_cast<std::uint8_t>(reason) >= 0x80) ++stats_.negative_acks;
        inflight_.erase(found);
        publish_more();
        return true;
    };

    if (auto* connack = std::get_if<mqtt::connack_packet>(&packet)) {
        if (connack->reason != mqtt::reason_code::success) {
            ++stats_.connect_failed;
            return false;
        }
        connected_ = true;
        ++stats_.connected;
        stats_.connack_latency.record(now - connect_started_);
        if (options_.interval.count() > 0) {
            tick();
        } else {
            publish_more();
        }
        return true;
    }
    if (auto* puback = std::get_if<mqtt::puback_packet>(&packet)) {
        return acknowledge(puback->packet_id, puback->reason);
    }
    if (auto* pubrec = std::get_if<mqtt::pubrec_packet>(&packet)) {
        // QoS 2: release; the message counts as acknowledged at PUBCOMP.
        mqtt::pubrel_packet pubrel;
        pubrel.packet_id = pubrec->packet_id;
        if (mqtt::encode(pubrel, options_.version, encoded_)) return false;
        queue(encoded_);
        return true;
    }
    if (auto* pubcomp = std::get_if<mqtt::pubcomp_packet>(&packet)) {
        return acknowledge(pubcomp->packet_id, pubcomp->reason);
    }
    if (std::holds_alternative<mqtt::pingresp_packet>(packet)) return true;
    if (std::holds_alternative<mqtt::disconnect_packet>(packet)) {
        ++stats_.disconnected_early;
        return false;
    }
    ++stats_.protocol_errors;
    return false;
}

void Publisher::publish_more() {
    if (!connected_ || finished_ || closing_) return;
    if (options_.interval.count() == 0) {
        while (next_sequence_ < options_.messages && window_open())
            publish_one();
    }
    disconnect_when_done();
}

void Publisher::tick() {
    if (finished_ || closing_) return;
    if (next_sequence_ < options_.messages && window_open()) publish_one();
    disconnect_when_done();
    if (closing_) return;
    timer_.expires_after(options_.interval);
    timer_.async_wait([self = shared_from_this()](auto ec) {
        if (!ec) self->tick();
    });
}

bool Publisher::window_open() const {
    return options_.qos == mqtt::qos::at_most_once || inflight_.size() < options_.inflight;
}

void Publisher::disconnect_when_done() {
    if (closing_ || next_sequence_ < options_.messages || !inflight_.empty()) return;
    closing_ = true;
    mqtt::disconnect_packet disconnect;
    if (!mqtt::encode(disconnect, options_.version, encoded_)) queue(encoded_);
}

void Publisher::publish_one() {
    source_(next_sequence_++, topic_, payload_);
    mqtt::publish_packet publish;
    publish.qos = options_.qos;
    publish.topic = topic_;
    publish.payload =
        mqtt::bytes_view(reinterpret_cast<const std::uint8_t*>(payload_.data()), payload_.size());
    if (options_.qos != mqtt::qos::at_most_once) {
        publish.packet_id = next_packet_id();
        inflight_.push_back({publish.packet_id, std::chrono::steady_clock::now()});
    }
    if (mqtt::encode(publish, options_.version, encoded_)) {
        ++stats_.protocol_errors;
        return;
    }
    queue(encoded_);
    ++stats_.sent;
    if (options_.qos == mqtt::qos::at_most_once) ++stats_.acknowledged;
}

std::uint16_t Publisher::next_packet_id() {
    do {
        last_packet_id_ = static_cast<std::uint16_t>(last_packet_id_ % 65535 + 1);
    } while (std::any_of(inflight_.begin(), inflight_.end(),
                         [&](const Inflight& i) { return i.packet_id == last_packet_id_; }));
    return last_packet_id_;
}

void Publisher::queue(const mqtt::encoded_packet& packet) {
    packet.append_to(outbox_);  // the payload is copied here, once, into the socket's batch
    flush();
}

void Publisher::flush() {
    if (write_in_flight_ || outbox_.empty() || finished_) return;
    writing_.swap(outbox_);
    write_in_flight_ = true;
    boost::asio::async_write(socket_, boost::asio::buffer(writing_),
                             [self = shared_from_this()](auto ec, std::size_t) {
                                 self->write_in_flight_ = false;
                                 self->writing_.clear();
                                 if (ec) {
                                     if (!self->finished_) ++self->stats_.disconnected_early;
                                     return self->finish();
                                 }
                                 if (self->closing_ && self->outbox_.empty()) {
                                     return self->finish();
                                 }
                                 self->flush();
                             });
}

void Publisher::finish() {
    if (finished_) return;
    finished_ = true;
    timer_.cancel();
    boost::system::error_code ignored;
    socket_.shutdown(boost::asio::ip::tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    if (on_done_) on_done_();
}

}  // namespace citygate::loadgen
