// Query budgets: memory charged before it is allocated against one query's limit and the memory
// all queries share, points, deadline and cancellation; and the engine's queries under them:
// steps without data cost nothing, the first limit met ends the query and names itself, and
// matchers run while the writer adds series.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <thread>

#include "storage/query_budget.hpp"
#include "tests/storage/helpers.hpp"
#include "tests/support/temp_dir.hpp"

using namespace citygate::storage;
using namespace citygate::storage::test;
using citygate::test::TempDir;
using namespace std::chrono_literals;
using Limit = QueryBudget::Limit;

namespace {

constexpr std::int64_t kT0 = 1'718'409'600'000;  // 2024-06-15T00:00:00Z, a window start

QueryLimits bytes_limit(std::size_t bytes) {
    QueryLimits limits;
    limits.max_bytes = bytes;
    return limits;
}

std::unique_ptr<Engine> open_engine(const TempDir& dir, unsigned shards = 2) {
    EngineOptions o;
    o.directory = dir.path();
    o.shards = shards;
    o.retention = std::chrono::milliseconds(0);
    auto e = Engine::open(std::move(o));
    REQUIRE(e.is_ok());
    return std::move(e.value());
}

// 20 series, `points` points each, one a minute from kT0.
void write_city(Engine& engine, int points) {
    std::vector<Point> p;
    for (int d = 0; d < 20; ++d) {
        for (int i = 0; i < points; ++i)
            p.push_back({key("pm25", "d" + std::to_string(d)), kT0 + i * 60'000, double(d + i)});
    }
    REQUIRE(all_accepted(write_sync(engine, p)));
}

}  // namespace

TEST_CASE("a budget counts what is charged and refuses past its limit without counting it") {
    QueryBudget budget(bytes_limit(1000));
    CHECK(budget.charge(600).is_ok());
    budget.release(100);
    CHECK(budget.held() == 500);
    auto over = budget.charge(501);
    CHECK(over.code() == Status::Code::limit_exceeded);
    CHECK(over.message().find("1000 bytes, the memory limit of one query") != std::string::npos);
    CHECK(budget.held() == 500);
    CHECK(budget.peak() == 600);
    CHECK(budget.exceeded() == Limit::bytes);
    // The query is over: every later call answers the same, so its other shards stop too.
    CHECK(budget.check().code() == Status::Code::limit_exceeded);
    CHECK(budget.charge(1).code() == Status::Code::limit_exceeded);
}

TEST_CASE("grow charges a container's growth before reserving it, and nothing within capacity") {
    QueryBudget budget(bytes_limit(1 << 20));
    std::vector<std::uint64_t> v;
    REQUIRE(budget.grow(v, 100).is_ok());
    CHECK(v.capacity() == 100);
    CHECK(budget.held() == 800);
    v.resize(100);
    REQUIRE(budget.grow(v, 1).is_ok());  // geometric, as push_back would
    CHECK(v.capacity() == 200);
    CHECK(budget.held() == 1600);
    REQUIRE(budget.grow(v, 50).is_ok());
    CHECK(budget.held() == 1600);

    SECTION("a growth past the limit leaves the container as it was") {
        QueryBudget small(bytes_limit(1000));
        std::vector<std::uint64_t> w;
        CHECK(small.grow(w, 126).code() == Status::Code::limit_exceeded);
        CHECK(w.capacity() == 0);
    }
    SECTION("a size that would overflow the byte count is refused, not wrapped") {
        QueryBudget small(bytes_limit(1000));
        std::vector<std::uint64_t> w;
        CHECK(small.grow(w, SIZE_MAX / 2).code() == Status::Code::limit_exceeded);
        CHECK(w.capacity() == 0);
    }
}

TEST_CASE("queries share one memory budget: room runs out with busy, and comes back") {
    QueryMemory memory(64 << 10, 50ms);
    {
        QueryBudget a(bytes_limit(60 << 10), &memory);
        REQUIRE(a.admit().is_ok());
        REQUIRE(a.charge(50 << 10).is_ok());
        QueryBudget b(bytes_limit(60 << 10), &memory);
        REQUIRE(b.admit().is_ok());  // one grant still fits
        auto refused = b.charge(20 << 10);
        CHECK(refused.code() == Status::Code::busy);
        CHECK(refused.message().find("server busy: query memory budget") != std::string::npos);
        CHECK(b.exceeded() == Limit::shared_bytes);
        CHECK(a.exceeded() == Limit::none);
    }
    CHECK(memory.in_use() == 0);
    QueryBudget c(bytes_limit(60 << 10), &memory);
    REQUIRE(c.admit().is_ok());
    CHECK(c.charge(55 << 10).is_ok());
}

TEST_CASE("a query finding no room waits briefly at admission, then is refused") {
    QueryMemory memory(64 << 10, 100ms);
    auto holder = std::make_unique<QueryBudget>(bytes_limit(64 << 10), &memory);
    REQUIRE(holder->admit().is_ok());
    REQUIRE(holder->charge(63 << 10).is_ok());

    SECTION("refused once the wait is over") {
        QueryBudget late(bytes_limit(64 << 10), &memory);
        auto started = std::chrono::steady_clock::now();
        auto refused = late.admit();
        auto waited = std::chrono::steady_clock::now() - started;
        CHECK(refused.code() == Status::Code::busy);
        CHECK(waited >= 90ms);
        CHECK(waited < 2s);
    }
    SECTION("let in when a running query gives its memory back meanwhile") {
        std::thread finisher([&] {
            std::this_thread::sleep_for(20ms);
            holder.reset();
        });
        QueryBudget late(bytes_limit(64 << 10), &memory);
        CHECK(late.admit().is_ok());
        finisher.join();
    }
}

TEST_CASE("a budget ends its query past the deadline or once cancelled") {
    QueryLimits limits;
    limits.timeout = 5ms;
    SECTION("deadline") {
        QueryBudget budget(limits, nullptr, std::chrono::steady_clock::now() - 10ms);
        auto late = budget.check();
        CHECK(late.code() == Status::Code::busy);
        CHECK(late.message().find("time limit of 5 ms") != std::string::npos);
        CHECK(budget.exceeded() == Limit::timeout);
    }
    SECTION("cancelled") {
        std::atomic<bool> cancelled{false};
        QueryBudget budget(limits, nullptr, std::chrono::steady_clock::now() + 1h, &cancelled);
        CHECK(budget.check().is_ok());
        cancelled = true;
        CHECK(budget.charge(1).code() == Status::Code::busy);
        CHECK(budget.exceeded() == Limit::cancelled);
    }
}

TEST_CASE("points are counted across every shard of a query") {
    QueryLimits limits;
    limits.max_points = 10;
    QueryBudget budget(limits);
    CHECK(budget.count_points(6).is_ok());
    auto over = budget.count_points(6);
    CHECK(over.code() == Status::Code::limit_exceeded);
    CHECK(over.message().find("limit of 10 points") != std::string::npos);
    CHECK(budget.exceeded() == Limit::points);
}

TEST_CASE("an aggregate over millions of steps holds what has data, not series x steps") {
    TempDir dir;
    auto engine = open_engine(dir);
    write_city(*engine, 5);
    AggregateQuery q;
    q.selector = sel("pm25");
    q.step_ms = 60'000;
    q.end_ms = kT0 + 10 * 60'000;
    q.start_ms = q.end_ms - 4'000'000LL * 60'000;  // ~4 M steps; 20 series: 80 M series x steps
    for (auto source : {AggregateQuery::Source::automatic, AggregateQuery::Source::raw}) {
        q.source = source;
        QueryBudget budget;
        auto result = engine->query_aggregate(q, budget);
        REQUIRE(result.is_ok());
        REQUIRE(result.value().size() == 20);
        CHECK(result.value()[0].timestamps_ms.size() == 5);
        CHECK(result.value()[0].values == std::vector<double>{0, 1, 2, 3, 4});
        // Dense steps were 56 bytes x 4 M x 20 series = 4.5 GB; sparse ones are a few KiB.
        INFO("peak " << budget.peak());
        CHECK(budget.peak() < (1u << 20));
    }
}

TEST_CASE("an aggregate with rate and groups over sparse steps matches the dense answer") {
    TempDir dir;
    auto engine = open_engine(dir);
    // Two series with a gap: rate needs the step before, and exists only where it has one.
    REQUIRE(all_accepted(write_sync(*engine, {{key("pm25", "a", "pudong"), kT0, 1},
                                              {key("pm25", "a", "pudong"), kT0 + 60'000, 4},
                                              {key("pm25", "a", "pudong"), kT0 + 180'000, 10},
                                              {key("pm25", "b", "pudong"), kT0 + 60'000, 2},
                                              {key("pm25", "b", "pudong"), kT0 + 120'000, 8}})));
    AggregateQuery q;
    q.selector = sel("pm25");
    q.start_ms = kT0 + 60'000;
    q.end_ms = kT0 + 240'000;
    q.group_by = std::vector<std::string>{"district"};
    q.function = Aggregation::rate;
    auto rate = engine->query_aggregate(q);
    REQUIRE(rate.is_ok());
    REQUIRE(rate.value().size() == 1);
    // Step 60000: a from 1 to 4 (b has no step before); 120000: b from 2 to 8; 180000: none.
    CHECK(rate.value()[0].timestamps_ms == std::vector<std::int64_t>{kT0 + 60'000, kT0 + 120'000});
    CHECK(rate.value()[0].values == std::vector<double>{3.0 / 60, 6.0 / 60});
    q.function = Aggregation::sum;
    auto sum = engine->query_aggregate(q);
    REQUIRE(sum.is_ok());
    CHECK(sum.value()[0].timestamps_ms ==
          std::vector<std::int64_t>{kT0 + 60'000, kT0 + 120'000, kT0 + 180'000});
    CHECK(sum.value()[0].values == std::vector<double>{6, 8, 10});
    q.function = Aggregation::first;
    auto first = engine->query_aggregate(q);
    REQUIRE(first.is_ok());
    CHECK(first.value()[0].values == std::vector<double>{3, 8, 10});  // mean of the series' firsts
}

TEST_CASE("a query over its memory limit stops with limit_exceeded and names it") {
    TempDir dir;
    auto engine = open_engine(dir);
    write_city(*engine, 200);
    QueryBudget budget(bytes_limit(32 << 10));
    auto result = engine->query_raw(sel("pm25"), kT0, kT0 + 200 * 60'000, budget);
    REQUIRE_FALSE(result.is_ok());
    CHECK(result.status().code() == Status::Code::limit_exceeded);
    CHECK(budget.exceeded() == Limit::bytes);
    // The same with room: 20 x 200 points, 16 bytes each as read and as answered.
    QueryBudget roomy(bytes_limit(1 << 20));
    auto ok = engine->query_raw(sel("pm25"), kT0, kT0 + 200 * 60'000, roomy);
    REQUIRE(ok.is_ok());
    CHECK(ok.value().size() == 20);
    CHECK(roomy.held() >= 20 * 200 * 16);
    CHECK(roomy.held() < 20 * 200 * 16 * 3);
}

TEST_CASE("queries past their deadline or cancelled stop with busy") {
    TempDir dir;
    auto engine = open_engine(dir);
    write_city(*engine, 5);
    QueryLimits limits;
    limits.timeout = 1ms;
    QueryBudget late(limits, nullptr, std::chrono::steady_clock::now() - 1s);
    auto a = engine->query_raw(sel("pm25"), kT0, kT0 + 600'000, late);
    CHECK(a.status().code() == Status::Code::busy);
    CHECK(late.exceeded() == Limit::timeout);
    std::atomic<bool> cancelled{true};
    QueryBudget stopped(QueryLimits{}, nullptr, std::chrono::steady_clock::now(), &cancelled);
    auto b = engine->series(sel(R"({device=~"d.*"})"), stopped);
    CHECK(b.status().code() == Status::Code::busy);
    CHECK(stopped.exceeded() == Limit::cancelled);
}

TEST_CASE("regex matchers run while the writer keeps adding series") {
    TempDir dir;
    auto engine = open_engine(dir, 1);
    REQUIRE(all_accepted(write_sync(*engine, {{key("pm25", "base"), kT0, 1}})));
    std::atomic<bool> done{false};
    std::atomic<int> refused{0};
    std::thread writer([&] {
        for (int i = 0; i < 2000; ++i) {
            auto r = write_sync(*engine, {{key("pm25", "w-" + std::to_string(i)), kT0, 1}});
            if (!all_accepted(r)) ++refused;  // Catch2 asserts on its own thread only
        }
        done = true;
    });
    std::size_t last = 0;
    while (!done) {
        auto found = engine->series(sel(R"(pm25{device=~"w-.*|base"})"));
        REQUIRE(found.is_ok());
        CHECK(found.value().size() >= last);  // series only ever appear
        last = found.value().size();
        auto values = engine->label_values("device", sel(R"({device!~"w-1.*"})"));
        REQUIRE(values.is_ok());
    }
    writer.join();
    CHECK(refused == 0);
    auto all = engine->series(sel(R"(pm25{device=~"w-.*|base"})"));
    REQUIRE(all.is_ok());
    CHECK(all.value().size() == 2001);
}
