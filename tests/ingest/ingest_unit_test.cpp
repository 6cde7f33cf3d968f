// The ingest unit without a socket: messages and explicit series in, verdicts and durable
// outcomes out, refusals counted, backpressure with a room signal.
#include <catch2/catch.hpp>

#include <atomic>
#include <condition_variable>
#include <fstream>
#include <future>
#include <mutex>

#include "ingest/ingest_unit.hpp"
#include "tests/support/temp_dir.hpp"

using namespace citygate;
using ingest::Verdict;

namespace {

constexpr std::int64_t arrival_ms = 1'750'000'000'000;

std::span<const std::uint8_t> bytes(std::string_view text) {
    return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}

// An engine in a temp dir and a unit over it, with a fixed arrival clock.
struct Fixture {
    // `write_delay`: each commit sleeps this long (a slow disk), and with fsync batch every
    // commit is the writer's: with fsync none a producer commits on its own thread whenever the
    // writer is idle, so a slow commit would hold the producer rather than fill the queue (a
    // loaded machine descheduling the producer during the writer's one commit, the first, made
    // the full-queue test find no full queue).
    explicit Fixture(std::filesystem::path acl_file = {}, std::size_t queue_capacity = 65536,
                     std::chrono::milliseconds write_delay = {})
        : access({ingest::AnonymousPolicy::always, {}, std::move(acl_file)}),
          metrics(registry),
          city(64) {
        storage::EngineOptions engine_options;
        engine_options.directory = dir.path() / "data";
        engine_options.shards = 1;
        engine_options.queue_capacity = queue_capacity;
        if (write_delay.count() > 0) engine_options.fsync = storage::FsyncPolicy::batch;
        engine_options.clock = [] { return arrival_ms; };
        engine_options.on_batch = [write_delay](const storage::BatchReport&) {
            std::this_thread::sleep_for(write_delay);
        };
        engine_options.on_space_available = [this] {
            if (auto* u = unit_for_room.load()) u->notify_room();
        };
        engine = std::move(storage::Engine::open(engine_options).value());

        ingest::IngestOptions options;
        options.templates.push_back(
            *payload::TopicTemplate::parse("city/{district}/{type}/{device}"));
        options.templates.push_back(*payload::TopicTemplate::parse("lab/{device}/{measurement}"));
        options.formats.push_back({"city/+/traffic/#", payload::Format::line});
        options.formats.push_back({"lab/#", payload::Format::number});
        options.default_format = payload::Format::json;
        options.clock = [] { return arrival_ms; };
        unit = std::make_unique<ingest::IngestUnit>(std::move(options), *engine, access, &city,
                                                    metrics);
        unit_for_room.store(unit.get());
        appender = std::make_unique<ingest::Appender>(*unit);
    }

    // The engine goes first: closing it fires what is pending and may signal room, which both
    // reach the unit (as in the gateway, where the engine is destroyed before the unit).
    ~Fixture() {
        unit_for_room.store(nullptr);
        engine.reset();
    }

    // Submits and waits for the outcome.
    ingest::Outcome submit(ingest::Write& write) {
        std::promise<ingest::Outcome> done;
        auto future = done.get_future();
        REQUIRE(unit->try_submit(write, [&done](const ingest::Outcome& o) { done.set_value(o); }));
        CHECK(write.empty());
        return future.get();
    }

    std::vector<storage::RawSeries> all() {
        auto selector = storage::Selector::parse("{__name__=~\".+\"}").value();
        return engine->query_raw(selector, 0, INT64_MAX).value();
    }

    test::TempDir dir;
    prometheus::Registry registry;
    ingest::AccessControl access;
    ingest::IngestMetrics metrics;
    ingest::CityAggregates city;
    std::unique_ptr<storage::Engine> engine;
    std::unique_ptr<ingest::IngestUnit> unit;
    std::atomic<ingest::IngestUnit*> unit_for_room{nullptr};
    std::unique_ptr<ingest::Appender> appender;
    ingest::Identity anonymous;
};

}  // namespace

