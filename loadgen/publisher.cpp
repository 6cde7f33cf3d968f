// A simulated sensor's MQTT client on the project's own codec.
#include "loadgen/publisher.hpp"

#include <algorithm>

namespace citygate::loadgen {
namespace {

// Packets are encoded into a per-thread scratch and copied once into the socket's batch, so an
// idle client holds no encoder or message buffers.
thread_local mqtt::encoded_packet scratch_packet;
thread_local std::string scratch_topic, scratch_payload;

constexpr std::size_t initial_read_buffer = 256;  // acks and CONNACKs are a few bytes
constexpr std::size_t max_read_buffer = 1 << 20;

std::uint64_t mix(std::uint64_t x) {  // splitmix64 finaliser, for back-off jitter
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

bool failure(mqtt::reason_code reason) {
    return static_cast<std::uint8_t>(reason) >= 0x80;
}

}  // namespace

Publisher::Publisher(boost::asio::io_context& io, const PublisherOptions& options,
                     const boost::asio::ip::address* source_address, ClientIdentity identity,
                     std::size_t sensor, const MessageSource& source, PublisherStats& stats,
                     std::vector<std::uint64_t>* acked, std::function<void()> on_done)
    : io_(io),
      options_(options),
      source_address_(source_address),
      identity_(std::move(identity)),
      sensor_(sensor),
      source_(source),
      stats_(stats),
      acked_(acked),
      on_done_(std::move(on_done)),
      transport_(io, options.tls),
      timer_(io),
      keep_alive_(io) {}

void Publisher::start() {
    connect();
}

void Publisher::connect() {
    phase_ = Phase::connecting;
    stats_.attempts.add();
    connect_started_ = std::chrono::steady_clock::now();
    if (auto ec = transport_.open(options_.server, source_address_)) {
        return drop(DropReason::connect_error);
    }
    auto generation = generation_;
    keep_alive_.expires_after(options_.connect_timeout);
    keep_alive_.async_wait([self = shared_from_this(), generation](auto ec) {
        if (ec || generation != self->generation_ || self->phase_ != Phase::connecting) return;
        self->drop(DropReason::connect_timeout);
    });
    ++pending_ops_;
    transport_.async_connect(options_.server, [self = shared_from_this(), generation](auto ec) {
        --self->pending_ops_;
        if (generation == self->generation_) self->on_connected(ec);
    });
}

void Publisher::on_connected(const boost::system::error_code& ec) {
    if (ec) return drop(DropReason::connect_error);
    auto generation = generation_;
    ++pending_ops_;
    transport_.async_handshake([self = shared_from_this(), generation](auto ec) {
        --self->pending_ops_;
        if (generation == self->generation_) self->on_handshake(ec);
    });
}

void Publisher::on_handshake(const boost::system::error_code& ec) {
    if (ec) return drop(DropReason::tls_handshake);
    mqtt::connect_packet connect;
    connect.version = options_.version;
    connect.clean_start = true;
    connect.keep_alive_s = options_.keep_alive_s;
    connect.client_id = identity_.client_id;
    if (identity_.username) connect.username = *identity_.username;
    if (identity_.password) {
        connect.password =
            mqtt::bytes_view(reinterpret_cast<const std::uint8_t*>(identity_.password->data()),
                             identity_.password->size());
    }
    if (mqtt::encode(connect, scratch_packet)) {
        stats_.protocol_errors.add();
        return drop(DropReason::protocol_error);
    }
    queue(scratch_packet);
    read();
}

void Publisher::read() {
    if (read_buffer_.size() < initial_read_buffer) read_buffer_.resize(initial_read_buffer);
    if (read_size_ == read_buffer_.size()) read_buffer_.resize(read_buffer_.size() * 2);
    auto generation = generation_;
    ++pending_ops_;
    transport_.async_read_some(
        boost::asio::buffer(read_buffer_.data() + read_size_, read_buffer_.size() - read_size_),
        [self = shared_from_this(), generation](auto ec, std::size_t n) {
            --self->pending_ops_;
            if (generation == self->generation_) self->on_read(ec, n);
        });
}

void Publisher::on_read(const boost::system::error_code& ec, std::size_t n) {
    if (phase_ == Phase::finished) return;
    if (ec) return closing_ ? finish() : drop(DropReason::closed_by_server);
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
            stats_.protocol_errors.add();
            return drop(DropReason::protocol_error);
        }
        offset += result.consumed;
        if (!handle(packet)) return;  // the connection is gone; handle() said why
    }
    std::copy(read_buffer_.begin() + static_cast<std::ptrdiff_t>(offset),
              read_buffer_.begin() + static_cast<std::ptrdiff_t>(read_size_), read_buffer_.begin());
    read_size_ -= offset;
    if (read_size_ == read_buffer_.size() && read_buffer_.size() >= max_read_buffer) {
        stats_.protocol_errors.add();
        return drop(DropReason::protocol_error);
    }
    read();
}

