// A few threads that run slow password verifications (PBKDF2) off the I/O threads, with a
// bounded queue: a flood of CONNECTs beyond it is refused at once (server busy) instead of
// growing memory or latency without limit. Thread safe.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace citygate::ingest {

class VerificationPool {
  public:
    // Starts `threads` threads (at least 1).
    VerificationPool(unsigned threads, std::size_t capacity);
    ~VerificationPool();  // stop()
    VerificationPool(const VerificationPool&) = delete;
    VerificationPool& operator=(const VerificationPool&) = delete;

    // Queues a job; false when `capacity` jobs are already waiting or the pool is stopped. The
    // job runs on a pool thread and must not throw.
    [[nodiscard]] bool try_submit(std::function<void()> job);

    // Lets the running jobs finish, joins the threads and destroys the queued jobs unrun, on the
    // calling thread. Later try_submit() calls fail. Idempotent.
    void stop();

    [[nodiscard]] std::size_t queued() const;

  private:
    void run();

    std::size_t capacity_;
    mutable std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<std::function<void()>> jobs_;
    bool stopping_ = false;
    std::vector<std::thread> threads_;
};

}  // namespace citygate::ingest