TEST_CASE("a JSON reading on a templated topic is stored under the topic's tags") {
    Fixture f;
    ingest::Write write;
    REQUIRE(f.appender->prepare({f.anonymous, "c1", "city/pudong/air/a-1",
                                 bytes(R"({"pm25": 12.5, "no2": 3, "ts": 1750000000123})")},
                                write) == Verdict::stored);
    CHECK(write.points() == 2);
    ingest::Outcome outcome = f.submit(write);
    CHECK(outcome.verdict == Verdict::stored);
    CHECK(outcome.stored == 2);
    CHECK(outcome.rejected == 0);

    auto stored = f.all();
    REQUIRE(stored.size() == 2);
    CHECK(stored[0].series == R"(no2{device="a-1",district="pudong",type="air"})");
    CHECK(stored[1].series == R"(pm25{device="a-1",district="pudong",type="air"})");
    CHECK(stored[1].timestamps_ms == std::vector<std::int64_t>{1750000000123});
    CHECK(stored[1].values == std::vector<double>{12.5});
}

TEST_CASE("a template level named measurement names a plain number") {
    Fixture f;
    ingest::Write write;
    REQUIRE(f.appender->prepare({f.anonymous, "c1", "lab/bench-7/temperature", bytes("21.5")},
                                write) == Verdict::stored);
    f.submit(write);
    auto stored = f.all();
    REQUIRE(stored.size() == 1);
    CHECK(stored[0].series == R"(temperature{device="bench-7"})");
    CHECK(stored[0].timestamps_ms == std::vector<std::int64_t>{arrival_ms});
}

TEST_CASE("the payload format follows the first matching topic filter") {
    Fixture f;
    ingest::Write write;
    // JSON by default would refuse this; the traffic rule says line protocol.
    REQUIRE(f.appender->prepare({f.anonymous, "c1", "city/jingan/traffic/t-9",
                                 bytes("flow,lane=2 cars=17i 1750000000000000000")},
                                write) == Verdict::stored);
    f.submit(write);
    auto stored = f.all();
    REQUIRE(stored.size() == 1);
    CHECK(stored[0].series ==
          R"(flow_cars{device="t-9",district="jingan",lane="2",type="traffic"})");
    CHECK(stored[0].values == std::vector<double>{17});

    REQUIRE(f.appender->prepare(
                {f.anonymous, "c1", "city/jingan/air/a-2", bytes("flow,lane=2 cars=17i")}, write) ==
            Verdict::payload_invalid);
    CHECK(write.empty());
    CHECK_FALSE(f.appender->error_detail().empty());
    CHECK(f.metrics.payload_invalid.Value() == 1);
}

TEST_CASE("refusals say why, leave the write alone and are counted") {
    citygate::test::TempDir acl_dir;
    std::ofstream(acl_dir.path() / "acl.toml") << "[[rule]]\nuser = \"anonymous\"\npublish = "
                                                  "[\"city/+/air/%c\", \"elsewhere/#\"]\n";
    Fixture f(acl_dir.path() / "acl.toml");
    ingest::Write write;

    CHECK(f.appender->prepare({f.anonymous, "a-1", "city/pudong/air/a-2", bytes("{\"x\":1}")},
                              write) == Verdict::not_authorized);
    CHECK(f.metrics.acl_denied.Value() == 1);
    CHECK(f.appender->prepare({f.anonymous, "a-1", "elsewhere/x", bytes("{\"x\":1}")}, write) ==
          Verdict::topic_unmatched);
    CHECK(f.metrics.topic_unmatched.Value() == 1);
    CHECK(f.appender->prepare({f.anonymous, "a-1", "city/pudong/air/a-1", bytes("{\"x\":")},
                              write) == Verdict::payload_invalid);
    CHECK(f.metrics.payload_invalid.Value() == 1);
    CHECK(write.empty());

    // Skipped fields in a good payload are counted; the rest is stored.
    CHECK(f.appender->prepare(
              {f.anonymous, "a-1", "city/pudong/air/a-1", bytes(R"({"x": 1, "label": "north"})")},
              write) == Verdict::stored);
    CHECK(write.points() == 1);
    CHECK(f.metrics.field_skipped.Value() == 1);
}

TEST_CASE("readings count in the city aggregates under their district") {
    Fixture f;
    std::int64_t now = arrival_ms;  // the unit's clock
    std::string payload = R"({"pm25": 10, "ts": )" + std::to_string(now - 10) + "}";
    ingest::Write write;
    REQUIRE(f.appender->prepare({f.anonymous, "c", "city/pudong/air/a-1", bytes(payload)}, write) ==
            Verdict::stored);
    payload = R"({"pm25": 20, "ts": )" + std::to_string(now - 5) + "}";
    REQUIRE(f.appender->prepare({f.anonymous, "c", "city/pudong/air/a-2", bytes(payload)}, write) ==
            Verdict::stored);
    auto snapshot = f.city.snapshot(now);
    REQUIRE(snapshot.pairs.size() == 1);
    CHECK(snapshot.pairs[0].district == "pudong");
    CHECK(snapshot.pairs[0].measurement == "pm25");
    CHECK(snapshot.pairs[0].current_samples == 2);
    CHECK(snapshot.pairs[0].current_average == Approx(15));
}

