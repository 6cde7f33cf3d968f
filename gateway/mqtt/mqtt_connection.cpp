// MQTT connection: socket I/O, timers, ingest of PUBLISH payloads and durable acknowledgement.
#include "gateway/mqtt/mqtt_connection.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include "gateway/mqtt/tls.hpp"
#include "gateway/ops/log.hpp"

namespace citygate::gateway {
MqttConnection::MqttConnection(IoWorker& worker, boost::asio::ip::tcp::socket socket,
                               boost::asio::ssl::context* tls)
    : worker_(worker),
      socket_(std::move(socket)),
      tls_(tls ? std::make_unique<TlsState>(std::move(socket_), *tls) : nullptr),
      session_(*this, worker.context().limits),
      timer_(worker.io()) {}

MqttConnection::~MqttConnection() = default;

void MqttConnection::start() {
    worker_.add(this);
    (tls_ ? worker_.context().metrics.connections_tls : worker_.context().metrics.connections)
        .Increment();
    boost::system::error_code ec;
    auto peer = socket().remote_endpoint(ec);
    from_loopback_ = !ec && peer.address().is_loopback();
    socket().set_option(boost::asio::ip::tcp::no_delay(true), ec);
    session_.start();  // the connect timeout covers the TLS handshake too
    if (tls_) {
        tls_->stream.async_handshake(
            boost::asio::ssl::stream_base::server,
            [self = shared_from_this()](const boost::system::error_code& ec) {
                self->on_handshake(ec);
            });
        return;
    }
    socket_.non_blocking(true, ec);
    wait_readable();
}

void MqttConnection::on_handshake(const boost::system::error_code& ec) {
    if (torn_down_) return;
    if (ec) {
        worker_.context().metrics.error(ErrorKind::tls_handshake_failed).Increment();
        CG_LOG(debug) << "tls handshake failed: " << ec.message();
        session_.on_peer_closed();
        return teardown();
    }
    tls_->certificate_user = peer_common_name(tls_->stream.native_handle());
    wait_readable();
}

bool MqttConnection::inflight_full() const {
    return session_.inflight() >= worker_.context().limits.receive_maximum;
}

void MqttConnection::refill_rate_tokens(std::chrono::steady_clock::time_point now) {
    double rate = worker_.context().max_publish_rate;
    double burst =
        worker_.context().publish_burst > 0 ? worker_.context().publish_burst : std::max(1.0, rate);
    // A fresh connection starts with a full bucket.
    double elapsed = rate_refilled_ == std::chrono::steady_clock::time_point{}
                         ? burst / rate
                         : std::chrono::duration<double>(now - rate_refilled_).count();
    rate_tokens_ = static_cast<float>(std::min(burst, rate_tokens_ + elapsed * rate));
    rate_refilled_ = now;
}

void MqttConnection::end_throttle() {
    throttled_ = false;
    resume_reading();
}

void MqttConnection::wait_readable() {
    if (waiting_ || reading_stopped_ || paused_ || throttled_ || closing_ || torn_down_) return;
    double rate = worker_.context().max_publish_rate;
    if (rate > 0) refill_rate_tokens(std::chrono::steady_clock::now());
    if (rate > 0 && rate_tokens_ < 0) {
        // Over the publish rate: leave the bytes in the socket until the bucket refills, so the
        // client is slowed by TCP instead of being disconnected.
        throttled_ = true;
        auto wait = std::chrono::duration<double>(-rate_tokens_ / rate);
        worker_.throttle(shared_from_this(),
                         std::chrono::steady_clock::now() +
                             std::chrono::duration_cast<std::chrono::steady_clock::duration>(wait));
        return;
    }
    // MQTT 3.1.1 has no receive maximum: the gateway enforces one by not reading while this many
    // messages wait for storage (for MQTT 5 clients it is advertised in CONNACK as well).
    if (inflight_full()) return;
    waiting_ = true;
    if (tls_) {
        tls_->buffer.resize(4096);
        tls_->stream.async_read_some(
            boost::asio::buffer(tls_->buffer),
            [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
                self->waiting_ = false;
                self->on_tls_read(ec, n);
            });
        return;
    }
    socket_.async_wait(boost::asio::ip::tcp::socket::wait_read,
                       [self = shared_from_this()](const boost::system::error_code& ec) {
                           self->waiting_ = false;
                           self->on_readable(ec);
                       });
}

void MqttConnection::peer_gone(const boost::system::error_code& ec) {
    if (ec != boost::asio::error::eof && ec != boost::asio::ssl::error::stream_truncated) {
        CG_LOG(debug) << "mqtt read failed: " << ec.message();
    }
    session_.on_peer_closed();
    teardown();
}

void MqttConnection::on_readable(const boost::system::error_code& ec) {
    if (torn_down_ || ec == boost::asio::error::operation_aborted) return;
    if (ec) return peer_gone(ec);
    if (reading_stopped_ || paused_ || closing_) return;

    std::vector<std::uint8_t>& buffer = worker_.read_buffer();
    std::size_t have = partial_.size();
    std::copy(partial_.begin(), partial_.end(), buffer.begin());
    boost::system::error_code read_ec;
    std::size_t n =
        socket_.read_some(boost::asio::buffer(buffer.data() + have, buffer.size() - have), read_ec);
    if (read_ec == boost::asio::error::would_block) return wait_readable();
    if (read_ec) return peer_gone(read_ec);
    worker_.context().metrics.bytes_received.Increment(static_cast<double>(n));
    feed(have + n);
}

void MqttConnection::on_tls_read(const boost::system::error_code& ec, std::size_t n) {
    if (torn_down_ || ec == boost::asio::error::operation_aborted) return;
    if (ec) return peer_gone(ec);
    worker_.context().metrics.bytes_received.Increment(static_cast<double>(n));
    if (reading_stopped_ || paused_ || closing_) {
        // Already decrypted: keep it for when reading resumes.
        partial_.insert(partial_.end(), tls_->buffer.begin(),
                        tls_->buffer.begin() + static_cast<std::ptrdiff_t>(n));
        return;
    }
    std::vector<std::uint8_t>& buffer = worker_.read_buffer();
    std::size_t have = partial_.size();
    if (have + n > buffer.size()) {
        session_.disconnect(mqtt::reason_code::packet_too_large);
        return;
    }
    std::copy(partial_.begin(), partial_.end(), buffer.begin());
    std::copy(tls_->buffer.begin(), tls_->buffer.begin() + static_cast<std::ptrdiff_t>(n),
              buffer.begin() + static_cast<std::ptrdiff_t>(have));
    feed(have + n);
}

void MqttConnection::feed(std::size_t have) {
    std::vector<std::uint8_t>& buffer = worker_.read_buffer();
    std::size_t consumed = session_.on_bytes(std::span(buffer.data(), have));
    partial_.assign(buffer.begin() + static_cast<std::ptrdiff_t>(consumed),
                    buffer.begin() + static_cast<std::ptrdiff_t>(have));
    if (partial_.empty()) partial_.shrink_to_fit();  // idle connections keep no buffer
    finish_immediate_completions();
    if (torn_down_) return;
    if (!closing_ && partial_.size() >= buffer.size()) {
        // Cannot happen while the buffer exceeds the maximum packet size the engine enforces.
        CG_LOG(error) << "mqtt packet larger than the read buffer";
        session_.disconnect(mqtt::reason_code::packet_too_large);
        return;
    }
    wait_readable();
}

void MqttConnection::on_packet(mqtt::packet_direction direction, mqtt::packet_type type) {
    worker_.context()
        .metrics
        .packets(direction == mqtt::packet_direction::inbound ? Metrics::Direction::in
                                                              : Metrics::Direction::out,
                 static_cast<unsigned>(type))
        .Increment();
}

void MqttConnection::send(std::span<const std::uint8_t> bytes) {
    if (torn_down_) return;
    outbox_.insert(outbox_.end(), bytes.begin(), bytes.end());
    flush();
}

void MqttConnection::flush() {
    if (writing_now_ || torn_down_) return;
    if (outbox_.empty()) {
        if (closing_) teardown();
        return;
    }
    writing_.swap(outbox_);
    writing_now_ = true;
    auto on_done = [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
        self->worker_.context().metrics.bytes_sent.Increment(static_cast<double>(n));
        self->on_written(ec);
    };
    if (tls_) {
        boost::asio::async_write(tls_->stream, boost::asio::buffer(writing_), std::move(on_done));
    } else {
        boost::asio::async_write(socket_, boost::asio::buffer(writing_), std::move(on_done));
    }
}

void MqttConnection::on_written(const boost::system::error_code& ec) {
    writing_now_ = false;
    writing_.clear();
    if (torn_down_) return;
    if (ec) {
        CG_LOG(debug) << "mqtt write failed: " << ec.message();
        session_.on_peer_closed();
        return teardown();
    }
    if (outbox_.empty() && writing_.capacity() > 4096) writing_.shrink_to_fit();
    flush();
}

void MqttConnection::deliver(const mqtt::inbound_publish& message) {
    auto received = std::chrono::steady_clock::now();
    if (worker_.context().max_publish_rate > 0) {
        refill_rate_tokens(received);
        rate_tokens_ -= 1;
    }
    Metrics& metrics = worker_.context().metrics;
    switch (message.qos) {
        case mqtt::qos::at_most_once:
            metrics.messages_qos0.Increment();
            break;
        case mqtt::qos::at_least_once:
            metrics.messages_qos1.Increment();
            break;
        case mqtt::qos::exactly_once:
            metrics.messages_qos2.Increment();
            break;
    }

    ingest::Write write;
    ingest::Verdict verdict = worker_.appender().prepare(
        {identity_, session_.client_id(), message.topic, message.payload}, write);
    if (verdict != ingest::Verdict::stored) return refuse(message, verdict);
    if (!stalled_.empty() || !submit(write, message.token, received)) {
        stalled_.push_back({std::move(write), message.token, received});
        if (!paused_) {
            paused_ = true;
            worker_.pause(shared_from_this());
        }
    }
}

void MqttConnection::refuse(const mqtt::inbound_publish& message, ingest::Verdict verdict) {
    mqtt::reason_code reason = mqtt::reason_code::unspecified_error;
    switch (verdict) {
        case ingest::Verdict::not_authorized:
            CG_LOG(debug) << "acl denies '" << message.topic << "' to "
                          << (identity_.anonymous ? std::string("anonymous") : identity_.user);
            reason = mqtt::reason_code::not_authorized;
            break;
        case ingest::Verdict::topic_unmatched:
            CG_LOG(debug) << "no topic template matches '" << message.topic << "'";
            reason = mqtt::reason_code::topic_name_invalid;
            break;
        case ingest::Verdict::payload_invalid:
            CG_LOG(debug) << "bad payload on '" << message.topic
                          << "': " << worker_.appender().error_detail();
            if (worker_.context().close_on_bad_payload) {
                return session_.disconnect(mqtt::reason_code::payload_format_invalid);
            }
            reason = mqtt::reason_code::payload_format_invalid;
            break;
        case ingest::Verdict::stored:
        case ingest::Verdict::storage_failed:
            break;
    }
    if (!message.token) return;  // QoS 0: nothing to acknowledge
    // A message the gateway will not store is still acknowledged: it is counted, and re-sending
    // it would not make it storable. MQTT 5 clients learn why from the reason code; 3.1.1 has
    // no negative acknowledgement, so they get a plain one.
    if (session_.version() != mqtt::protocol_version::v5) reason = mqtt::reason_code::success;
    worker_.immediate().emplace_back(message.token, reason);
}

bool MqttConnection::submit(ingest::Write& write, mqtt::delivery_token token,
                            std::chrono::steady_clock::time_point received) {
    IoWorker* worker = &worker_;
    ingest::Completion done = [worker, self = shared_from_this(), token,
                               received](const ingest::Outcome& outcome) mutable {
        // Moving the connection out keeps its last reference off the writer thread.
        worker->post_completion({std::move(self), token, outcome, received});
    };
    GatewayContext& context = worker_.context();
    context.pending_writes.fetch_add(1);
    if (!context.ingest.try_submit(write, std::move(done))) {
        context.pending_writes.fetch_sub(1);
        return false;
    }
    return true;
}

bool MqttConnection::retry_stalled() {
    std::size_t done = 0;
    while (done < stalled_.size()) {
        StalledWrite& next = stalled_[done];
        if (!submit(next.write, next.token, next.received)) break;
        ++done;
    }
    stalled_.erase(stalled_.begin(), stalled_.begin() + static_cast<std::ptrdiff_t>(done));
    if (!stalled_.empty()) return false;
    stalled_.shrink_to_fit();
    paused_ = false;
    resume_reading();
    return !paused_;
}

void MqttConnection::complete(const Completion& completion) {
    // Points storage refused for what they are (late, behind retention, over the series limit)
    // were counted by the ingest unit; the rest of the message is durable and acknowledged,
    // since re-sending the same points would be refused again. Only a failed WAL write
    // withholds a positive acknowledgement: MQTT 5 clients get PUBACK/PUBREC 0x80, 3.1.1 clients
    // are disconnected (server_session::complete), so they re-send.
    const ingest::Outcome& outcome = completion.outcome;
    bool durable = outcome.verdict == ingest::Verdict::stored;
    if (outcome.rejected > 0) {
        CG_LOG(debug) << "storage refused " << outcome.rejected << " of "
                      << outcome.rejected + outcome.stored << " points";
    }
    if (!durable) CG_LOG(warn) << "storage write failed: " << outcome.failure;
    if (torn_down_ || completion.token == 0) return;  // gone, or QoS 0: nothing to acknowledge
    worker_.context().metrics.ack_latency.Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - completion.received)
            .count());
    bool was_full = inflight_full();
    session_.complete(completion.token, durable);
    if (was_full && !inflight_full()) resume_reading();
}

