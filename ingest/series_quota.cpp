// Series limits per identity and per connection minute, asked by storage's writer threads.
#include "ingest/series_quota.hpp"

#include <chrono>
#include <string>

namespace citygate::ingest {
namespace {

constexpr std::int64_t kMinute = 60'000;

std::uint64_t identity_hash(std::string_view identity) {
    return std::hash<std::string_view>{}(identity);
}

}  // namespace

// One connection's admission: its minute window, then its identity's account (looked up at its
// first new series, so connections that create none cost the table nothing).
class SeriesQuota::Connection final : public storage::SeriesAdmission {
  public:
    Connection(std::shared_ptr<State> state, std::uint64_t identity)
        : state_(std::move(state)), identity_(identity) {}

    storage::SeriesLimit admit() override {
        const SeriesQuotaOptions& o = state_->options;
        std::lock_guard lock(mutex_);  // shards of one write may ask at once
        if (o.max_new_series_per_minute > 0) {
            std::int64_t now = state_->now_ms();
            if (now - window_start_ >= kMinute || now < window_start_) {
                window_start_ = now;
                in_window_ = 0;
            }
            if (in_window_ >= o.max_new_series_per_minute) return storage::SeriesLimit::connection;
        }
        if (!account_) account_ = &state_->account(identity_);
        std::size_t before = account_->series.fetch_add(1, std::memory_order_relaxed);
        if (o.max_series_per_identity > 0 && before >= o.max_series_per_identity) {
            account_->series.fetch_sub(1, std::memory_order_relaxed);
            return storage::SeriesLimit::identity;
        }
        ++in_window_;
        return storage::SeriesLimit::none;
    }

    void release() override {
        std::lock_guard lock(mutex_);
        if (in_window_ > 0) --in_window_;
        if (account_) account_->series.fetch_sub(1, std::memory_order_relaxed);
    }

  private:
    std::shared_ptr<State> state_;
    std::uint64_t identity_;
    std::mutex mutex_;
    Account* account_ = nullptr;
    std::int64_t window_start_ = INT64_MIN / 2;  // long ago: the first series opens a window
    std::size_t in_window_ = 0;                  // new series in the current minute
};

SeriesQuota::SeriesQuota(SeriesQuotaOptions options) : state_(std::make_shared<State>()) {
    state_->options = std::move(options);
}

SeriesQuota::Account& SeriesQuota::State::account(std::uint64_t identity) {
    std::lock_guard lock(mutex);
    auto& slot = accounts[identity];
    if (!slot) slot = std::make_unique<Account>();
    return *slot;
}

std::int64_t SeriesQuota::State::now_ms() const {
    if (options.clock) return options.clock();
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

std::shared_ptr<storage::SeriesAdmission> SeriesQuota::connection(std::string_view identity) const {
    const SeriesQuotaOptions& o = state_->options;
    if (o.max_series_per_identity == 0 && o.max_new_series_per_minute == 0) return nullptr;
    return std::make_shared<Connection>(state_, identity_hash(identity));
}

std::size_t SeriesQuota::series_of(std::string_view identity) const {
    std::lock_guard lock(state_->mutex);
    auto it = state_->accounts.find(identity_hash(identity));
    return it == state_->accounts.end() ? 0 : it->second->series.load();
}

std::size_t SeriesQuota::identities() const {
    std::lock_guard lock(state_->mutex);
    return state_->accounts.size();
}

}  // namespace citygate::ingest
