// MQTT connection: socket I/O, timers, ingest of PUBLISH payloads and durable acknowledgement.
#include "gateway/mqtt/mqtt_connection.hpp"

#include <algorithm>

#include <cassert>

#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include "gateway/mqtt/tls.hpp"
#include "gateway/ops/log.hpp"

namespace citygate::gateway {
namespace {

// A read adding fewer bytes than this to an incomplete packet counts as dribbled; the next read
// of that connection waits dribble_pause.
constexpr std::size_t dribble_bytes = 512;
constexpr auto dribble_pause = std::chrono::milliseconds(2);

}  // namespace

MqttConnection::MqttConnection(IoWorker& worker, Socket socket, boost::asio::ssl::context* tls)
    : worker_(worker),
      socket_(std::move(socket)),
      tls_(tls ? std::make_unique<TlsState>(std::move(socket_), *tls) : nullptr),
      session_(*this, worker.context().limits) {
    // Its session's state included, and with the control block of std::make_shared, a
    // 368-byte malloc chunk (issue 15: an idle connection at most 700 bytes in all).
    static_assert(sizeof(MqttConnection) <= 344, "MqttConnection grew: check the idle budget");
}

MqttConnection::~MqttConnection() = default;

void MqttConnection::open(IoWorker& worker, Socket socket, boost::asio::ssl::context* tls) {
    auto connection = std::make_shared<MqttConnection>(worker, std::move(socket), tls);
    connection->self_ = connection;
    connection->start();
}

std::shared_ptr<MqttConnection> MqttConnection::share() {
    // Only ever called before teardown(), while self_ holds the connection.
    assert(self_);
    return self_;
}

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
            [self = share()](const boost::system::error_code& ec) { self->on_handshake(ec); });
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
    coalescing_ = false;
    resume_reading();
}

