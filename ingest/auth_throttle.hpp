// Failed-authentication counting per key (a source address or a user name): after
// `max_failures` failures within `window` the key is blocked until that window ends, so
// guessing costs the attacker time instead of costing the gateway hashes. The table holds at
// most `capacity` keys; the least recently failed key is forgotten first (an attacker with more
// addresses than that can age its own entries out, but memory stays bounded). Thread safe.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace citygate::ingest {

class FailureThrottle {
  public:
    using clock = std::chrono::steady_clock;

    // max_failures 0 turns the throttle off (never blocks, records nothing).
    FailureThrottle(std::size_t max_failures, clock::duration window, std::size_t capacity);

    // Whether `key` has failed max_failures times within the current window.
    [[nodiscard]] bool blocked(std::string_view key, clock::time_point now) const;

    // Counts a failure; returns true when this failure made the key blocked.
    bool record_failure(std::string_view key, clock::time_point now);

    // Forgets the key's failures (a user who proved their password).
    void forget(std::string_view key);

    [[nodiscard]] std::size_t size() const;
    [[nodiscard]] std::size_t capacity() const { return capacity_; }

  private:
    struct Entry {
        std::string key;
        std::uint32_t failures = 0;
        clock::time_point window_start;
    };
    using Lru = std::list<Entry>;  // most recently failed first

    std::size_t max_failures_;
    clock::duration window_;
    std::size_t capacity_;
    mutable std::mutex mutex_;
    Lru lru_;
    std::unordered_map<std::string_view, Lru::iterator> index_;  // views into lru_ keys
};

}  // namespace citygate::ingest