bool Publisher::handle(const mqtt::packet& packet) {
    if (auto* connack = std::get_if<mqtt::connack_packet>(&packet)) return on_connack(*connack);
    if (phase_ != Phase::online) {
        stats_.protocol_errors.add();  // anything before CONNACK breaks MQTT-3.2.0-1
        drop(DropReason::protocol_error);
        return false;
    }
    if (auto* puback = std::get_if<mqtt::puback_packet>(&packet)) {
        return acknowledge(puback->packet_id, puback->reason);
    }
    if (auto* pubrec = std::get_if<mqtt::pubrec_packet>(&packet)) {
        // QoS 2: a refusing PUBREC ends the flow; otherwise release and count it at PUBCOMP.
        if (failure(pubrec->reason)) return acknowledge(pubrec->packet_id, pubrec->reason);
        mqtt::pubrel_packet pubrel;
        pubrel.packet_id = pubrec->packet_id;
        if (mqtt::encode(pubrel, options_.version, scratch_packet)) return false;
        queue(scratch_packet);
        return true;
    }
    if (auto* pubcomp = std::get_if<mqtt::pubcomp_packet>(&packet)) {
        return acknowledge(pubcomp->packet_id, pubcomp->reason);
    }
    if (std::holds_alternative<mqtt::pingresp_packet>(packet)) {
        pings_unanswered_ = 0;
        return true;
    }
    if (std::holds_alternative<mqtt::disconnect_packet>(packet)) {
        drop(DropReason::server_disconnect);
        return false;
    }
    stats_.protocol_errors.add();
    drop(DropReason::protocol_error);
    return false;
}

bool Publisher::on_connack(const mqtt::connack_packet& connack) {
    if (phase_ != Phase::connecting) {
        stats_.protocol_errors.add();
        drop(DropReason::protocol_error);
        return false;
    }
    if (connack.reason != mqtt::reason_code::success) {
        drop(DropReason::connack_refused);
        return false;
    }
    keep_alive_.cancel();  // the connect timeout
    auto now = std::chrono::steady_clock::now();
    stats_.connack_latency.record(now - connect_started_);
    stats_.connack_by_second.record(now, now - connect_started_);
    if (ever_connected_) {
        stats_.reconnected.add();
        stats_.reconnects[static_cast<std::size_t>(lost_reason_)].add();
    } else {
        stats_.connected.add();
        stats_.last_connect_ns.set(static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count()));
    }
    ever_connected_ = true;
    stats_.open.add();
    phase_ = Phase::online;
    failed_attempts_ = 0;
    window_ = options_.inflight;
    if (connack.props.receive_maximum) window_ = std::min(window_, *connack.props.receive_maximum);
    keep_alive_s_ = connack.props.server_keep_alive.value_or(options_.keep_alive_s);
    pings_unanswered_ = 0;
    arm_keep_alive();
    if (options_.interval.count() > 0) {
        tick();
    } else {
        publish_more();
    }
    return phase_ != Phase::finished;
}