void MqttConnection::resume_reading() {
    if (paused_ || throttled_ || reading_stopped_ || closing_ || torn_down_) return;
    if (!partial_.empty()) {
        // Packets that arrived before reading stopped (TLS reads ahead) may already be complete.
        std::copy(partial_.begin(), partial_.end(), worker_.read_buffer().begin());
        feed(partial_.size());
        return;
    }
    wait_readable();
}

void MqttConnection::finish_immediate_completions() {
    auto& pending = worker_.immediate();
    if (pending.empty()) return;
    std::vector<std::pair<mqtt::delivery_token, mqtt::reason_code>> refused;
    refused.swap(pending);
    for (auto [token, reason] : refused) {
        if (torn_down_) return;
        session_.complete(token, reason);
    }
}

mqtt::reason_code MqttConnection::authenticate(const mqtt::connect_request& request) {
    GatewayContext& context = worker_.context();
    if (context.sessions.load() >= context.max_connections) {
        context.metrics.connects_refused.Increment();
        context.metrics.error(ErrorKind::connection_limit).Increment();
        return mqtt::reason_code::server_busy;
    }
    ingest::AuthRequest auth;
    if (request.username) auth.username.emplace(*request.username);
    if (request.password) {
        auth.password.emplace(reinterpret_cast<const char*>(request.password->data()),
                              request.password->size());
    }
    if (tls_ && tls_->certificate_user) auth.certificate_user = *tls_->certificate_user;
    auth.from_loopback = from_loopback_;
    boost::system::error_code ec;
    auto peer = socket().remote_endpoint(ec);
    if (!ec) auth.source = peer.address().to_string();
    // A password hash runs on the verification pool; the answer comes back to this connection's
    // own thread, which keeps the connection alive until then (teardown meanwhile is fine: the
    // answer is dropped).
    auto answer = context.access.authenticate(
        std::move(auth), [self = shared_from_this()](ingest::AuthResult result) mutable {
            IoWorker& worker = self->worker_;
            boost::asio::post(worker.io(),
                              [self = std::move(self), result = std::move(result)]() mutable {
                                  self->on_authenticated(std::move(result));
                              });
        });
    if (!answer) return mqtt::authentication_pending;
    return admit(std::move(*answer));
}

