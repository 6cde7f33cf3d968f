// Time partitions (a column family per window) and retention dropping whole windows.
#include <catch2/catch.hpp>

#include <rocksdb/db.h>
#include <atomic>

#include <algorithm>
#include <filesystem>

#include "tests/storage/helpers.hpp"
#include "tests/support/temp_dir.hpp"

using namespace citygate::storage;
using namespace citygate::storage::test;
using citygate::test::TempDir;

namespace {
constexpr std::int64_t kHour = 3'600'000;
constexpr std::int64_t kT0 = 1'718'409'600'000;
}  // namespace

TEST_CASE("windows are partitions and retention drops whole expired windows") {
    TempDir dir;
    std::atomic<std::int64_t> now{kT0 + 3 * kHour};
    EngineOptions o;
    o.directory = dir.path();
    o.shards = 1;
    o.partition_window = std::chrono::hours(1);
    o.retention = std::chrono::hours(2);
    o.out_of_order_window = std::chrono::hours(24);
    o.clock = [&] { return now.load(); };
    auto engine = Engine::open(o);
    REQUIRE(engine.is_ok());
    auto& e = *engine.value();
    auto k = key("level", "w-1");
    // One point per window: hours 1, 2, 3 (hour 0 is already behind retention: rejected late).
    auto s = write_sync(e, {{k, kT0 + 10, 0},
                            {k, kT0 + kHour + 10, 1},
                            {k, kT0 + 2 * kHour + 10, 2},
                            {k, kT0 + 3 * kHour + 10, 3}});
    CHECK(s.durable());
    CHECK(s.rejected_late == 1);
    CHECK(s.rejected() == 1);
    CHECK(s.accepted == 3);
    CHECK(e.stats().points_rejected_late == 1);
    REQUIRE(e.flush().is_ok());
    auto values = [&] {
        auto r = e.query_raw(sel("level"), kT0, kT0 + 10 * kHour);
        REQUIRE(r.is_ok());
        return r.value().empty() ? std::vector<double>{} : r.value()[0].values;
    };
    CHECK(values() == std::vector<double>{1, 2, 3});

    // The column families are named by window start.
    std::vector<std::string> names;
    rocksdb::Options options;
    REQUIRE(
        rocksdb::DB::ListColumnFamilies(options, (dir.path() / "shard-0").string(), &names).ok());
    CHECK(std::count(names.begin(), names.end(), "window-" + std::to_string(kT0 + kHour)) == 1);
    CHECK(std::count(names.begin(), names.end(), "window-" + std::to_string(kT0 + 3 * kHour)) == 1);

    now = kT0 + 4 * kHour + 1;  // window [1h, 2h) ends before now - 2h
    e.enforce_retention();
    CHECK(values() == std::vector<double>{2, 3});
    CHECK(e.stats().windows_dropped == 1);
    now = kT0 + 10 * kHour;
    e.enforce_retention();
    CHECK(values().empty());
    CHECK(e.stats().windows_dropped == 3);
    // The series survives; new points write again.
    REQUIRE(all_accepted(write_sync(e, {{k, kT0 + 9 * kHour, 9}})));
    REQUIRE(e.flush().is_ok());
    CHECK(values() == std::vector<double>{9});
}

TEST_CASE("retention runs in the background") {
    TempDir dir;
    std::atomic<std::int64_t> now{kT0 + kHour};
    EngineOptions o;
    o.directory = dir.path();
    o.shards = 1;
    o.partition_window = std::chrono::hours(1);
    o.retention = std::chrono::hours(1);
    o.clock = [&] { return now.load(); };
    auto engine = Engine::open(o);
    REQUIRE(engine.is_ok());
    auto& e = *engine.value();
    REQUIRE(all_accepted(write_sync(e, {{key("level", "bg"), kT0 + 10, 1}})));
    REQUIRE(e.flush().is_ok());
    now = kT0 + 3 * kHour;
    for (int i = 0; i < 100 && e.stats().windows_dropped == 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    CHECK(e.stats().windows_dropped == 1);
}
