// Failed-authentication throttle: a fixed-capacity LRU of failure counts per key.
#include "ingest/auth_throttle.hpp"

namespace citygate::ingest {

FailureThrottle::FailureThrottle(std::size_t max_failures, clock::duration window,
                                 std::size_t capacity)
    : max_failures_(max_failures), window_(window), capacity_(capacity == 0 ? 1 : capacity) {}

bool FailureThrottle::blocked(std::string_view key, clock::time_point now) const {
    if (max_failures_ == 0) return false;
    std::lock_guard lock(mutex_);
    auto found = index_.find(key);
    if (found == index_.end()) return false;
    const Entry& entry = *found->second;
    return entry.failures >= max_failures_ && now - entry.window_start < window_;
}

bool FailureThrottle::record_failure(std::string_view key, clock::time_point now) {
    if (max_failures_ == 0) return false;
    std::lock_guard lock(mutex_);
    auto found = index_.find(key);
    if (found == index_.end()) {
        if (lru_.size() >= capacity_) {
            index_.erase(lru_.back().key);
            lru_.pop_back();
        }
        lru_.push_front({std::string(key), 0, now});
        found = index_.emplace(lru_.front().key, lru_.begin()).first;
    } else {
        lru_.splice(lru_.begin(), lru_, found->second);  // iterators and key views stay valid
    }
    Entry& entry = *found->second;
    if (now - entry.window_start >= window_) {
        entry.failures = 0;
        entry.window_start = now;
    }
    ++entry.failures;
    return entry.failures == max_failures_;
}

void FailureThrottle::forget(std::string_view key) {
    if (max_failures_ == 0) return;
    std::lock_guard lock(mutex_);
    auto found = index_.find(key);
    if (found == index_.end()) return;
    Lru::iterator entry = found->second;
    index_.erase(found);
    lru_.erase(entry);
}

std::size_t FailureThrottle::size() const {
    std::lock_guard lock(mutex_);
    return lru_.size();
}

}  // namespace citygate::ingest