void MqttConnection::on_authenticated(ingest::AuthResult result) {
    // Closed, timed out (connect timeout) or shutting down while the hash ran.
    if (torn_down_ || closing_ || !session_.awaiting_authentication()) return;
    session_.complete_authentication(admit(std::move(result)));
    // PUBLISHes held while pending may have been refused at once.
    finish_immediate_completions();
}

mqtt::reason_code MqttConnection::admit(ingest::AuthResult result) {
    GatewayContext& context = worker_.context();
    mqtt::reason_code verdict = result.verdict;
    if (verdict == mqtt::reason_code::success &&
        context.sessions.fetch_add(1) >= context.max_connections) {
        context.sessions.fetch_sub(1);  // others were admitted while this one was verified
        context.metrics.error(ErrorKind::connection_limit).Increment();
        verdict = mqtt::reason_code::server_busy;
    }
    if (verdict != mqtt::reason_code::success) {
        context.metrics.connects_refused.Increment();
        if (verdict != mqtt::reason_code::server_busy) {
            context.metrics.error(ErrorKind::auth_failed).Increment();
        }
        if (verdict == mqtt::reason_code::banned || verdict == mqtt::reason_code::server_busy) {
            // Repeats under attack: one line per 10 s at most (citygate_auth_* count them all).
            static std::atomic<std::int64_t> last_warned{0};
            auto now = std::chrono::steady_clock::now().time_since_epoch().count();
            auto last = last_warned.load();
            if (now - last > std::chrono::nanoseconds(std::chrono::seconds(10)).count() &&
                last_warned.compare_exchange_strong(last, now)) {
                CG_LOG(warn) << "refusing CONNECTs "
                             << (verdict == mqtt::reason_code::banned
                                     ? "without hashing: too many failed attempts from a source "
                                       "or for a user (citygate_auth_throttled_total)"
                                     : "(server busy): the password verification queue is full "
                                       "(citygate_auth_queue_full_total)");
            }
        }
        CG_LOG(debug) << "client '" << session_.client_id() << "' refused: reason 0x" << std::hex
                      << static_cast<unsigned>(verdict);
        return verdict;
    }
    identity_ = std::move(result.identity);
    context.metrics.connects_accepted.Increment();
    counted_session_ = true;
    CG_LOG(debug) << "client '" << session_.client_id() << "' connected as "
                  << (identity_.anonymous ? std::string("anonymous") : identity_.user) << " (MQTT "
                  << (session_.version() == mqtt::protocol_version::v5 ? "5" : "3.1.1")
                  << (tls_ ? ", TLS)" : ")");
    return mqtt::reason_code::success;
}

