// Query pool: a fixed set of threads over one bounded queue.
#include "gateway/http/query_pool.hpp"

#include <algorithm>

#include "gateway/ops/log.hpp"

namespace citygate::gateway {

QueryPool::QueryPool(unsigned threads, std::size_t queue_limit) : queue_limit_(queue_limit) {
    for (unsigned i = 0; i < std::max(1u, threads); ++i)
        threads_.emplace_back([this] { run(); });
}

QueryPool::~QueryPool() {
    stop();
}

bool QueryPool::try_post(std::function<void()> job) {
    {
        std::lock_guard lock(mutex_);
        if (done_ || queue_.size() >= queue_limit_ + idle_) return false;
        queue_.push_back(std::move(job));
    }
    wake_.notify_one();
    return true;
}

std::size_t QueryPool::queued() const {
    std::lock_guard lock(mutex_);
    return queue_.size();
}

void QueryPool::stop() {
    stopping_.store(true);
    {
        std::lock_guard lock(mutex_);
        if (done_) return;
        done_ = true;
    }
    wake_.notify_all();
    for (auto& thread : threads_) {
        if (thread.joinable()) thread.join();
    }
}

void QueryPool::run() {
    std::unique_lock lock(mutex_);
    for (;;) {
        ++idle_;
        wake_.wait(lock, [this] { return done_ || !queue_.empty(); });
        --idle_;
        if (queue_.empty()) return;  // done_
        std::function<void()> job = std::move(queue_.front());
        queue_.pop_front();
        lock.unlock();
        try {
            job();
        } catch (const std::exception& e) {
            CG_LOG(error) << "query job threw: " << e.what();
        }
        job = nullptr;  // what it holds (a session, a budget) goes before the next wait
        lock.lock();
    }
}

}  // namespace citygate::gateway
