// The threads that run queries off the HTTP I/O threads, with a bounded queue of waiting ones, so
// /healthz, /readyz and /metrics answer at once however long a query takes.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace citygate::gateway {

class QueryPool {
  public:
    // `threads` (at least 1) run jobs, in the order they came; at most `queue_limit` more wait.
    QueryPool(unsigned threads, std::size_t queue_limit);
    // stop().
    ~QueryPool();
    QueryPool(const QueryPool&) = delete;
    QueryPool& operator=(const QueryPool&) = delete;

    // Queues `job` for a pool thread. False, dropping it, when `queue_limit` jobs already wait
    // or the pool has stopped: the caller answers 503. Thread safe.
    [[nodiscard]] bool try_post(std::function<void()> job);

    // Sets stopping() (the queries running see it through their budgets and end at their next
    // check), runs the jobs still queued (they end the same way, answering at once) and joins the
    // threads. Idempotent; not from a pool thread.
    void stop();
    // A query's cancellation flag: true once stop() began.
    const std::atomic<bool>& stopping() const { return stopping_; }

    std::size_t queued() const;

  private:
    void run();

    const std::size_t queue_limit_;
    std::atomic<bool> stopping_{false};
    mutable std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<std::function<void()>> queue_;
    unsigned idle_ = 0;  // threads waiting for a job: a job queued for one does not wait
    bool done_ = false;  // no more jobs: threads exit once the queue is empty
    std::vector<std::thread> threads_;
};

}  // namespace citygate::gateway
