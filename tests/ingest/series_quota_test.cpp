// Series limits per client identity and per connection minute: what storage's writer threads
// ask before each new series.
#include <catch2/catch.hpp>

#include <thread>
#include <vector>

#include "ingest/series_quota.hpp"

using citygate::ingest::SeriesQuota;
using citygate::ingest::SeriesQuotaOptions;
using citygate::storage::SeriesLimit;

TEST_CASE("an identity's connections share its series limit, and other identities have their own") {
    SeriesQuota quota({.max_series_per_identity = 3, .max_new_series_per_minute = 0, .clock = {}});
    auto first = quota.connection("alice");
    auto second = quota.connection("alice");
    auto other = quota.connection("bob");
    CHECK(first->admit() == SeriesLimit::none);
    CHECK(first->admit() == SeriesLimit::none);
    CHECK(second->admit() == SeriesLimit::none);
    CHECK(second->admit() == SeriesLimit::identity);
    CHECK(first->admit() == SeriesLimit::identity);
    CHECK(quota.series_of("alice") == 3);
    CHECK(other->admit() == SeriesLimit::none);
    CHECK(quota.series_of("bob") == 1);
    // A reconnect does not reset the count.
    auto later = quota.connection("alice");
    CHECK(later->admit() == SeriesLimit::identity);
    // A series that was not created after all gives its place back.
    first->release();
    CHECK(later->admit() == SeriesLimit::none);
    CHECK(quota.identities() == 2);
}

TEST_CASE("a connection creates at most max_new_series_per_minute new series a minute") {
    std::int64_t now = 1'000'000;
    SeriesQuota quota({.max_series_per_identity = 0,
                       .max_new_series_per_minute = 2,
                       .clock = [&now] { return now; }});
    auto connection = quota.connection("anonymous:sensor-1");
    CHECK(connection->admit() == SeriesLimit::none);
    now += 10'000;
    CHECK(connection->admit() == SeriesLimit::none);
    CHECK(connection->admit() == SeriesLimit::connection);
    // Another connection of the same identity has a minute of its own.
    auto again = quota.connection("anonymous:sensor-1");
    CHECK(again->admit() == SeriesLimit::none);
    now += 49'999;  // 59.999 s after the window opened
    CHECK(connection->admit() == SeriesLimit::connection);
    now += 1;
    CHECK(connection->admit() == SeriesLimit::none);
    CHECK(connection->admit() == SeriesLimit::none);
    CHECK(connection->admit() == SeriesLimit::connection);
    // Without a per-identity limit the identity's series are still counted.
    CHECK(quota.series_of("anonymous:sensor-1") == 5);
}

TEST_CASE("the minute is checked before the identity, and both limits off means no admission") {
    std::int64_t now = 0;
    SeriesQuota quota({.max_series_per_identity = 1,
                       .max_new_series_per_minute = 1,
                       .clock = [&now] { return now; }});
    auto connection = quota.connection("carol");
    CHECK(connection->admit() == SeriesLimit::none);
    CHECK(connection->admit() == SeriesLimit::connection);
    now += 60'000;
    CHECK(connection->admit() == SeriesLimit::identity);

    SeriesQuota off({.max_series_per_identity = 0, .max_new_series_per_minute = 0, .clock = {}});
    CHECK(off.connection("carol") == nullptr);
}

TEST_CASE("shards asking at once never admit past the identity's limit") {
    SeriesQuota quota(
        {.max_series_per_identity = 1000, .max_new_series_per_minute = 0, .clock = {}});
    std::vector<std::shared_ptr<citygate::storage::SeriesAdmission>> connections;
    for (int i = 0; i < 4; ++i)
        connections.push_back(quota.connection("fleet"));
    std::atomic<int> admitted{0};
    std::vector<std::thread> shards;
    for (int t = 0; t < 4; ++t) {
        shards.emplace_back([&, t] {
            for (int i = 0; i < 600; ++i) {
                if (connections[t]->admit() == SeriesLimit::none) ++admitted;
            }
        });
    }
    for (auto& s : shards)
        s.join();
    CHECK(admitted == 1000);
    CHECK(quota.series_of("fleet") == 1000);
}
