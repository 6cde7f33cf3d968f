// The verification pool: a mutex-guarded bounded deque and a few worker threads.
#include "ingest/verification_pool.hpp"

namespace citygate::ingest {

VerificationPool::VerificationPool(unsigned threads, std::size_t capacity) : capacity_(capacity) {
    if (threads == 0) threads = 1;
    for (unsigned i = 0; i < threads; ++i)
        threads_.emplace_back([this] { run(); });
}

VerificationPool::~VerificationPool() {
    stop();
}

bool VerificationPool::try_submit(std::function<void()> job) {
    {
        std::lock_guard lock(mutex_);
        if (stopping_ || jobs_.size() >= capacity_) return false;
        jobs_.push_back(std::move(job));
    }
    wake_.notify_one();
    return true;
}

void VerificationPool::stop() {
    std::deque<std::function<void()>> dropped;
    {
        std::lock_guard lock(mutex_);
        if (stopping_ && threads_.empty()) return;
        stopping_ = true;
    }
    wake_.notify_all();
    for (auto& thread : threads_)
        thread.join();
    threads_.clear();
    std::lock_guard lock(mutex_);
    dropped.swap(jobs_);
}

std::size_t VerificationPool::queued() const {
    std::lock_guard lock(mutex_);
    return jobs_.size();
}

void VerificationPool::run() {
    for (;;) {
        std::function<void()> job;
        {
            std::unique_lock lock(mutex_);
            wake_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
            if (stopping_) return;
            job = std::move(jobs_.front());
            jobs_.pop_front();
        }
        job();
    }
}

}  // namespace citygate::ingest
