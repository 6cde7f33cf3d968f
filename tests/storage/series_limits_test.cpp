// Series limits storage enforces (global, per shard) and the caller's admission of new series
// (per identity, per connection in the ingest unit): refused points are counted by the limit
// that refused them, existing series keep being written, and counts survive a reopen.
#include <catch2/catch.hpp>

#include <atomic>

#include "tests/storage/helpers.hpp"
#include "tests/support/temp_dir.hpp"

using namespace citygate::storage;
using namespace citygate::storage::test;
using citygate::test::TempDir;

namespace {

constexpr std::int64_t kT0 = 1'718'409'600'000;

std::size_t refused_by(const WriteResult& r, SeriesLimit limit) {
    return r.rejected_by_limit[static_cast<std::size_t>(limit)];
}

// Admits up to `room` series, counting what it is asked.
class CountingAdmission : public SeriesAdmission {
  public:
    explicit CountingAdmission(std::size_t room) : room_(room) {}
    SeriesLimit admit() override {
        ++asked;
        if (admitted.load() >= room_) return SeriesLimit::identity;
        ++admitted;
        return SeriesLimit::none;
    }
    void release() override {
        --admitted;
        ++released;
    }
    std::atomic<std::size_t> asked{0}, admitted{0}, released{0};

  private:
    std::size_t room_;
};

}  // namespace

TEST_CASE("the global series limit holds across shards and after a reopen") {
    TempDir dir;
    auto o = options_for(dir, 4);
    o.max_series = 10;
    std::vector<Point> points;
    for (int d = 0; d < 16; ++d)
        points.push_back({key("pm25", "g-" + std::to_string(d)), kT0, 1});
    {
        auto engine = open_engine(o);
        auto r = write_sync(*engine, points);
        CHECK(r.durable());
        CHECK(r.accepted == 10);
        CHECK(r.rejected_series_limit == 6);
        CHECK(refused_by(r, SeriesLimit::global) == 6);
        auto stats = engine->stats();
        CHECK(stats.series == 10);
        CHECK(stats.max_series == 10);
        CHECK(stats.points_rejected_series_limit == 6);
    }
    // Reopened: the restored series count against the limit; existing series still write.
    auto engine = open_engine(o);
    for (auto& p : points)
        p.timestamp_ms = kT0 + 1000;
    auto r = write_sync(*engine, points);
    CHECK(r.accepted == 10);
    CHECK(refused_by(r, SeriesLimit::global) == 6);
    CHECK(engine->stats().series == 10);
}

TEST_CASE("the per-shard limit is reported as the shard's") {
    TempDir dir;
    auto o = options_for(dir, 1);
    o.max_series_per_shard = 2;
    auto engine = open_engine(o);
    auto r = write_sync(
        *engine, {{key("a", "1"), kT0, 1}, {key("a", "2"), kT0, 1}, {key("a", "3"), kT0, 1}});
    CHECK(r.accepted == 2);
    CHECK(refused_by(r, SeriesLimit::shard) == 1);
    CHECK(refused_by(r, SeriesLimit::global) == 0);
    CHECK(engine->stats().max_series == 2);
}

TEST_CASE("an admission is asked only for new series and its refusals are counted by its limit") {
    TempDir dir;
    auto engine = open_engine(options_for(dir, 2));
    auto admission = std::make_shared<CountingAdmission>(3);
    std::vector<Point> first;
    for (int d = 0; d < 5; ++d)
        first.push_back({key("no2", "n-" + std::to_string(d)), kT0, 1});
    auto r = write_sync(*engine, first, admission);
    CHECK(r.durable());
    CHECK(r.accepted == 3);
    CHECK(refused_by(r, SeriesLimit::identity) == 2);
    CHECK(admission->asked == 5);
    CHECK(admission->admitted == 3);

    // Existing series are not asked about; a refused one is asked again.
    std::vector<Point> again;
    for (int d = 0; d < 5; ++d)
        again.push_back({key("no2", "n-" + std::to_string(d)), kT0 + 1000, 2});
    r = write_sync(*engine, again, admission);
    CHECK(r.accepted == 3);
    CHECK(refused_by(r, SeriesLimit::identity) == 2);
    CHECK(admission->asked == 7);

    // Storage's own limits come first: a series over them is not charged to the admission.
    TempDir small;
    auto o = options_for(small, 1);
    o.max_series = 1;
    auto limited = open_engine(o);
    auto other = std::make_shared<CountingAdmission>(10);
    r = write_sync(*limited, {{key("a", "1"), kT0, 1}, {key("a", "2"), kT0, 1}}, other);
    CHECK(r.accepted == 1);
    CHECK(refused_by(r, SeriesLimit::global) == 1);
    CHECK(other->admitted == 1);

    // A bad key that passed admission gives its charge back.
    auto bad = std::make_shared<CountingAdmission>(10);
    r = write_sync(*engine, {{"not a key", kT0, 1}}, bad);
    CHECK(r.rejected_invalid == 1);
    CHECK(bad->asked == 1);
    CHECK(bad->released == 1);
    CHECK(bad->admitted == 0);
}

TEST_CASE("a write without an admission is limited by storage alone") {
    TempDir dir;
    auto engine = open_engine(options_for(dir, 2));
    std::vector<Point> points;
    for (int d = 0; d < 50; ++d)
        points.push_back({key("f" + std::to_string(d), "x-1"), kT0, 1});
    CHECK(all_accepted(write_sync(*engine, points)));
    CHECK(engine->stats().series == 50);
}
