// A full data volume is a state, not a crash: writes are held under the free-space reserve and
// resume when space returns; a volume already full at open opens read-only; a failed RocksDB
// write, flush or sync puts its shard in an error state in which RocksDB is never written again.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <thread>

#include "storage/engine.hpp"
#include "tests/storage/failing_fs.hpp"
#include "tests/storage/helpers.hpp"
#include "tests/support/temp_dir.hpp"

using namespace citygate::storage;
using namespace citygate::storage::test;
using citygate::test::TempDir;
using namespace std::chrono_literals;

namespace {

constexpr std::uint64_t kMiB = 1 << 20;

// A volume whose free space the test sets.
struct FakeVolume {
    std::atomic<std::uint64_t> free_bytes{512 * kMiB};
    std::uint64_t total_bytes = 1024 * kMiB;
    DiskProbe probe() {
        return [this](const std::filesystem::path&) {
            return std::optional<DiskSpace>(DiskSpace{free_bytes.load(), total_bytes});
        };
    }
};

EngineOptions guarded(const TempDir& dir, FakeVolume& volume, unsigned shards = 2) {
    auto o = options_for(dir, shards);
    o.disk_probe = volume.probe();
    o.min_free_bytes = 64 * kMiB;
    o.disk_poll_interval = 20ms;
    return o;
}

template <typename Predicate>
bool eventually(Predicate p, std::chrono::milliseconds limit = 10s) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
        if (p()) return true;
        std::this_thread::sleep_for(5ms);
    }
    return p();
}

std::vector<Point> points(const std::string& device, std::int64_t first_ts, int n) {
    std::vector<Point> out;
    for (int i = 0; i < n; ++i)
        out.push_back({key("pm25", device), first_ts + i * 1000, static_cast<double>(i)});
    return out;
}

std::size_t stored(const Engine& engine) {
    auto r = engine.query_raw(sel("pm25"), 0, INT64_MAX);
    REQUIRE(r.is_ok());
    std::size_t n = 0;
    for (const auto& s : r.value())
        n += s.timestamps_ms.size();
    return n;
}

constexpr std::int64_t kT0 = 1'700'000'000'000;

}  // namespace

TEST_CASE("the automatic free-space reserve is 2 percent of the volume within 64 MiB and 4 GiB") {
    CHECK(auto_free_space_reserve(64 * kMiB) == 16 * kMiB);  // a quarter of a small volume
    CHECK(auto_free_space_reserve(1024 * kMiB) == 64 * kMiB);
    CHECK(auto_free_space_reserve(std::uint64_t{100} << 30) == std::uint64_t{2048} * kMiB);
    CHECK(auto_free_space_reserve(std::uint64_t{1} << 40) == std::uint64_t{4} << 30);
}

