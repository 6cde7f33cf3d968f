// Series limits per client: how many series one client identity may create, and how many new
// series one connection may create per minute. Storage asks (storage::SeriesAdmission) on its
// writer threads and only for series it does not hold yet, so writing existing series never
// costs anything here and is never refused by these limits.
//
// An identity is the authenticated user (MQTT user name or certificate CN), or, for an anonymous
// client, its client id: anonymous devices do not share one budget. Counts live in memory: they
// hold the series created since the gateway started (existing series are not attributed to
// anyone after a restart); storage's global and per-shard limits bound what survives restarts.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string_view>
#include <unordered_map>

#include "storage/engine.hpp"

namespace citygate::ingest {

struct SeriesQuotaOptions {
    std::size_t max_series_per_identity = 100'000;   // 0: no limit
    std::size_t max_new_series_per_minute = 10'000;  // per connection; 0: no limit
    std::function<std::int64_t()> clock;             // ms, for the minute; empty: steady clock
};

class SeriesQuota {
  public:
    explicit SeriesQuota(SeriesQuotaOptions options);

    // The admission of one connection of `identity` (a user name, or "anonymous:" + client id),
    // to hand to every write of that connection. Null when both limits are off. Thread safe.
    std::shared_ptr<storage::SeriesAdmission> connection(std::string_view identity) const;

    // Series created by `identity` since start (tests, status). Thread safe.
    std::size_t series_of(std::string_view identity) const;
    // Identities that created a series since start.
    std::size_t identities() const;

    const SeriesQuotaOptions& options() const { return state_->options; }

  private:
    class Connection;
    struct Account {
        std::atomic<std::size_t> series{0};
    };
    // Shared with every connection's admission, which storage may hold past the unit's life.
    struct State {
        SeriesQuotaOptions options;
        mutable std::mutex mutex;  // guards the map; accounts themselves are atomic
        // By a hash of the identity: 16 bytes a client instead of its name. Accounts are created
        // at an identity's first series and never erased, so pointers to them stay valid;
        // there are at most as many as series were created.
        std::unordered_map<std::uint64_t, std::unique_ptr<Account>> accounts;
        Account& account(std::uint64_t identity);
        std::int64_t now_ms() const;
    };
    std::shared_ptr<State> state_;
};

}  // namespace citygate::ingest