std::vector<mqtt::reason_code> MqttConnection::subscribe(const mqtt::subscribe_request& request) {
    // An ingestion gateway routes nothing back to clients: refuse rather than grant a
    // subscription that would never deliver.
    return std::vector<mqtt::reason_code>(request.entries.size(),
                                          mqtt::reason_code::not_authorized);
}

void MqttConnection::unsubscribe(std::span<const std::string_view>) {}

void MqttConnection::arm_timer(mqtt::timer_kind kind, std::chrono::milliseconds after) {
    if (torn_down_) return;
    timer_kind_ = kind;
    timer_armed_ = true;
    timer_.expires_after(after);
    timer_.async_wait(
        [self = shared_from_this(), kind, after](const boost::system::error_code& ec) {
            if (!ec) self->on_timer(kind, after);
        });
}

void MqttConnection::on_timer(mqtt::timer_kind kind, std::chrono::milliseconds after) {
    if (torn_down_ || !timer_armed_ || timer_kind_ != kind) return;
    timer_armed_ = false;
    // A client we stopped reading (backpressure, drain, inflight at its maximum) is not silent:
    // its packets wait in the socket. Give it another period instead of timing it out.
    if (kind == mqtt::timer_kind::keep_alive &&
        (paused_ || throttled_ || reading_stopped_ || inflight_full())) {
        return arm_timer(kind, after);
    }
    session_.on_timer(kind);
}

