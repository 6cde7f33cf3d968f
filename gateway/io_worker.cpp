// Completion inbox and backpressure retries of one I/O thread.
#include "gateway/io_worker.hpp"

#include <boost/asio/post.hpp>

#include "gateway/mqtt_connection.hpp"

namespace citygate::gateway {

IoWorker::IoWorker(GatewayContext& context, std::size_t read_buffer_size)
    : context_(context),
      read_buffer_(read_buffer_size),
      decoder_(payload::PayloadLimits{context.limits.maximum_packet_size}) {}

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
    std::vector<Completion> batch;
    {
        std::lock_guard lock(inbox_mutex_);
        batch.swap(inbox_);
        drain_posted_ = false;
    }
    for (const Completion& completion : batch)
        completion.connection->complete(completion);
    context_.pending_writes.fetch_sub(static_cast<std::int64_t>(batch.size()));
}

void IoWorker::post_space_available() {
    if (retry_posted_.exchange(true)) return;
    boost::asio::post(io_, [this] {
        retry_posted_.store(false);
        retry_paused();
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