bool Publisher::acknowledge(std::uint16_t packet_id, mqtt::reason_code reason) {
    auto found = std::find_if(inflight_.begin(), inflight_.end(),
                              [&](const Inflight& i) { return i.packet_id == packet_id; });
    if (found == inflight_.end()) {
        stats_.protocol_errors.add();
        drop(DropReason::protocol_error);
        return false;
    }
    auto now = std::chrono::steady_clock::now();
    stats_.ack_latency.record(now - found->sent);
    stats_.ack_by_second.record(now, now - found->sent);
    if (failure(reason)) {
        stats_.negative_acks.add();
    } else {
        stats_.acknowledged.add();
        if (acked_) acked_->push_back(found->sequence);
    }
    inflight_.erase(found);
    if (options_.interval.count() == 0) {
        publish_more();
    } else {
        disconnect_when_done();
    }
    return phase_ != Phase::finished;
}

void Publisher::publish_more() {
    if (phase_ != Phase::online || closing_) return;
    if (!stopping_) {
        while (next_sequence_ < options_.messages && window_open())
            publish_one();
    }
    disconnect_when_done();
}

void Publisher::tick() {
    if (phase_ != Phase::online || closing_ || stopping_) return;
    if (next_sequence_ < options_.messages && window_open()) publish_one();
    disconnect_when_done();
    if (closing_ || next_sequence_ >= options_.messages) return;
    auto generation = generation_;
    timer_.expires_after(options_.interval);
    timer_.async_wait([self = shared_from_this(), generation](auto ec) {
        if (!ec && generation == self->generation_) self->tick();
    });
}

void Publisher::arm_keep_alive() {
    if (keep_alive_s_ == 0) return;
    // Checked every half period: a client silent for a whole half period pings, so the server
    // never sees more than one keep-alive period without a packet.
    auto generation = generation_;
    keep_alive_.expires_after(std::chrono::milliseconds(keep_alive_s_) * 500);
    keep_alive_.async_wait([self = shared_from_this(), generation](auto ec) {
        if (!ec && generation == self->generation_) self->on_keep_alive();
    });
}

void Publisher::on_keep_alive() {
    if (phase_ != Phase::online) return;
    if (pings_unanswered_ >= 2) return drop(DropReason::keepalive_timeout);
    if (!wrote_since_ping_check_) {
        if (mqtt::encode(mqtt::pingreq_packet{}, options_.version, scratch_packet)) return;
        ++pings_unanswered_;
        stats_.pings.add();
        queue(scratch_packet);
    }
    wrote_since_ping_check_ = false;
    arm_keep_alive();
}

bool Publisher::window_open() const {
    return options_.qos == mqtt::qos::at_most_once || inflight_.size() < window_;
}

void Publisher::disconnect_when_done() {
    if (closing_ || phase_ != Phase::online || !inflight_.empty()) return;
    if (!stopping_ && (next_sequence_ < options_.messages || options_.hold)) return;
    closing_ = true;
    timer_.cancel();
    keep_alive_.cancel();
    mqtt::disconnect_packet disconnect;
    if (mqtt::encode(disconnect, options_.version, scratch_packet)) return finish();
    queue(scratch_packet);
}

void Publisher::publish_one() {
    std::uint64_t sequence = next_sequence_++;
    source_.message(sensor_, sequence, scratch_topic, scratch_payload);
    mqtt::publish_packet publish;
    publish.qos = options_.qos;
    publish.topic = scratch_topic;
    publish.payload = mqtt::bytes_view(
        reinterpret_cast<const std::uint8_t*>(scratch_payload.data()), scratch_payload.size());
    if (options_.qos != mqtt::qos::at_most_once) publish.packet_id = next_packet_id();
    if (mqtt::encode(publish, options_.version, scratch_packet)) {
        stats_.protocol_errors.add();
        return;
    }
    queue(scratch_packet);
    stats_.sent.add();
    if (options_.qos == mqtt::qos::at_most_once) {
        stats_.acknowledged.add();  // as good as it gets: written to the socket's batch
        if (acked_) acked_->push_back(sequence);
    } else {
        inflight_.push_back({publish.packet_id, sequence, std::chrono::steady_clock::now()});
    }
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
    wrote_since_ping_check_ = true;
    flush();
}