void MqttConnection::cancel_timer(mqtt::timer_kind kind) {
    // The timer may already serve the other kind; cancelling this one must not stop that.
    if (!timer_armed_ || timer_kind_ != kind) return;
    timer_armed_ = false;
    timer_.cancel();
}

void MqttConnection::close(mqtt::reason_code reason) {
    if (closing_ || torn_down_) return;
    closing_ = true;
    if (reason != mqtt::reason_code::success) {
        auto code = static_cast<unsigned>(reason);
        if (code == 0x81) worker_.context().metrics.error(ErrorKind::malformed_packet).Increment();
        if (code >= 0x82 && code != 0x8B && code != 0x8D) {
            worker_.context().metrics.error(ErrorKind::protocol_error).Increment();
        }
        CG_LOG(debug) << "closing mqtt connection, reason 0x" << std::hex << code;
    }
    timer_armed_ = false;
    timer_.cancel();
    // The socket is not cancelled: that would abort the write in flight too. flush() tears the
    // connection down once the last bytes are out, which ends the readability wait.
    flush();
}

void MqttConnection::stop_reading() {
    // A pending readability wait is left alone (cancelling the socket would abort writes too);
    // when it fires, on_readable() sees the flag and reads nothing.
    reading_stopped_ = true;
}

void MqttConnection::disconnect(mqtt::reason_code reason) {
    if (torn_down_ || closing_) return;
    session_.disconnect(reason);
}

void MqttConnection::teardown() {
    if (torn_down_) return;
    torn_down_ = true;
    timer_armed_ = false;
    timer_.cancel();
    boost::system::error_code ignored;
    socket().shutdown(boost::asio::ip::tcp::socket::shutdown_both, ignored);
    socket().close(ignored);
    stalled_.clear();
    worker_.remove(this);
    worker_.context().connections.fetch_sub(1);
    if (counted_session_) worker_.context().sessions.fetch_sub(1);
    (tls_ ? worker_.context().metrics.connections_tls : worker_.context().metrics.connections)
        .Decrement();
}

}  // namespace citygate::gateway
