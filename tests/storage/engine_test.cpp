// Engine contract: all-or-none writes, callbacks after the WAL, raw queries, series listing,
// durability across reopen, duplicates, late data, the series limit and stats.
#include <catch2/catch.hpp>

#include <atomic>
#include <set>
#include <thread>

#include "tests/storage/helpers.hpp"
#include "tests/support/temp_dir.hpp"

using namespace citygate::storage;
using namespace citygate::storage::test;
using citygate::test::TempDir;

namespace {

constexpr std::int64_t kT0 = 1'718'409'600'000;  // 2024-06-15T00:00:00Z, a window start

}  // namespace

TEST_CASE("written points are readable once the callback fired") {
    TempDir dir;
    auto engine = open_engine(options_for(dir));
    std::vector<Point> points;
    for (int i = 0; i < 10; ++i) {
        points.push_back({key("pm25", "a-1"), kT0 + i * 1000, 10.0 + i});
        points.push_back({key("pm10", "a-2"), kT0 + i * 1000, 20.0 + i});
    }
    REQUIRE(all_accepted(write_sync(*engine, points)));
    auto r = engine->query_raw(sel(R"(pm25{device="a-1"})"), kT0 + 2000, kT0 + 5000);
    REQUIRE(r.is_ok());
    REQUIRE(r.value().size() == 1);
    CHECK(r.value()[0].series == key("pm25", "a-1"));
    CHECK(r.value()[0].timestamps_ms ==
          std::vector<std::int64_t>{kT0 + 2000, kT0 + 3000, kT0 + 4000});
    CHECK(r.value()[0].values == std::vector<double>{12, 13, 14});

    auto all = engine->query_raw(sel(R"({district="pudong"})"), kT0, kT0 + 10'000);
    REQUIRE(all.is_ok());
    REQUIRE(all.value().size() == 2);
    CHECK(all.value()[0].series == key("pm10", "a-2"));  // ordered by series key
    CHECK(all.value()[1].values.size() == 10);
    CHECK(engine->stats().points_written == 20);
}

TEST_CASE("a write spanning shards fires one callback after every part") {
    TempDir dir;
    auto engine = open_engine(options_for(dir, 4));
    std::vector<Point> points;
    std::set<unsigned> shards;
    for (int d = 0; d < 64; ++d) {
        points.push_back({key("noise", "n-" + std::to_string(d)), kT0, 50.0 + d});
        shards.insert(engine->shard_of(points.back().series));
    }
    REQUIRE(shards.size() > 1);
    std::atomic<int> calls{0};
    std::promise<WriteResult> done;
    REQUIRE(engine->try_write(points, [&](const WriteResult& r) {
        ++calls;
        done.set_value(r);
    }));
    CHECK(points.empty());
    auto result = done.get_future().get();
    REQUIRE(all_accepted(result));
    CHECK(result.accepted == 64);  // the parts' counts add up
    auto r = engine->query_raw(sel("noise"), kT0, kT0 + 1);
    REQUIRE(r.is_ok());
    CHECK(r.value().size() == 64);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    CHECK(calls == 1);
}

TEST_CASE("the fields of one device's message land in one shard") {
    TempDir dir;
    auto engine = open_engine(options_for(dir, 8));
    for (int d = 0; d < 20; ++d) {
        auto device = "w-" + std::to_string(d);
        CHECK(engine->shard_of(key("temperature", device)) ==
              engine->shard_of(key("humidity", device)));
    }
}

TEST_CASE("try_write refuses, untouched, when a shard queue is full, then recovers") {
    TempDir dir;
    auto o = options_for(dir, 1);
    o.queue_capacity = 4;
    std::atomic<int> space{0};
    o.on_space_available = [&] { ++space; };
    auto engine = open_engine(o);
    std::atomic<int> acked{0};
    std::vector<Point> first;
    for (int i = 0; i < 4; ++i)
        first.push_back({key("pm25", "q"), kT0 + i, 1});
    int refused = 0;
    // Keep the queue busy: whichever write is refused must come back intact.
    for (int round = 0; round < 200; ++round) {
        std::vector<Point> batch = first;
        for (auto& p : batch)
            p.timestamp_ms += round * 10;
        auto copy = batch;
        if (!engine->try_write(batch, [&](const WriteResult& r) {
                if (all_accepted(r)) ++acked;
            })) {
            ++refused;
            CHECK(batch.size() == copy.size());
            CHECK(batch[0].series == copy[0].series);
            CHECK(batch[3].timestamp_ms == copy[3].timestamp_ms);
            REQUIRE(all_accepted(write_sync(*engine, std::move(batch))));
            ++acked;
        }
    }
    engine.reset();  // drains
    CHECK(acked == 200);
    // Room is announced when a producer was refused it, and only then (writes committed at once
    // on this thread may never meet a full queue).
    INFO("refused " << refused);
    CHECK((space > 0) == (refused > 0));
}

TEST_CASE("a write larger than the queue goes in when the queue is empty") {
    TempDir dir;
    auto o = options_for(dir, 1);
    o.queue_capacity = 8;
    auto engine = open_engine(o);
    std::vector<Point> points;
    for (int i = 0; i < 100; ++i)
        points.push_back({key("pm25", "big"), kT0 + i, 1.0 * i});
    REQUIRE(all_accepted(write_sync(*engine, points)));
    CHECK(engine->stats().points_written == 100);
}

TEST_CASE("the destructor drains the queue and fires every callback") {
    TempDir dir;
    std::atomic<int> ok{0};
    {
        auto engine = open_engine(options_for(dir, 2));
        for (int i = 0; i < 500; ++i) {
            std::vector<Point> p{{key("pm25", "d-" + std::to_string(i % 7)), kT0 + i, 1.0 * i}};
            while (!engine->try_write(p, [&](const WriteResult& r) { ok += all_accepted(r); }))
                std::this_thread::yield();
        }
    }
    CHECK(ok == 500);
    auto engine = open_engine(options_for(dir, 2));
    auto r = engine->query_raw(sel("pm25"), kT0, kT0 + 1000);
    REQUIRE(r.is_ok());
    std::size_t total = 0;
    for (auto& s : r.value())
        total += s.values.size();
    CHECK(total == 500);
}

TEST_CASE("points survive reopen from the log and from flushed chunks") {
    TempDir dir;
    auto o = options_for(dir, 2);
    {
        auto engine = open_engine(o);
        std::vector<Point> p;
        for (int i = 0; i < 100; ++i)
            p.push_back({key("pm25", "r"), kT0 + i * 10'000, i * 0.5});
        REQUIRE(all_accepted(write_sync(*engine, p)));
        REQUIRE(engine->flush().is_ok());
        CHECK(engine->stats().head_points == 0);
        p.clear();
        for (int i = 100; i < 150; ++i)
            p.push_back({key("pm25", "r"), kT0 + i * 10'000, i * 0.5});
        REQUIRE(all_accepted(write_sync(*engine, p)));
        CHECK(engine->stats().head_points == 50);
    }
    auto engine = open_engine(o);
    auto r = engine->query_raw(sel("pm25"), kT0, kT0 + 10'000'000);
    REQUIRE(r.is_ok());
    REQUIRE(r.value().size() == 1);
    REQUIRE(r.value()[0].values.size() == 150);
    for (int i = 0; i < 150; ++i) {
        CHECK(r.value()[0].timestamps_ms[i] == kT0 + i * 10'000);
        CHECK(r.value()[0].values[i] == i * 0.5);
    }
    CHECK(engine->stats().series == 1);
}

TEST_CASE("the shard count is fixed at creation") {
    TempDir dir;
    { auto engine = open_engine(options_for(dir, 3)); }
    auto o = options_for(dir, 0);
    auto engine = open_engine(o);
    CHECK(engine->shard_count() == 3);
    engine.reset();
    auto wrong = Engine::open(options_for(dir, 5));
    REQUIRE_FALSE(wrong.is_ok());
    CHECK(wrong.status().code() == Status::Code::invalid_argument);
}

TEST_CASE("a duplicate timestamp keeps the last value, in the head and across a flush") {
    TempDir dir;
    auto engine = open_engine(options_for(dir, 1));
    auto k = key("temperature", "dup");
    REQUIRE(all_accepted(write_sync(*engine, {{k, kT0, 1}, {k, kT0 + 1000, 2}, {k, kT0, 3}})));
    auto check = [&](std::vector<double> expected) {
        auto r = engine->query_raw(sel("temperature"), kT0, kT0 + 5000);
        REQUIRE(r.is_ok());
        REQUIRE(r.value().size() == 1);
        CHECK(r.value()[0].values == expected);
    };
    check({3, 2});
    REQUIRE(engine->flush().is_ok());
    check({3, 2});
    REQUIRE(all_accepted(write_sync(*engine, {{k, kT0 + 1000, 4}})));  // replaces a flushed point
    check({3, 4});
    REQUIRE(engine->flush().is_ok());
    check({3, 4});
}

TEST_CASE("late samples within the window are accepted, beyond it rejected and counted") {
    TempDir dir;
    auto o = options_for(dir, 1);
    o.out_of_order_window = std::chrono::minutes(10);
    auto engine = open_engine(o);
    auto k = key("pm25", "late");
    REQUIRE(all_accepted(write_sync(*engine, {{k, kT0 + 3'600'000, 1}})));
    REQUIRE(engine->flush().is_ok());
    REQUIRE(
        all_accepted(write_sync(*engine, {{k, kT0 + 3'600'000 - 5 * 60'000, 2}})));  // 5 min late
    auto rejected = write_sync(*engine, {{k, kT0 + 3'600'000 - 11 * 60'000, 3},      // 11 min late
                                         {k, kT0 + 3'600'000 + 1000, 4}});
    CHECK(rejected.durable());
    CHECK(rejected.rejected_late == 1);
    CHECK(rejected.rejected() == 1);
    CHECK(rejected.accepted == 1);
    CHECK(engine->stats().points_rejected_late == 1);
    REQUIRE(engine->flush().is_ok());
    auto r = engine->query_raw(sel("pm25"), kT0, kT0 + 7'200'000);
    REQUIRE(r.is_ok());
    CHECK(r.value()[0].values == std::vector<double>{2, 1, 4});
}

TEST_CASE("the series limit rejects new series and counts them while known series still write") {
    TempDir dir;
    auto o = options_for(dir, 1);
    o.max_series_per_shard = 3;
    auto engine = open_engine(o);
    REQUIRE(all_accepted(write_sync(
        *engine, {{key("a", "1"), kT0, 1}, {key("a", "2"), kT0, 1}, {key("a", "3"), kT0, 1}})));
    auto s = write_sync(*engine, {{key("a", "4"), kT0, 1}, {key("a", "1"), kT0 + 1, 2}});
    CHECK(s.durable());
    CHECK(s.rejected_series_limit == 1);
    CHECK(s.rejected() == 1);
    CHECK(s.accepted == 1);
    auto st = engine->stats();
    CHECK(st.points_rejected_series_limit == 1);
    CHECK(st.series == 3);
    CHECK(st.points_written == 4);
}

TEST_CASE("malformed series keys are rejected and counted") {
    TempDir dir;
    auto engine = open_engine(options_for(dir, 1));
    auto s = write_sync(*engine, {{"not a key", kT0, 1}, {key("a", "1"), kT0, 1}});
    CHECK(s.durable());
    CHECK(s.rejected_invalid == 1);
    CHECK(s.rejected() == 1);
    CHECK(s.accepted == 1);
    CHECK(engine->stats().points_rejected_invalid == 1);
    CHECK(engine->stats().points_written == 1);
}

TEST_CASE("a write spanning shards reports every part's rejections in one result") {
    TempDir dir;
    auto o = options_for(dir, 4);
    o.out_of_order_window = std::chrono::minutes(1);
    auto engine = open_engine(o);
    std::vector<Point> first, second;
    std::set<unsigned> shards;
    for (int d = 0; d < 16; ++d) {
        auto k = key("noise", "j-" + std::to_string(d));
        shards.insert(engine->shard_of(k));
        first.push_back({k, kT0 + 3'600'000, 1});
        second.push_back({k, kT0, 2});                     // an hour late
        second.push_back({k, kT0 + 3'600'000 + 1000, 3});  // accepted
    }
    REQUIRE(shards.size() > 1);
    second.push_back({"not a key", kT0, 4});
    REQUIRE(all_accepted(write_sync(*engine, first)));
    auto r = write_sync(*engine, second);
    CHECK(r.durable());
    CHECK(r.accepted == 16);
    CHECK(r.rejected_late == 16);
    CHECK(r.rejected_invalid == 1);
    CHECK(r.rejected_series_limit == 0);
    CHECK(r.rejected() == 17);
}

TEST_CASE("an empty write is durable at once with nothing to count") {
    TempDir dir;
    auto engine = open_engine(options_for(dir, 1));
    std::vector<Point> none;
    bool called = false;
    REQUIRE(engine->try_write(none, [&](const WriteResult& r) {
        called = true;
        CHECK(r.durable());
        CHECK(r.accepted == 0);
        CHECK(r.rejected() == 0);
    }));
    CHECK(called);  // on the calling thread, before try_write returned
}

TEST_CASE("series and label values by matcher") {
    TempDir dir;
    auto engine = open_engine(options_for(dir, 2));
    REQUIRE(all_accepted(
        write_sync(*engine, {{key("pm25", "a-1", "pudong"), kT0, 1},
                             {key("pm25", "a-2", "xuhui"), kT0, 1},
                             {key("pm10", "a-1", "pudong"), kT0, 1},
                             {format_series_key("noise", {{"district", "xuhui"}}), kT0, 1}})));
    auto names = [&](const std::string& s) {
        auto r = engine->series(sel(s));
        REQUIRE(r.is_ok());
        return r.value().size();
    };
    CHECK(names(R"(pm25)") == 2);
    CHECK(names(R"({district="pudong"})") == 2);
    CHECK(names(R"({district!="pudong"})") == 2);
    CHECK(names(R"(pm25{district=~"pu.*"})") == 1);
    CHECK(names(R"({district=~"pu"})") == 0);  // anchored
    CHECK(names(R"({district!~"pu.*|xu.*"})") == 0);
    CHECK(names(R"({type=""})") == 1);  // label absent matches the empty value
    CHECK(names(R"({type!="air"})") == 1);
    CHECK(names(R"({__name__=~"pm.*",device="a-1"})") == 2);
    auto values = engine->label_values("district", sel(R"({type="air"})"));
    REQUIRE(values.is_ok());
    CHECK(values.value() == std::vector<std::string>{"pudong", "xuhui"});
    auto measurements = engine->label_values("__name__", sel(R"({device="a-1"})"));
    REQUIRE(measurements.is_ok());
    CHECK(measurements.value() == std::vector<std::string>{"pm10", "pm25"});
}

TEST_CASE("query limits fail with clear errors") {
    TempDir dir;
    auto engine = open_engine(options_for(dir, 2));
    std::vector<Point> p;
    for (int d = 0; d < 10; ++d) {
        for (int i = 0; i < 10; ++i)
            p.push_back({key("pm25", "l-" + std::to_string(d)), kT0 + i, 1});
    }
    REQUIRE(all_accepted(write_sync(*engine, p)));
    QueryLimits few_series{5, 1000};
    auto a = engine->query_raw(sel("pm25"), kT0, kT0 + 100, few_series);
    REQUIRE_FALSE(a.is_ok());
    CHECK(a.status().code() == Status::Code::limit_exceeded);
    CHECK(a.status().message().find("10 series") != std::string::npos);
    QueryLimits few_points{100, 50};
    auto b = engine->query_raw(sel("pm25"), kT0, kT0 + 100, few_points);
    REQUIRE_FALSE(b.is_ok());
    CHECK(b.status().message().find("50 points") != std::string::npos);
    CHECK(engine->query_raw(sel("pm25"), kT0, kT0 + 100, QueryLimits{10, 100}).is_ok());
}

TEST_CASE("selectors beyond the matcher and regex limits are refused with clear errors") {
    TempDir dir;
    auto engine = open_engine(options_for(dir, 1));
    REQUIRE(all_accepted(write_sync(*engine, {{key("pm25", "r-1"), kT0, 1}})));
    Selector huge_regex = sel("pm25");
    huge_regex.matchers.push_back({"device", Matcher::Op::regex, std::string(2000, 'a')});
    auto a = engine->series(huge_regex);
    REQUIRE_FALSE(a.is_ok());
    CHECK(a.status().code() == Status::Code::invalid_argument);
    CHECK(a.status().message().find("regex for device longer than 1024 bytes") !=
          std::string::npos);
    Selector many = sel("pm25");
    for (int i = 0; i < 70; ++i)
        many.matchers.push_back({"t" + std::to_string(i), Matcher::Op::not_equal, "x"});
    auto b = engine->query_raw(many, kT0, kT0 + 10);
    REQUIRE_FALSE(b.is_ok());
    CHECK(b.status().message().find("more than 64 matchers") != std::string::npos);
    // A long equality value is only compared, never compiled: no limit beyond the key's own.
    Selector long_equal = sel("pm25");
    long_equal.matchers.push_back({"device", Matcher::Op::equal, std::string(2000, 'a')});
    CHECK(engine->series(long_equal).is_ok());
}

TEST_CASE("on_batch reports each group commit") {
    TempDir dir;
    auto o = options_for(dir, 1);
    std::atomic<std::size_t> points{0};
    std::atomic<int> batches{0};
    o.on_batch = [&](const BatchReport& r) {
        points += r.points;
        ++batches;
    };
    auto engine = open_engine(o);
    REQUIRE(
        all_accepted(write_sync(*engine, {{key("a", "1"), kT0, 1}, {key("a", "1"), kT0 + 1, 1}})));
    CHECK(points == 2);
    CHECK(batches >= 1);
}

TEST_CASE("a catastrophic-backtracking regex against a hostile value answers at once") {
    TempDir dir;
    auto engine = open_engine(options_for(dir, 1));
    std::string hostile(20'000, 'a');
    hostile += '!';
    REQUIRE(write_sync(*engine, {{key("pm25", hostile), 1000, 1}, {key("pm25", "aaaa"), 1000, 2}})
                .durable());
    // std::regex recurses per character here (a stack overflow at this length) and backtracks
    // exponentially on shorter values; RE2 matches in linear time. A hang fails by ctest timeout.
    auto result = engine->series(sel(R"(pm25{device=~"(a+)+"})"));
    REQUIRE(result.is_ok());
    CHECK(result.value() == std::vector<std::string>{key("pm25", "aaaa")});
}