TEST_CASE("writes are held under the free-space reserve and proceed when space returns") {
    TempDir dir;
    FakeVolume volume;
    auto options = guarded(dir, volume);
    // The first batch waits in on_batch until the volume is full, so the second is queued then.
    std::promise<void> release;
    auto released = release.get_future().share();
    std::atomic<int> batches{0};
    options.on_batch = [&](const BatchReport&) {
        if (batches.fetch_add(1) == 0) released.wait();
    };
    std::atomic<int> space_events{0};
    std::mutex events_mutex;
    std::vector<HealthEvent> events;
    options.on_space_available = [&] { space_events.fetch_add(1); };
    options.on_health_event = [&](const HealthEvent& e) {
        std::lock_guard lock(events_mutex);
        events.push_back(e);
    };
    auto engine = open_engine(options);
    REQUIRE(engine->health().writable());

    std::promise<WriteResult> first, second;
    auto p1 = points("a-1", kT0, 100);
    REQUIRE(engine->try_write(p1, [&](const WriteResult& r) { first.set_value(r); }));
    REQUIRE(eventually([&] { return batches.load() == 1; }));
    auto p2 = points("a-1", kT0 + 100'000, 100);
    REQUIRE(engine->try_write(p2, [&](const WriteResult& r) { second.set_value(r); }));

    volume.free_bytes = 10 * kMiB;
    REQUIRE(eventually([&] { return engine->health().disk.full; }));
    release.set_value();
    auto r1 = first.get_future().get();
    CHECK(all_accepted(r1));

    // Held: not written, not acknowledged, and nothing new is taken.
    auto held = second.get_future();
    CHECK(held.wait_for(400ms) == std::future_status::timeout);
    CHECK(batches.load() == 1);
    auto p3 = points("a-2", kT0, 10);
    CHECK_FALSE(engine->try_write(p3, [](const WriteResult&) {}));
    CHECK(p3.size() == 10);  // not taken
    auto problems = engine->problems();
    REQUIRE(problems.size() == 1);
    CHECK_THAT(problems[0], Catch::Contains("disk full") && Catch::Contains("reserve of 64 MiB"));
    CHECK(stored(*engine) == 100);  // queries still work

    // Just above the reserve is not enough (hysteresis): an eighth of it more is.
    volume.free_bytes = 66 * kMiB;
    std::this_thread::sleep_for(200ms);
    CHECK(engine->health().disk.full);
    const int before = space_events.load();
    volume.free_bytes = 80 * kMiB;
    auto r2 = held.get();
    CHECK(all_accepted(r2));
    CHECK(space_events.load() > before);  // pushed-back producers are told to retry
    CHECK(engine->health().writable());
    CHECK(engine->problems().empty());
    CHECK(all_accepted(write_sync(*engine, std::move(p3))));
    CHECK(stored(*engine) == 210);
    std::lock_guard lock(events_mutex);
    REQUIRE(events.size() == 2);  // one event per transition, not per probe
    CHECK(events[0].kind == HealthEvent::Kind::disk_full);
    CHECK(events[1].kind == HealthEvent::Kind::disk_space_returned);
}

TEST_CASE("writes that go past the reserve between two probes stop the next ones at once") {
    TempDir dir;
    FakeVolume volume;
    volume.free_bytes = 64 * kMiB + 256 * 1024;  // 256 KiB above the reserve
    auto options = guarded(dir, volume, 1);
    options.disk_poll_interval = 50ms;
    auto engine = open_engine(options);
    REQUIRE_FALSE(engine->health().disk.full);
    // About 40,000 points of batch log (~10 bytes each) is more than the 256 KiB left.
    auto result = write_sync(*engine, points("a-1", kT0, 40'000));
    CHECK(all_accepted(result));
    CHECK(engine->health().disk.full);
    auto more = points("a-1", kT0 + 50'000'000, 10);
    CHECK_FALSE(engine->try_write(more, [](const WriteResult&) {}));
}

TEST_CASE("closing with writes held fails them instead of writing them") {
    TempDir dir;
    FakeVolume volume;
    std::future<WriteResult> pending;
    {
        auto options = guarded(dir, volume);
        std::promise<void> release;
        auto released = release.get_future().share();
        std::atomic<int> batches{0};
        options.on_batch = [&](const BatchReport&) {
            if (batches.fetch_add(1) == 0) released.wait();
        };
        auto engine = open_engine(options);
        auto p1 = points("a-1", kT0, 10);
        REQUIRE(engine->try_write(p1, [](const WriteResult&) {}));
        REQUIRE(eventually([&] { return batches.load() == 1; }));
        auto done = std::make_shared<std::promise<WriteResult>>();
        pending = done->get_future();
        auto p2 = points("a-1", kT0 + 100'000, 10);
        REQUIRE(engine->try_write(p2, [done](const WriteResult& r) { done->set_value(r); }));
        volume.free_bytes = 1 * kMiB;
        REQUIRE(eventually([&] { return engine->health().disk.full; }));
        release.set_value();
    }
    auto r = pending.get();
    CHECK_FALSE(r.durable());
    CHECK(r.accepted == 0);
}

TEST_CASE(
    "a volume under its reserve at open opens read-only and becomes writable when space "
    "returns") {
    TempDir dir;
    FakeVolume volume;
    {
        auto engine = open_engine(guarded(dir, volume));
        REQUIRE(all_accepted(write_sync(*engine, points("a-1", kT0, 500))));
    }
    volume.free_bytes = 2 * kMiB;
    auto engine = open_engine(guarded(dir, volume));
    auto health = engine->health();
    CHECK(health.read_only);
    CHECK(health.disk.full);
    CHECK_FALSE(health.writable());
    CHECK(stored(*engine) == 500);  // queries work
    auto more = points("a-2", kT0, 20);
    CHECK_FALSE(engine->try_write(more, [](const WriteResult&) {}));
    bool said_read_only = false;
    for (const auto& p : engine->problems())
        said_read_only = said_read_only || p.find("read-only") != std::string::npos;
    CHECK(said_read_only);

    volume.free_bytes = 512 * kMiB;
    REQUIRE(eventually([&] { return engine->health().writable(); }));
    CHECK(all_accepted(write_sync(*engine, std::move(more))));
    CHECK(stored(*engine) == 520);
    engine.reset();
    auto reopened = open_engine(guarded(dir, volume));
    CHECK(stored(*reopened) == 520);
}

TEST_CASE("a failed WAL write puts the shard in its error state without another RocksDB write") {
    TempDir dir;
    auto fs = std::make_shared<FailingFileSystem>();
    FakeVolume volume;
    auto options = guarded(dir, volume, 1);
    auto sync = GENERATE(false, true);
    options.fsync = sync ? FsyncPolicy::batch : FsyncPolicy::none;
    options.test_env = env_on(fs);
    std::atomic<int> failures{0};
    options.on_health_event = [&](const HealthEvent& e) {
        if (e.kind == HealthEvent::Kind::shard_failed) failures.fetch_add(1);
    };
    {
        auto engine = open_engine(options);
        REQUIRE(all_accepted(write_sync(*engine, points("a-1", kT0, 100))));
        fs->fail(sync ? FailingFileSystem::sync : FailingFileSystem::append);
        auto failed = write_sync(*engine, points("a-1", kT0 + 100'000, 100));
        CHECK_FALSE(failed.durable());
        CHECK(failed.accepted == 0);
        auto health = engine->health();
        REQUIRE(health.failed_shards.size() == 1);
        CHECK_THAT(health.failed_shards[0].error, Catch::Contains("No space"));
        CHECK_THAT(engine->problems().at(0), Catch::Contains("restart required"));
        // Later writes fail without reaching RocksDB, even once the file system is healthy.
        // (RocksDB's own recovery of a no-space error, run by its SstFileManager, may touch the
        // WAL once the file system heals: let it settle first, then count only ours.)
        fs->heal();
        std::this_thread::sleep_for(500ms);
        const auto calls = fs->write_calls();
        for (int i = 0; i < 3; ++i) {
            auto r = write_sync(*engine, points("a-1", kT0 + 200'000 + i * 1000, 5));
            CHECK_FALSE(r.durable());
        }
        CHECK(engine->flush().code() != Status::Code::ok);
        CHECK(fs->write_calls() == calls);
        CHECK(failures.load() == 1);  // reported once
        CHECK(stored(*engine) == 100);
    }  // the close writes nothing either (no flush of a failed shard)
    options.test_env = nullptr;
    auto reopened = open_engine(options);
    CHECK(stored(*reopened) >= 100);  // every acknowledged point is there
}

TEST_CASE("a failed head flush puts the shard in its error state") {
    TempDir dir;
    auto fs = std::make_shared<FailingFileSystem>();
    FakeVolume volume;
    auto options = guarded(dir, volume, 1);
    options.test_env = env_on(fs);
    auto engine = open_engine(options);
    REQUIRE(all_accepted(write_sync(*engine, points("a-1", kT0, 1000))));
    fs->fail(FailingFileSystem::append | FailingFileSystem::sync | FailingFileSystem::flush,
             FailingFileSystem::Files::all);
    CHECK_FALSE(engine->flush().is_ok());
    REQUIRE(eventually([&] { return !engine->health().failed_shards.empty(); }));
    fs->heal();
    CHECK_FALSE(write_sync(*engine, points("a-1", kT0 + 2'000'000, 5)).durable());
    CHECK(stored(*engine) == 1000);  // reads still answer
}
