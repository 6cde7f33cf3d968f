// Completion inbox and backpressure retries of one I/O thread.
#include "gateway/mqtt/io_worker.hpp"

#include <boost/asio/post.hpp>

#include "gateway/mqtt/mqtt_connection.hpp"

namespace citygate::gateway {

IoWorker::IoWorker(GatewayContext& context, std::size_t read_buffer_size)
    : context_(context),
      read_buffer_(read_buffer_size),
      appender_(context.ingest),
      throttle_timer_(io_),
      deadline_timer_(io_),
      timers_(io_, [](TimerWheel::Hook& hook) {
          static_cast<MqttConnection&>(hook).on_timer_expired();
      }) {}

IoWorker::~IoWorker() {
    // Each keeps itself alive until its teardown; these never had one. Their destructors may
    // run now or with the handlers io_ still holds, after the other members are gone.
    std::vector<MqttConnection*> open = live();
    for (MqttConnection* connection : open)
        remove(connection);
    for (MqttConnection* connection : open)
        connection->abandon();
}

void IoWorker::add(MqttConnection* connection) {
    LiveLink& link = connection->live_link();
    link.prev = nullptr;
    link.next = live_;
    if (live_) live_->live_link().prev = connection;
    live_ = connection;
}

void IoWorker::remove(MqttConnection* connection) {
    LiveLink& link = connection->live_link();
    (link.prev ? link.prev->live_link().next : live_) = link.next;
    if (link.next) link.next->live_link().prev = link.prev;
    link = {};
}

std::vector<MqttConnection*> IoWorker::live() const {
    std::vector<MqttConnection*> connections;
    for (MqttConnection* c = live_; c; c = c->live_link().next)
        connections.push_back(c);
    return connections;
}

void IoWorker::post_completion(Completion completion) {
    bool post = false;
    {
        std::lock_guard lock(inbox_mutex_);
        inbox_.push_back(std::move(completion));
        post = !drain_posted_;
        drain_posted_ = true;
    }
    if (post) boost::asio::post(io_, [this] { deliver_completions(); });
}

void IoWorker::deliver_completions() {
    {
        // Swapped, not moved out: both vectors keep their capacity from one batch to the next.
        std::lock_guard lock(inbox_mutex_);
        delivering_.swap(inbox_);
        drain_posted_ = false;
    }
    for (const Completion& completion : delivering_)
        completion.connection->complete(completion);
    context_.pending_writes.fetch_sub(static_cast<std::int64_t>(delivering_.size()));
    delivering_.clear();
}

void IoWorker::group_writes() {
    if (grouping_) return;
    grouping_ = true;
    context_.ingest.defer_commits();
    boost::asio::post(io_, [this] {
        grouping_ = false;
        context_.ingest.commit_deferred();
    });
}

void IoWorker::post_space_available() {
    if (retry_posted_.exchange(true)) return;
    boost::asio::post(io_, [this] {
        retry_posted_.store(false);
        retry_paused();
    });
}

void IoWorker::throttle(std::shared_ptr<MqttConnection> connection,
                        std::chrono::steady_clock::time_point until, bool rate_limited) {
    if (rate_limited) context_.metrics.rate_limited.Increment();
    bool earliest = throttled_.empty() || until < throttled_.top().until;
    throttled_.push({until, std::move(connection)});
    if (!earliest) return;
    throttle_timer_.expires_at(until);
    throttle_timer_.async_wait([this](const boost::system::error_code& ec) {
        if (!ec) wake_throttled();
    });
}

void IoWorker::wake_throttled() {
    auto now = std::chrono::steady_clock::now();
    while (!throttled_.empty() && throttled_.top().until <= now) {
        auto connection = throttled_.top().connection;
        throttled_.pop();
        connection->end_throttle();
    }
    if (throttled_.empty()) return;
    throttle_timer_.expires_at(throttled_.top().until);
    throttle_timer_.async_wait([this](const boost::system::error_code& ec) {
        if (!ec) wake_throttled();
    });
}

void IoWorker::watch(const std::shared_ptr<MqttConnection>& connection,
                     std::chrono::steady_clock::time_point at) {
    bool earliest = deadlines_.empty() || at < deadlines_.top().at;
    deadlines_.push({at, connection});
    if (!earliest) return;
    deadline_timer_.expires_at(at);
    deadline_timer_.async_wait([this](const boost::system::error_code& ec) {
        if (!ec) expire_deadlines();
    });
}

void IoWorker::expire_deadlines() {
    auto now = std::chrono::steady_clock::now();
    while (!deadlines_.empty() && deadlines_.top().at <= now) {
        auto connection = deadlines_.top().connection.lock();
        deadlines_.pop();
        // May watch again (a later deadline), which pushes an entry after `now`.
        if (connection) connection->on_deadline(now);
    }
    if (deadlines_.empty()) return;
    deadline_timer_.expires_at(deadlines_.top().at);
    deadline_timer_.async_wait([this](const boost::system::error_code& ec) {
        if (!ec) expire_deadlines();
    });
}

void IoWorker::pause(std::shared_ptr<MqttConnection> connection) {
    context_.metrics.backpressure_pauses.Increment();
    paused_.push_back(std::move(connection));
}

void IoWorker::retry_paused() {
    std::vector<std::shared_ptr<MqttConnection>> waiting;
    waiting.swap(paused_);
    for (std::size_t i = 0; i < waiting.size(); ++i) {
        if (!waiting[i]->retry_stalled()) {
            // Still full: keep this one and every later one, in order, for the next signal.
            paused_.insert(paused_.end(), std::make_move_iterator(waiting.begin() + i),
                           std::make_move_iterator(waiting.end()));
            break;
        }
    }
}

}  // namespace citygate::gateway