void Publisher::flush() {
    if (write_in_flight_ || outbox_.empty() || phase_ == Phase::finished) return;
    writing_.swap(outbox_);
    write_in_flight_ = true;
    auto generation = generation_;
    ++pending_ops_;
    transport_.async_write(boost::asio::buffer(writing_),
                           [self = shared_from_this(), generation](auto ec, std::size_t) {
                               --self->pending_ops_;
                               self->write_in_flight_ = false;
                               self->writing_.clear();
                               if (generation != self->generation_) return;
                               if (ec) {
                                   if (self->closing_) return self->finish();
                                   return self->drop(DropReason::write_error);
                               }
                               if (self->closing_ && self->outbox_.empty()) return self->finish();
                               self->flush();
                           });
}

void Publisher::drop(DropReason reason) {
    if (phase_ == Phase::finished || phase_ == Phase::backing_off) return;
    stats_.drops[static_cast<std::size_t>(reason)].add();
    if (phase_ == Phase::online) {
        // A reconnect is filed under why the connection was lost, not under the refusals of
        // the attempts that followed while the broker was down.
        lost_reason_ = reason;
        stats_.open.subtract();
    }
    phase_ = Phase::backing_off;
    stats_.unacknowledged.add(inflight_.size());
    inflight_.clear();
    ++generation_;
    transport_.close();
    timer_.cancel();
    keep_alive_.cancel();
    outbox_.clear();
    read_size_ = 0;
    closing_ = false;
    ++failed_attempts_;
    const ReconnectPolicy& policy = options_.reconnect;
    if (stopping_ || !policy.enabled ||
        (policy.max_attempts != 0 && failed_attempts_ > policy.max_attempts)) {
        if (ever_connected_) {
            stats_.disconnected_early.add();
        } else {
            stats_.connect_failed.add();
        }
        return finish();
    }
    // Exponential back-off with jitter in [50 %, 100 %], so a dropped crowd does not return in
    // one wave.
    auto shift = std::min<std::uint32_t>(failed_attempts_ - 1, 20);
    auto delay = std::min(policy.max_delay, policy.min_delay * (1 << shift));
    double jitter =
        0.5 + 0.5 * static_cast<double>(mix(sensor_ * 977 + failed_attempts_) >> 11) * 0x1.0p-53;
    auto wait = std::chrono::milliseconds(
        std::max<std::int64_t>(1, static_cast<std::int64_t>(double(delay.count()) * jitter)));
    auto generation = generation_;
    timer_.expires_after(wait);
    timer_.async_wait([self = shared_from_this(), generation](auto ec) {
        if (ec || generation != self->generation_) return;
        self->reconnect_when_quiet();
    });
}

void Publisher::reconnect_when_quiet() {
    if (phase_ != Phase::backing_off) return;
    if (pending_ops_ == 0) return connect();
    auto generation = generation_;
    timer_.expires_after(std::chrono::milliseconds(1));
    timer_.async_wait([self = shared_from_this(), generation](auto ec) {
        if (!ec && generation == self->generation_) self->reconnect_when_quiet();
    });
}

void Publisher::stop() {
    stopping_ = true;
    if (phase_ == Phase::connecting || phase_ == Phase::backing_off) return finish();
    if (phase_ != Phase::online) return;
    timer_.cancel();  // no more rate ticks
    disconnect_when_done();
}

void Publisher::abort() {
    finish();
}

void Publisher::finish() {
    if (phase_ == Phase::finished) return;
    if (phase_ == Phase::online) stats_.open.subtract();
    stats_.unacknowledged.add(inflight_.size());
    inflight_.clear();
    phase_ = Phase::finished;
    ++generation_;
    timer_.cancel();
    keep_alive_.cancel();
    transport_.close();
    outbox_.clear();
    if (on_done_) {
        auto done = std::move(on_done_);
        on_done_ = nullptr;
        done();
    }
}

}  // namespace citygate::loadgen
