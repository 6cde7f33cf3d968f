// Prometheus remote-write 1.0 sender: reads stored samples from a durable cursor and posts them
// to a receiver (VictoriaMetrics, Prometheus, Mimir, ...), on a thread of its own.
//
// Contract:
// - What is sent: every sample of a selected series stamped in [cursor, now - settle_delay),
//   oldest first, in batches of at most batch_samples (more only when that many share one
//   millisecond). The cursor moves, and is saved to `cursor_file`, only after the receiver
//   acknowledged (2xx) a batch or refused it for good (4xx other than 429: counted, logged,
//   skipped). An outage costs no memory: nothing is queued, the data stays in storage.
// - Late samples: storage takes a sample up to out_of_order_window behind its series' newest.
//   A sample that arrives after the cursor passed its timestamp (more than settle_delay late)
//   is not sent; settle_delay = out_of_order_window sends everything, at that much lag. Such
//   samples are not lost silently: once a minute of raw data is older than out_of_order_window
//   (storage takes no more for it from a series that is still reporting), the sender counts what
//   storage holds for it against what it sent and counts the difference as dropped, reason
//   "late" (from the sender's start on; a series silent for longer than the window may still
//   take readings in it later, which go uncounted).
// - Restarts: the cursor file says where to go on; a crash between an acknowledgement and the
//   cursor's save resends that one batch (at most batch_samples duplicates, same values).
// - max_backlog: data older than now - max_backlog that was never sent is skipped (counted),
//   so a receiver down for days does not make the sender read the whole history.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "storage/engine.hpp"

namespace prometheus {
class Registry;
}

namespace citygate::exports {

struct RemoteWriteOptions {
    std::string url;                    // http://host:port/path or https://...
    std::filesystem::path tls_ca_file;  // https: CAs to verify the receiver by; empty: system's
    std::vector<std::string> select{"{__name__=~\".+\"}"};
    bool raw = true;         // send raw samples
    bool rollup_1m = false;  // send 1-minute rollups as name:avg_1m, :min_1m, :max_1m, :count_1m
    std::size_t batch_samples = 10'000;
    // While caught up, a batch waits for batch_samples or for this long since the last send.
    std::chrono::milliseconds batch_age = std::chrono::seconds(5);
    std::chrono::milliseconds min_backoff = std::chrono::milliseconds(500);
    std::chrono::milliseconds max_backoff = std::chrono::minutes(1);
    std::chrono::milliseconds timeout = std::chrono::seconds(30);  // one request
    std::chrono::milliseconds max_backlog = std::chrono::hours(24);
    // Samples stamped within this of now are not sent yet: the room late samples have.
    std::chrono::milliseconds settle_delay = std::chrono::seconds(10);
    // storage's: when a minute of raw data is final, for counting the late samples not sent.
    std::chrono::milliseconds out_of_order_window = std::chrono::hours(1);
    std::string bearer_token;
    std::string username;  // basic auth when set
    std::string password;
    std::filesystem::path cursor_file;
    // Wall clock, ms since the epoch (tests inject one). Empty: the system clock.
    std::function<std::int64_t()> clock;
    // Called on the sender thread for log lines: level 0 info, 1 warn, 2 error.
    std::function<void(int level, const std::string& message)> log;
};

class RemoteWriteSender {
  public:
    // Checks the options (throws std::invalid_argument naming the problem), loads the cursor
    // (throws std::runtime_error when its file exists but cannot be read) and registers the
    // citygate_remote_write_* metrics on `registry` (may be null). Sends nothing until start().
    RemoteWriteSender(RemoteWriteOptions options, const storage::Engine& engine,
                      prometheus::Registry* registry);
    // stop()s.
    ~RemoteWriteSender();
    RemoteWriteSender(const RemoteWriteSender&) = delete;
    RemoteWriteSender& operator=(const RemoteWriteSender&) = delete;

    // Starts the sender thread.
    void start();
    // Stops the thread: a request in flight is abandoned (its batch is sent again next time),
    // the cursor keeps what was acknowledged. The engine must outlive this call.
    void stop();

    struct Figures {
        std::uint64_t samples_sent = 0;  // raw and rollup together
        std::uint64_t batches_sent = 0;
        std::uint64_t batches_failed = 0;  // refused for good (4xx)
        std::uint64_t retries = 0;
        std::uint64_t bytes_sent = 0;
        std::uint64_t samples_skipped_backlog = 0;
        std::uint64_t samples_late = 0;  // stored behind the cursor, never sent
        std::int64_t raw_cursor_ms = 0;
    };
    Figures figures() const;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace citygate::exports
