// Writes by series reference (Engine::find_series): the same series as by key, no reference
// before the first write is in the WAL, and a reference to a deleted series writing into its key
// created anew. And how commits group: deferred on a producer's thread, gathered by the writer
// with fsync batch.
#include <catch2/catch.hpp>

#include "tests/storage/helpers.hpp"
#include "tests/support/temp_dir.hpp"

using namespace citygate::storage;
using namespace citygate::storage::test;
using citygate::test::TempDir;

namespace {

constexpr std::int64_t kT0 = 1'718'409'600'000;  // 2024-06-15T00:00:00Z
constexpr std::int64_t kMinute = 60'000;

std::vector<double> values_of(Engine& engine, const std::string& selector) {
    auto r = engine.query_raw(sel(selector), INT64_MIN, INT64_MAX);
    REQUIRE(r.is_ok());
    if (r.value().empty()) return {};
    REQUIRE(r.value().size() == 1);
    return r.value()[0].values;
}

// An engine with one shard whose batches are counted, holding t{device="x"} at kT0 = 0.
struct CountedEngine {
    explicit CountedEngine(EngineOptions o) {
        o.on_batch = [this](const BatchReport&) { ++batches; };
        engine = open_engine(std::move(o));
        REQUIRE(all_accepted(write_sync(*engine, {{key("t", "x"), kT0, 0}})));
        first_batches = batches.load();
    }

    // Five writes of one point each, 1 to 5 at kT0 + i minutes, not waited for.
    void write_five() {
        for (int i = 1; i <= 5; ++i) {
            std::vector<Point> points{{key("t", "x"), kT0 + i * kMinute, 1.0 * i}};
            REQUIRE(engine->try_write(points, [this](const WriteResult& r) {
                CHECK(r.accepted == 1);
                ++done;
            }));
        }
    }

    // Waits (bounded) for the five; the batches they took.
    std::size_t wait_five() {
        for (int i = 0; i < 1000 && done.load() < 5; ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        CHECK(done.load() == 5);
        CHECK(values_of(*engine, R"(t{device="x"})") == std::vector<double>{0, 1, 2, 3, 4, 5});
        return batches.load() - first_batches;
    }

    std::atomic<std::size_t> batches{0};
    std::size_t first_batches = 0;
    std::atomic<int> done{0};
    std::unique_ptr<Engine> engine;
};

}  // namespace

TEST_CASE("a series reference writes into the series its key names") {
    TempDir dir;
    auto engine = open_engine(options_for(dir, 4));
    const std::string a = key("pm25", "a-1"), b = key("pm25", "b-2");
    CHECK_FALSE(engine->find_series(a).valid());  // nothing stored yet

    REQUIRE(all_accepted(write_sync(*engine, {{a, kT0, 1}, {b, kT0, 10}})));
    SeriesRef ref_a = engine->find_series(a), ref_b = engine->find_series(b);
    REQUIRE(ref_a.valid());
    REQUIRE(ref_b.valid());
    CHECK(ref_a.shard == engine->shard_of(a));
    CHECK(engine->find_series(a).id == ref_a.id);  // stable

    // By reference, by key and by reference again: one series each, in order.
    REQUIRE(
        all_accepted(write_sync(*engine, {{ref_a, kT0 + kMinute, 2}, {ref_b, kT0 + kMinute, 20}})));
    REQUIRE(all_accepted(write_sync(*engine, {{a, kT0 + 2 * kMinute, 3}})));
    REQUIRE(all_accepted(write_sync(*engine, {{ref_a, kT0 + 3 * kMinute, 4}})));
    CHECK(values_of(*engine, R"(pm25{device="a-1"})") == std::vector<double>{1, 2, 3, 4});
    CHECK(values_of(*engine, R"(pm25{device="b-2"})") == std::vector<double>{10, 20});

    // A reference keeps the rules a key has: a point behind the out-of-order window is late.
    auto late = write_sync(*engine, {{ref_a, kT0 - 24 * 60 * kMinute, 0}});
    REQUIRE(late.durable());
    CHECK(late.rejected_late == 1);

    // And it survives a flush of the head into chunks.
    REQUIRE(engine->flush().is_ok());
    REQUIRE(all_accepted(write_sync(*engine, {{ref_a, kT0 + 4 * kMinute, 5}})));
    CHECK(values_of(*engine, R"(pm25{device="a-1"})") == std::vector<double>{1, 2, 3, 4, 5});
}

TEST_CASE("a reference to a deleted series writes into its key created anew") {
    TempDir dir;
    auto engine = open_engine(options_for(dir));
    const std::string a = key("no2", "gone");
    REQUIRE(all_accepted(write_sync(*engine, {{a, kT0, 1}})));
    SeriesRef before = engine->find_series(a);
    REQUIRE(before.valid());
    const std::uint64_t epoch = engine->series_epoch();

    auto deleted = engine->delete_points(sel(R"(no2{device="gone"})"), INT64_MIN, INT64_MAX);
    REQUIRE(deleted.is_ok());
    REQUIRE(deleted.value().series_removed == 1);
    CHECK(engine->series_epoch() != epoch);  // producers learn their references may be stale
    CHECK_FALSE(engine->find_series(a).valid());
    CHECK(values_of(*engine, R"(no2{device="gone"})").empty());

    // The reference made before the delete: the point is stored, under the same key.
    REQUIRE(all_accepted(write_sync(*engine, {{before, kT0 + kMinute, 2}})));
    CHECK(values_of(*engine, R"(no2{device="gone"})") == std::vector<double>{2});
    SeriesRef after = engine->find_series(a);
    REQUIRE(after.valid());
    CHECK(after.id != before.id);  // ids are never handed out twice
    // The stale reference and the new one now write to the same series.
    REQUIRE(all_accepted(
        write_sync(*engine, {{before, kT0 + 2 * kMinute, 3}, {after, kT0 + 3 * kMinute, 4}})));
    CHECK(values_of(*engine, R"(no2{device="gone"})") == std::vector<double>{2, 3, 4});
}

TEST_CASE("writes deferred on a thread are committed together by commit_deferred") {
    TempDir dir;
    CountedEngine counted(options_for(dir, 1));
    counted.engine->defer_commits();
    counted.write_five();
    counted.engine->commit_deferred();
    // Committed on this thread (fsync none, nothing new) in one batch; or two, when the writer
    // woke on its own meanwhile and took the first ones.
    CHECK(counted.wait_five() <= 2);
}

TEST_CASE("with fsync batch a writer waits commit_delay for more writes and fsyncs them together") {
    TempDir dir;
    auto o = options_for(dir, 1);
    o.fsync = FsyncPolicy::batch;
    o.commit_delay = std::chrono::milliseconds(200);  // long enough that five writes meet in it
    CountedEngine counted(o);
    const auto start = std::chrono::steady_clock::now();
    counted.write_five();
    CHECK(counted.wait_five() == 1);  // one fsync for all five
    // Not acknowledged before the delay ran out: nothing else filled the queue.
    CHECK(std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(150));
}
