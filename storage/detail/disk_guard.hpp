// The free-space reserve of the data volume: writes stop while free space is under it, so
// RocksDB never meets ENOSPC (Debian's RocksDB asserts after a failed WAL write), and resume by
// themselves once space returns.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

#include "storage/engine.hpp"

namespace citygate::storage::detail {

// statvfs() of the volume holding `directory`: space an unprivileged writer may use.
std::optional<DiskSpace> probe_disk_space(const std::filesystem::path& directory);

class DiskGuard {
  public:
    struct Options {
        std::filesystem::path directory;
        std::optional<std::uint64_t> reserve_bytes;  // unset: auto_free_space_reserve()
        std::chrono::milliseconds interval{200};
        DiskProbe probe;  // empty: probe_disk_space
        // Called on every change of full(), from the polling thread or a writer that charged
        // the last bytes. Must be cheap and thread safe.
        std::function<void(bool full, const DiskFigures&)> on_change;
    };

    // Probes once, so full() is right before the first write.
    explicit DiskGuard(Options options);
    ~DiskGuard();
    DiskGuard(const DiskGuard&) = delete;
    DiskGuard& operator=(const DiskGuard&) = delete;

    void start();  // the polling thread
    void stop();   // joins it; full() and consumed() keep working

    // Under the reserve: client writes are held.
    bool full() const { return full_.load(std::memory_order_acquire); }
    // Under half the reserve: background writes (head flushes) are held too.
    bool critical() const { return critical_.load(std::memory_order_acquire); }
    // A writer wrote about `bytes` since the last probe: counted against the free space until
    // the next probe measures it, so a burst between probes cannot run past the reserve.
    void consumed(std::uint64_t bytes);
    DiskFigures figures() const;
    std::uint64_t reserve_bytes() const { return reserve_; }
    std::uint64_t volume_bytes() const { return volume_; }
    void poll_now();

  private:
    void run();
    void update(std::uint64_t free_bytes);

    Options options_;
    std::uint64_t reserve_ = 0;
    std::uint64_t volume_ = 0;
    std::uint64_t resume_at_ = 0;            // free bytes a full volume needs before writes resume
    std::atomic<std::int64_t> headroom_{0};  // free - reserve, less what writers consumed since
    std::atomic<std::uint64_t> free_{0};
    std::atomic<bool> full_{false};
    std::atomic<bool> critical_{false};
    std::atomic<bool> probe_failed_{false};
    std::mutex change_mutex_;  // one transition at a time, in order

    std::mutex mutex_;
    std::condition_variable cv_;
    bool stop_ = false;
    std::thread thread_;
};

}  // namespace citygate::storage::detail