TEST_CASE("explicit series samples are stored under their canonical key") {
    Fixture f;
    std::pair<std::string_view, std::string_view> tags[] = {{"zone", "b"}, {"job", "node"}};
    // Forty days old: within the clock window, behind storage's retention (30 days).
    constexpr std::int64_t forty_days = 40LL * 24 * 3'600'000;
    ingest::SeriesSamples::Sample samples[] = {{arrival_ms - forty_days, 1.5},
                                               {arrival_ms - forty_days + 1000, 2.5}};
    ingest::Write write;
    REQUIRE(f.appender->prepare(ingest::SeriesSamples{"up", tags, samples}, write) ==
            Verdict::stored);
    CHECK(write.points() == 2);
    // Late for storage: storage refuses, the outcome says.
    ingest::Outcome outcome = f.submit(write);
    CHECK(outcome.verdict == Verdict::stored);
    CHECK(outcome.stored == 0);
    CHECK(outcome.rejected == 2);
    CHECK(f.metrics.storage_rejected.Value() == 1);

    ingest::SeriesSamples::Sample recent[] = {{arrival_ms - 1000, 7}};
    REQUIRE(f.appender->prepare(ingest::SeriesSamples{"up", tags, recent}, write) ==
            Verdict::stored);
    outcome = f.submit(write);
    CHECK(outcome.stored == 1);
    auto stored = f.all();
    REQUIRE(stored.size() == 1);
    CHECK(stored[0].series == R"(up{job="node",zone="b"})");
    CHECK(stored[0].values == std::vector<double>{7});

    std::pair<std::string_view, std::string_view> bad_tags[] = {{"bad name", "x"}};
    CHECK(f.appender->prepare(ingest::SeriesSamples{"up", bad_tags, recent}, write) ==
          Verdict::payload_invalid);
    CHECK(f.appender->prepare(ingest::SeriesSamples{"9up", tags, recent}, write) ==
          Verdict::payload_invalid);
    CHECK(write.empty());
}

TEST_CASE("a full storage queue says not now, keeps the write and calls back when there is room") {
    Fixture f({}, 8, std::chrono::milliseconds(2));  // a shard queue of 8 points, a slow disk
    std::mutex mutex;
    std::condition_variable room;
    int room_signals = 0;
    f.unit->add_room_listener([&] {
        std::lock_guard lock(mutex);
        ++room_signals;
        room.notify_all();
    });

    std::atomic<std::size_t> stored{0};
    std::atomic<int> completions{0};
    auto done = [&](const ingest::Outcome& o) {
        stored += o.stored;
        ++completions;
    };
    int submitted = 0, refused = 0;
    std::int64_t ts = arrival_ms - 60'000;
    for (int i = 0; i < 200; ++i) {
        ingest::Write write;
        std::string payload =
            "{\"v\": " + std::to_string(i) + ", \"ts\": " + std::to_string(ts + i) + "}";
        REQUIRE(f.appender->prepare({f.anonymous, "c", "city/pudong/air/a-1", bytes(payload)},
                                    write) == Verdict::stored);
        while (!f.unit->try_submit(write, done)) {
            CHECK(write.points() == 1);  // untouched while refused
            ++refused;
            std::unique_lock lock(mutex);
            int seen = room_signals;
            room.wait_for(lock, std::chrono::milliseconds(50), [&] { return room_signals > seen; });
        }
        ++submitted;
    }
    while (completions.load() < submitted)
        std::this_thread::yield();
    CHECK(stored.load() == 200);
    auto all = f.all();
    REQUIRE(all.size() == 1);
    CHECK(all[0].values.size() == 200);
    CHECK(refused > 0);
    std::lock_guard lock(mutex);
    CHECK(room_signals > 0);
}

TEST_CASE("an empty write completes at once on the calling thread") {
    Fixture f;
    ingest::Write write;
    bool called = false;
    REQUIRE(f.unit->try_submit(write, [&](const ingest::Outcome& o) {
        called = true;
        CHECK(o.verdict == Verdict::stored);
        CHECK(o.stored == 0);
    }));
    CHECK(called);
}

