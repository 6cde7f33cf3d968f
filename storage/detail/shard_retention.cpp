// Shard time windows: a column family per window, created on first use, found by time range,
// and dropped whole once retention has passed it.
#include "storage/detail/shard.hpp"

#include "storage/detail/keys.hpp"
#include "storage/detail/rocks_status.hpp"

namespace citygate::storage::detail {

void Shard::enforce_retention_now() {
    (void)run_on_flusher([this] {
        drop_expired_windows();
        return Status::ok();
    });
}

std::int64_t Shard::retention_cutoff() const {
    if (options_.retention_ms <= 0) return INT64_MIN;
    return options_.clock() - options_.retention_ms;
}

Shard::CfHandle Shard::window(std::int64_t start) const {
    std::shared_lock lock(windows_mutex_);
    auto it = windows_.find(start);
    return it == windows_.end() ? nullptr : it->second;
}

Result<Shard::CfHandle> Shard::ensure_window(std::int64_t start) {
    if (auto cf = window(start)) return cf;
    rocksdb::ColumnFamilyHandle* handle = nullptr;
    auto s =
        db_->CreateColumnFamily(window_options_, kWindowPrefix + std::to_string(start), &handle);
    if (!s.ok()) {
        fail(from_rocks(s, "create window"));  // a MANIFEST write failed
        return failure();
    }
    CfHandle cf(handle, [db = db_.get()](rocksdb::ColumnFamilyHandle* p) {
        (void)db->DestroyColumnFamilyHandle(p);
    });
    std::unique_lock lock(windows_mutex_);
    windows_[start] = cf;
    return cf;
}

std::vector<std::pair<std::int64_t, Shard::CfHandle>> Shard::windows_overlapping(
    std::int64_t start, std::int64_t end) const {
    std::vector<std::pair<std::int64_t, CfHandle>> out;
    std::shared_lock lock(windows_mutex_);
    for (auto& [ws, cf] : windows_) {
        if (ws < end && ws + options_.window_ms > start) out.emplace_back(ws, cf);
    }
    return out;
}

void Shard::drop_expired_windows() {
    if (failed() || read_only()) return;  // dropping writes the MANIFEST
    std::int64_t cutoff = retention_cutoff();
    std::vector<CfHandle> expired;
    {
        std::unique_lock lock(windows_mutex_);
        for (auto it = windows_.begin();
             it != windows_.end() && it->first + options_.window_ms <= cutoff;) {
            expired.push_back(it->second);
            {
                std::unique_lock head(head_mutex_);
                // Same thread as the seals, so a sealed window here is fully sealed.
                if (sealed_windows_.erase(it->first) > 0) windows_sealed_.fetch_sub(1);
            }
            it = windows_.erase(it);
        }
    }
    for (auto& cf : expired) {
        // Readers holding the handle still read it; the files go when the last handle does.
        if (auto s = db_->DropColumnFamily(cf.get()); s.ok()) {
            windows_dropped_.fetch_add(1);
        } else {
            fail(from_rocks(s, "drop window"));
            break;
        }
    }
    if (!expired.empty()) {
        // Series whose newest chunk was in a dropped window must re-learn their state.
        for (auto& st : chunk_states_) {
            if (st.persisted_max_ts != INT64_MIN && st.persisted_max_ts < cutoff) st.loaded = false;
        }
    }
}

}  // namespace citygate::storage::detail
