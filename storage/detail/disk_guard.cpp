// Free-space polling of the data volume and the full / resumed transitions.
#include "storage/detail/disk_guard.hpp"

#include <sys/statvfs.h>

#include <algorithm>

namespace citygate::storage {

std::uint64_t auto_free_space_reserve(std::uint64_t volume_bytes) {
    constexpr std::uint64_t kMin = std::uint64_t{64} << 20;
    constexpr std::uint64_t kMax = std::uint64_t{4} << 30;
    std::uint64_t reserve = std::clamp<std::uint64_t>(volume_bytes / 50, kMin, kMax);
    // A small volume keeps three quarters of itself for data.
    return std::min(reserve, volume_bytes / 4);
}

}  // namespace citygate::storage

namespace citygate::storage::detail {

std::optional<DiskSpace> probe_disk_space(const std::filesystem::path& directory) {
    struct statvfs st {};
    if (::statvfs(directory.c_str(), &st) != 0) return std::nullopt;
    const std::uint64_t unit = st.f_frsize ? st.f_frsize : st.f_bsize;
    return DiskSpace{static_cast<std::uint64_t>(st.f_bavail) * unit,
                     static_cast<std::uint64_t>(st.f_blocks) * unit};
}

DiskGuard::DiskGuard(Options options) : options_(std::move(options)) {
    if (!options_.probe) options_.probe = probe_disk_space;
    auto space = options_.probe(options_.directory);
    volume_ = space ? space->total_bytes : 0;
    reserve_ = options_.reserve_bytes ? *options_.reserve_bytes : auto_free_space_reserve(volume_);
    // Hysteresis: a volume that filled resumes an eighth of the reserve (at least 1 MiB) above
    // it, so compactions freeing and taking a few blocks do not flip the state every probe.
    resume_at_ = reserve_ == 0 ? 0 : reserve_ + std::max<std::uint64_t>(reserve_ / 8, 1 << 20);
    if (space) {
        update(space->free_bytes);
    } else {
        probe_failed_ = true;  // cannot tell: writes go on, as they did before the guard
        headroom_ = INT64_MAX;
    }
}

DiskGuard::~DiskGuard() {
    stop();
}

void DiskGuard::stop() {
    {
        std::lock_guard lock(mutex_);
        stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

void DiskGuard::start() {
    thread_ = std::thread([this] { run(); });
}

void DiskGuard::run() {
    std::unique_lock lock(mutex_);
    while (!stop_) {
        cv_.wait_for(lock, options_.interval, [&] { return stop_; });
        if (stop_) break;
        lock.unlock();
        poll_now();
        lock.lock();
    }
}

void DiskGuard::poll_now() {
    auto space = options_.probe(options_.directory);
    if (!space) {
        probe_failed_ = true;
        return;  // keep the last state: a failed statvfs says nothing about the space
    }
    probe_failed_ = false;
    update(space->free_bytes);
}

void DiskGuard::update(std::uint64_t free_bytes) {
    std::lock_guard lock(change_mutex_);
    free_.store(free_bytes, std::memory_order_relaxed);
    const auto signed_free =
        static_cast<std::int64_t>(std::min<std::uint64_t>(free_bytes, INT64_MAX));
    headroom_.store(signed_free - static_cast<std::int64_t>(reserve_), std::memory_order_relaxed);
    const bool was_full = full_.load(std::memory_order_relaxed);
    const bool full = reserve_ > 0 && (was_full ? free_bytes < resume_at_ : free_bytes < reserve_);
    critical_.store(reserve_ > 0 && free_bytes < reserve_ / 2, std::memory_order_release);
    if (full == was_full) return;
    full_.store(full, std::memory_order_release);
    if (options_.on_change) options_.on_change(full, figures());
}

void DiskGuard::consumed(std::uint64_t bytes) {
    if (reserve_ == 0 || probe_failed_.load(std::memory_order_relaxed)) return;
    const auto b = static_cast<std::int64_t>(std::min<std::uint64_t>(bytes, INT64_MAX / 2));
    const std::int64_t before = headroom_.fetch_sub(b, std::memory_order_relaxed);
    if (before >= 0 && before - b < 0) {
        // The next probe measures what really happened (WAL files are preallocated, so it may
        // find more space than this estimate); until then, hold writes.
        std::lock_guard lock(change_mutex_);
        if (full_.load(std::memory_order_relaxed)) return;
        full_.store(true, std::memory_order_release);
        if (options_.on_change) options_.on_change(true, figures());
    }
}

DiskFigures DiskGuard::figures() const {
    DiskFigures f;
    f.free_bytes = free_.load(std::memory_order_relaxed);
    f.reserve_bytes = reserve_;
    f.volume_bytes = volume_;
    f.full = full_.load(std::memory_order_acquire);
    f.probe_failed = probe_failed_.load(std::memory_order_relaxed);
    return f;
}

}  // namespace citygate::storage::detail
