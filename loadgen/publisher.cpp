// A simulated sensor's MQTT client: the socket, timers and measurements around
// mqtt::client_session.
#include "loadgen/publisher.hpp"

#include <algorithm>

namespace citygate::loadgen {
namespace {

// Packets are encoded into a per-thread scratch and copied once into the socket's batch, so an
// idle client holds no encoder or message buffers.
thread_local mqtt::encoded_packet scratch_packet;
thread_local std::string scratch_topic, scratch_payload;

constexpr std::size_t initial_read_buffer = 256;  // acks and CONNACKs are a few bytes

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
      keep_alive_(io),
      session_(*this, options.version) {}

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
    connect.clean_start = true;
    connect.keep_alive_s = options_.keep_alive_s;
    connect.client_id = identity_.client_id;
    if (identity_.username) connect.username = *identity_.username;
    if (identity_.password) {
        connect.password =
            mqtt::bytes_view(reinterpret_cast<const std::uint8_t*>(identity_.password->data()),
                             identity_.password->size());
    }
    session_.connect(connect);  // an encoding failure ends in close(protocol_error)
    if (phase_ != Phase::connecting) return;
    flush();
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
    auto generation = generation_;
    std::size_t offset = session_.on_bytes(mqtt::bytes_view(read_buffer_.data(), read_size_));
    if (generation != generation_) return;  // the connection is gone; close() said why
    if (closing_) offset = read_size_;      // after our DISCONNECT: read on until the close
    flush();                                // PUBRELs, and readings the acks let out
    std::copy(read_buffer_.begin() + static_cast<std::ptrdiff_t>(offset),
              read_buffer_.begin() + static_cast<std::ptrdiff_t>(read_size_), read_buffer_.begin());
    read_size_ -= offset;
    read();
}

void Publisher::on_connack(const mqtt::connack_packet& connack) {
    if (connack.reason != mqtt::reason_code::success) return;  // close(refused) follows
    keep_alive_.cancel();  // the connect timeout; the session arms its keep-alive next
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
    if (options_.interval.count() > 0) {
        tick();
    } else {
        publish_more();
    }
}

void Publisher::on_published(std::uint16_t packet_id, mqtt::reason_code reason) {
    auto found = std::find_if(inflight_.begin(), inflight_.end(),
                              [&](const Inflight& i) { return i.packet_id == packet_id; });
    if (found == inflight_.end()) return;  // the session only reports ids publish() gave us
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
}

void Publisher::publish_more() {
    if (phase_ != Phase::online || closing_) return;
    if (!stopping_) {
        while (next_sequence_ < options_.messages && window_open())
            publish_one();
    }
    disconnect_when_done();
    flush();
}

void Publisher::tick() {
    if (phase_ != Phase::online || closing_ || stopping_) return;
    if (next_sequence_ < options_.messages && window_open()) publish_one();
    disconnect_when_done();
    flush();
    if (closing_ || next_sequence_ >= options_.messages) return;
    auto generation = generation_;
    timer_.expires_after(options_.interval);
    timer_.async_wait([self = shared_from_this(), generation](auto ec) {
        if (!ec && generation == self->generation_) self->tick();
    });
}

bool Publisher::window_open() const {
    return options_.qos == mqtt::qos::at_most_once ||
           inflight_.size() < std::min(options_.inflight, session_.server_receive_maximum());
}

void Publisher::disconnect_when_done() {
    if (closing_ || phase_ != Phase::online || !inflight_.empty()) return;
    if (!stopping_ && (next_sequence_ < options_.messages || options_.hold)) return;
    timer_.cancel();
    session_.disconnect();  // close(disconnected) follows at once
    flush();
}

void Publisher::publish_one() {
    std::uint64_t sequence = next_sequence_++;
    source_.message(sensor_, sequence, scratch_topic, scratch_payload);
    auto payload = mqtt::bytes_view(reinterpret_cast<const std::uint8_t*>(scratch_payload.data()),
                                    scratch_payload.size());
    auto published = session_.publish(scratch_topic, payload, options_.qos);
    if (!published) {
        stats_.protocol_errors.add();  // cannot be encoded, or above the server's packet size
        return;
    }
    stats_.sent.add();
    if (options_.qos == mqtt::qos::at_most_once) {
        stats_.acknowledged.add();  // as good as it gets: written to the socket's batch
        if (acked_) acked_->push_back(sequence);
    } else {
        inflight_.push_back({published.packet_id, sequence, std::chrono::steady_clock::now()});
    }
}

void Publisher::send(std::span<const std::uint8_t> bytes) {
    // Copied once into the socket's batch; flush() writes it when the session's call is over.
    outbox_.insert(outbox_.end(), bytes.begin(), bytes.end());
}

void Publisher::arm_timer(mqtt::client_timer, std::chrono::milliseconds after) {
    auto generation = generation_;
    keep_alive_.expires_after(after);
    keep_alive_.async_wait([self = shared_from_this(), generation](auto ec) {
        if (ec || generation != self->generation_) return;
        self->session_.on_timer(mqtt::client_timer::keep_alive);
        self->flush();
    });
}

void Publisher::cancel_timer(mqtt::client_timer) {
    keep_alive_.cancel();
}

void Publisher::close(mqtt::client_end why, mqtt::reason_code) {
    switch (why) {
        case mqtt::client_end::disconnected:
            closing_ = true;  // finish once the DISCONNECT is written
            return;
        case mqtt::client_end::refused:
            return drop(DropReason::connack_refused);
        case mqtt::client_end::server_disconnect:
            return drop(DropReason::server_disconnect);
        case mqtt::client_end::keep_alive_timeout:
            return drop(DropReason::keepalive_timeout);
        case mqtt::client_end::protocol_error:
            break;
    }
    stats_.protocol_errors.add();
    drop(DropReason::protocol_error);
}

void Publisher::on_packet(mqtt::packet_direction direction, mqtt::packet_type type) {
    if (direction == mqtt::packet_direction::outbound && type == mqtt::packet_type::pingreq) {
        stats_.pings.add();
    }
}

mqtt::encoded_packet* Publisher::encode_buffer() {
    return &scratch_packet;
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
    session_.on_peer_closed();
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
    session_.on_peer_closed();
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