void MqttConnection::wait_readable() {
    if (waiting_ || reading_stopped_ || paused_ || throttled_ || send_blocked_ || closing_ ||
        torn_down_) {
        return;
    }
    double rate = worker_.context().max_publish_rate;
    if (rate > 0) refill_rate_tokens(std::chrono::steady_clock::now());
    if (rate > 0 && rate_tokens_ < 0) {
        // Over the publish rate: leave the bytes in the socket until the bucket refills, so the
        // client is slowed by TCP instead of being disconnected.
        throttled_ = true;
        auto wait = std::chrono::duration<double>(-rate_tokens_ / rate);
        worker_.throttle(share(),
                         std::chrono::steady_clock::now() +
                             std::chrono::duration_cast<std::chrono::steady_clock::duration>(wait));
        return;
    }
    // MQTT 3.1.1 has no receive maximum: the gateway enforces one by not reading while this many
    // messages wait for storage (for MQTT 5 clients it is advertised in CONNACK as well).
    if (inflight_full()) return;
    if (tls_ && tls_->unread_begin < tls_->unread_end) return;  // resume_reading feeds them
    waiting_ = true;
    if (tls_) {
        tls_->buffer.resize(4096);
        tls_->stream.async_read_some(
            boost::asio::buffer(tls_->buffer),
            [self = share()](const boost::system::error_code& ec, std::size_t n) {
                self->waiting_ = false;
                self->on_tls_read(ec, n);
            });
        return;
    }
    socket_.async_wait(Socket::wait_read, [self = share()](const boost::system::error_code& ec) {
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
    if (reading_stopped_ || paused_ || send_blocked_ || closing_) return;
    boost::system::error_code read_ec;
    bool dribbling = read_once(read_ec);
    if (torn_down_) return;
    if (read_ec && read_ec != boost::asio::error::would_block) return peer_gone(read_ec);
    if (dribbling && !throttled_ && !closing_) {
        // A packet arriving a few bytes per segment would cost a wakeup and a read per segment:
        // let its bytes gather in the socket first, so that a dribbling client is read at most
        // every dribble_pause (a packet arriving in full-sized segments never waits).
        throttled_ = coalescing_ = true;
        return worker_.throttle(share(), std::chrono::steady_clock::now() + dribble_pause, false);
    }
    settle();
    wait_readable();
}

std::size_t MqttConnection::pull(std::uint8_t* to, std::size_t room,
                                 boost::system::error_code& ec) {
    if (!tls_) return socket_.read_some(boost::asio::buffer(to, room), ec);
    std::size_t n = std::min(room, tls_->unread_end - tls_->unread_begin);
    if (n == 0) {
        ec = boost::asio::error::would_block;
        return 0;
    }
    auto from = tls_->buffer.begin() + static_cast<std::ptrdiff_t>(tls_->unread_begin);
    std::copy(from, from + static_cast<std::ptrdiff_t>(n), to);
    tls_->unread_begin += n;
    return n;
}

bool MqttConnection::read_once(boost::system::error_code& ec) {
    if (active_ && active_->partial_total > 0) {
        // The rest of a packet whose size is known goes straight behind the bytes held: a packet
        // dribbled a byte per segment costs one copy per byte, not one of the whole buffer.
        ActiveState& a = *active_;
        std::size_t n =
            pull(a.partial.data() + a.partial_have, a.partial_total - a.partial_have, ec);
        if (ec) return false;
        worker_.context().metrics.bytes_received.Increment(static_cast<double>(n));
        a.partial_have += static_cast<std::uint32_t>(n);
        if (a.partial_have < a.partial_total) return n < dribble_bytes;
        PacketBuffer packet = take_partial();
        std::size_t consumed = session_.on_bytes(packet.bytes(packet.size()));
        if (!closing_ && !torn_down_ && consumed != packet.size()) {
            CG_LOG(error) << "mqtt packet of " << packet.size() << " bytes not consumed whole";
            session_.disconnect(mqtt::reason_code::implementation_specific_error);
        }
        finish_immediate_completions();
        return false;
    }
    // Nothing held, or a fixed header not yet complete (at most 4 bytes): read into the worker's
    // buffer behind them.
    std::vector<std::uint8_t>& buffer = worker_.read_buffer();
    std::size_t have = active_ ? active_->partial_have : 0;
    if (have > 0) std::copy_n(active_->partial.data(), have, buffer.begin());
    std::size_t n = pull(buffer.data() + have, buffer.size() - have, ec);
    if (ec) return false;
    worker_.context().metrics.bytes_received.Increment(static_cast<double>(n));
    auto since = have > 0 ? active_->partial_since : std::chrono::steady_clock::now();
    take_partial();
    feed(std::span(buffer.data(), have + n), since);
    return false;
}

void MqttConnection::on_tls_read(const boost::system::error_code& ec, std::size_t n) {
    if (torn_down_ || ec == boost::asio::error::operation_aborted) return;
    if (ec) return peer_gone(ec);
    // Already decrypted: fed now, or kept in the buffer for when reading resumes.
    tls_->unread_begin = 0;
    tls_->unread_end = n;
    drain_tls();
}

void MqttConnection::drain_tls() {
    if (reading_stopped_ || paused_ || send_blocked_ || closing_ || torn_down_) return;
    // All of it, even past a limit reached on the way: one TLS read is at most 4 KiB.
    while (tls_->unread_begin < tls_->unread_end && !closing_ && !torn_down_) {
        boost::system::error_code ec;
        read_once(ec);
    }
    tls_->unread_begin = tls_->unread_end = 0;
    settle();
    wait_readable();
}

void MqttConnection::feed(std::span<const std::uint8_t> bytes,
                          std::chrono::steady_clock::time_point since) {
    std::size_t consumed = session_.on_bytes(bytes);
    if (!closing_ && !torn_down_ && consumed < bytes.size()) {
        // The same packet as before keeps its first byte's time; a new one starts now.
        keep_partial(bytes.subspan(consumed),
                     consumed == 0 ? since : std::chrono::steady_clock::now());
    }
    finish_immediate_completions();
}

namespace {

// Total size of the packet starting at `bytes` from its fixed header, 0 while that is incomplete.
// The session already checked the header (a malformed one closes the connection).
std::size_t packet_size(std::span<const std::uint8_t> bytes) {
    std::size_t remaining = 0;
    for (std::size_t i = 1; i < bytes.size() && i <= 4; ++i) {
        remaining |= std::size_t{bytes[i] & 0x7Fu} << (7 * (i - 1));
        if ((bytes[i] & 0x80u) == 0) return i + 1 + remaining;
    }
    return 0;
}

constexpr std::size_t longest_fixed_header = 5;

}  // namespace

bool MqttConnection::keep_partial(std::span<const std::uint8_t> tail,
                                  std::chrono::steady_clock::time_point since) {
    GatewayContext& context = worker_.context();
    std::size_t total = packet_size(tail);
    if (total > context.limits.maximum_packet_size || (total != 0 && total <= tail.size())) {
        // The session refuses such packets from their fixed header; this would be a bug.
        CG_LOG(error) << "mqtt: incomplete packet of " << total << " bytes kept from "
                      << tail.size();
        session_.disconnect(mqtt::reason_code::packet_too_large);
        return false;
    }
    std::size_t slot = total != 0 ? total : longest_fixed_header;
    if (context.partial_bytes.fetch_add(slot) + slot > context.max_partial_bytes_total) {
        // The budget is held by older packets, which complete or expire within
        // partial_packet_timeout: the newest one is refused rather than reading being stopped
        // everywhere (the bytes are already out of the socket).
        context.partial_bytes.fetch_sub(slot);
        context.metrics.error(ErrorKind::partial_bytes_limit).Increment();
        CG_LOG(debug) << "incomplete packets hold mqtt.max_partial_bytes_total; closing a client "
                         "with a packet of "
                      << slot << " bytes";
        session_.disconnect(mqtt::reason_code::quota_exceeded);
        return false;
    }
    ActiveState& a = active();
    a.partial = PacketBuffer::allocate(slot);
    if (a.partial.empty()) {
        context.partial_bytes.fetch_sub(slot);
        CG_LOG(warn) << "mqtt: no memory for an incomplete packet of " << slot << " bytes";
        session_.disconnect(mqtt::reason_code::quota_exceeded);
        return false;
    }
    std::copy(tail.begin(), tail.end(), a.partial.data());
    a.partial_have = static_cast<std::uint32_t>(tail.size());
    a.partial_total = static_cast<std::uint32_t>(total);
    a.partial_since = since;
    watch_deadline();
    return true;
}

PacketBuffer MqttConnection::take_partial() {
    if (!active_) return {};
    worker_.context().partial_bytes.fetch_sub(active_->partial.size());
    active_->partial_have = active_->partial_total = 0;
    return std::move(active_->partial);  // leaves it empty
}

void MqttConnection::watch_deadline() {
    if (deadline_watched_ || torn_down_) return;
    GatewayContext& context = worker_.context();
    std::optional<std::chrono::steady_clock::time_point> at;
    if (!active_) return;  // neither a packet held nor writes under way
    if (!active_->partial.empty()) at = active_->partial_since + context.partial_packet_timeout;
    if (sends_overdue()) {
        auto writes = active_->blocked_since + context.write_timeout;
        at = at ? std::min(*at, writes) : writes;
    }
    if (!at) return;
    deadline_watched_ = true;
    worker_.watch(share(), *at);
}

void MqttConnection::on_deadline(std::chrono::steady_clock::time_point now) {
    deadline_watched_ = false;
    if (torn_down_ || !active_) return;
    GatewayContext& context = worker_.context();
    ActiveState& a = *active_;
    if (sends_overdue() && now >= a.blocked_since + context.write_timeout) {
        // It has not read what we sent for write_timeout: nothing more can reach it.
        context.metrics.error(ErrorKind::slow_consumer).Increment();
        CG_LOG(debug)
            << "mqtt client read nothing for "
            << std::chrono::duration_cast<std::chrono::milliseconds>(context.write_timeout).count()
            << " ms with " << a.outbox.size() + a.writing.size() << " bytes queued; closing";
        session_.on_peer_closed();
        return teardown();
    }
    if (!a.partial.empty() && now >= a.partial_since + context.partial_packet_timeout &&
        (paused_ || (throttled_ && !coalescing_) || reading_stopped_ || send_blocked_ ||
         inflight_full())) {
        // We are not reading it, so its packet cannot complete: as with keep-alive, another
        // period (a client that does not read us is closed by write_timeout instead).
        a.partial_since = now;
    }
    if (!a.partial.empty() && now >= a.partial_since + context.partial_packet_timeout) {
        context.metrics.error(ErrorKind::partial_packet_timeout).Increment();
        CG_LOG(debug) << "mqtt packet incomplete after "
                      << std::chrono::duration_cast<std::chrono::milliseconds>(
                             context.partial_packet_timeout)
                             .count()
                      << " ms (" << a.partial_have << " of " << a.partial_total
                      << " bytes); closing";
        take_partial();
        session_.disconnect(mqtt::reason_code::keep_alive_timeout);
    }
    settle();
    watch_deadline();
}

thread_local std::vector<std::unique_ptr<MqttConnection::ActiveState>>
    MqttConnection::spare_active_states_;

MqttConnection::ActiveState& MqttConnection::active() {
    if (active_) return *active_;
    if (spare_active_states_.empty()) {
        active_ = std::make_unique<ActiveState>();
    } else {
        active_ = std::move(spare_active_states_.back());
        spare_active_states_.pop_back();
    }
    return *active_;
}

void MqttConnection::settle() {
    // Not while a write is in flight (it uses the buffer) or blocked (its deadline is here).
    if (!active_ || writing_now_ || send_blocked_) return;
    ActiveState& a = *active_;
    if (!a.partial.empty() || !a.outbox.empty() || !a.writing.empty() || !a.stalled.empty()) {
        return;
    }
    if (spare_active_states_.size() >= kSpareActiveStates) return active_.reset();
    if (a.outbox.capacity() > kSpareBufferBytes) a.outbox = std::vector<std::uint8_t>();
    if (a.writing.capacity() > kSpareBufferBytes) a.writing = std::vector<std::uint8_t>();
    a.stalled = std::vector<StalledWrite>();
    a.partial_since = a.blocked_since = {};
    spare_active_states_.push_back(std::move(active_));
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
    ActiveState& a = active();
    a.outbox.insert(a.outbox.end(), bytes.begin(), bytes.end());
    if (!send_blocked_ && a.outbox.size() + a.writing.size() > worker_.context().max_send_queue) {
        // The client does not read what we send: stop reading it, so what it sends waits in
        // its socket instead of turning into more queued answers here.
        send_blocked_ = true;
        a.blocked_since = std::chrono::steady_clock::now();
        watch_deadline();
    }
    flush();
}

void MqttConnection::flush() {
    if (writing_now_ || torn_down_) return;
    if (!active_ || active_->outbox.empty()) {
        if (closing_) teardown();
        return;
    }
    std::vector<std::uint8_t>& writing = active_->writing;
    writing.swap(active_->outbox);
    writing_now_ = true;
    auto on_done = [self = share()](const boost::system::error_code& ec, std::size_t n) {
        self->worker_.context().metrics.bytes_sent.Increment(static_cast<double>(n));
        self->on_written(ec);
    };
    if (tls_) {
        boost::asio::async_write(tls_->stream, boost::asio::buffer(writing), std::move(on_done));
    } else {
        boost::asio::async_write(socket_, boost::asio::buffer(writing), std::move(on_done));
    }
}

void MqttConnection::on_written(const boost::system::error_code& ec) {
    writing_now_ = false;
    if (torn_down_) {
        active_.reset();  // the buffer teardown() left to this write
        return;
    }
    // Emptied; its capacity goes with the active state to the thread's spares when the
    // connection settles, so an idle connection keeps no buffer.
    active_->writing.clear();
    if (ec) {
        CG_LOG(debug) << "mqtt write failed: " << ec.message();
        session_.on_peer_closed();
        return teardown();
    }
    active_->blocked_since = std::chrono::steady_clock::now();  // the client read a whole write
    bool unblocked = send_blocked_ && active_->outbox.size() < worker_.context().max_send_queue / 2;
    if (unblocked) send_blocked_ = false;
    flush();
    if (unblocked) resume_reading();
    settle();
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

    ingest::Write& write = worker_.scratch_write();
    write.clear();  // of a message refused before
    ingest::Verdict verdict = worker_.appender().prepare(
        {identity_, session_.client_id(), message.topic, message.payload}, write);
    if (verdict != ingest::Verdict::stored) return refuse(message, verdict);
    if ((active_ && !active_->stalled.empty()) || !submit(write, message.token, received)) {
        active().stalled.push_back({std::move(write), message.token, received});
        if (!paused_) {
            paused_ = true;
            worker_.pause(share());
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
        case ingest::Verdict::timestamp_invalid: {
            // A device clock gone wrong repeats with every reading: warn, but not every time.
            static log::RateLimit bad_clocks;
            CG_LOG_LIMITED(bad_clocks, warn) << "refused a reading on '" << message.topic
                                             << "': " << worker_.appender().error_detail();
            reason = mqtt::reason_code::implementation_specific_error;
            break;
        }
        case ingest::Verdict::stored:
        case ingest::Verdict::series_limit:  // only from storage, in complete()
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
    auto done = [worker, self = share(), token, received](const ingest::Outcome& outcome) mutable {
        // Moving the connection out keeps its last reference off the writer thread.
        worker->post_completion({std::move(self), token, outcome, received});
    };
    static_assert(ingest::Completion::stores_inline<decltype(done)>);  // no allocation a message
    GatewayContext& context = worker_.context();
    if (!series_asked_) {
        // At the first write, not at CONNECT: a connection that never publishes holds none.
        series_ = context.ingest.series_admission(identity_, session_.client_id());
        series_asked_ = true;
    }
    context.pending_writes.fetch_add(1);
    worker_.group_writes();
    if (!context.ingest.try_submit(write, std::move(done), series_)) {
        context.pending_writes.fetch_sub(1);
        return false;
    }
    return true;
}

bool MqttConnection::retry_stalled() {
    if (active_) {
        std::vector<StalledWrite>& stalled = active_->stalled;
        std::size_t done = 0;
        while (done < stalled.size()) {
            StalledWrite& next = stalled[done];
            if (!submit(next.write, next.token, next.received)) break;
            ++done;
        }
        stalled.erase(stalled.begin(), stalled.begin() + static_cast<std::ptrdiff_t>(done));
        if (!stalled.empty()) return false;
        stalled = std::vector<StalledWrite>();
    }
    paused_ = false;
    resume_reading();
    settle();
    return !paused_;
}

namespace {

// The option that sets a series limit, for the warning that names it.
const char* series_limit_option(storage::SeriesLimit limit) {
    switch (limit) {
        case storage::SeriesLimit::global:
            return "storage.max_series";
        case storage::SeriesLimit::shard:
            return "storage.max_series_per_shard";
        case storage::SeriesLimit::identity:
            return "ingest.max_series_per_identity";
        case storage::SeriesLimit::connection:
            return "ingest.max_new_series_per_minute";
        case storage::SeriesLimit::memory:
            return "storage.memory_budget";
        case storage::SeriesLimit::none:
            break;
    }
    return "?";
}

}  // namespace

void MqttConnection::complete(const Completion& completion) {
    // Points storage refused for what they are (late, behind retention) were counted by the
    // ingest unit; the rest of the message is durable and acknowledged, since re-sending the
    // same points would be refused again. A failed WAL write withholds a positive
    // acknowledgement: MQTT 5 clients get PUBACK/PUBREC 0x80, 3.1.1 clients are disconnected
    // (server_session::complete), so they re-send. So do readings refused by a series limit:
    // they are valid and may be stored later (the minute passes, retention frees series, the
    // operator raises the limit), so they must not look stored: MQTT 5 gets 0x97 quota
    // exceeded, 3.1.1 is disconnected without an acknowledgement. The readings of existing
    // series in the same message are stored all the same (a re-send stores them again, which
    // QoS 1 allows).
    const ingest::Outcome& outcome = completion.outcome;
    bool durable = outcome.verdict != ingest::Verdict::storage_failed;
    if (outcome.rejected > outcome.series_refused) {
        CG_LOG(debug) << "storage refused " << outcome.rejected - outcome.series_refused << " of "
                      << outcome.rejected + outcome.stored << " points";
    }
    if (!durable) CG_LOG(warn) << "storage write failed: " << outcome.failure;
    mqtt::reason_code reason =
        durable ? mqtt::reason_code::success : mqtt::reason_code::unspecified_error;
    if (outcome.verdict == ingest::Verdict::series_limit) {
        reason = mqtt::reason_code::quota_exceeded;
        // An exploding client repeats this with every message: warn, but not every time.
        static log::RateLimit series_limits;
        CG_LOG_LIMITED(series_limits, warn)
            << "refused " << outcome.series_refused << " of "
            << outcome.series_refused + outcome.stored << " readings from client '"
            << session_.client_id() << "' (identity '"
            << ingest::IngestUnit::series_identity(identity_, session_.client_id())
            << "'): new series over the " << storage::series_limit_name(outcome.series_limit)
            << " series limit (" << series_limit_option(outcome.series_limit) << ")"
            << (completion.token == 0 ? ", QoS 0: dropped"
                : session_.version() == mqtt::protocol_version::v5
                    ? ", PUBACK 0x97"
                    : ", MQTT 3.1.1: disconnected without PUBACK");
    }
    if (torn_down_ || completion.token == 0) return;  // gone, or QoS 0: nothing to acknowledge
    worker_.context().metrics.ack_latency.Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - completion.received)
            .count());
    bool was_full = inflight_full();
    session_.complete(completion.token, reason);
    if (was_full && !inflight_full()) resume_reading();
}

void MqttConnection::resume_reading() {
    if (paused_ || throttled_ || reading_stopped_ || send_blocked_ || closing_ || torn_down_) {
        return;
    }
    // Bytes a TLS read decrypted before reading stopped may hold whole packets.
    if (tls_ && tls_->unread_begin < tls_->unread_end) return drain_tls();
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
        std::move(auth), [self = share()](ingest::AuthResult result) mutable {
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
    worker_.timers().arm(*this, after);
}

void MqttConnection::on_timer_expired() {
    // Armed means not torn down, so self_ still holds it; the session may tear it down now.
    auto self = share();
    if (torn_down_) return;
    // A client we stopped reading (backpressure, drain, inflight at its maximum) is not silent:
    // its packets wait in the socket. Give it another period instead of timing it out. Not so
    // when we stopped because it does not read our answers (send_blocked_): that is its doing.
    if (timer_kind_ == mqtt::timer_kind::keep_alive && !send_blocked_ &&
        (paused_ || (throttled_ && !coalescing_) || reading_stopped_ || inflight_full())) {
        return arm_timer(timer_kind_, period());
    }
    session_.on_timer(timer_kind_);
}

void MqttConnection::cancel_timer(mqtt::timer_kind kind) {
    // The hook may already serve the other kind; cancelling this one must not stop that.
    if (!armed() || timer_kind_ != kind) return;
    TimerWheel::cancel(*this);
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
    TimerWheel::cancel(*this);
    take_partial();  // nothing more is parsed
    if (send_blocked_) {
        // A DISCONNECT would only queue behind what it never read.
        worker_.context().metrics.error(ErrorKind::slow_consumer).Increment();
        CG_LOG(debug) << "mqtt client does not read; closing without flushing "
                      << active_->outbox.size() + active_->writing.size() << " bytes";
        return teardown();
    }
    // The socket is not cancelled: that would abort the write in flight too. flush() tears the
    // connection down once the last bytes are out, which ends the readability wait; a write
    // that does not finish within write_timeout ends it instead.
    flush();
    if (writing_now_ && !torn_down_) {
        active_->blocked_since = std::chrono::steady_clock::now();
        watch_deadline();
    }
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
    TimerWheel::cancel(*this);
    boost::system::error_code ignored;
    socket().shutdown(Socket::shutdown_both, ignored);
    socket().close(ignored);
    take_partial();
    if (writing_now_) {
        // The write in flight still uses its buffer: on_written() releases the rest.
        active_->stalled.clear();
        active_->outbox = std::vector<std::uint8_t>();
    } else {
        active_.reset();
    }
    worker_.remove(this);
    worker_.context().connections.fetch_sub(1);
    if (counted_session_) worker_.context().sessions.fetch_sub(1);
    (tls_ ? worker_.context().metrics.connections_tls : worker_.context().metrics.connections)
        .Decrement();
    // Not released here: a caller up the stack may be a plain pointer (the gateway's drain).
    boost::asio::post(worker_.io(), [self = std::move(self_)] {});
}

void MqttConnection::abandon() {
    TimerWheel::cancel(*this);
    auto self = std::move(self_);
}

}  // namespace citygate::gateway