TEST_CASE("readings stamped far in the future or before the floor refuse the whole message") {
    Fixture f;
    ingest::Write write;
    auto json = [](std::int64_t ts) { return R"({"pm25": 1, "ts": )" + std::to_string(ts) + "}"; };
    std::string ten_years_ahead = json(arrival_ms + 10LL * 365 * 24 * 3'600'000);
    CHECK(f.appender->prepare({f.anonymous, "c", "city/pudong/air/a-1", bytes(ten_years_ahead)},
                              write) == Verdict::timestamp_invalid);
    CHECK(f.metrics.timestamp_future.Value() == 1);
    CHECK(f.appender->error_detail().find("in the future") != std::string_view::npos);

    // A line protocol batch with one bad line is refused whole.
    std::string batch = "flow cars=1i " + std::to_string((arrival_ms - 1000) * 1'000'000) +
                        "\nflow cars=2i " + std::to_string((arrival_ms + 3'600'000) * 1'000'000);
    CHECK(f.appender->prepare({f.anonymous, "c", "city/pudong/traffic/t-1", bytes(batch)}, write) ==
          Verdict::timestamp_invalid);
    CHECK(write.empty());

    // Seconds instead of ms: before the 2000 floor, so refused by default.
    std::string seconds = json(arrival_ms / 1000);
    CHECK(f.appender->prepare({f.anonymous, "c", "city/pudong/air/a-1", bytes(seconds)}, write) ==
          Verdict::timestamp_invalid);
    CHECK(f.metrics.timestamp_too_old.Value() == 1);

    // Within the tolerance (a device a minute fast) is stored.
    std::string a_minute_fast = json(arrival_ms + 60'000);
    CHECK(f.appender->prepare({f.anonymous, "c", "city/pudong/air/a-1", bytes(a_minute_fast)},
                              write) == Verdict::stored);
    CHECK(write.points() == 1);

    // Explicit samples get the same checks and leave the write as it was.
    std::pair<std::string_view, std::string_view> tags[] = {{"job", "node"}};
    ingest::SeriesSamples::Sample mixed[] = {{arrival_ms, 1}, {arrival_ms + 86'400'000, 2}};
    CHECK(f.appender->prepare(ingest::SeriesSamples{"up", tags, mixed}, write) ==
          Verdict::timestamp_invalid);
    CHECK(write.points() == 1);
}

TEST_CASE("seconds_by_magnitude maps second timestamps to ms") {
    Fixture f;
    ingest::IngestOptions options = f.unit->options();
    options.seconds_by_magnitude = true;
    ingest::IngestUnit unit(std::move(options), *f.engine, f.access, nullptr, f.metrics);
    ingest::Appender appender(unit);
    ingest::Write write;
    std::string seconds = R"({"pm25": 7, "ts": )" + std::to_string(arrival_ms / 1000 - 5) + "}";
    REQUIRE(appender.prepare({f.anonymous, "c", "city/pudong/air/a-1", bytes(seconds)}, write) ==
            Verdict::stored);
    f.submit(write);
    auto stored = f.all();
    REQUIRE(stored.size() == 1);
    CHECK(stored[0].timestamps_ms == std::vector<std::int64_t>{(arrival_ms / 1000 - 5) * 1000});
}

TEST_CASE("readings over a client's series limit make the outcome series_limit, counted by limit") {
    Fixture f;
    ingest::IngestOptions options = f.unit->options();
    options.max_series_per_identity = 2;
    options.max_new_series_per_minute = 0;
    ingest::IngestUnit unit(std::move(options), *f.engine, f.access, nullptr, f.metrics);
    ingest::Appender appender(unit);
    auto submit = [&](std::string_view client, std::string_view payload) {
        ingest::Write write;
        REQUIRE(appender.prepare({f.anonymous, client, "city/pudong/air/a-1", bytes(payload)},
                                 write) == Verdict::stored);
        std::promise<ingest::Outcome> done;
        auto future = done.get_future();
        REQUIRE(unit.try_submit(
            write, [&done](const ingest::Outcome& o) { done.set_value(o); },
            unit.series_admission(f.anonymous, client)));
        return future.get();
    };
    ingest::Outcome outcome = submit("c1", R"({"pm25": 1, "no2": 2, "o3": 3})");
    CHECK(outcome.verdict == Verdict::series_limit);
    CHECK(outcome.stored == 2);
    CHECK(outcome.series_refused == 1);
    CHECK(outcome.series_limit == storage::SeriesLimit::identity);
    CHECK(f.metrics.series_limit.Value() == 1);
    CHECK(f.metrics.series_refused[static_cast<std::size_t>(storage::SeriesLimit::identity)]
              ->Value() == 1);
    // The client's existing series are stored; an anonymous client is known by its client id,
    // so another one has its own limit.
    outcome = submit("c1", R"({"pm25": 4, "no2": 5, "ts": 1750000000001})");
    CHECK(outcome.verdict == Verdict::stored);
    CHECK(outcome.stored == 2);
    outcome = submit("c2", R"({"co": 1})");
    CHECK(outcome.verdict == Verdict::stored);
    CHECK(unit.series_quota().series_of("anonymous:c1") == 2);
    CHECK(unit.series_quota().series_of("anonymous:c2") == 1);
    CHECK(ingest::IngestUnit::series_identity({"alice", false}, "c9") == "alice");
}

TEST_CASE("a series stored once is written by reference from then on, into the same series") {
    Fixture f;
    auto message = [&](std::string_view topic, std::string_view payload, ingest::Write& write) {
        REQUIRE(f.appender->prepare({f.anonymous, "c1", topic, bytes(payload)}, write) ==
                Verdict::stored);
    };
    ingest::Write write;
    message("city/pudong/air/a-1", R"({"pm25": 1, "no2": 10, "ts": 1750000000001})", write);
    CHECK(write.by_reference() == 0);  // storage does not know these series yet
    f.submit(write);

    message("city/pudong/air/a-1", R"({"pm25": 2, "no2": 20, "ts": 1750000000002})", write);
    CHECK(write.by_reference() == 2);
    f.submit(write);
    // Another device, and another payload tag of a known device, are other series.
    message("city/pudong/air/a-2", R"({"pm25": 5, "ts": 1750000000002})", write);
    message("city/jingan/traffic/t-9", "flow,lane=2 cars=1i 1750000000001000000", write);
    CHECK(write.by_reference() == 0);
    f.submit(write);
    message("city/jingan/traffic/t-9", "flow,lane=3 cars=2i 1750000000002000000", write);
    message("city/jingan/traffic/t-9", "flow,lane=2 cars=3i 1750000000002000000", write);
    CHECK(write.by_reference() == 1);
    f.submit(write);

    auto stored = f.all();
    REQUIRE(stored.size() == 5);
    CHECK(stored[0].series ==
          R"(flow_cars{device="t-9",district="jingan",lane="2",type="traffic"})");
    CHECK(stored[0].values == std::vector<double>{1, 3});
    CHECK(stored[2].series == R"(no2{device="a-1",district="pudong",type="air"})");
    CHECK(stored[2].values == std::vector<double>{10, 20});
    CHECK(stored[3].series == R"(pm25{device="a-1",district="pudong",type="air"})");
    CHECK(stored[3].values == std::vector<double>{1, 2});

    // Readings by reference still count in the city aggregates: pm25 in pudong is 1, 2 and 5.
    auto snapshot = f.city.snapshot(arrival_ms);
    auto pm25 = std::find_if(snapshot.pairs.begin(), snapshot.pairs.end(), [](const auto& p) {
        return p.district == "pudong" && p.measurement == "pm25";
    });
    REQUIRE(pm25 != snapshot.pairs.end());
    CHECK(pm25->current_samples == 3);
    CHECK(pm25->current_average == Approx(8.0 / 3));

    // Deleting a series makes the appender forget its references: the next reading goes by key
    // and creates the series again.
    auto selector = storage::Selector::parse(R"(pm25{device="a-1"})").value();
    REQUIRE(f.engine->delete_points(selector, INT64_MIN, INT64_MAX).is_ok());
    message("city/pudong/air/a-1", R"({"pm25": 3, "ts": 1750000000003})", write);
    CHECK(write.by_reference() == 0);
    f.submit(write);
    message("city/pudong/air/a-1", R"({"pm25": 4, "ts": 1750000000004})", write);
    CHECK(write.by_reference() == 1);
    f.submit(write);
    auto after = f.all();
    REQUIRE(after.size() == 5);
    CHECK(after[3].series == R"(pm25{device="a-1",district="pudong",type="air"})");
    CHECK(after[3].values == std::vector<double>{3, 4});
}

TEST_CASE("the series cache finds only the identity it keeps, and forgets on a new epoch") {
    ingest::SeriesCache cache(3);  // one set: rounded up to its eight ways
    CHECK(cache.slots() == 8);
    const ingest::SeriesCache::Identity a{"city/x/air/d1", "pm25", ""};
    const auto ha = ingest::SeriesCache::hash(a);
    CHECK_FALSE(cache.find(ha, a).valid());
    cache.insert(ha, a, {7, 1});
    CHECK(cache.find(ha, a).id == 7);
    CHECK(cache.find(ha, a).shard == 1);
    // The same bytes split differently are another identity, with another hash.
    const ingest::SeriesCache::Identity shifted{"city/x/air/d", "1pm25", ""};
    CHECK(ingest::SeriesCache::hash(shifted) != ha);
    // A lookup under a's hash but for other parts is no hit, whatever the slot holds.
    CHECK_FALSE(cache.find(ha, shifted).valid());
    CHECK_FALSE(cache.find(ha, {"city/x/air/d1", "pm25", "\x01"}).valid());
    // Eight identities of one set all stay; a ninth pushes out the one found least recently.
    std::vector<std::string> topics;
    for (int i = 0; i < 8; ++i)
        topics.push_back("city/y/air/d" + std::to_string(i));
    auto other = [&](int i) { return ingest::SeriesCache::Identity{topics[i], "no2", ""}; };
    for (int i = 0; i < 7; ++i)
        cache.insert(ha, other(i), {100u + i, 0});
    for (int i = 6; i >= 0; --i)  // other(6) first: other(0) is found last, a before it
        CHECK(cache.find(ha, other(i)).id == 100u + i);
    CHECK(cache.find(ha, a).id == 7);
    CHECK(cache.find(ha, other(0)).id == 100);  // least recent now: other(6)
    cache.insert(ha, other(7), {107, 0});
    CHECK_FALSE(cache.find(ha, other(6)).valid());
    CHECK(cache.find(ha, a).id == 7);
    for (int i = 0; i < 6; ++i)
        CHECK(cache.find(ha, other(i)).id == 100u + i);
    CHECK(cache.find(ha, other(7)).id == 107);
    cache.expire(0);  // the epoch it started with: kept
    CHECK(cache.find(ha, other(7)).valid());
    cache.expire(1);
    CHECK_FALSE(cache.find(ha, other(7)).valid());
    CHECK_FALSE(cache.find(ha, a).valid());
    // What expired takes no way: eight new ones fit again.
    for (int i = 0; i < 8; ++i)
        cache.insert(ha, other(i), {200u + i, 0});
    for (int i = 0; i < 8; ++i)
        CHECK(cache.find(ha, other(i)).id == 200u + i);

    ingest::SeriesCache off(0);
    off.insert(ha, a, {7, 1});
    CHECK_FALSE(off.find(ha, a).valid());
}

TEST_CASE("the series cache keeps identities longer than a slot holds, and replaces either kind") {
    ingest::SeriesCache cache(2);  // one set: rounded up to its eight ways
    CHECK(cache.slots() == 8);
    const std::string tags(80, 't');
    const ingest::SeriesCache::Identity long_one{"city/long/topic", "pm25", tags};
    const std::string other_tags = tags.substr(0, 79) + "u";  // same sizes, last byte differs
    const ingest::SeriesCache::Identity long_other{"city/long/topic", "pm25", other_tags};
    const ingest::SeriesCache::Identity short_one{"city/x", "no2", ""};
    std::vector<std::string> fillers;
    for (int i = 0; i < 6; ++i)
        fillers.push_back("city/fill/" + std::to_string(i));
    const auto h = ingest::SeriesCache::hash(long_one);
    cache.insert(h, long_one, {3, 0});
    CHECK(cache.find(h, long_one).id == 3);
    CHECK_FALSE(cache.find(h, long_other).valid());
    // Short and long identities take each other's slots and are compared as what they are.
    cache.insert(h, short_one, {4, 0});
    for (int i = 0; i < 6; ++i)
        cache.insert(h, {fillers[i], "no2", ""}, {10u + i, 0});
    cache.insert(h, long_other, {5, 0});  // pushes out long_one, found least recently
    CHECK(cache.find(h, long_other).id == 5);
    CHECK_FALSE(cache.find(h, long_one).valid());
    for (int i = 0; i < 6; ++i)
        CHECK(cache.find(h, {fillers[i], "no2", ""}).id == 10u + i);
    CHECK(cache.find(h, short_one).id == 4);   // long_other is now the least recent
    cache.insert(h, {"a", "b", "c"}, {6, 0});  // a short one into long_other's slot
    CHECK(cache.find(h, {"a", "b", "c"}).id == 6);
    CHECK_FALSE(cache.find(h, long_other).valid());
    CHECK(cache.find(h, short_one).id == 4);
}
