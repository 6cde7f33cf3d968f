// One I/O thread's world: its io_context, a read buffer and an ingest appender (decoder and
// scratch) shared by all of its connections, and the inbox through which storage writer threads
// hand back completions.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <queue>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "gateway/mqtt/timer_wheel.hpp"
#include "gateway/ops/metrics.hpp"
#include "ingest/access_control.hpp"
#include "ingest/ingest_unit.hpp"
#include "protocols/mqtt/server_session.hpp"

namespace citygate::gateway {

class MqttConnection;

// A connection's place in its worker's list of live connections: intrusive, so that being listed
// costs a connection two pointers and no allocation.
struct LiveLink {
    MqttConnection* prev = nullptr;
    MqttConnection* next = nullptr;
};

// What every worker shares: the ingest unit, metrics and MQTT rules. Read-only after start
// except the atomics.
struct GatewayContext {
    ingest::IngestUnit& ingest;
    Metrics& metrics;
    ingest::AccessControl& access;
    bool close_on_bad_payload = false;
    mqtt::server_limits limits;
    std::size_t max_connections = 0;
    double max_publish_rate = 0;  // per connection, messages/s; 0: unlimited
    double publish_burst = 0;
    // Per-connection bounds (mqtt.max_send_queue, write_timeout, partial_packet_timeout).
    std::size_t max_send_queue = 64 * 1024;
    std::chrono::milliseconds write_timeout = std::chrono::seconds(30);
    std::chrono::milliseconds partial_packet_timeout = std::chrono::seconds(10);
    // Bytes held in incomplete packets by all connections of all workers, and their bound.
    std::size_t max_partial_bytes_total = 256 * 1024 * 1024;
    std::atomic<std::size_t> partial_bytes{0};
    std::atomic<std::size_t> connections{0};  // accepted sockets
    std::atomic<std::size_t> sessions{0};     // accepted CONNECTs
    // Storage writes accepted by try_submit whose completion has not yet reached its connection.
    std::atomic<std::int64_t> pending_writes{0};
};

// A storage write finished; travels from a writer thread to the connection's I/O thread.
struct Completion {
    std::shared_ptr<MqttConnection> connection;
    mqtt::delivery_token token = 0;
    ingest::Outcome outcome;
    std::chrono::steady_clock::time_point received;
};

class IoWorker {
  public:
    IoWorker(GatewayContext& context, std::size_t read_buffer_size);
    // Releases the connections still open (never torn down: the threads stopped first).
    ~IoWorker();
    IoWorker(const IoWorker&) = delete;
    IoWorker& operator=(const IoWorker&) = delete;

    boost::asio::io_context& io() { return io_; }
    GatewayContext& context() { return context_; }
    std::vector<std::uint8_t>& read_buffer() { return read_buffer_; }
    ingest::Appender& appender() { return appender_; }
    // A write to prepare a message into: one per thread, so its points vector (given a spare
    // one back by storage at each submit) is not allocated per message. Empty it first.
    ingest::Write& scratch_write() { return scratch_write_; }

    // Any thread. Queues a completion; the worker delivers queued completions in one batch, so a
    // busy writer costs one post per drain, not one per message.
    void post_completion(Completion completion);

    // I/O thread only, before a storage write: the writes this thread submits until the
    // handlers ready now have run go to storage as one group commit (IngestUnit::
    // defer_commits), committed by a handler posted behind them. Messages that one readiness
    // wake-up brought on several connections cost one WAL write, not one each.
    void group_writes();

    // Any thread. Asks the worker to retry the writes of connections paused by backpressure.
    void post_space_available();

    // Deliveries of the connection being served right now that finished without storage
    // (refused topic or payload), completed once the session returns from on_bytes(). Kept here
    // so an idle connection does not carry it (I/O thread only).
    using Immediate = std::vector<std::pair<mqtt::delivery_token, mqtt::reason_code>>;
    Immediate& immediate() { return immediate_; }

    // I/O thread only. Resumes the connection's reading at `until` (publish rate limit); one
    // timer per thread serves every throttled connection.
    // `rate_limited` false: not counted in citygate_rate_limited_total (a dribbling client).
    void throttle(std::shared_ptr<MqttConnection> connection,
                  std::chrono::steady_clock::time_point until, bool rate_limited = true);

    // I/O thread only. Calls connection->on_deadline() at `at` unless it is gone by then; one
    // timer per thread serves every connection's incomplete-packet and write deadlines.
    void watch(const std::shared_ptr<MqttConnection>& connection,
               std::chrono::steady_clock::time_point at);

    // I/O thread only. The connect and keep-alive timeouts of every connection of the thread.
    TimerWheel& timers() { return timers_; }

    // I/O thread only.
    void pause(std::shared_ptr<MqttConnection> connection);
    void add(MqttConnection* connection);
    void remove(MqttConnection* connection);
    // The connections added and not yet removed.
    std::vector<MqttConnection*> live() const;

  private:
    void deliver_completions();
    void retry_paused();

    GatewayContext& context_;
    boost::asio::io_context io_{1};
    std::vector<std::uint8_t> read_buffer_;
    ingest::Appender appender_;
    ingest::Write scratch_write_;

    std::mutex inbox_mutex_;
    std::vector<Completion> inbox_;
    std::vector<Completion> delivering_;  // the I/O thread's, while deliver_completions() runs
    bool drain_posted_ = false;
    bool grouping_ = false;  // group_writes() posted its commit
    std::atomic<bool> retry_posted_{false};

    void wake_throttled();

    struct Throttled {
        std::chrono::steady_clock::time_point until;
        std::shared_ptr<MqttConnection> connection;
        bool operator>(const Throttled& other) const { return until > other.until; }
    };
    std::priority_queue<Throttled, std::vector<Throttled>, std::greater<>> throttled_;
    boost::asio::steady_timer throttle_timer_;

    void expire_deadlines();
    struct Deadline {
        std::chrono::steady_clock::time_point at;
        std::weak_ptr<MqttConnection> connection;  // a closed connection is not kept for it
        bool operator>(const Deadline& other) const { return at > other.at; }
    };
    // At most one entry per connection (MqttConnection::deadline_watched_).
    std::priority_queue<Deadline, std::vector<Deadline>, std::greater<>> deadlines_;
    boost::asio::steady_timer deadline_timer_;
    TimerWheel timers_;
    Immediate immediate_;
    std::vector<std::shared_ptr<MqttConnection>> paused_;
    MqttConnection* live_ = nullptr;  // the first of them, linked through LiveLink
};

}  // namespace citygate::gateway
